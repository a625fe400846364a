import Foundation

@testable import VLLMCtlKit

/// HTTP that answers every request with `status` and an empty body.
package struct FixedHTTP: HTTPClient {
    package var status: Int
    package init(status: Int) { self.status = status }
    package func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        HTTPResponse(status: status, headers: [:], body: Data())
    }
    package func stream(_ request: HTTPRequest, onChunk: @escaping @Sendable (Data) -> Void) async throws
        -> HTTPResponse
    { try await send(request) }
}

/// HTTP answered by a closure, per request.
package struct ScriptedHTTP: HTTPClient {
    package let answer: @Sendable (HTTPRequest) throws -> HTTPResponse
    package init(answer: @escaping @Sendable (HTTPRequest) throws -> HTTPResponse) { self.answer = answer }
    package func send(_ request: HTTPRequest) async throws -> HTTPResponse { try answer(request) }
    package func stream(_ request: HTTPRequest, onChunk: @escaping @Sendable (Data) -> Void) async throws
        -> HTTPResponse
    {
        var response = try answer(request)
        onChunk(response.body)
        response.body = Data()
        return response
    }
}
