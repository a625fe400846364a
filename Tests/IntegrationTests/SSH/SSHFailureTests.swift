import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

/// sshd's processes for the SSH connection whose local end is `session`'s socket.
func sshdProcesses(of session: SSHSession) async throws -> Set<pid_t> {
    let port = TestTunnel.localPort(of: session.socket)
    let ss = try await sh(["ss", "-tnpH", "state", "established", "( dport = :\(port) )"])
    return Set(ss.stdout.matches(of: /pid=(\d+)/).compactMap { pid_t(String($0.1)) })
}

@Suite struct SSHExitStatusTests {
    /// Issue 12 item 7: a command whose connection died after its output but before its exit
    /// status arrived was reported as exit status 0.
    @Test func aConnectionLostBeforeTheExitStatusIsAnError() async throws {
        let host = RemoteHost(options: LocalSSH.options())
        let session = try await host.session()
        let mark = try temporaryDirectory() + "/pid"
        // Prints, closes its output (sshd then sends EOF), says so, and lives on.
        let script = "echo printed; exec >&- 2>&-; echo $$ > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; exec sleep 30"
        let run = Task {
            try await host.run(["sh", "-c", script, "sh", mark], input: nil, timeout: .seconds(60))
        }
        let started = Date()
        while !FileManager.default.fileExists(atPath: mark) && Date().timeIntervalSince(started) < 10 {
            try await Task.sleep(for: .milliseconds(20))
        }
        let sleeper = try String(contentsOfFile: mark, encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
        defer { if let pid = pid_t(sleeper) { kill(pid, SIGKILL) } }
        try await Task.sleep(for: .milliseconds(300))  // the EOF has arrived; the exit status cannot
        let pids = try await sshdProcesses(of: session)
        #expect(!pids.isEmpty)
        for pid in pids { kill(pid, SIGKILL) }
        let text: String
        do {
            let result = try await run.value
            text = "no error: status \(result.status), stdout \(result.stdout.debugDescription)"
        } catch {
            text = "\(error)"
        }
        print("SSHExitStatusTests: \(text)")
        #expect(text.contains("exit status"), "\(text)")
        #expect(text.contains("lost"), "\(text)")
        #expect(Date().timeIntervalSince(started) < 20)
    }
}

/// Text gathered from another task.
final class TextBox: Sendable {
    private let value = Mutex("")
    func append(_ s: String) { value.withLock { $0 += s } }
    var text: String { value.withLock { $0 } }
}

@Suite struct RemoteHostReconnectTests {
    /// Issue 12 item 6: a dropped session is replaced on the next use, paced: backoff from the
    /// first attempt and never two handshakes within 2 s; nothing is re-run by itself.
    @Test func aKilledSessionIsReplacedWithBackoffAndReleased() async throws {
        let host = RemoteHost(options: LocalSSH.options())
        let terminal = CapturedTerminal()
        let trace = SessionTrace()
        #expect(try await host.output(["echo", "first"]) == "first\n")
        var killedAt: [UInt64] = []
        for round in 0..<3 {
            let session = try await host.session()
            trace.add(session)
            for pid in try await sshdProcesses(of: session) { kill(pid, SIGKILL) }
            killedAt.append(MonotonicClock.now())
            try await Task.sleep(for: .milliseconds(100))
            // A plain command is not retried: the caller gets the error.
            let plain = await thrownText { try await host.run(["true"]) }
            #expect(plain != nil, "round \(round)")
            let again = try await host.retryingReads(terminal: terminal) {
                try await host.output(["echo", "again"])
            }
            #expect(again == "again\n")
        }
        // HTTP through the session notices a loss first: the request fails (the server's state is
        // unknown), and the next read reconnects; HTTP then goes over the new session.
        // Not loopback: only cluster addresses are routed over the session.
        let sim = try SimulatorProcess(bindHost: "10.77.0.1")
        defer { sim.stop() }
        let routed = CurlHTTPClient(route: host)
        let health = HTTPRequest(url: sim.url + "/health", connectTimeout: 5, timeout: 10)
        try await sim.waitHealthy(http: CurlHTTPClient())
        #expect(try await routed.send(health).status == 200)
        do {
            let session = try await host.session()
            trace.add(session)
            for pid in try await sshdProcesses(of: session) { kill(pid, SIGKILL) }
            killedAt.append(MonotonicClock.now())
        }
        try await Task.sleep(for: .milliseconds(100))
        let lost = await thrownText { try await routed.send(health) }
        #expect(
            lost?.contains("unreachable") == true || lost?.contains("SSH session was lost") == true,
            "\(lost ?? "no error")")
        #expect(try await host.retryingReads(terminal: terminal) { try await host.output(["true"]) } == "")
        #expect(try await routed.send(health).status == 200)
        trace.add(try await host.session())
        let starts = host.handshakeStarts
        #expect(starts.count == 5, "\(starts)")
        for i in 1..<starts.count {
            let gap = Double(starts[i] - starts[i - 1]) / 1e9
            #expect(gap >= 1.99, "handshakes \(i - 1) and \(i) were \(gap) s apart")
            let afterLoss = Double(starts[i] - killedAt[i - 1]) / 1e9
            #expect(afterLoss >= 0.49, "reconnect \(i) began \(afterLoss) s after the loss")
        }
        #expect(
            terminal.text.components(separatedBy: "Lost the SSH connection").count - 1 == 4,
            "\(terminal.text)")
        await host.close()
        try await trace.waitReleased()
        #expect(trace.alive == 0, "alive: \(trace.aliveIndices)")
        #expect(trace.socketsOpen == 0)
    }

    @Test func aFirstConnectionThatFailsIsNotRetried() async throws {
        let host = RemoteHost(options: LocalSSH.options(port: 1))
        let terminal = CapturedTerminal()
        let text = await thrownText {
            try await host.retryingReads(terminal: terminal) { try await host.output(["true"]) }
        }
        #expect(text?.contains("cannot connect") == true, "\(text ?? "no error")")
        // Not retried: a retry says "Lost the SSH connection … reconnecting" first.
        #expect(terminal.text.isEmpty)
    }
}

