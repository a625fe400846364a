import Foundation

/// Renewal's login-node mode (docs/RENEW.md): where compute nodes may not submit jobs, a loop
/// on the login node (a rendered shell script, `vllmctl-renew-login`, which includes the same
/// `vllmctl-renew` partial as the job) submits each successor. `deploy` starts it through the
/// cluster host (locally, or over SSH from a laptop) detached with `setsid`; `teardown` stops
/// it after checking that the recorded pid is still that loop.
public enum RenewLoop {
    /// The files in the deployment directory.
    public static let script = "renew-login.sh"
    public static let pidFile = "renew-login.pid"
    public static let tokenFile = "renew-login.token"
    public static let log = "renew-login.log"
    /// The template (a partial: `templates` does not list it).
    public static let template = "vllmctl-renew-login"

    /// A fresh start token: 32 of `[a-z0-9]`, no secret (it tells this loop's process from
    /// another that got its pid).
    public static func token() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var rng = SystemRandomNumberGenerator()
        return String((0..<32).map { _ in alphabet.randomElement(using: &rng)! })
    }

    /// Starts the loop `script` for the first job `jobID`, detached in its own session, with
    /// no descriptor of the caller's: the command returns at once.
    public static func startArgv(script: String, jobID: String, token: String) -> [String] {
        ["bash", "-c", #"setsid -f bash "$0" "$@" </dev/null >/dev/null 2>&1"#, script, jobID, token]
    }

    /// Stops the loop with pid `pid` only when `/proc/PID/cmdline` is `bash SCRIPT JOBID TOKEN`
    /// with this `script` and `token` and the process is the user's: then its whole process
    /// group (it leads one: setsid), else nothing. Exit 0: stopped (gone, or a zombie its new
    /// parent has not reaped yet); 3: not running; 4: another
    /// process has the pid (left alone); 5: kill failed; 6: still running after 5 s.
    public static func stopArgv(pid: Int, token: String, script: String) -> [String] {
        let check = #"""
            p="$1" t="$2" s="$3"
            st=""
            { read -r st < "/proc/$p/stat"; } 2>/dev/null || exit 3
            st="${st##*) }"
            [[ "${st%% *}" == Z ]] && exit 3
            c="$(tr '\0' '\n' < "/proc/$p/cmdline" 2>/dev/null)" || exit 3
            [[ -n "$c" ]] || exit 3
            [[ "$c" == *$'\n'"$s"$'\n'*$'\n'"$t" && -O "/proc/$p" ]] || exit 4
            g="$(ps -o pgid= -p "$p" 2>/dev/null)"
            g="${g//[[:space:]]/}"
            if [[ "$g" == "$p" ]]; then kill -TERM -- "-$p" || exit 5; else kill -TERM "$p" || exit 5; fi
            for _ in $(seq 50); do
              st=""
              { read -r st < "/proc/$p/stat"; } 2>/dev/null || exit 0
              st="${st##*) }"
              [[ "${st%% *}" == Z ]] && exit 0
              sleep 0.1
            done
            exit 6
            """#
        return ["bash", "-c", check, "vllmctl-stop-loop", String(pid), token, script]
    }

    /// `PID TOKEN` as the loop wrote it (a file on the cluster: checked), nil otherwise.
    public static func parsePidFile(_ data: Data) -> (pid: Int, token: String)? {
        guard data.count < 200 else { return nil }
        let parts = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isWhitespace)
        guard parts.count == 2, let pid = Int(parts[0]), pid > 1, pid < 1 << 22, isToken(String(parts[1]))
        else { return nil }
        return (pid, String(parts[1]))
    }

    static func isToken(_ s: String) -> Bool {
        (16...64).contains(s.count) && s.allSatisfy { ($0.isLowercase || $0.isNumber) && $0.isASCII }
    }

    /// Renders the loop for `plan`, writes it (0700) and the token (0600) into the deployment
    /// directory, starts it for `jobID` and waits (at most 10 s) until it has written its pid
    /// file with the token. Returns the pid; throws with what to do when it did not start.
    static func start(plan: DeployPlan, jobID: String, templates: ScriptTemplates, context: Context)
        async throws
        -> Int
    {
        let path = plan.deployDir + "/" + script
        let token = token()
        let text = try templates.render(template, context: plan.renderContext, partial: true)
        try await context.host.writeFileAtomically(Data(text.utf8), to: path, mode: 0o700)
        try await context.host.writeFileAtomically(
            Data((token + "\n").utf8), to: plan.deployDir + "/" + tokenFile, mode: 0o600)
        let argv = startArgv(script: path, jobID: jobID, token: token)
        let result = try await context.host.run(argv, input: nil, timeout: .seconds(30))
        let hint =
            "The job serves until its time limit without a successor. Start the loop by hand on the login node (`setsid -f bash \(path) \(jobID) $(cat \(plan.deployDir)/\(tokenFile))`), or tear down and deploy again; its log is \(plan.deployDir)/\(log)."
        guard result.status == 0 else {
            throw VLLMCtlError.invalidInput(
                "The renewal loop could not be started on \(context.host.displayName) (exit \(result.status): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)))",
                hint: hint)
        }
        for _ in 0..<50 {
            if let data = try? await context.host.readFile(plan.deployDir + "/" + pidFile),
                let (pid, written) = parsePidFile(data), written == token
            {
                return pid
            }
            try await context.clock.sleep(seconds: 0.2)
        }
        throw VLLMCtlError.invalidInput(
            "The renewal loop started on \(context.host.displayName) but did not write \(pidFile) within 10 s",
            hint: hint)
    }

    /// What stopping a deployment's loop came to.
    public enum Stopped: Sendable, Equatable {
        /// The directory has no loop (job mode, or it never started).
        case none
        case stopped(pid: Int)
        /// It had ended already.
        case notRunning(pid: Int)
        /// The pid is another process now: left alone.
        case notOurs(pid: Int)
        case failed(String)
    }

    /// Stops the loop of the deployment in `dir`, if it has one: the pid file must carry the
    /// token vllmctl recorded, and the process must still be that loop (``stopArgv``).
    static func stop(deployDir dir: String, context: Context) async -> Stopped {
        guard let pidData = try? await context.host.readFile(dir + "/" + pidFile) else { return .none }
        guard let (pid, written) = parsePidFile(pidData),
            let tokenData = try? await context.host.readFile(dir + "/" + tokenFile),
            String(decoding: tokenData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                == written
        else {
            return .failed(
                "\(dir)/\(pidFile) does not match the token vllmctl recorded, so no process was stopped; look for `\(script)` with `ps -u $USER -f` on the login node"
            )
        }
        let argv = stopArgv(pid: pid, token: written, script: dir + "/" + script)
        guard let result = try? await context.host.run(argv, input: nil, timeout: .seconds(30)) else {
            return .failed("the login node did not answer; look for pid \(pid) with `ps -fp \(pid)` there")
        }
        switch result.status {
        case 0: return .stopped(pid: pid)
        case 3: return .notRunning(pid: pid)
        case 4: return .notOurs(pid: pid)
        default:
            return .failed(
                "pid \(pid) could not be stopped (exit \(result.status)); stop it with `kill \(pid)` there")
        }
    }
}
