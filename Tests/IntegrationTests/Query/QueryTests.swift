import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// `vllmctl query` against the simulator run as a local process, through the Kit and the CLI
/// binary (`--url`).
@Suite(.serialized) struct QuerySimulatorTests {
    let http = CurlHTTPClient()
    static let schema =
        #"{"type":"object","properties":{"city":{"type":"string"},"population":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}}},"required":["city","population"]}"#

    func started(_ extraArgs: [String] = []) async throws -> SimulatorProcess {
        let sim = try SimulatorProcess(extraArgs: extraArgs)
        try await sim.waitHealthy(http: http)
        return sim
    }

    func client(_ sim: SimulatorProcess, key: String? = nil) throws -> QueryClient {
        QueryClient(http: http, server: try QueryServer(url: sim.url + "/v1", apiKey: key ?? sim.key))
    }

    @Test func streamedTokensArriveOneByOne() async throws {
        let sim = try await started()
        defer { sim.stop() }
        let arrivals = Arrivals()
        let result = try await client(sim).run(
            QueryOptions(prompt: "tell me a story", chat: true, maxTokens: 12, stream: true)
        ) {
            arrivals.add(Data($0.utf8))
        }
        let pieces = arrivals.all
        #expect(pieces.count == 12)
        let first = try #require(pieces.first?.time)
        let last = try #require(pieces.last?.time)
        // The simulator spends 0.05 s per token; printed at once, they would arrive together.
        #expect(last.timeIntervalSince(first) > 0.3, "tokens arrived together")
        #expect(result.text == String(decoding: pieces.reduce(Data()) { $0 + $1.data }, as: UTF8.self))
        #expect(result.finishReason == "length")
        #expect(result.response["chunks"]?.arrayValue?.isEmpty == false)
    }

    @Test func completionAndChat() async throws {
        let sim = try await started()
        defer { sim.stop() }
        let client = try client(sim)
        let completion = try await client.run(
            QueryOptions(prompt: "one two three", maxTokens: 5, temperature: 0.2))
        #expect(completion.url == sim.url + "/v1/completions")
        #expect(completion.request["model"] == .string("sim-model"))  // the served name, from /v1/models
        #expect(completion.request["prompt"] == .string("one two three"))
        #expect(completion.text.split(separator: " ").count == 5)
        #expect(completion.response["object"] == .string("text_completion"))
        #expect(completion.truncated)

        let chat = try await client.run(QueryOptions(prompt: "hello", system: "be brief", maxTokens: 64))
        #expect(chat.url == sim.url + "/v1/chat/completions")
        #expect(chat.request["messages"]?.arrayValue?.count == 2)
        #expect(chat.response["object"] == .string("chat.completion"))
        #expect(!chat.text.isEmpty)
        #expect(chat.finishReason == "stop")
    }

    @Test func imageRequestIsAccepted() async throws {
        let sim = try await started()
        defer { sim.stop() }
        let path = try temporaryDirectory() + "/dot.png"
        try Self.tinyPNG.write(to: URL(fileURLWithPath: path))
        let image = try ImageAttachment.load(path: path)
        let result = try await client(sim).run(
            QueryOptions(prompt: "what is this", maxTokens: 8, image: image))
        #expect(result.status == 200)
        #expect(!result.text.isEmpty)
        // The simulator counts an image as 64 prompt tokens: it saw the image part.
        #expect((result.usage?["prompt_tokens"]?.intValue ?? 0) >= 64)
        let part = result.request["messages"]?[0]?["content"]?[1]?["image_url"]?["url"]?.stringValue
        #expect(part == "data:image/png;base64," + Self.tinyPNG.base64EncodedString())
    }

    @Test(arguments: [nil, StructuredOutput.Field.guidedJSON, .structuredOutputs, .responseFormat])
    func schemaAnswersParseAndHaveTheRequiredKeys(field: StructuredOutput.Field?) async throws {
        let sim = try await started()
        defer { sim.stop() }
        let structured = try StructuredOutput.parse(argument: Self.schema)
        for chat in [false, true] {
            let result = try await client(sim).run(
                QueryOptions(
                    prompt: "a city", chat: chat, maxTokens: 200, structuredOutput: structured,
                    structuredOutputField: field))
            // Without a choice, the simulator's version (0.0.0+vllm-sim) picks guided_json.
            #expect(result.structuredOutputField == (field ?? .guidedJSON))
            #expect(result.request[(field ?? .guidedJSON).rawValue] != nil)
            let answer = try structured.check(answer: result.text, truncated: result.truncated)
            #expect(answer["city"]?.stringValue != nil)
            #expect(answer["population"]?.intValue != nil)
        }
    }

