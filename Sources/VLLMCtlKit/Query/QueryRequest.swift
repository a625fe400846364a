import Foundation

/// What to ask: the options of `vllmctl query`, as the seed's `remote_client.py` has them.
public struct QueryOptions: Sendable {
    public var prompt: String
    /// Chat completions instead of completions. An image or a system prompt implies it.
    public var chat: Bool
    public var system: String?
    public var maxTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    /// nil: the deployment's served name, else the first name in `/v1/models`.
    public var model: String?
    public var stream: Bool
    public var image: ImageAttachment?
    public var structuredOutput: StructuredOutput?
    /// nil: chosen from the server's `/version` (`StructuredOutput.field(forServerVersion:)`).
    public var structuredOutputField: StructuredOutput.Field?

    public init(
        prompt: String, chat: Bool = false, system: String? = nil, maxTokens: Int? = nil,
        temperature: Double? = nil,
        topP: Double? = nil, model: String? = nil, stream: Bool = false, image: ImageAttachment? = nil,
        structuredOutput: StructuredOutput? = nil, structuredOutputField: StructuredOutput.Field? = nil
    ) {
        self.prompt = prompt
        self.chat = chat
        self.system = system
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.model = model
        self.stream = stream
        self.image = image
        self.structuredOutput = structuredOutput
        self.structuredOutputField = structuredOutputField
    }

    /// Images and system prompts exist only in chat messages.
    public var usesChat: Bool { chat || image != nil || system != nil }

    /// What is wrong with the sampling values, in the CLI's words (nil: nothing). The server
    /// would refuse them too, after the connection and the model lookup.
    public static func problem(maxTokens: Int?, temperature: Double?, topP: Double?) -> String? {
        if let maxTokens, maxTokens < 1 { return "--max-tokens must be at least 1." }
        if let temperature, !(temperature >= 0) { return "--temperature must be 0 or more." }
        if let topP, !(topP > 0 && topP <= 1) { return "--top-p must be greater than 0 and at most 1." }
        return nil
    }

    /// ``problem(maxTokens:temperature:topP:)`` of these options.
    public var problem: String? { Self.problem(maxTokens: maxTokens, temperature: temperature, topP: topP) }
}

/// A request body for vLLM's OpenAI-compatible server. Only fields that were asked for are
/// sent: vLLM before 0.6 rejects unknown fields, and leaving a field out keeps the server's
/// (or the model's generation config's) default.
public struct QueryRequest: Sendable, Equatable {
    /// `/v1/completions` or `/v1/chat/completions`.
    public var path: String
    public var body: JSONValue

    public init(
        options: QueryOptions, model: String,
        structuredOutputField: StructuredOutput.Field = .structuredOutputs
    ) {
        var body: [String: JSONValue] = ["model": .string(model)]
        if options.usesChat {
            path = "/v1/chat/completions"
            var messages: [JSONValue] = []
            if let system = options.system {
                messages.append(.object(["role": .string("system"), "content": .string(system)]))
            }
            let content: JSONValue
            if let image = options.image {
                content = .array([
                    .object(["type": .string("text"), "text": .string(options.prompt)]), image.contentPart,
                ])
            } else {
                content = .string(options.prompt)
            }
            messages.append(.object(["role": .string("user"), "content": content]))
            body["messages"] = .array(messages)
        } else {
            path = "/v1/completions"
            body["prompt"] = .string(options.prompt)
        }
        if let maxTokens = options.maxTokens { body["max_tokens"] = .int(maxTokens) }
        if let temperature = options.temperature { body["temperature"] = .double(temperature) }
        if let topP = options.topP { body["top_p"] = .double(topP) }
        if options.stream { body["stream"] = .bool(true) }
        if let structured = options.structuredOutput {
            body.merge(structured.bodyFields(structuredOutputField)) { _, new in new }
        }
        self.body = .object(body)
    }

    public var isChat: Bool { path.hasSuffix("/chat/completions") }
}

