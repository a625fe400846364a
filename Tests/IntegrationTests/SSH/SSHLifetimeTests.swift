import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

/// The process's open descriptors and the socket inodes among them (/proc/self/fd).
enum OpenDescriptors {
    static var count: Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    /// The inodes of every socket this process holds open.
    static var socketInodes: Set<UInt64> {
        let dir = "/proc/self/fd"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        var inodes: Set<UInt64> = []
        for name in names {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + name),
                let match = target.firstMatch(of: /^socket:\[(\d+)\]$/), let inode = UInt64(match.1)
            else { continue }
            inodes.insert(inode)
        }
        return inodes
    }

    /// What each open descriptor is (`socket:[123]`, `pipe:[456]`, a path), by number.
    static var targets: [Int: String] {
        let dir = "/proc/self/fd"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        var out: [Int: String] = [:]
        for name in names {
            guard let fd = Int(name) else { continue }
            out[fd] = (try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + name)) ?? "?"
        }
        return out
    }

    static func inode(of fd: Int32) -> UInt64 {
        var st = stat()
        return fstat(fd, &st) == 0 ? UInt64(st.st_ino) : 0
    }
}

/// What is left of a session once its users let go: a weak reference and its socket's inode.
final class SessionTrace: Sendable {
    private struct Weak { weak var session: SSHSession? }
    private let state = Mutex((sessions: [Weak](), inodes: Set<UInt64>()))

    /// Traces `s`, and with a ProxyJump hop the jump session and both ends of its socket pair.
    func add(_ s: SSHSession) {
        var traced = [s]
        var fds = [s.socket]
        if let pump = s.proxy {
            traced.append(pump.jump)
            fds += [pump.fd, pump.jump.socket]
        }
        let found = Set(fds.map(OpenDescriptors.inode(of:)))
        state.withLock {
            $0.sessions += traced.map { Weak(session: $0) }
            $0.inodes.formUnion(found)
        }
    }

    /// Traces a descriptor that is not a session's (a tunnel's listener).
    func add(descriptor fd: Int32) {
        let inode = OpenDescriptors.inode(of: fd)
        state.withLock { _ = $0.inodes.insert(inode) }
    }

    var traced: Int { state.withLock { $0.sessions.count } }
    var alive: Int { state.withLock { $0.sessions.filter { $0.session != nil }.count } }
    /// Which of the traced sessions are still alive, in the order they were added.
    var aliveIndices: [Int] {
        state.withLock { s in s.sessions.indices.filter { s.sessions[$0].session != nil } }
    }
    var socketsOpen: Int { state.withLock { $0.inodes.intersection(OpenDescriptors.socketInodes).count } }

    /// Waits up to `seconds` for every traced session and socket to be gone.
    func waitReleased(seconds: Double = 5) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while (alive > 0 || socketsOpen > 0) && Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

@Suite struct SSHLifetimeTests {
    /// Issue 12 item 10: a session that did SFTP used to stay alive forever (SSHSession held
    /// its SFTP, which held the session), with its socket and sshd's process on the cluster.
    @Test func sessionsAndTheirSocketsAreReleased() async throws {
        let (_, sim, dir) = try await Self.simulatorAndFile()
        defer { sim.stop() }
        let trace = SessionTrace()
        let before = OpenDescriptors.count
        for i in 0..<30 {
            let host = RemoteHost(options: LocalSSH.options())
            #expect(try await host.readFile(dir + "/file") == Data("hello".utf8))
            #expect(try await host.output(["echo", "\(i)"]) == "\(i)\n")
            if i % 3 == 0 {
                // HTTP over the same session: a PortForwarder on the session's queue.
                let routed = CurlHTTPClient(route: host)
                let health = try await routed.send(
                    HTTPRequest(url: sim.url + "/health", connectTimeout: 5, timeout: 10))
                #expect(health.status == 200)
            }
            trace.add(try await host.session())
            // Half are closed, half only dropped (deinit is the safety net).
            if i % 2 == 0 { await host.close() }
        }
        // The scoped form, with SFTP and an exec on the session itself.
        try await SSHSession.withSession(LocalSSH.options()) { session in
            trace.add(session)
            let read = try await session.perform { try $0.sftp().read(dir + "/file") }
            #expect(read == Data("hello".utf8))
            let r = try await session.perform {
                try SSHChannel.execute("true", input: nil, on: $0, timeout: .seconds(30), argv: ["true"])
            }
            #expect(r.status == 0)
        }
        try await trace.waitReleased()
        let after = OpenDescriptors.count
        print("SSHLifetimeTests: \(before) descriptors before 31 sessions, \(after) after")
        #expect(trace.traced == 31)
        #expect(trace.alive == 0, "descriptors: \(before) before, \(after) after")
        #expect(trace.socketsOpen == 0, "descriptors: \(before) before, \(after) after")
    }

