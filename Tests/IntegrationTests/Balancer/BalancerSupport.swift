import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import TestSupport
import Testing

@testable import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

/// The simulator as a local child process on a port of the test's choosing, so that a killed
/// replica can come back on the same port.
final class BalancerSim: @unchecked Sendable {
    let port: Int
    let key: String
    private var process: Process?
    let logPath: String

    let extraArgs: [String]

    init(port: Int? = nil, key: String, tokenDelay: Double = 0.01, extraArgs: [String] = []) throws {
        self.port = try port ?? freePort()
        self.key = key
        self.extraArgs = extraArgs
        logPath = NSTemporaryDirectory() + "vllm-sim-balancer-\(self.port).log"
        try launch(tokenDelay: tokenDelay)
    }

    func launch(tokenDelay: Double = 0.01) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments =
            [
                "python3", repoRoot + "/slurm/sim/vllm_sim.py", "serve", "sim-model", "--host", "127.0.0.1",
                "--port", String(port), "--sim-token-delay", String(tokenDelay), "--uvicorn-log-level",
                "warning",
            ] + extraArgs
        var env = ProcessInfo.processInfo.environment
        env["VLLM_API_KEY"] = key
        p.environment = env
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        p.standardOutput = log
        p.standardError = log
        try p.run()
        process = p
    }

    var replica: Replica { Replica(host: "127.0.0.1", port: port) }
    var url: String { "http://127.0.0.1:\(port)" }

    func waitHealthy() async throws { try await waitAnswering(status: 200) }

    /// Waits until `/health` answers `status` (a sick simulator's 503: it is listening).
    func waitAnswering(status: Int) async throws {
        let http = CurlHTTPClient()
        for _ in 0..<200 {
            if let r = try? await http.send(HTTPRequest(url: url + "/health", connectTimeout: 1, timeout: 2)),
                r.status == status
            {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw VLLMCtlError.http(
            url: url, message: "the simulator's /health never answered \(status)", hint: "")
    }

    /// `vllm:num_requests_running`, read from the simulator itself.
    func running() async throws -> Int {
        let r = try await CurlHTTPClient().send(HTTPRequest(url: url + "/metrics"))
        let line = r.text.split(separator: "\n").first { $0.hasPrefix("vllm:num_requests_running") }
        return Int(Double(line?.split(separator: " ").last ?? "") ?? -1)
    }

    func kill(_ signal: Int32 = SIGKILL) {
        guard let pid = process?.processIdentifier, pid > 0 else { return }
        Glibc.kill(pid, signal)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        process = nil
    }

    // SIGKILL: a child of a test thread inherits its blocked SIGTERM.
    deinit { kill() }
}

/// What a test client saw of one exchange.
struct SeenResponse: Sendable {
    var status: Int?
    var body = ""
    var bodyParts = 0
    var error: String?

    /// Whether the response had started (a head arrived) before any failure.
    var started: Bool { status != nil }
    var ok: Bool { error == nil && status == 200 }
}

/// A request as a test sends it.
struct TestRequest: Sendable {
    var method: HTTPMethod = .GET
    var path: String
    var body: String?
    var key: String?

    static func completion(stream: Bool, key: String, maxTokens: Int = 8, prompt: String = "Hello")
        -> TestRequest
    {
        TestRequest(
            method: .POST, path: "/v1/completions",
            body:
                #"{"model":"sim-model","prompt":"\#(prompt)","max_tokens":\#(maxTokens),"stream":\#(stream)}"#,
            key: key)
    }
}

/// A minimal HTTP/1.1 client over NIO that sends requests one after another on one kept-alive
/// connection and reports each part as it arrives.
enum TestClient {
    static let group = MultiThreadedEventLoopGroup.singleton

    /// Sends `requests` in order on one connection; `onBody` sees each body part of request i.
    static func onOneConnection(
        port: Int, _ requests: [TestRequest],
        onBody: @escaping @Sendable (Int, String) async -> Void = { _, _ in }
    ) async -> [SeenResponse] {
        var seen: [SeenResponse] = []
        do {
            let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port) {
                ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: ch)
                }
            }
            try await channel.executeThenClose { inbound, outbound in
                var parts = inbound.makeAsyncIterator()
                for (i, request) in requests.enumerated() {
                    var response = SeenResponse()
                    defer { seen.append(response) }
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: "127.0.0.1:\(port)")
                    if let key = request.key { headers.add(name: "Authorization", value: "Bearer \(key)") }
                    let body = request.body.map { NIOCore.ByteBuffer(string: $0) }
                    if let body {
                        headers.add(name: "Content-Type", value: "application/json")
                        headers.add(name: "Content-Length", value: String(body.readableBytes))
                    }
                    do {
                        try await outbound.write(
                            .head(
                                HTTPRequestHead(
                                    version: .http1_1, method: request.method, uri: request.path,
                                    headers: headers)))
                        if let body { try await outbound.write(.body(.byteBuffer(body))) }
                        try await outbound.write(.end(nil))
                        reading: while true {
                            guard let part = try await parts.next() else {
                                response.error = "the connection closed"
                                return
                            }
                            switch part {
                            case .head(let h): response.status = Int(h.status.code)
                            case .body(let b):
                                let text = String(buffer: b)
                                response.body += text
                                response.bodyParts += 1
                                await onBody(i, text)
                            case .end: break reading
                            }
                        }
                    } catch {
                        response.error = "\(error)"
                        return
                    }
                }
            }
        } catch {
            if seen.count < requests.count { seen.append(SeenResponse(error: "\(error)")) }
        }
        return seen
    }

    static func send(port: Int, _ request: TestRequest) async -> SeenResponse {
        await onOneConnection(port: port, [request]).first ?? SeenResponse(error: "no response")
    }

    /// `count` requests, `concurrency` at a time, each on a connection of its own.
    static func many(
        port: Int, count: Int, concurrency: Int, _ make: @escaping @Sendable (Int) -> TestRequest,
        afterEach: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async -> [SeenResponse] {
        await withTaskGroup(of: (Int, SeenResponse).self) { group in
            var results = [SeenResponse](repeating: SeenResponse(), count: count)
            var next = 0
            func add() {
                let i = next
                next += 1
                group.addTask { (i, await send(port: port, make(i))) }
            }
            while next < min(concurrency, count) { add() }
            var done = 0
            for await (i, r) in group {
                results[i] = r
                done += 1
                await afterEach(done)
                if next < count { add() }
            }
            return results
        }
    }
}

