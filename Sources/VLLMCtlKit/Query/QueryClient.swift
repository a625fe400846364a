import Foundation

/// The answer to one query, with what is needed to print, save and check it.
public struct QueryResult: Sendable {
    /// The endpoint, e.g. `http://host:8000/v1/chat/completions`.
    public var url: String
    /// The body that was sent (it holds no key: the key travels in a header).
    public var request: JSONValue
    public var status: Int
    /// The response body as received (empty for a stream).
    public var rawBody: Data
    /// The parsed response; for a stream, `{"stream": true, "chunks": [...]}` with every
    /// chunk as it arrived.
    public var response: JSONValue
    /// The generated text (the first choice).
    public var text: String
    /// `stop`, `length`, …
    public var finishReason: String?
    public var usage: JSONValue?
    /// The field that carried `--json-schema`, if one was given.
    public var structuredOutputField: StructuredOutput.Field?

    /// The answer stopped at the token limit.
    public var truncated: Bool { finishReason == "length" }
}

/// The server's facts for `--info`: health, version and models, nothing generated.
public struct ServerInfo: Sendable, Encodable {
    public struct Model: Sendable, Encodable {
        public var id: String
        public var maxModelLen: Int?
        public var ownedBy: String?
        enum CodingKeys: String, CodingKey {
            case id
            case maxModelLen = "max_model_len"
            case ownedBy = "owned_by"
        }
    }

    public var url: String
    /// `/health` answered 200.
    public var healthy: Bool
    public var healthStatus: Int
    /// `/version`'s `version`, when the server has that route (vLLM does).
    public var version: String?
    /// vllm-sim says so in `/version`.
    public var simulator: Bool
    public var models: [Model]

    enum CodingKeys: String, CodingKey {
        case url, healthy
        case healthStatus = "health_status"
        case version, simulator, models
    }

    /// A few aligned lines for people.
    public var text: String {
        var lines = [
            "Server:   \(url)",
            "Health:   \(healthy ? "ok" : "not ready") (HTTP \(healthStatus))",
            "Version:  \(version.map { "vLLM " + $0 } ?? "unknown (no /version)")"
                + (simulator ? " (vllm-sim, a simulator)" : ""),
        ]
        let models = models.map { m in m.id + (m.maxModelLen.map { " (max_model_len \($0))" } ?? "") }
        lines.append("Models:   " + (models.isEmpty ? "none" : models.joined(separator: "\n          ")))
        return lines.joined(separator: "\n")
    }
}

/// `vllmctl query` over libcurl: completions and chat completions, streamed or not, plus
/// `--info`. Each method is one or a few HTTP exchanges; nothing is kept between calls.
public struct QueryClient: Sendable {
    public let http: any HTTPClient
    public let server: QueryServer

    public init(http: any HTTPClient, server: QueryServer) {
        self.http = http
        self.server = server
    }

