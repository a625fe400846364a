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

    @OptionGroup var server: QueryServerFlags
    @OptionGroup var request: QueryRequestFlags
    @Option(help: "Save the request and response as JSON in this directory (0600 files, timestamped names).")
    var saveDir: String?
    @Flag(help: "Print only the server's health, version and models.") var info = false
    @Flag(help: "Print the raw response (with --stream: each event's JSON on its own line).") var json = false

    func validate() throws {
        if deployment != nil && (server.url != nil || server.host != nil) {
            throw ValidationError("Name a deployment, or give --url or --host; not both.")
        }
        if info && (request.asksSomething || saveDir != nil) {
            throw ValidationError(
                "--info asks only for the server's health, version and models; leave out the query options.")
        }
    }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let (servers, http) = try await server.resolve(deployment, cluster: cluster, ctx)
        // Everything that can be checked locally is checked before the first request (and
        // stdin is read once, whichever replica answers).
        let options = info ? nil : try request.options(input: ctx.input)
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
        if !request.stream {
            ctx.terminal.print(json ? String(decoding: result.rawBody, as: UTF8.self) : result.text)
        } else if !json {
            write("\n")
        }
        if let saveDir {
            ctx.terminal.note("Saved \(try QueryArchive.save(result, directory: saveDir))")
        }
        if result.truncated {
            ctx.terminal.note(
                "(The answer stopped at --max-tokens \(request.maxTokens); raise it for a longer one.)")
        }
        if let schema = options.structuredOutput {
            _ = try schema.check(answer: result.text, truncated: result.truncated)
        }
    }
}
