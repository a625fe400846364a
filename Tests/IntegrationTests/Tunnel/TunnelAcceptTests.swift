import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 12 item 14: a tunnel out of file descriptors backs off and says so once.
///
/// Running out of descriptors is process-wide, so it happens in an exit test: a child copy of
/// the test binary lowers its own RLIMIT_NOFILE and fills every slot below it, and no other
/// test shares that process. The child has no children of its own, uses non-blocking sockets
/// and bounded polls only, and an alarm ends it if it ever hangs.
@Suite struct TunnelAcceptTests {
    @Test func aTunnelOutOfDescriptorsBacksOffSaysSoOnceAndServesAgain() async throws {
        // The child says what went wrong on stderr and exits normally: the result, and with it
        // stderr, is there only when the exit matched (a hang or a crash fails without it).
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            for problem in await TunnelAcceptTests.burstOfFailedAccepts() {
                FileHandle.standardError.write(Data("FAIL: \(problem)\n".utf8))
            }
        }
        let output = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(!output.contains("FAIL:"), "\(output)")
        #expect(output.contains("burst:"), "the child did not get to the burst: \(output)")
        print("TunnelAcceptTests: \(output)")
    }

    /// What the tunnel's target writes to each connection.
    static let reply = "served\n"
    /// Clients wait in the tunnel's backlog while it has no descriptor to accept them with.
    static let backlogClients = 4
    /// How long descriptors stay exhausted after the first failed accept: with the 1 s pause,
    /// a few more accepts fail in that time.
    static let burstSeconds = 3.5

    /// The child's part; returns what went wrong.
    static func burstOfFailedAccepts() async -> [String] {
        alarm(120)  // a hang ends the child (SIGALRM), and the parent's expectation fails
        var problems: [String] = []
        do {
            let target = try LoopbackServer { fd in
                _ = reply.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            }
            let t = try await TestTunnel(targetPort: target.port)
            defer { t.tunnel.stop() }
            if receive(from: connect(to: t.port), limit: 20) != reply {
                return ["the tunnel did not serve before descriptors ran out"]
            }
            // Sockets for the clients are made before the descriptors run out; their connects
            // complete in the kernel (the listener's backlog) without the tunnel accepting them.
            let clients = (0..<backlogClients).map { _ in newSocket() }
            var exhausted = try Exhaustion()
            for fd in clients { startConnect(fd, port: t.port) }

            // Wait for the first failed accept (bounded, not timed: the loop polls the listener).
            let deadline = Date().addingTimeInterval(20)
            while t.tunnel.forwarder.acceptFailures == 0 && Date() < deadline { usleep(50_000) }
            let firstFailure = Date()
            guard t.tunnel.forwarder.acceptFailures > 0 else {
                exhausted.end()
                return ["no accept failed with the descriptors exhausted: \(t.events.all)"]
            }
            usleep(UInt32(burstSeconds * 1_000_000))
            let failures = t.tunnel.forwarder.acceptFailures
            let elapsed = Date().timeIntervalSince(firstFailure)
            let saidDuringBurst = acceptFailedEvents(t.events.all)
            exhausted.end()
            let summary =
                "burst: \(failures) failed accepts in \(String(format: "%.1f", elapsed)) s, \(saidDuringBurst) event(s)\n"
            FileHandle.standardError.write(Data(summary.utf8))

            // A burst: several accepts failed, one message said so.
            if failures < 2 {
                problems.append("only \(failures) failed accept in \(elapsed) s: no burst to test")
            }
            if saidDuringBurst != 1 {
                problems.append(
                    "\(saidDuringBurst) acceptFailed events for \(failures) failed accepts: \(t.events.all)")
            }
            // No spin: one accept per pause of 1 s at most, however slow this machine is (a
            // loop that polls the ever-readable listener fails thousands of times a second).
            if Double(failures) > elapsed + 2 {
                problems.append("\(failures) failed accepts in \(elapsed) s: the accept loop spins")
            }

            // Descriptors free again: every client that waited is served, and so is a new one.
            for (i, fd) in clients.enumerated() {
                let got = receive(from: fd, limit: 20)
                if got != reply {
                    problems.append("waiting client \(i) got \(got.debugDescription)")
                }
            }
            let fresh = receive(from: connect(to: t.port), limit: 20)
            if fresh != reply { problems.append("a new client got \(fresh.debugDescription)") }
            let said = acceptFailedEvents(t.events.all)
            if said != 1 { problems.append("\(said) acceptFailed events in all: \(t.events.all)") }
        } catch {
            problems.append("\(error)")
        }
        return problems
    }

    static func acceptFailedEvents(_ events: [ForwarderEvent]) -> Int {
        events.filter { if case .acceptFailed = $0 { true } else { false } }.count
    }

    static func newSocket() -> Int32 {
        socket(AF_INET, SocketType.stream | SocketType.nonBlocking, 0)
    }

    /// A new non-blocking socket connecting to 127.0.0.1:port.
    static func connect(to port: Int) -> Int32 {
        let fd = newSocket()
        startConnect(fd, port: port)
        return fd
    }

    static func startConnect(_ fd: Int32, port: Int) {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// What arrives on `fd` until the peer closes or `limit` seconds pass; closes `fd`.
    static func receive(from fd: Int32, limit: Double) -> String {
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        let deadline = Date().addingTimeInterval(limit)
        while Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && errno == EAGAIN { continue }
            if n <= 0 { break }
            bytes += buffer[..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Every descriptor slot of this process in use: RLIMIT_NOFILE lowered to just above the
/// highest open descriptor and every free slot below it taken by /dev/null. `end` gives both back.
private struct Exhaustion {
    private var saved = rlimit()
    private var fillers: [Int32] = []
    private var ended = false

    init() throws {
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &saved) == 0 else {
            throw POSIXError(.EPERM)
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        let highest = names.compactMap { Int32($0) }.max() ?? 64
        var lowered = saved
        lowered.rlim_cur = rlim_t(highest + 1)
        guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lowered) == 0 else {
            throw POSIXError(.EPERM)
        }
        while true {
            let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if fd < 0 { break }
            fillers.append(fd)
        }
    }

    mutating func end() {
        guard !ended else { return }
        ended = true
        fillers.forEach { close($0) }
        fillers.removeAll()
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &saved)
    }
}
