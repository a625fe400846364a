import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct QueryRequestTests {
    @Test func completionShape() {
        let options = QueryOptions(prompt: "Hello, world", maxTokens: 100, temperature: 0.7)
        let request = QueryRequest(options: options, model: "m")
        #expect(request.path == "/v1/completions")
        #expect(!request.isChat)
        #expect(
            request.body
                == .object([
                    "model": .string("m"), "prompt": .string("Hello, world"), "max_tokens": .int(100),
                    "temperature": .double(0.7),
                ]))
        // Unasked fields stay out: old vLLM rejects unknown fields, and defaults stay the server's.
        #expect(request.body["top_p"] == nil)
        #expect(request.body["stream"] == nil)
        #expect(
            request.body.text()
                == #"{"max_tokens":100,"model":"m","prompt":"Hello, world","temperature":0.7}"#)
    }

    @Test func chatShapeWithSystemAndStream() {
        let options = QueryOptions(prompt: "hi", chat: true, system: "be brief", topP: 0.9, stream: true)
        let request = QueryRequest(options: options, model: "m")
        #expect(request.path == "/v1/chat/completions")
        #expect(request.body["stream"] == .bool(true))
        #expect(request.body["top_p"] == .double(0.9))
        #expect(
            request.body["messages"]
                == .array([
                    .object(["role": .string("system"), "content": .string("be brief")]),
                    .object(["role": .string("user"), "content": .string("hi")]),
                ]))
        #expect(request.body["prompt"] == nil)
    }

    @Test func systemOrImageImpliesChat() throws {
        #expect(QueryOptions(prompt: "x", system: "s").usesChat)
        let png = try ImageAttachment(bytes: Self.png, path: "a.png")
        #expect(QueryOptions(prompt: "x", image: png).usesChat)
        #expect(!QueryOptions(prompt: "x").usesChat)
    }

    @Test func imageBodyIsTextThenADataURL() throws {
        let image = try ImageAttachment(bytes: Self.png, path: "a.png")
        let request = QueryRequest(options: QueryOptions(prompt: "describe", image: image), model: "m")
        let content = try #require(request.body["messages"]?[0]?["content"]?.arrayValue)
        #expect(content.count == 2)
        #expect(content[0] == .object(["type": .string("text"), "text": .string("describe")]))
        #expect(content[1]["type"] == .string("image_url"))
        let url = try #require(content[1]["image_url"]?["url"]?.stringValue)
        #expect(url.hasPrefix("data:image/png;base64,"))
        let decoded = Data(base64Encoded: String(url.dropFirst("data:image/png;base64,".count)))
        #expect(decoded == Self.png)
    }

    static let png = Data([
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52,
    ])
}

@Suite struct ImageAttachmentTests {
    @Test(
        arguments: [
            ([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0], "image/png"),
            ([0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10], "image/jpeg"),
            (Array("GIF89a....".utf8), "image/gif"),
            (Array("GIF87a....".utf8), "image/gif"),
            (Array("RIFF\u{0}\u{0}\u{0}\u{0}WEBPVP8 ".utf8), "image/webp"),
        ] as [([UInt8], String)])
    func mimeFromMagic(bytes: [UInt8], mime: String) throws {
        #expect(ImageAttachment.mimeType(of: Data(bytes)) == mime)
        #expect(try ImageAttachment(bytes: Data(bytes), path: "f").dataURL.hasPrefix("data:\(mime);base64,"))
    }