/// The events a balancer reported, with a wait for one to come.
final class BalancerEventLog: Sendable {
    private let events = Locked<[BalancerEvent]>([])

    var callback: @Sendable (BalancerEvent) -> Void { { [events] e in events.withLock { $0.append(e) } } }
    var all: [BalancerEvent] { events.value }

    /// Waits (at most `seconds`, a guard against hanging, not a measurement) for an event.
    func wait(seconds: Double = 60, for match: (BalancerEvent) -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if all.contains(where: match) { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
}

/// An ``HTTPRoute`` that does what `RemoteHost` does, on this machine: connects to the target
/// itself and splices the bytes both ways. `sessionDown` makes it fail as a route whose SSH
/// session is lost does.
struct SplicingRoute: HTTPRoute {
    var sessionDown = false

    func carry(_ client: Int32, host: String, port: Int, timeout: Double) async throws {
        if sessionDown {
            Glibc.close(client)
            throw RouteError(
                .ourSide,
                .unreachable(
                    url: "http://\(host):\(port)",
                    message: "cannot reach the login node fake: the session is down",
                    hint: ""))
        }
        let fd = socket(AF_INET, SocketType.stream, 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr(host)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            Glibc.close(fd)
            Glibc.close(client)
            throw RouteError(
                .refused,
                .unreachable(
                    url: "http://\(host):\(port)",
                    message: "the login node fake could not connect to \(host):\(port) (connect failed)",
                    hint: ""))
        }
        let remaining = Locked(2)
        for (from, to) in [(client, fd), (fd, client)] {
            Thread.detachNewThread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = read(from, &buffer, buffer.count)
                    if n <= 0 { break }
                    var off = 0
                    while off < n {
                        let w = buffer[off..<n].withUnsafeBytes { write(to, $0.baseAddress, n - off) }
                        if w <= 0 { break }
                        off += w
                    }
                    if off < n { break }
                }
                shutdown(to, Int32(SHUT_WR))
                let last = remaining.withLock { r -> Bool in
                    r -= 1
                    return r == 0
                }
                if last {
                    Glibc.close(client)
                    Glibc.close(fd)
                }
            }
        }
    }
}

/// Settings for tests: fast health checks.
func testBalancerSettings() -> BalancerSettings {
    var s = BalancerSettings()
    s.healthInterval = 0.2
    s.healthTimeout = 2
    s.connectTimeout = 2
    return s
}

/// A direct connector that counts its connections.
final class CountingConnector: UpstreamConnector {
    private let connects = Locked(0)
    var count: Int { connects.value }

    func connect(host: String, port: Int, timeout: Double, on eventLoop: any EventLoop) async throws
        -> any Channel
    {
        connects.withLock { $0 += 1 }
        return try await DirectConnector().connect(host: host, port: port, timeout: timeout, on: eventLoop)
    }
}

/// The balancer's counters once nothing is in flight: a client can see its response end a
/// moment before the balancer has recorded the attempt (counters and in-flight change together).
func settledSnapshot(_ balancer: Balancer) async -> [ReplicaStats] {
    for _ in 0..<150 {
        let stats = balancer.snapshot()
        if stats.allSatisfy({ $0.inFlight == 0 }) { return stats }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return balancer.snapshot()
}
