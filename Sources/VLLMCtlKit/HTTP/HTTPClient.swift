import Foundation

/// An HTTP request as vllmctl sends it.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: Data?
    /// Seconds to establish the connection.
    public var connectTimeout: Double
    /// Seconds for the whole exchange; nil for no limit (streams).
    public var timeout: Double?
    /// A CA bundle for HTTPS.
    public var caCertificate: String?

    public init(
        method: String = "GET", url: String, headers: [(String, String)] = [], body: Data? = nil,
        connectTimeout: Double = 5, timeout: Double? = 30, caCertificate: String? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.connectTimeout = connectTimeout
        self.timeout = timeout
        self.caCertificate = caCertificate
    }

    /// Adds `Authorization: Bearer KEY`.
    public func authorized(_ key: APIKey?) -> HTTPRequest {
        guard let key else { return self }
        var copy = self
        copy.headers.append(("Authorization", "Bearer \(key.value)"))
        return copy
    }

    /// A JSON POST.
    public static func postJSON(url: String, json: Data, timeout: Double? = 120) -> HTTPRequest {
        HTTPRequest(
            method: "POST", url: url, headers: [("Content-Type", "application/json")], body: json,
            timeout: timeout)
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data

    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// Sends HTTP requests through libcurl. Each transfer runs on its own thread outside Swift's
/// cooperative pool, since libcurl's easy interface blocks.
public protocol HTTPClient: Sendable {
    func send(_ request: HTTPRequest) async throws -> HTTPResponse
    /// Calls `onChunk` with each piece of the body as it arrives. The response's `body` is
    /// empty.
    func stream(_ request: HTTPRequest, onChunk: @escaping @Sendable (Data) -> Void) async throws
        -> HTTPResponse
}

public struct CurlHTTPClient: HTTPClient {
    /// Where connections come from; nil: libcurl connects directly.
    public var route: (any HTTPRoute)?
    /// The proxy a profile names (`http_proxy`); nil: none. The environment's `http_proxy`,
    /// `https_proxy` and `ALL_PROXY` are never used: they are set on login nodes for pip and
    /// the like, and a proxy outside the cluster cannot reach its compute nodes.
    public var proxy: String?

    public init(route: (any HTTPRoute)? = nil, proxy: String? = nil) {
        self.route = route
        self.proxy = proxy
    }

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let collected = Collected()
        var response = try await stream(request) { collected.append($0) }
        response.body = collected.data
        return response
    }

    public func stream(_ request: HTTPRequest, onChunk: @escaping @Sendable (Data) -> Void) async throws
        -> HTTPResponse
    {
        guard let route else { return try await transfer(request, onChunk: onChunk) }
        let proxyTarget = proxy.flatMap { URLTarget(url: $0.contains("://") ? $0 : "http://" + $0) }
        guard let target = proxyTarget ?? URLTarget(url: request.url), !target.isLoopback else {
            return try await transfer(request, onChunk: onChunk)
        }
        // libcurl connects to a private local socket; its connection is carried by the route.
        let bridge = try UnixBridge()
        async let response = captured { try await transfer(request, bridge: bridge.name, onChunk: onChunk) }
        var routeError: (any Error)?
        do {
            let client = try await bridge.accept(timeout: max(request.connectTimeout, 1))
            try await route.carry(
                client, host: target.host, port: target.port, timeout: request.connectTimeout)
        } catch {
            bridge.shut()
            routeError = error
        }
        let result = await response
        if let routeError {
            if case .success = result { return try result.get() }
            throw routeError
        }
        return try result.get()
    }

    private func captured<T: Sendable>(_ body: () async throws -> T) async -> Result<T, any Error> {
        do { return .success(try await body()) } catch { return .failure(error) }
    }

    /// One transfer on its own thread: libcurl connects by itself, or to `bridge`.
    private func transfer(
        _ request: HTTPRequest, bridge: String? = nil, onChunk: @escaping @Sendable (Data) -> Void
    ) async throws -> HTTPResponse {
        let proxy = self.proxy
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                do {
                    let easy = try CurlEasy()
                    let (status, headers) = try easy.perform(request, proxy: proxy, bridge: bridge) { bytes in
                        onChunk(Data(bytes))
                        return true
                    }
                    continuation.resume(
                        returning: HTTPResponse(status: status, headers: headers, body: Data()))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }
}

private final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = Data()
    func append(_ data: Data) { lock.withLock { buffer.append(data) } }
    var data: Data { lock.withLock { buffer } }
}