    @Test func notAnImageIsRefused() {
        #expect(ImageAttachment.mimeType(of: Data("%PDF-1.7".utf8)) == nil)
        #expect(ImageAttachment.mimeType(of: Data("RIFF1234WAVE".utf8)) == nil)
        let error = #expect(throws: VLLMCtlError.self) {
            try ImageAttachment(bytes: Data("hello world".utf8), path: "notes.png")
        }
        #expect(
            "\(error.map { "\($0)" } ?? "no error")".contains(
                "notes.png is not a PNG, JPEG, GIF or WebP image"))
        #expect(throws: VLLMCtlError.self) { try ImageAttachment(bytes: Data(), path: "empty.png") }
    }

    @Test func tooBigIsRefusedBeforeReading() throws {
        let dir = try temporaryDirectory()
        let path = dir + "/big.png"
        // A sparse file: bigger than the limit without writing the bytes.
        #expect(FileManager.default.createFile(atPath: path, contents: QueryRequestTests.png))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(ImageAttachment.maximumBytes + 1))
        try handle.close()
        let error = #expect(throws: VLLMCtlError.self) { try ImageAttachment.load(path: path) }
        #expect("\(error.map { "\($0)" } ?? "no error")".contains("more than the 20.0 MiB limit"))
        // The same check on bytes in memory, with a small limit.
        #expect(throws: VLLMCtlError.self) {
            try ImageAttachment(bytes: QueryRequestTests.png, path: "p", maximumBytes: 8)
        }
    }

    @Test func missingFileSaysSo() {
        let error = #expect(throws: VLLMCtlError.self) {
            try ImageAttachment.load(path: "/nonexistent/cat.jpg")
        }
        #expect("\(error.map { "\($0)" } ?? "no error")".contains("/nonexistent/cat.jpg"))
    }
}

@Suite struct StructuredOutputTests {
    static let schema =
        #"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"]}"#

    @Test func inlineOrFile() throws {
        let inline = try StructuredOutput.parse(argument: Self.schema)
        let path = try temporaryDirectory() + "/schema.json"
        try Self.schema.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try StructuredOutput.parse(argument: path) == inline)
        #expect(throws: VLLMCtlError.self) { try StructuredOutput.parse(argument: "{not json") }
        #expect(throws: VLLMCtlError.self) {
            try StructuredOutput.parse(argument: "/nonexistent/schema.json")
        }
        #expect(throws: VLLMCtlError.self) { try StructuredOutput(schema: .array([])) }
    }

    @Test func eachFieldCarriesTheSchema() throws {
        let structured = try StructuredOutput.parse(argument: Self.schema)
        let schema = structured.schema
        #expect(structured.bodyFields(.guidedJSON) == ["guided_json": schema])
        #expect(
            structured.bodyFields(.structuredOutputs) == ["structured_outputs": .object(["json": schema])])
        #expect(
            structured.bodyFields(.responseFormat)
                == [
                    "response_format": .object([
                        "type": .string("json_schema"),
                        "json_schema": .object(["name": .string("answer"), "schema": schema]),
                    ])
                ])
        // Exactly one field goes into a request.
        let request = QueryRequest(
            options: QueryOptions(prompt: "p", structuredOutput: structured), model: "m",
            structuredOutputField: .guidedJSON)
        #expect(request.body["guided_json"] == schema)
        #expect(request.body["structured_outputs"] == nil)
        #expect(request.body["response_format"] == nil)
    }

    @Test(
        arguments: [
            (nil, StructuredOutput.Field.responseFormat),
            ("0.4.2", .guidedJSON),
            ("0.6.3.post1", .guidedJSON),
            ("0.10.1.1", .guidedJSON),
            ("0.10.2", .structuredOutputs),
            ("0.11.0rc1", .structuredOutputs),
            ("0.12.0", .structuredOutputs),
            ("1.0.0", .structuredOutputs),
            ("0.0.0+vllm-sim", .guidedJSON),
            ("dev", .structuredOutputs),
        ] as [(String?, StructuredOutput.Field)])
    func fieldByVersion(version: String?, field: StructuredOutput.Field) {
        #expect(StructuredOutput.field(forServerVersion: version) == field)
    }

    @Test func answerChecks() throws {
        let structured = try StructuredOutput.parse(argument: Self.schema)
        #expect(try structured.check(answer: #" {"name":"a","age":3} "#, truncated: false)["age"] == .int(3))
        let cut = #expect(throws: VLLMCtlError.self) {
            try structured.check(answer: #"{"name":"a","ag"#, truncated: true)
        }
        #expect("\(cut!)".contains("raise --max-tokens"))
        let missing = #expect(throws: VLLMCtlError.self) {
            try structured.check(answer: #"{"name":"a"}"#, truncated: false)
        }
        #expect("\(missing!)".contains("`age`"))
        let wrongType = #expect(throws: VLLMCtlError.self) {
            try structured.check(answer: #"{"name":"a","age":"old"}"#, truncated: false)
        }
        #expect("\(wrongType!)".contains("`age` is not of type integer"))
        #expect(throws: VLLMCtlError.self) { try structured.check(answer: "plain words", truncated: false) }
    }
}

