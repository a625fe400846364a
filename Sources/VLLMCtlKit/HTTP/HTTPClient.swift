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
    public init() {}

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let collected = Collected()
        var response = try await stream(request) { collected.append($0) }
        response.body = collected.data
        return response
    }

    public func stream(_ request: HTTPRequest, onChunk: @escaping @Sendable (Data) -> Void) async throws
        -> HTTPResponse
    {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                do {
                    let easy = try CurlEasy()
                    let (status, headers) = try easy.perform(request) { bytes in
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
