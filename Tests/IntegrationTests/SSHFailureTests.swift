import Foundation
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