@Suite struct SSEParserTests {
    static let body =
        "data: {\"choices\":[{\"text\":\"h\u{e9}llo\"}]}\n\n"
        + ": a comment\n"
        + "event: message\r\ndata: {\"choices\":[{\"text\":\" w\u{f6}rld \u{1F30D}\"}]}\r\n\r\n"
        + "data: [DONE]\n\n"

    static let expected: [SSEEvent] = [
        .data("{\"choices\":[{\"text\":\"h\u{e9}llo\"}]}"),
        .data("{\"choices\":[{\"text\":\" w\u{f6}rld \u{1F30D}\"}]}"),
        .done,
    ]

    @Test func wholeBody() {
        var parser = SSEParser()
        #expect(parser.feed(Data(Self.body.utf8)) + parser.finish() == Self.expected)
        #expect(parser.sawDone)
    }

    @Test func everySplitPoint() {
        let bytes = Array(Self.body.utf8)
        for cut in 0...bytes.count {
            var parser = SSEParser()
            let events = parser.feed(bytes[..<cut]) + parser.feed(bytes[cut...]) + parser.finish()
            #expect(events == Self.expected, "split at byte \(cut)")
        }
    }

    @Test func byteByByteAndRandomPieces() {
        let bytes = Array(Self.body.utf8)
        var parser = SSEParser()
        var events: [SSEEvent] = []
        for byte in bytes { events += parser.feed([byte]) }
        #expect(events + parser.finish() == Self.expected)

        var generator = SeededGenerator(state: 7)
        for _ in 0..<200 {
            var parser = SSEParser()
            var events: [SSEEvent] = []
            var index = 0
            while index < bytes.count {
                let length = Int.random(in: 1...9, using: &generator)
                events += parser.feed(bytes[index..<min(index + length, bytes.count)])
                index += length
            }
            #expect(events + parser.finish() == Self.expected)
        }
    }

    @Test func multiLineDataAndAMissingFinalBlankLine() {
        var parser = SSEParser()
        let events = parser.feed(Data("data: a\ndata:b\n\ndata: [DONE]".utf8)) + parser.finish()
        #expect(events == [.data("a\nb"), .done])
    }

    @Test func noDoneMeansNotSeen() {
        var parser = SSEParser()
        _ = parser.feed(Data("data: {}\n\n".utf8))
        _ = parser.finish()
        #expect(!parser.sawDone)
    }
}

@Suite struct QueryErrorTests {
    func server(key: String? = "sk-abc", deployment: String? = "sim") throws -> QueryServer {
        try QueryServer(url: "http://10.0.0.5:8000/v1/", apiKey: key, deploymentName: deployment)
    }

    @Test func urlAndKeyAreNormalized() throws {
        let s = try QueryServer(url: "http://10.0.0.5:8000/v1/", apiKey: "Bearer sk-abc")
        #expect(s.url == "http://10.0.0.5:8000")
        #expect(s.apiKey == "sk-abc")
        #expect(QueryServer.url(host: "fe80::1", port: 8000, ssl: true) == "https://[fe80::1]:8000")
        #expect(throws: VLLMCtlError.self) { try QueryServer(url: "10.0.0.5:8000", apiKey: nil) }
        #expect(throws: VLLMCtlError.self) { try QueryServer(url: "http://h:1", apiKey: "sk-a\nX-Evil: 1") }
        // The key goes in a header only.
        let request = s.request("/v1/models")
        #expect(request.headers.contains { $0 == ("Authorization", "Bearer sk-abc") })
    }