extension LocalCluster {
    /// Issue 12 item 6: one network blip used to end `logs --follow`, `status --watch` and
    /// deploy's wait.
    @Suite struct SSHReconnectTests {
        @Test func followingALogGoesOnAfterTheSessionIsKilled() async throws {
            let dir = try temporaryDirectory()
            let out = dir + "/follow.out"
            let submitted = try await sh([
                "sbatch", "--parsable", "--job-name=ssh-follow", "--output=" + out, "--wrap",
                "for i in $(seq 1 40); do echo line $i; sleep 0.25; done",
            ])
            #expect(submitted.status == 0, "\(submitted.stderr)")
            let jobID = String(submitted.stdout.prefix { $0.isNumber })
            // Cancelled afterwards, awaited, pass or fail.
            try await cancellingJobs { submittedJobs in
                submittedJobs.add(jobID)
                let host = RemoteHost(options: LocalSSH.options())
                let terminal = CapturedTerminal()
                let context = Context(
                    host: host, http: CurlHTTPClient(), clock: SystemClock(), terminal: terminal,
                    records: DeploymentStore(directory: dir + "/state"), environment: [:])
                let shown = TextBox()
                let follow = Task {
                    try await LogFollower(context: context).run(
                        path: out, jobID: jobID, lines: 100, follow: true
                    ) {
                        shown.append($0)
                    }
                }
                let started = Date()
                while !shown.text.contains("line 5\n") && Date().timeIntervalSince(started) < 90 {
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(shown.text.contains("line 5\n"), "\(shown.text)")
                // sshd's process for this session is killed in the middle of the follow.
                let first = try await host.session()
                let pids = try await sshdProcesses(of: first)
                #expect(!pids.isEmpty)
                for pid in pids { kill(pid, SIGKILL) }
                let outcome = await follow.result
                let lines = shown.text.split(separator: "\n").map(String.init)
                #expect(throws: Never.self) { try outcome.get() }
                #expect(lines == (1...40).map { "line \($0)" }, "\(shown.text)")
                #expect(terminal.text.contains("Lost the SSH connection to test-2222"), "\(terminal.text)")
                #expect(terminal.text.contains("Reconnected to test-2222."), "\(terminal.text)")
                print("SSHReconnectTests: \(terminal.text)")
            }
        }
    }
}