    @Test func wrongOrMissingKey() async throws {
        let sim = try await started()
        defer { sim.stop() }
        let wrong = await #expect(throws: VLLMCtlError.self) {
            try await client(sim, key: APIKey.generate().value).run(QueryOptions(prompt: "x"))
        }
        #expect("\(wrong!)".contains("refused the API key (HTTP 401: Unauthorized)"))
        #expect("\(wrong!)".contains("`Bearer ` prefix"))
        let none = await #expect(throws: VLLMCtlError.self) {
            try await QueryClient(http: http, server: try QueryServer(url: sim.url, apiKey: nil)).run(
                QueryOptions(prompt: "x", model: "sim-model"))
        }
        #expect("\(none!)".contains("wants an API key"))
    }

    @Test func unknownModelListsTheServedNames() async throws {
        let sim = try await started(["--served-model-name", "alpha", "beta"])
        defer { sim.stop() }
        for stream in [false, true] {
            let error = await #expect(throws: VLLMCtlError.self) {
                try await client(sim).run(QueryOptions(prompt: "x", model: "nope", stream: stream))
            }
            #expect("\(error.map { "\($0)" } ?? "no error")".contains("no model `nope` (HTTP 404)"))
            #expect("\(error.map { "\($0)" } ?? "no error")".contains("It serves `alpha`, `beta`"))
        }
    }

    @Test func aStreamThatBreaksOffSaysSo() async throws {
        let sim = try await started(["--sim-crash-after", "1"])
        defer { sim.stop() }
        let error = await #expect(throws: VLLMCtlError.self) {
            try await client(sim).run(QueryOptions(prompt: "a long story", maxTokens: 200, stream: true))
        }
        #expect("\(error.map { "\($0)" } ?? "no error")".contains("without `data: [DONE]`"))
    }

    @Test func cliSavesRequestAndResponseWithoutTheKey() async throws {
        let sim = try await started()
        defer { sim.stop() }
        var cli = try CLI()
        cli.extraEnvironment["VLLMCTL_API_KEY"] = sim.key
        let dir = try temporaryDirectory() + "/answers"
        let result = try await cli.run([
            "query", "--url", sim.url, "--chat", "--prompt", "hello", "--max-tokens", "6", "--save-dir", dir,
        ])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(files.count == 1)
        let name = try #require(files.first)
        #expect(name.hasPrefix("query-") && name.hasSuffix("Z.json"))
        let path = dir + "/" + name
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(!text.contains(sim.key))
        let saved = try JSONValue.parse(Data(text.utf8))
        #expect(saved["request"]?["messages"]?[0]?["content"] == .string("hello"))
        #expect(saved["request"]?["max_tokens"] == .int(6))
        let answer = try #require(saved["response"]?["choices"]?[0]?["message"]?["content"]?.stringValue)
        #expect(result.stdout == answer + "\n")
        #expect(result.stderr.contains("Saved \(path)"))
    }

    @Test func cliInfo() async throws {
        let sim = try await started()
        defer { sim.stop() }
        var cli = try CLI()
        cli.extraEnvironment["VLLMCTL_API_KEY"] = sim.key
        let text = try await cli.run(["query", "--host", "127.0.0.1", "--port", String(sim.port), "--info"])
        #expect(text.status == 0, "stderr: \(text.stderr)")
        #expect(text.stdout.contains("Health:   ok (HTTP 200)"))
        #expect(text.stdout.contains("vLLM 0.0.0+vllm-sim"))
        #expect(text.stdout.contains("sim-model (max_model_len 8192)"))
        let json = try await cli.run(["query", "--url", sim.url, "--info", "--json"])
        let facts = try JSONValue.parse(Data(json.stdout.utf8))
        #expect(facts["healthy"] == .bool(true))
        #expect(facts["models"]?[0]?["id"] == .string("sim-model"))
    }

    @Test func httpsWithSSLAndCACert() async throws {
        // A self-signed certificate for 127.0.0.1; the simulator serves TLS like vLLM does
        // with --ssl-certfile/--ssl-keyfile.
        let dir = try temporaryDirectory()
        let made = try await sh([
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ])
        #expect(made.status == 0, "openssl: \(made.stderr)")
        let sim = try SimulatorProcess(extraArgs: [
            "--ssl-certfile", dir + "/cert.pem", "--ssl-keyfile", dir + "/key.pem",
        ])
        defer { sim.stop() }
        var cli = try CLI()
        cli.extraEnvironment["VLLMCTL_API_KEY"] = sim.key
        let base = ["query", "--host", "127.0.0.1", "--port", String(sim.port), "--ssl"]
        var answer = CommandResult(status: -1, stdout: "", stderr: "")
        for _ in 0..<50 {
            answer = try await cli.run(
                base + ["--cacert", dir + "/cert.pem", "--chat", "--prompt", "hi", "--max-tokens", "4"])
            if answer.status == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(answer.status == 0, "stderr: \(answer.stderr)")
        #expect(!answer.stdout.isEmpty)
        // Without the CA, the certificate is refused in plain words.
        let refused = try await cli.run(base + ["--info"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("TLS failed"))
        #expect(refused.stderr.contains("--cacert"))
    }

    @Test func cliPromptFromStdinStreamsAndJSONIsRaw() async throws {
        let sim = try await started()
        defer { sim.stop() }
        var cli = try CLI()
        cli.extraEnvironment["VLLMCTL_API_KEY"] = sim.key
        let argv =
            ["env"] + cli.environment.map { "\($0)=\($1)" } + [
                vllmctlBinary, "query", "--url", sim.url, "--stream", "--max-tokens", "4",
            ]
        let streamed = try await sh(argv, input: "a prompt on stdin\n")
        #expect(streamed.status == 0, "stderr: \(streamed.stderr)")
        #expect(streamed.stdout.split(separator: " ").count == 4)
        let raw = try await sh(argv + ["--json"], input: "a prompt on stdin\n")
        let lines = raw.stdout.split(separator: "\n")
        #expect(lines.count == 4)
        #expect(lines.allSatisfy { JSONValue.parse(String($0))?["object"] == .string("text_completion") })
        let refused = try await cli.run([
            "query", "--url", "http://127.0.0.1:\(try freePort())", "--prompt", "x",
        ])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("connection refused"))
    }

    /// A 1x1 PNG.
    static let tinyPNG = Data(
        base64Encoded:
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )!
}

