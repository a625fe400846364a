import ArgumentParser
import Foundation
import VLLMCtlKit

struct QueryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Ask a deployment (or any vLLM server) something: text, chat, stream, an image, JSON.",
        discussion: """
            The server is a deployment (JOB|NAME: its URL and key come from the job's connection \
            file), or --url / --host --port [--ssl] with the key in VLLMCTL_API_KEY.

            The prompt is --prompt, or stdin when it is not a terminal. Completions by default; \
            --chat, --system and --image use chat completions. The answer goes to stdout, notes to \
            stderr.

            docs/QUERY.md has examples, the request fields sent for --json-schema, and the \
            --save-dir format.
            """)

    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "A job id or deployment name (or leave it out and give --url or --host).") var deployment:
        String?

    @Option(help: "The server's URL, e.g. http://10.0.0.5:8000 (a trailing /v1 is fine).") var url: String?
    @Option(help: "The server's host (with --port, --ssl).") var host: String?
    @Option(help: "The server's port with --host.") var port: Int?
    @Flag(help: "Use HTTPS with --host.") var ssl = false
    @Option(help: "A CA bundle (PEM) to verify the server's certificate over HTTPS.") var cacert: String?
    @Option(
        help: ArgumentHelp(
            "The API key (default: the deployment's key, else $VLLMCTL_API_KEY).",
            discussion:
                "A key on the command line is visible to other users of this machine (ps, /proc); prefer VLLMCTL_API_KEY."
        ))
    var apiKey: String?

    @Option(help: "The prompt (default: stdin, when it is not a terminal).") var prompt: String?
    @Flag(help: "Use chat completions (/v1/chat/completions) instead of completions.") var chat = false
    @Option(help: "A system message (implies --chat).") var system: String?
    @Option(help: "The most tokens to generate.") var maxTokens: Int = 256
    @Option(help: "Sampling temperature (default: the server's).") var temperature: Double?
    @Option(help: "Nucleus sampling top-p, in (0, 1] (default: the server's).") var topP: Double?
    @Option(
        help:
            "The model name to ask for (default: the deployment's served name, else the first in /v1/models)."
    ) var model: String?
    @Flag(help: "Print the tokens as they arrive (server-sent events).") var stream = false
    @Option(
        help:
            "An image file (PNG, JPEG, GIF, WebP; at most 20 MiB) sent as a base64 data URL (implies --chat)."
    ) var image: String?
    @Option(
        name: .customLong("json-schema"),
        help: "A JSON schema the answer must follow: a file, or the JSON itself ({...}).") var jsonSchema:
        String?
    @Option(help: "Save the request and response as JSON in this directory (0600 files, timestamped names).")
    var saveDir: String?
    @Flag(help: "Print only the server's health, version and models.") var info = false
    @Flag(help: "Print the raw response (with --stream: each event's JSON on its own line).") var json = false
    @Option(help: "Seconds to wait for the connection.") var connectTimeout: Double = 5
    @Option(help: "Seconds for the whole exchange, streams included (0: no limit).") var timeout: Double = 120

    func validate() throws {
        if deployment != nil && (url != nil || host != nil) {
            throw ValidationError("Name a deployment, or give --url or --host; not both.")
        }
        if url != nil && host != nil { throw ValidationError("Give --url or --host, not both.") }
        if url != nil && (ssl || port != nil) {
            throw ValidationError("--ssl and --port go with --host; with --url, put them in the URL.")
        }
        if host == nil && port != nil { throw ValidationError("--port goes with --host.") }
        if let port, !(1...65535).contains(port) {
            throw ValidationError("--port must be between 1 and 65535.")
        }
        if let problem = QueryOptions.problem(maxTokens: maxTokens, temperature: temperature, topP: topP)
            ?? QueryServer.problem(connectTimeout: connectTimeout, timeout: timeout == 0 ? nil : timeout)
        {
            throw ValidationError(problem)
        }
        if info
            && (prompt != nil || stream || image != nil || jsonSchema != nil || saveDir != nil
                || system != nil)
        {
            throw ValidationError(
                "--info asks only for the server's health, version and models; leave out the query options.")
        }
    }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let (servers, http) = try await resolveServer(ctx)
        // Everything that can be checked locally is checked before the first request (and
        // stdin is read once, whichever replica answers).
        let options =
            info
            ? nil
            : QueryOptions(
                prompt: try readPrompt(ctx.input), chat: chat, system: system, maxTokens: maxTokens,
                temperature: temperature, topP: topP,
                model: model, stream: stream, image: try image.map { try ImageAttachment.load(path: $0) },
                structuredOutput: try jsonSchema.map { try StructuredOutput.parse(argument: $0) })
        let failover = QueryFailover(
            servers: servers, http: http,
            onSkip: { [terminal = ctx.terminal] server, error in
                terminal.note("\(server.url) could not be reached (\(error)); trying another replica")
            })
        guard let options else {
            let facts = try await failover.info().info
            ctx.terminal.print(json ? try PrettyJSON.string(facts) : facts.text)
            return
        }
        let write = ctx.write
        let json = self.json
        let printed = Locked(false)
        let result: QueryResult
        do {
            result = try await failover.run(
                options,
                onText: { piece in
                    if !json {
                        write(piece)
                        printed.withLock { $0 = true }
                    }
                },
                onEvent: { event in if json { write(event + "\n") } }
            ).result
        } catch {
            // A stream that broke off leaves its partial line open; end it before the error.
            if printed.value { write("\n") }
            throw error
        }
        if !stream {
            ctx.terminal.print(json ? String(decoding: result.rawBody, as: UTF8.self) : result.text)
        } else if !json {
            write("\n")
        }
        if let saveDir {
            ctx.terminal.note("Saved \(try QueryArchive.save(result, directory: saveDir))")
        }
        if result.truncated {
            ctx.terminal.note("(The answer stopped at --max-tokens \(maxTokens); raise it for a longer one.)")
        }
        if let schema = options.structuredOutput {
            _ = try schema.check(answer: result.text, truncated: result.truncated)
        }
    }

    /// The server from the deployment (and HTTP through the profile's login node when it has
    /// `ssh_host`), or from --url / --host (HTTP straight from here).
    func resolveServer(_ ctx: CLIContext) async throws -> ([QueryServer], any HTTPClient) {
        let total: Double? = timeout == 0 ? nil : timeout
        if let deployment {
            let cluster = try ctx.cluster(self.cluster)
            let servers = try await QueryServer.candidates(
                deployment, context: cluster.context, cluster: cluster.profile.name, apiKey: apiKey, ssl: ssl,
                caCertificate: cacert, connectTimeout: connectTimeout, timeout: total)
            return (servers, cluster.context.http)
        }
        guard let url = url ?? host.map({ QueryServer.url(host: $0, port: port ?? 8000, ssl: ssl) }) else {
            throw ValidationError("Name a deployment (JOB|NAME), or give the server with --url or --host.")
        }
        let server = try QueryServer(
            url: url, apiKey: apiKey ?? ctx.environment["VLLMCTL_API_KEY"], caCertificate: cacert,
            connectTimeout: connectTimeout, timeout: total)
        return ([server], ctx.directHTTP)
    }

    func readPrompt(_ input: any CommandInput) throws -> String {
        if let prompt { return prompt }
        guard !input.isTerminal else {
            throw ValidationError("Give the prompt with --prompt, or pipe it in on stdin.")
        }
        let text = input.readAll()
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ValidationError("stdin was empty; give the prompt with --prompt, or pipe it in.")
        }
        return text.hasSuffix("\n") ? String(text.dropLast()) : text
    }
}
