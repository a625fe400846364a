import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// HTTP whose servers (by URL prefix) answer, refuse, or stream a piece and then break.
private struct Servers: HTTPClient {
    enum Behaviour: Sendable {
        case answers(String)
        case refuses
        case unauthorized
        case breaksAfter(String)
    }
    let behaviours: [String: Behaviour]
    let asked = Locked<[String]>([])

    func behaviour(_ request: HTTPRequest) -> (String, Behaviour) {
        let root = behaviours.keys.first { request.url.hasPrefix($0) } ?? ""
        asked.withLock { $0.append(root) }
        return (root, behaviours[root] ?? .refuses)
    }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let (root, behaviour) = behaviour(request)
        switch behaviour {
        case .answers(let text):
            let body = request.url.hasSuffix("/health") ? "" : "{\"choices\":[{\"text\":\"\(text)\"}]}"
            return HTTPResponse(status: 200, headers: [:], body: Data(body.utf8))
        case .refuses, .breaksAfter:
            throw VLLMCtlError.http(url: root, message: "connection refused", hint: "")
        case .unauthorized:
            return HTTPResponse(status: 401, headers: [:], body: Data("{\"error\":\"bad key\"}".utf8))
        }
    }

    func stream(_ request: HTTPRequest, onChunk: @escaping @Sendable (Data) -> Void) async throws
        -> HTTPResponse
    {
        let (root, behaviour) = behaviour(request)
        switch behaviour {
        case .answers(let text):
            onChunk(Data("data: {\"choices\":[{\"text\":\"\(text)\"}]}\n\ndata: [DONE]\n\n".utf8))
            return HTTPResponse(status: 200, headers: [:], body: Data())
        case .breaksAfter(let text):
            onChunk(Data("data: {\"choices\":[{\"text\":\"\(text)\"}]}\n\n".utf8))
            throw VLLMCtlError.unreachable(url: root, message: "the connection was reset", hint: "")
        case .refuses, .unauthorized:
            return try await send(request)
        }
    }
}

@Suite struct QueryFailoverTests {
    let a = "http://10.0.0.1:8000"
    let b = "http://10.0.0.2:8000"

    fileprivate func failover(_ http: Servers, skipped: Locked<[String]>) throws -> QueryFailover {
        QueryFailover(
            servers: try [a, b].map { try QueryServer(url: $0, apiKey: "k") }, http: http,
            onSkip: { server, _ in skipped.withLock { $0.append(server.url) } })
    }

    @Test func anUnreachableReplicaIsSkippedForTheNext() async throws {
        let http = Servers(behaviours: [a: .refuses, b: .answers("from b")])
        let skipped = Locked<[String]>([])
        let (result, server) = try await failover(http, skipped: skipped).run(
            QueryOptions(prompt: "hi", model: "m"))
        #expect(result.text == "from b")
        #expect(server.url == b)
        #expect(skipped.value == [a])
    }

    @Test func theFirstThatAnswersIsTheOnlyOneAsked() async throws {
        let http = Servers(behaviours: [a: .answers("from a"), b: .answers("from b")])
        let skipped = Locked<[String]>([])
        let (result, _) = try await failover(http, skipped: skipped).run(
            QueryOptions(prompt: "hi", model: "m"))
        #expect(result.text == "from a")
        #expect(!http.asked.value.contains(b))
        #expect(skipped.value.isEmpty)
    }

    @Test func aStreamThatBrokeAfterItsFirstPieceIsNotAskedAgainElsewhere() async throws {
        let http = Servers(behaviours: [a: .breaksAfter("par"), b: .answers("from b")])
        let skipped = Locked<[String]>([])
        let pieces = Locked<[String]>([])
        await #expect(throws: VLLMCtlError.self) {
            _ = try await failover(http, skipped: skipped).run(
                QueryOptions(prompt: "hi", model: "m", stream: true),
                onText: { piece in pieces.withLock { $0.append(piece) } })
        }
        #expect(pieces.value == ["par"])
        #expect(!http.asked.value.contains(b))
    }

    @Test func anAnswerThatIsARefusalIsNotRetried() async throws {
        // A 401 is the server's answer: another replica (same key) would say the same.
        let http = Servers(behaviours: [a: .unauthorized, b: .answers("from b")])
        let skipped = Locked<[String]>([])
        await #expect(throws: (any Error).self) {
            _ = try await failover(http, skipped: skipped).run(QueryOptions(prompt: "hi", model: "m"))
        }
        #expect(!http.asked.value.contains(b))
    }

    @Test func whenEveryReplicaIsUnreachableTheLastErrorIsThrown() async throws {
        let http = Servers(behaviours: [a: .refuses, b: .refuses])
        let skipped = Locked<[String]>([])
        let error = await #expect(throws: VLLMCtlError.self) {
            _ = try await failover(http, skipped: skipped).info()
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains(b))
        #expect(skipped.value == [a])
    }

    @Test func noServerAtAllSaysWhatToLookAt() async throws {
        let error = await #expect(throws: VLLMCtlError.self) {
            _ = try await QueryFailover(servers: [], http: FixedHTTP(status: 200)).info()
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("vllmctl status"))
    }

    @Test func samplingValuesAreCheckedBeforeAnyRequest() async throws {
        let http = Servers(behaviours: [a: .answers("x")])
        let skipped = Locked<[String]>([])
        await #expect(throws: VLLMCtlError.self) {
            _ = try await failover(http, skipped: skipped).run(
                QueryOptions(prompt: "hi", maxTokens: 0, model: "m"))
        }
        #expect(http.asked.value.isEmpty)
        #expect(QueryOptions.problem(maxTokens: 1, temperature: 0, topP: 1) == nil)
        #expect(QueryOptions.problem(maxTokens: 1, temperature: .nan, topP: nil) != nil)
        #expect(QueryServer.problem(connectTimeout: 5, timeout: nil) == nil)
        #expect(QueryServer.problem(connectTimeout: 0, timeout: nil) != nil)
        #expect(QueryServer.problem(connectTimeout: 5, timeout: -1) != nil)
    }
}
