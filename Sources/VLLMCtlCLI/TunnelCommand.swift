import ArgumentParser
import Foundation
import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

struct TunnelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tunnel",
        abstract: "Forward a local port to a deployment's server through the login node, like `ssh -L`.",
        discussion: """
            Needs a cluster profile with `ssh_host`. Each local connection is carried over the one SSH \
            session (libssh2) to the job's node and port. The tunnel checks GET /health through itself \
            before it says it is ready, reconnects if the session drops (the local port stays bound), \
            and closes on Ctrl-C or SIGTERM. With --background it keeps running after this command \
            returns; `vllmctl status` shows it and `vllmctl teardown` (or `tunnel --close`) closes it.
            """)

    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "A job id or deployment name.") var deployment: String?
    @Option(
        help: ArgumentHelp(
            "Forward to HOST:PORT as the login node sees it, instead of a deployment (plain TCP, no /health check).",
            valueName: "host:port"))
    var to: String?
    @Option(help: "The local port to listen on (0: any free port).") var localPort: Int = 8000
    @Option(help: "The local address to listen on (0.0.0.0 lets other machines in).") var bind = "127.0.0.1"
    @Flag(help: "Keep the tunnel open in the background after this command returns.") var background = false
    @Flag(help: "Close this deployment's open tunnels instead.") var close = false
    @Flag(help: .hidden) var detachedChild = false
    @Option(help: .hidden) var logFile: String?

    func validate() throws {
        if (deployment == nil) == (to == nil) {
            throw ValidationError("Name a deployment (JOB|NAME), or give --to HOST:PORT.")
        }
        if to != nil && (background || close) {
            throw ValidationError(
                "--to runs in the foreground only; --background and --close take a deployment.")
        }
    }

    func run() async throws {
        let env = try CLIEnvironment(options: cluster)
        guard let deployment else {
            try await forwardPlain(env, to: to ?? "")
            return
        }
        let store = TunnelStore(records: env.context.records)
        if close {
            let open = store.open(cluster: env.profile.name).filter {
                $0.jobID == deployment || $0.name == deployment
            }
            guard !open.isEmpty else {
                env.context.terminal.print("No open tunnel to `\(deployment)` on \(env.profile.name).")
                return
            }
            for record in open {
                store.close(record)
                env.context.terminal.print("Closed the tunnel \(record.baseURL) (pid \(record.pid)).")
            }
            return
        }
        guard env.profile.sshHost != nil else {
            throw ValidationError(
                "The profile `\(env.profile.name)` has no ssh_host: vllmctl runs on the cluster itself, where the server's URL (`vllmctl info \(deployment)`) is reachable directly. A tunnel needs a profile that reaches the cluster over SSH (e.g. --cluster local-ssh)."
            )
        }
        if background && !detachedChild {
            let record = try await Self.startInBackground(
                env: env, options: cluster, deployment: deployment, localPort: localPort, bind: bind)
            let key = try await Self.apiKey(for: record, env: env)
            Self.printReady(record: record, key: key, terminal: env.context.terminal)
            env.context.terminal.note(
                "It runs in the background (pid \(record.pid)); `vllmctl tunnel --close \(record.name)` or `vllmctl teardown \(record.name)` closes it."
            )
            return
        }
        try await runHere(env, store: store, deployment: deployment)
    }

    /// `--to HOST:PORT`: a plain forward, as `ssh -N -L PORT:HOST:PORT`.
    func forwardPlain(_ env: CLIEnvironment, to target: String) async throws {
        guard let colon = target.lastIndex(of: ":"), let port = Int(target[target.index(after: colon)...]),
            (1...65535).contains(port), colon != target.startIndex
        else { throw ValidationError("--to takes HOST:PORT, e.g. --to gpu017:8000.") }
        let host = String(target[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let listener = try LocalListener.bind(address: bind, port: localPort)
        guard let remote = env.context.host as? RemoteHost else {
            throw ValidationError("The profile `\(env.profile.name)` has no ssh_host: a tunnel needs one.")
        }
        let terminal = env.context.terminal
        let tunnel = try Tunnel(
            session: try await remote.detachSession(), listener: listener, targetHost: host, targetPort: port,
            onEvent: { terminal.note(Self.describe($0, target: target)) })
        terminal.print("Forwarding \(tunnel.baseURL) → \(target) via \(tunnel.via)")
        await Self.holdUntilSignal(tunnel) {}
    }

    /// Keeps `tunnel` open until SIGINT, SIGTERM or SIGHUP, then closes it (within 2 s).
    static func holdUntilSignal(_ tunnel: Tunnel, onExit: @escaping @Sendable () -> Void) async {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        let sources = [SIGINT, SIGTERM, SIGHUP].map { (sig: Int32) -> any DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                tunnel.requestStop()
                // Everything closes well within 2 s; should a reconnect attempt hold the loop,
                // leaving the process closes the sockets all the same.
                DispatchQueue.global().asyncAfter(deadline: .now() + 1.5) {
                    onExit()
                    Glibc.exit(0)
                }
            }
            source.resume()
            return source
        }
        await tunnel.waitUntilClosed()
        sources.forEach { $0.cancel() }
    }

    /// Opens the tunnel in this process and keeps it until a signal.
    func runHere(_ env: CLIEnvironment, store: TunnelStore, deployment: String) async throws {
        let terminal = env.context.terminal
        // The port first: a port in use is the commonest mistake, and costs no handshake.
        let listener = try LocalListener.bind(address: bind, port: localPort)
        let resolved = try await DeploymentResolver(context: env.context, cluster: env.profile.name).resolve(
            deployment)
        let connection = try resolved.requireConnection()
        if resolved.hasEnded {
            throw VLLMCtlError.invalidInput(
                "Job \(resolved.jobID) (\(resolved.name)) has ended, so there is no server to tunnel to",
                hint: "Deploy again with `vllmctl deploy`; `vllmctl status --all` lists your deployments.")
        }
        guard let remote = env.context.host as? RemoteHost else {
            throw ValidationError("The profile `\(env.profile.name)` does not reach the cluster over SSH.")
        }
        let session = try await remote.detachSession()
        let tunnel = try Tunnel(
            session: session, listener: listener, targetHost: connection.host, targetPort: connection.port,
            onEvent: { event in
                terminal.note(Self.describe(event, target: "\(connection.host):\(connection.port)"))
            }
        )
        do {
            try await tunnel.checkHealth(http: env.context.http, deployment: resolved.name)
        } catch {
            tunnel.stop()
            throw error
        }
        let record = TunnelRecord(
            cluster: env.profile.name, jobID: resolved.jobID, name: resolved.name, pid: getpid(), bind: bind,
            localPort: listener.port, target: "\(connection.host):\(connection.port)", startedAt: Date(),
            background: detachedChild, logFile: logFile)
        try store.save(record)
        // Closing cleanly leaves nothing behind: the record, and a background tunnel's log.
        let forget: @Sendable () -> Void = {
            store.remove(record)
            if let log = record.logFile { unlink(log) }
        }
        defer { forget() }
        if detachedChild {
            // The log holds no key: the parent prints it.
            terminal.note(
                "Tunnel open: \(record.baseURL) → \(record.target) via \(tunnel.via) (job \(record.jobID), \(record.name)); pid \(record.pid)"
            )
        } else {
            Self.printReady(record: record, key: connection.apiKey, terminal: terminal)
            terminal.note("Press Ctrl-C to close it.")
        }
        await Self.holdUntilSignal(tunnel, onExit: forget)
        terminal.note("Tunnel closed.")
    }

    static func printReady(record: TunnelRecord, key: String?, terminal: any Terminal) {
        terminal.print(
            "Tunnel open: \(record.baseURL) → \(record.target) (job \(record.jobID), \(record.name))")
        if let key {
            terminal.print("API key: \(key)")
            terminal.print(
                "export OPENAI_BASE_URL=\(Shell.quote(record.baseURL)) OPENAI_API_KEY=\(Shell.quote(key))")
        }
    }

    static func describe(_ event: ForwarderEvent, target: String) -> String {
        switch event {
        case .channelOpenFailed(let to, let reason, let alsoSince):
            let meaning =
                reason.contains("connect failed")
                ? ": the server is gone or not listening; see `vllmctl status`"
                : reason.contains("administratively prohibited")
                    ? ": the SSH server does not allow forwarding there (AllowTcpForwarding/PermitOpen)"
                    : reason.hasPrefix("no answer")
                        ? ": the node is down or unreachable, or a firewall drops the packets; see `vllmctl status`"
                        : ""
            let more =
                alsoSince > 0 ? " (and \(alsoSince) more failed connections since the last message)" : ""
            return "tunnel: a connection to \(to) failed (\(reason))\(meaning)\(more)"
        case .sessionLost(let reason):
            return "tunnel: the SSH session was lost (\(reason)); reconnecting, the local port stays open"
        case .reconnected:
            return "tunnel: reconnected"
        case .acceptFailed(let reason):
            return
                "tunnel: cannot accept more connections: \(reason); new ones wait until some close (raise the limit with `ulimit -n`)"
        case .reconnectFailed(let reason, let retryIn):
            return "tunnel: reconnecting failed (\(reason)); next try in \(String(format: "%.1f", retryIn)) s"
        }
    }

    /// Starts `vllmctl tunnel` as a detached copy of this program and waits until it is ready.
    static func startInBackground(
        env: CLIEnvironment, options: ClusterOptions, deployment: String, localPort: Int, bind: String
    ) async throws -> TunnelRecord {
        let store = TunnelStore(records: env.context.records)
        try store.prepareDirectory(cluster: env.profile.name)
        let log = store.logPath(
            cluster: env.profile.name, jobID: "tunnel-\(getpid())-\(Int(Date().timeIntervalSince1970))")
        var arguments = [
            "tunnel", deployment, "--local-port", String(localPort), "--bind", bind, "--detached-child",
            "--log-file", log, "--cluster", env.profile.name,
        ]
        if let config = options.config { arguments += ["--config", config] }
        if options.acceptNewHostKey { arguments.append("--accept-new-host-key") }
        let pid = try Detached.spawn(executable: Detached.ownExecutable(), arguments: arguments, log: log)
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                unlink(log)
                let message = text.trimmingCharacters(in: .whitespacesAndNewlines)
                throw ValidationError(
                    message.isEmpty
                        ? "The background tunnel stopped at once (exit status \(status))." : message)
            }
            if let record = store.open(cluster: env.profile.name).first(where: { $0.pid == pid }) {
                return record
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(pid, SIGTERM)
        throw ValidationError("The background tunnel was not ready within 90 s; its log is \(log).")
    }

    /// The deployment's key: from the local record if there is one, else its connection file.
    static func apiKey(for record: TunnelRecord, env: CLIEnvironment) async throws -> String? {
        if let local = env.context.records.find(record.jobID, cluster: record.cluster) { return local.apiKey }
        let resolved = try await DeploymentResolver(context: env.context, cluster: record.cluster).resolve(
            record.jobID)
        return resolved.connection?.apiKey
    }
}