    /// Issue 13: sessions that carried every kind of channel (exec, SFTP, the HTTP route's
    /// forwarded channels, a tunnel's, a ProxyJump hop's) are released, and so is every
    /// descriptor they opened: the process's count comes back to where it started. Other suites
    /// open and close descriptors meanwhile, so the count is taken in a process of its own: this
    /// test runs `everyKindOfChannelLetsGo` alone in a second copy of the test binary.
    @Test func descriptorsComeBackInAProcessOfTheirOwn() async throws {
        let argv0 = CommandLine.arguments[0]
        let binary =
            argv0.hasSuffix(".xctest") ? argv0 : repoRoot + "/.build/debug/vllmctlPackageTests.xctest"
        let r = try await sh(
            [
                "env", "\(Self.childVariable)=1", binary, "--testing-library", "swift-testing", "--filter",
                "everyKindOfChannelLetsGo",
            ], timeout: .seconds(300))
        let output = r.stdout + r.stderr
        #expect(r.status == 0, "\(output)")
        #expect(output.contains("everyKindOfChannelLetsGo() passed"), "\(output)")
    }

    static let childVariable = "VLLMCTL_LIFETIME_CHILD"

    /// The body of `descriptorsComeBackInAProcessOfTheirOwn`, in a process where nothing else runs.
    @Test(.enabled(if: ProcessInfo.processInfo.environment[childVariable] == "1"))
    func everyKindOfChannelLetsGo() async throws {
        let (http, sim, dir) = try await Self.simulatorAndFile()
        defer { sim.stop() }
        // A first round (a tunnel over a jump host) opens what stays open for the process's life
        // (Dispatch, libcurl, OpenSSL).
        let warmUp = SessionTrace()
        try await Self.round(5, file: dir + "/file", sim: sim, http: http, trace: warmUp)
        try await warmUp.waitReleased()
        let trace = SessionTrace()
        let before = OpenDescriptors.count
        let targetsBefore = OpenDescriptors.targets
        for i in 1...12 {
            try await Self.round(i, file: dir + "/file", sim: sim, http: http, trace: trace)
        }
        try await trace.waitReleased()
        let deadline = Date().addingTimeInterval(5)
        while OpenDescriptors.count > before && Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let after = OpenDescriptors.count
        let left = OpenDescriptors.targets.filter { targetsBefore[$0.key] != $0.value }
        print("SSHLifetimeTests: \(before) descriptors before 12 rounds, \(after) after")
        #expect(trace.traced == 16)  // 12 sessions and 4 jump sessions
        #expect(trace.alive == 0, "alive: \(trace.aliveIndices)")
        #expect(trace.socketsOpen == 0)
        #expect(after == before, "opened and not closed: \(left.sorted { $0.key < $1.key })")
    }

    /// A simulator on a cluster address (only those are routed over the session; not loopback)
    /// and a directory holding `file` ("hello").
    static func simulatorAndFile() async throws -> (CurlHTTPClient, SimulatorProcess, String) {
        let http = CurlHTTPClient()
        let sim = try SimulatorProcess(bindHost: "10.77.0.1")
        do {
            try await sim.waitHealthy(http: http)
            let dir = try temporaryDirectory()
            try Data("hello".utf8).write(to: URL(fileURLWithPath: dir + "/file"))
            return (http, sim, dir)
        } catch {
            sim.stop()
            throw error
        }
    }

    /// One session with SFTP, exec and HTTP over the route; every third through a jump host;
    /// every other one then carries a tunnel (listener, forwarder thread, control channel, a
    /// client's channel). Even rounds are closed, odd ones only dropped.
    static func round(
        _ i: Int, file: String, sim: SimulatorProcess, http: CurlHTTPClient, trace: SessionTrace
    ) async throws {
        var options = LocalSSH.options()
        if i % 3 == 2 { options.jumpHosts = [LocalSSH.options(port: 2223)] }
        let host = RemoteHost(options: options)
        #expect(try await host.readFile(file) == Data("hello".utf8))
        #expect(try await host.output(["echo", "\(i)"]) == "\(i)\n")
        let routed = CurlHTTPClient(route: host)
        let health = try await routed.send(
            HTTPRequest(url: sim.url + "/health", connectTimeout: 5, timeout: 10))
        #expect(health.status == 200)
        trace.add(try await host.session())
        if i % 2 == 1 {
            // Detached right after an HTTP request: the route's forwarder may still be finishing
            // on the session's queue, which `detachSession` waits for (one thread per session).
            let session = try await host.detachSession()
            let listener = try LocalListener.bind(address: "127.0.0.1", port: 0)
            trace.add(descriptor: listener.fd)
            let tunnel = try Tunnel(
                session: session, listener: listener, targetHost: "10.77.0.1", targetPort: sim.port)
            try await tunnel.checkHealth(http: http, deployment: "sim")
            tunnel.stop()
        }
        if i % 2 == 0 { await host.close() }
    }

    @Test func aClosedSessionSaysSoInsteadOfCrashing() async throws {
        let session = try await SSHSession.connect(LocalSSH.options())
        // An SFTP object kept past its session (only a bug would do that) fails, not crashes.
        final class Kept: @unchecked Sendable { var sftp: SFTP? }
        let kept = Kept()
        try await session.perform { kept.sftp = try $0.sftp() }
        await session.close()
        await session.close()  // idempotent
        let text = await thrownText { try await session.perform { _ in 1 } }
        #expect(text?.contains("the SSH session was closed") == true, "\(text ?? "no error")")
        let stale = await thrownText { try await session.perform { _ in try kept.sftp?.realpath(".") } }
        #expect(stale?.contains("closed") == true, "\(stale ?? "no error")")
    }
}
