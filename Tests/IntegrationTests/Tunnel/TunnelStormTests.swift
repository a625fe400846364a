import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

/// Handshakes sshd on 2222 has accepted so far (its log's "Accepted publickey" lines) from
/// `address`. Tests that count their own handshakes while others run connect from an address
/// only they use: the laptop's, or the login host's laptop-side address 10.78.0.1 (other
/// tests on this host use 127.0.0.1). sshd writes the line as the connection ends, so this
/// waits a moment first.
func sshdHandshakes(from address: String) async -> Int {
    try? await Task.sleep(for: .seconds(1))
    // Read as bytes: sshd logs what clients send, which need not be UTF-8.
    let data = FileManager.default.contents(atPath: repoRoot + "/.cluster/log/sshd-2222.log") ?? Data()
    let log = String(decoding: data, as: UTF8.self)
    // sshd -E ends lines with CRLF, one Character in Swift: split on any newline.
    return log.split(whereSeparator: \.isNewline).filter {
        $0.contains("Accepted publickey for ") && $0.contains(" from \(address) port ")
    }.count
}

/// One client of a tunnel: connects, sends a request, and returns how long until the tunnel
/// answered or closed the connection (nil: it did neither within `limit` seconds), and the
/// bytes it got.
func tunnelClient(port: Int, limit: Double) async -> (seconds: Double?, reply: String) {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread {
            let started = Date()
            guard let fd = connectLoopback(port) else { return continuation.resume(returning: (0, "")) }
            defer { close(fd) }
            let request = "GET / HTTP/1.0\r\nHost: x\r\n\r\n"
            _ = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            var reply = [UInt8]()
            var buffer = [UInt8](repeating: 0, count: 4096)
            while Date().timeIntervalSince(started) < limit {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, 200) <= 0 { continue }
                let n = recv(fd, &buffer, buffer.count, 0)
                if n <= 0 {
                    return continuation.resume(
                        returning: (Date().timeIntervalSince(started), String(decoding: reply, as: UTF8.self))
                    )
                }
                reply += buffer[..<n]
            }
            continuation.resume(returning: (nil, String(decoding: reply, as: UTF8.self)))
        }
    }
}

/// A listener whose accept queue is full and never drained: the kernel drops every further SYN,
/// so a connection to it never completes (as to a firewalled node, or one whose backlog is full).
final class BlackHole {
    let listener: Int32
    let port: Int
    private var fillers: [Int32] = []

    init() throws {
        let listener = socket(AF_INET, SocketType.stream, 0)
        self.listener = listener
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(listener, sa, length) == 0 && listen(listener, 0) == 0
                    && getsockname(listener, sa, &length) == 0
            }
        }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        self.port = port
        // Fill the queue (backlog 0 holds one) with connections nobody accepts.
        for _ in 0..<3 {
            let fd = socket(AF_INET, SocketType.stream | SocketType.nonBlocking, 0)
            _ = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            fillers.append(fd)
        }
        usleep(200_000)
    }

    deinit {
        fillers.forEach { close($0) }
        close(listener)
    }
}