/// Where the server is and how to talk to it.
public struct QueryServer: Sendable {
    /// The server's root, e.g. `http://10.0.0.5:8000` (no `/v1`).
    public var url: String
    /// Sent as `Authorization: Bearer KEY`; nil sends no header.
    public var apiKey: String?
    /// A CA bundle for HTTPS (`--cacert`).
    public var caCertificate: String?
    public var connectTimeout: Double
    /// Seconds for a whole exchange, streams included; nil for no limit.
    public var timeout: Double?
    /// The deployment the server belongs to, for hints.
    public var deploymentName: String?
    /// The deployment's served model name, the default `model`.
    public var servedModelName: String?

    public init(
        url: String, apiKey: String?, caCertificate: String? = nil, connectTimeout: Double = 5,
        timeout: Double? = 120,
        deploymentName: String? = nil, servedModelName: String? = nil
    ) throws {
        self.url = try Self.normalize(url)
        self.apiKey = try apiKey.map(Self.cleanKey)
        self.caCertificate = caCertificate
        self.connectTimeout = connectTimeout
        self.timeout = timeout
        self.deploymentName = deploymentName
        self.servedModelName = servedModelName
    }

    /// What is wrong with the time limits (nil: nothing): a connection wait of (0, 3600] s, and
    /// a whole exchange of at most 7 days (nil: no limit).
    public static func problem(connectTimeout: Double, timeout: Double?) -> String? {
        if !(connectTimeout > 0 && connectTimeout <= 3600) {
            return "--connect-timeout must be more than 0 and at most 3600 seconds."
        }
        if let timeout, !(timeout > 0 && timeout <= 7 * 86400) {
            return "--timeout must be 0 (no limit) or at most 604800 seconds (7 days)."
        }
        return nil
    }

    /// `http(s)://HOST:PORT` from `--host/--port/--ssl`.
    public static func url(host: String, port: Int, ssl: Bool) -> String {
        "\(ssl ? "https" : "http")://\(ConnectionInfo.urlHost(host)):\(port)"
    }

    /// Accepts the server's root or its OpenAI base URL (`…/v1`, what `vllmctl deploy`
    /// prints), with or without a trailing slash, and returns the root.
    public static func normalize(_ url: String) throws -> String {
        var url = url.trimmingCharacters(in: .whitespaces)
        guard let parsed = URLComponents(string: url), let scheme = parsed.scheme?.lowercased(),
            ["http", "https"].contains(scheme),
            let host = parsed.host, !host.isEmpty
        else {
            throw VLLMCtlError.invalidInput(
                "`\(url)` is not an http:// or https:// URL",
                hint: "Pass the server's address, e.g. --url http://10.0.0.5:8000.")
        }
        while url.hasSuffix("/") { url.removeLast() }
        if url.hasSuffix("/v1") { url.removeLast(3) }
        return url
    }

    /// The key as given, without a `Bearer ` prefix someone copied along with it.
    static func cleanKey(_ key: String) throws -> String {
        var key = key.trimmingCharacters(in: .whitespacesAndNewlines)
        if key.lowercased().hasPrefix("bearer ") {
            key = String(key.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        }
        guard !key.isEmpty, !key.contains(where: { $0.isNewline || $0 == "\0" }) else {
            throw VLLMCtlError.invalidInput(
                "The API key is empty or spans lines",
                hint: "Pass the key on one line, e.g. VLLMCTL_API_KEY=sk-….")
        }
        return key
    }

    /// A request to `path` with the key, timeouts and CA bundle.
    func request(_ path: String, method: String = "GET", body: Data? = nil, authorized: Bool = true)
        -> HTTPRequest
    {
        var headers: [(String, String)] = []
        if body != nil { headers.append(("Content-Type", "application/json")) }
        if authorized, let apiKey { headers.append(("Authorization", "Bearer \(apiKey)")) }
        return HTTPRequest(
            method: method, url: url + path, headers: headers, body: body, connectTimeout: connectTimeout,
            timeout: timeout,
            caCertificate: caCertificate)
    }
}
