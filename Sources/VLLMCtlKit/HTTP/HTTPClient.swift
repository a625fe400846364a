import Foundation

/// An HTTP request as vllmctl sends it.
public struct HTTPRequest: Sendable {
    /// `GET`, `POST`, ….
    public var method: String
    /// The full URL.
    public var url: String
    /// Header names and values, in order.
    public var headers: [(String, String)]
    /// The request body, if any.
    public var body: Data?
    /// Seconds to establish the connection.
    public var connectTimeout: Double
    /// Seconds for the whole exchange; nil for no limit (streams).
    public var timeout: Double?
    /// A CA bundle for HTTPS.
    public var caCertificate: String?

    /// A request; a GET with a 5 s connect and 30 s total limit unless told otherwise.
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

/// An HTTP response.
public struct HTTPResponse: Sendable {
    /// The status code.
    public var status: Int
    /// The headers, by lowercased name.
    public var headers: [String: String]
    /// The body (empty for a streamed response, whose body went to the chunk handler).
    public var body: Data

    /// The body as UTF-8 text.
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// Sends HTTP requests through libcurl. Each transfer runs on its own thread outside Swift's
/// cooperative pool, since libcurl's easy interface blocks.
public protocol HTTPClient: Sendable {
    /// Sends `request` and returns the whole response. Throws ``VLLMCtlError/http(url:message:hint:)``
    /// when the server refused or broke the connection, ``VLLMCtlError/unreachable(url:message:hint:)``
    /// when the request could not get there.
    func send(_ request: HTTPRequest) async throws -> HTTPResponse
    /// Calls `onChunk` with each piece of the body as it arrives. The response's `body` is
    /// empty.
    func stream(_ request: HTTPRequest, onChunk: @escaping @Sendable (Data) -> Void) async throws
        -> HTTPResponse
}

/// The ``HTTPClient`` of vllmctl: libcurl (loaded on first use), connecting directly, or
/// through a ``HTTPRoute`` such as a ``RemoteHost`` for addresses that are not this machine's.
public struct CurlHTTPClient: HTTPClient {
    /// Where connections come from; nil: libcurl connects directly.
    public var route: (any HTTPRoute)?
    /// The proxy a profile names (`http_proxy`); nil: none. The environment's `http_proxy`,
    /// `https_proxy` and `ALL_PROXY` are never used: they are set on login nodes for pip and
    /// the like, and a proxy outside the cluster cannot reach its compute nodes.
    public var proxy: String?

    /// A client; with `route`, every request to a non-loopback address (or to `proxy`) goes
    /// through it.
    public init(route: (any HTTPRoute)? = nil, proxy: String? = nil) {
        self.route = route
        self.proxy = proxy
    }

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let collected = Locked(Data())
        var response = try await stream(request) { chunk in collected.withLock { $0.append(chunk) } }
        response.body = collected.value
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
            routeError = (error as? RouteError)?.error ?? error
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