@Suite(.serialized) struct TunnelStormTests {
    /// A target that never completes the TCP handshake fails each client (within the open
    /// timeout, or at once while an open to it is pending), never the SSH session: no storm of
    /// handshakes, and the local port stays bound.
    @Test func aTargetThatNeverAnswersFailsClientsNotTheSession() async throws {
        let hole = try BlackHole()
        let via = TestHost.loginFromLaptop
        let before = await sshdHandshakes(from: via)
        let t = try await TestTunnel(targetPort: hole.port, sshHost: via)
        defer { t.tunnel.stop() }
        let started = Date()
        var clients = 0
        var slowest = 0.0
        while Date().timeIntervalSince(started) < 60 {
            let (seconds, reply) = await tunnelClient(port: t.port, limit: 15)
            clients += 1
            let took = try #require(seconds, "a client was left hanging")
            #expect(reply.isEmpty)
            slowest = max(slowest, took)
            try await Task.sleep(for: .milliseconds(100))
        }
        let handshakes = await sshdHandshakes(from: via) - before
        // The tunnel's own first handshake is counted (so the count works), and at most one more.
        #expect((1...2).contains(handshakes), "\(handshakes) handshakes in 60 s")
        #expect(slowest < 7, "a client waited \(slowest) s")
        #expect(clients >= 10)
        #expect(isListening(t.port))
        let failures = t.events.all.compactMap { event -> String? in
            if case .channelOpenFailed(_, let reason, _) = event { reason } else { nil }
        }
        #expect(failures.first?.contains("no answer from 127.0.0.1:\(hole.port)") == true, "\(t.events.all)")
        // Said at most once per 5 s, however many clients failed.
        #expect(failures.count <= 14, "\(failures.count) messages")
        #expect(
            !t.events.all.contains { if case .sessionLost = $0 { true } else { false } }, "\(t.events.all)")
    }
}

extension LocalCluster {
    /// Takes node2's link down: serialized with every other suite that uses the cluster.
    @Suite struct NodeOutageTests {
        /// The job's node disappears (its link goes down): clients fail within the open timeout,
        /// and once the node is back the same tunnel serves again, without a new handshake storm.
        @Test func aNodeThatDisappearsAndComesBack() async throws {
            let port = try freePort()
            let server = Process()
            server.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            server.arguments =
                TestHost.node(2).prefix.dropFirst() + [
                    "python3", "-m", "http.server", String(port), "--bind", "0.0.0.0",
                ]
            server.standardOutput = FileHandle.nullDevice
            server.standardError = FileHandle.nullDevice
            try server.run()
            defer { server.terminate() }
            let node = TestHost.nodeAddress(2)
            let deadline = Date().addingTimeInterval(10)
            while !(try await sh(["bash", "-c", "exec 3<>/dev/tcp/\(node)/\(port)"]).status == 0) {
                #expect(Date() < deadline, "the node's server did not start")
                if Date() > deadline { return }
                try await Task.sleep(for: .milliseconds(200))
            }
            let via = TestHost.loginFromLaptop
            let before = await sshdHandshakes(from: via)
            let t = try await TestTunnel(targetHost: node, targetPort: port, sshHost: via)
            defer { t.tunnel.stop() }
            let first = await tunnelClient(port: t.port, limit: 10)
            #expect(first.reply.contains("200 OK"), "\(first.reply)")

            let link = "vc-node2-h"
            #expect(try await sh(["ip", "link", "set", link, "down"]).status == 0)
            var linkUp = false
            defer { if !linkUp { _ = Glibc.system("ip link set \(link) up") } }
            for _ in 0..<3 {
                let (seconds, reply) = await tunnelClient(port: t.port, limit: 15)
                let took = try #require(seconds, "a client was left hanging while the node was gone")
                #expect(took < 6.5, "took \(took) s")
                #expect(reply.isEmpty)
            }
            #expect(try await sh(["ip", "link", "set", link, "up"]).status == 0)
            linkUp = true
            let back = Date()
            var served = false
            while Date().timeIntervalSince(back) < 90 && !served {
                let (_, reply) = await tunnelClient(port: t.port, limit: 10)
                served = reply.contains("200 OK")
                if !served { try await Task.sleep(for: .milliseconds(500)) }
            }
            #expect(served, "the tunnel did not serve again within 90 s of the node's return")
            let handshakes = await sshdHandshakes(from: via) - before
            #expect((1...2).contains(handshakes), "\(handshakes) handshakes")
            #expect(
                !t.events.all.contains { if case .sessionLost = $0 { true } else { false } },
                "\(t.events.all)")
        }
    }
}

final class Collector: Sendable {
    private let data = Mutex(Data())
    func add(_ d: Data) { data.withLock { $0.append(d) } }
    var text: String { data.withLock { String(decoding: $0, as: UTF8.self) } }
}
