import Foundation

/// vLLM's HTTP errors, and libcurl's, in plain words for `vllmctl query`.
public enum QueryErrors {
    /// The message inside an error body, whichever shape the server uses:
    /// `{"object":"error","message":…}` (vLLM), `{"error":{"message":…}}` (OpenAI, newer
    /// vLLM), `{"error":"Unauthorized"}` (vLLM's key check), `{"detail":…}` (FastAPI).
    public static func serverMessage(_ body: Data) -> String? {
        guard let json = try? JSONValue.parse(body) else {
            let text = String(decoding: body.prefix(300), as: UTF8.self).trimmingCharacters(
                in: .whitespacesAndNewlines)
            return text.isEmpty ? nil : text
        }
        if let message = json["message"]?.stringValue { return message }
        if let message = json["error"]?["message"]?.stringValue { return message }
        if let message = json["error"]?.stringValue { return message }
        if let message = json["detail"]?.stringValue { return message }
        return nil
    }

    /// The error for a non-2xx answer to `path`. `servedModels` is asked only for a 404 that
    /// names the model.
    public static func status(
        _ status: Int, body: Data, path: String, model: String?, server: QueryServer, servedModels: [String]?
    ) -> VLLMCtlError {
        let url = server.url + path
        let message = serverMessage(body)
        let said = message.map { ": \($0)" } ?? ""
        switch status {
        case 401, 403:
            let who = server.deploymentName.map { "`vllmctl info \($0)`" } ?? "`vllmctl info NAME`"
            if server.apiKey == nil {
                return .http(
                    url: url, message: "the server wants an API key (HTTP \(status))",
                    hint: "Set VLLMCTL_API_KEY (or pass --api-key); \(who) shows a deployment's key.")
            }
            return .http(
                url: url, message: "the server refused the API key (HTTP \(status)\(said))",
                hint:
                    "Use the key the server was started with: \(who) shows it. Give the bare key (`sk-…`); vllmctl adds the `Bearer ` prefix itself."
            )
        case 404 where model != nil && (message ?? "").localizedCaseInsensitiveContains("model"):
            let served = servedModels ?? []
            let hint =
                served.isEmpty
                ? "Its /v1/models lists no models; check the server."
                : "It serves \(served.map { "`\($0)`" }.joined(separator: ", ")): pass one of those with --model, or leave --model out."
            return .http(url: url, message: "the server has no model `\(model ?? "")` (HTTP 404)", hint: hint)
        case 404:
            return .http(
                url: url, message: "the server has no \(path) (HTTP 404\(said))",
                hint: "Is this a vLLM server, and is the URL its root (http://HOST:PORT)?")
        case 400, 422:
            return .http(
                url: url, message: "the server rejected the request (HTTP \(status)\(said))",
                hint:
                    "Check the options: --max-tokens within the model's context, --temperature and --top-p in range, an image only for a vision model."
            )
        case 500...599:
            let logs = server.deploymentName.map { "`vllmctl logs \($0)`" } ?? "the server's log"
            return .http(
                url: url, message: "the server failed (HTTP \(status)\(said))", hint: "Look at \(logs).")
        default:
            return .http(url: url, message: "HTTP \(status)\(said)", hint: "")
        }
    }

    /// libcurl's errors with hints that name `query`'s own flags.
    public static func transport(_ error: any Error, server: QueryServer) -> any Error {
        if case VLLMCtlError.unreachable(let url, let message, _) = error, message.hasPrefix("timed out") {
            let limit = server.timeout.map { "it is \(formatSeconds($0)) s" } ?? "there is none"
            return VLLMCtlError.unreachable(
                url: url, message: message,
                hint:
                    "The server may be busy, or the answer long: raise --timeout (\(limit)) or ask for fewer tokens with --max-tokens. If even connecting times out, raise --connect-timeout (it is \(formatSeconds(server.connectTimeout)) s) or use a tunnel."
            )
        }
        guard case VLLMCtlError.http(let url, let message, _) = error else { return error }
        if message.hasPrefix("connection refused") {
            let status = server.deploymentName.map { "`vllmctl status \($0)`" } ?? "`vllmctl status`"
            return VLLMCtlError.http(
                url: url, message: message,
                hint:
                    "Is the job still running and its server up (\(status))? If you reach it through a tunnel, is the tunnel open? Is the port right?"
            )
        }
        return error
    }

    /// A stream that stopped before `data: [DONE]`.
    public static func brokenStream(server: QueryServer, path: String, events: Int, detail: String? = nil)
        -> VLLMCtlError
    {
        let logs = server.deploymentName.map { "`vllmctl logs \($0)`" } ?? "the server's log"
        let cause = detail.map { " (\($0))" } ?? ""
        return .http(
            url: server.url + path,
            message:
                "the stream broke off without `data: [DONE]` after \(events) event\(events == 1 ? "" : "s")\(cause); the answer is incomplete",
            hint:
                "The server may have crashed or a proxy cut the connection: look at \(logs), and try again without --stream."
        )
    }

    static func formatSeconds(_ seconds: Double) -> String {
        seconds.rounded() == seconds ? String(Int(seconds)) : String(seconds)
    }
}