    @Test func unauthorizedNamesTheKey() throws {
        let body = Data(#"{"error":"Unauthorized"}"#.utf8)
        let wrong = QueryErrors.status(
            401, body: body, path: "/v1/models", model: nil, server: try server(), servedModels: nil)
        #expect("\(wrong)".contains("refused the API key"))
        #expect("\(wrong)".contains("`vllmctl info sim`"))
        #expect("\(wrong)".contains("`Bearer ` prefix"))
        let none = QueryErrors.status(
            401, body: body, path: "/v1/models", model: nil, server: try server(key: nil), servedModels: nil)
        #expect("\(none)".contains("VLLMCTL_API_KEY"))
    }

    @Test func unknownModelListsTheServedOnes() throws {
        let body = Data(
            #"{"object":"error","message":"The model `nope` does not exist.","type":"NotFoundError","param":null,"code":404}"#
                .utf8)
        let error = QueryErrors.status(
            404, body: body, path: "/v1/completions", model: "nope", server: try server(),
            servedModels: ["a", "b"])
        #expect("\(error)".contains("no model `nope`"))
        #expect("\(error)".contains("It serves `a`, `b`"))
        let path = QueryErrors.status(
            404, body: Data(#"{"detail":"Not Found"}"#.utf8), path: "/v1/completions", model: "m",
            server: try server(), servedModels: nil)
        #expect("\(path)".contains("has no /v1/completions"))
    }

    @Test func serverMessagesInEveryShape() {
        #expect(QueryErrors.serverMessage(Data(#"{"object":"error","message":"m1"}"#.utf8)) == "m1")
        #expect(QueryErrors.serverMessage(Data(#"{"error":{"message":"m2"}}"#.utf8)) == "m2")
        #expect(QueryErrors.serverMessage(Data(#"{"error":"Unauthorized"}"#.utf8)) == "Unauthorized")
        #expect(QueryErrors.serverMessage(Data(#"{"detail":"Not Found"}"#.utf8)) == "Not Found")
        #expect(QueryErrors.serverMessage(Data("Bad Gateway".utf8)) == "Bad Gateway")
        #expect(QueryErrors.serverMessage(Data()) == nil)
    }

    @Test func transportErrorsNameQuerysFlags() throws {
        let timeout = QueryErrors.transport(
            VLLMCtlError.unreachable(url: "u", message: "timed out (x)", hint: "old"), server: try server())
        #expect("\(timeout)".contains("raise --timeout (it is 120 s)"))
        #expect("\(timeout)".contains("--max-tokens"))
        let refused = QueryErrors.transport(
            VLLMCtlError.http(url: "u", message: "connection refused (x)", hint: "old"), server: try server())
        #expect("\(refused)".contains("`vllmctl status sim`"))
        #expect("\(refused)".contains("tunnel"))
        let broken = QueryErrors.brokenStream(server: try server(), path: "/v1/completions", events: 3)
        #expect("\(broken)".contains("without `data: [DONE]` after 3 events"))
        #expect("\(broken)".contains("`vllmctl logs sim`"))
    }
}

@Suite struct QueryArchiveTests {
    @Test func savesRequestAndResponsePrivately() throws {
        let dir = try temporaryDirectory() + "/saved"
        let result = QueryResult(
            url: "http://h:1/v1/completions", request: .object(["prompt": .string("p")]), status: 200,
            rawBody: Data(),
            response: .object(["choices": .array([])]), text: "", finishReason: "stop", usage: nil,
            structuredOutputField: .guidedJSON)
        let now = Date(timeIntervalSince1970: 1_746_532_800.5)
        let first = try QueryArchive.save(result, directory: dir, now: now)
        let second = try QueryArchive.save(result, directory: dir, now: now)
        #expect(first.hasSuffix("/query-20250506T120000.500Z.json"))
        #expect(second.hasSuffix("/query-20250506T120000.500Z-2.json"))
        #expect(try FileManager.default.attributesOfItem(atPath: first)[.posixPermissions] as? Int == 0o600)
        #expect(try FileManager.default.attributesOfItem(atPath: dir)[.posixPermissions] as? Int == 0o700)
        let saved = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: first)))
        #expect(saved["request"] == .object(["prompt": .string("p")]))
        #expect(saved["response"]?["choices"] == .array([]))
        #expect(saved["structured_output_field"] == .string("guided_json"))
        #expect(saved["saved_at"]?.stringValue?.hasPrefix("2025-05-06T12:00:00.5") == true)
    }
}