    /// Sends the query. A stream's text goes to `onText` piece by piece as the chunks arrive
    /// (on libcurl's thread), and each raw chunk to `onEvent` (for `--json`).
    public func run(
        _ options: QueryOptions, onText: @escaping @Sendable (String) -> Void = { _ in },
        onEvent: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws -> QueryResult {
        if let problem = options.problem {
            throw VLLMCtlError.invalidInput(problem, hint: "Correct the value and ask again.")
        }
        let model = try await resolveModel(options.model)
        var field: StructuredOutput.Field?
        if options.structuredOutput != nil {
            if let chosen = options.structuredOutputField {
                field = chosen
            } else {
                field = StructuredOutput.field(forServerVersion: await version())
            }
        }
        let request = QueryRequest(
            options: options, model: model, structuredOutputField: field ?? .structuredOutputs)
        var result =
            options.stream
            ? try await stream(request, model: model, onText: onText, onEvent: onEvent)
            : try await send(request, model: model)
        result.structuredOutputField = field
        return result
    }

    /// Health, version and models.
    public func info() async throws -> ServerInfo {
        let health = try await exchange(server.request("/health", authorized: false))
        var info = ServerInfo(
            url: server.url, healthy: health.status == 200, healthStatus: health.status, version: nil,
            simulator: false, models: [])
        if let response = try? await http.send(server.request("/version", authorized: false)),
            response.status == 200,
            let json = try? JSONValue.parse(response.body)
        {
            info.version = json["version"]?.stringValue
            info.simulator = json["simulator"] == .bool(true)
        }
        let models = try await modelList()
        info.models = (models["data"]?.arrayValue ?? []).compactMap { entry in
            entry["id"]?.stringValue.map {
                ServerInfo.Model(
                    id: $0, maxModelLen: entry["max_model_len"]?.intValue,
                    ownedBy: entry["owned_by"]?.stringValue)
            }
        }
        return info
    }

    /// The served model names from `/v1/models`.
    public func servedModels() async throws -> [String] {
        (try await modelList()["data"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }
    }

    /// `/version`'s version, or nil when the server does not say.
    public func version() async -> String? {
        guard let response = try? await http.send(server.request("/version", authorized: false)),
            response.status == 200
        else { return nil }
        return (try? JSONValue.parse(response.body))?["version"]?.stringValue
    }

    func modelList() async throws -> JSONValue {
        let response = try await exchange(server.request("/v1/models"))
        guard response.status == 200 else {
            throw QueryErrors.status(
                response.status, body: response.body, path: "/v1/models", model: nil, server: server,
                servedModels: nil)
        }
        guard let json = try? JSONValue.parse(response.body) else {
            throw VLLMCtlError.http(
                url: server.url + "/v1/models", message: "the answer is not JSON",
                hint: "Is this a vLLM server?")
        }
        return json
    }

    func resolveModel(_ explicit: String?) async throws -> String {
        if let explicit { return explicit }
        if let served = server.servedModelName { return served }
        guard let first = try await servedModels().first else {
            throw VLLMCtlError.http(
                url: server.url + "/v1/models", message: "the server lists no models",
                hint: "Pass one with --model.")
        }
        return first
    }

    /// One exchange, with libcurl's errors given `query`'s hints.
    func exchange(_ request: HTTPRequest) async throws -> HTTPResponse {
        do {
            return try await http.send(request)
        } catch {
            throw QueryErrors.transport(error, server: server)
        }
    }

    func statusError(_ response: HTTPResponse, body: Data, path: String, model: String) async -> VLLMCtlError
    {
        var served: [String]?
        if response.status == 404 { served = try? await servedModels() }
        return QueryErrors.status(
            response.status, body: body, path: path, model: model, server: server, servedModels: served)
    }

    func send(_ request: QueryRequest, model: String) async throws -> QueryResult {
        let response = try await exchange(
            server.request(request.path, method: "POST", body: request.body.encoded()))
        guard (200..<300).contains(response.status) else {
            throw await statusError(response, body: response.body, path: request.path, model: model)
        }
        guard let json = try? JSONValue.parse(response.body) else {
            throw VLLMCtlError.http(
                url: server.url + request.path, message: "the answer is not JSON",
                hint: "Is this a vLLM server? --json shows the raw answer.")
        }
        let choice = json["choices"]?[0]
        let text =
            (request.isChat ? choice?["message"]?["content"]?.stringValue : choice?["text"]?.stringValue)
            ?? ""
        return QueryResult(
            url: server.url + request.path, request: request.body, status: response.status,
            rawBody: response.body, response: json,
            text: text, finishReason: choice?["finish_reason"]?.stringValue, usage: json["usage"])
    }

    /// What a failed transfer said, for a stream cut short.
    static func transportMessage(_ error: any Error) -> String? {
        switch error {
        case VLLMCtlError.http(_, let message, _), VLLMCtlError.unreachable(_, let message, _): message
        default: nil
        }
    }

    func stream(
        _ request: QueryRequest, model: String, onText: @escaping @Sendable (String) -> Void,
        onEvent: @escaping @Sendable (String) -> Void
    ) async throws -> QueryResult {
        let state = StreamState(chat: request.isChat, onText: onText, onEvent: onEvent)
        let response: HTTPResponse
        do {
            response = try await http.stream(
                server.request(request.path, method: "POST", body: request.body.encoded())
            ) { state.feed($0) }
        } catch {
            let snapshot = state.finish()
            if snapshot.events > 0 && !snapshot.sawDone, let message = Self.transportMessage(error) {
                throw QueryErrors.brokenStream(
                    server: server, path: request.path, events: snapshot.events, detail: message)
            }
            throw QueryErrors.transport(error, server: server)
        }
        let snapshot = state.finish()
        guard (200..<300).contains(response.status) else {
            throw await statusError(response, body: snapshot.raw, path: request.path, model: model)
        }
        if let message = snapshot.serverError {
            throw VLLMCtlError.http(
                url: server.url + request.path,
                message: "the server reported an error mid-stream: \(message)",
                hint: server.deploymentName.map { "Look at `vllmctl logs \($0)`." } ?? "")
        }
        guard snapshot.sawDone else {
            throw QueryErrors.brokenStream(server: server, path: request.path, events: snapshot.events)
        }
        return QueryResult(
            url: server.url + request.path, request: request.body, status: response.status, rawBody: Data(),
            response: .object(["stream": .bool(true), "chunks": .array(snapshot.chunks)]),
            text: snapshot.text,
            finishReason: snapshot.finishReason, usage: snapshot.usage)
    }
}

/// What a stream has delivered so far. libcurl's thread feeds it; the caller reads it after.
final class StreamState: @unchecked Sendable {
    struct Snapshot {
        var chunks: [JSONValue] = []
        var events = 0
        var text = ""
        var finishReason: String?
        var usage: JSONValue?
        var serverError: String?
        var sawDone = false
        /// The first bytes as received: the body of an error answer, which is not SSE.
        var raw = Data()
    }

    private let lock = NSLock()
    private let chat: Bool
    private let onText: @Sendable (String) -> Void
    private let onEvent: @Sendable (String) -> Void
    private var parser = SSEParser()
    private var snapshot = Snapshot()
    static let rawLimit = 64 * 1024

    init(
        chat: Bool, onText: @escaping @Sendable (String) -> Void,
        onEvent: @escaping @Sendable (String) -> Void
    ) {
        self.chat = chat
        self.onText = onText
        self.onEvent = onEvent
    }

    func feed(_ data: Data) {
        lock.withLock {
            if snapshot.raw.count < Self.rawLimit {
                snapshot.raw.append(data.prefix(Self.rawLimit - snapshot.raw.count))
            }
            handle(parser.feed(data))
        }
    }

    func finish() -> Snapshot {
        lock.withLock {
            handle(parser.finish())
            return snapshot
        }
    }

    private func handle(_ events: [SSEEvent]) {
        for event in events {
            switch event {
            case .done:
                snapshot.sawDone = true
            case .data(let payload):
                snapshot.events += 1
                onEvent(payload)
                guard let json = JSONValue.parse(payload) else { continue }
                snapshot.chunks.append(json)
                if json["error"] != nil || json["object"]?.stringValue == "error" {
                    snapshot.serverError = QueryErrors.serverMessage(Data(payload.utf8)) ?? payload
                    continue
                }
                if let usage = json["usage"], usage != .null { snapshot.usage = usage }
                guard let choice = json["choices"]?[0] else { continue }
                let piece = chat ? choice["delta"]?["content"]?.stringValue : choice["text"]?.stringValue
                if let piece, !piece.isEmpty {
                    snapshot.text += piece
                    onText(piece)
                }
                if let reason = choice["finish_reason"]?.stringValue { snapshot.finishReason = reason }
            }
        }
    }
}