extension LocalCluster {
    /// `vllmctl query NAME` against a deployment of the `sim` preset on the local cluster.
    @Suite struct QueryTests {
        @Test func queryADeploymentByName() async throws {
            let cli = try CLI()
            try await cli.withDeployment(["--name", "q-e2e"]) { _ in

                let chat = try await cli.run([
                    "query", "q-e2e", "--chat", "--prompt", "Say hello", "--max-tokens", "5",
                ])
                #expect(chat.status == 0, "stderr: \(chat.stderr)")
                #expect(chat.stdout.split(separator: " ").count == 5)

                let streamed = try await cli.run([
                    "query", "q-e2e", "--stream", "--prompt", "count", "--max-tokens", "3",
                ])
                #expect(streamed.status == 0, "stderr: \(streamed.stderr)")
                #expect(streamed.stdout.split(separator: " ").count == 3)

                let info = try await cli.run(["query", "q-e2e", "--info"])
                #expect(info.status == 0, "stderr: \(info.stderr)")
                #expect(info.stdout.contains("Health:   ok"))
                #expect(info.stdout.contains("Models:   sim (max_model_len 4096)"))

                // An explicit wrong key overrides the deployment's and is refused plainly.
                let wrong = try await cli.run([
                    "query", "q-e2e", "--prompt", "x", "--api-key", APIKey.generate().value,
                ])
                #expect(wrong.status != 0)
                #expect(wrong.stderr.contains("`vllmctl info q-e2e`"))
            }
        }
    }
}
