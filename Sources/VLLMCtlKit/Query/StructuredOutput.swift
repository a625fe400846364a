import Foundation

/// A JSON schema the answer must follow (`--json-schema FILE|JSON`), and the request fields
/// that carry it. docs/QUERY.md says which field goes to which vLLM version, and why only one.
public struct StructuredOutput: Sendable, Equatable {
    /// The request fields vLLM has read a JSON schema from over time.
    public enum Field: String, Sendable, CaseIterable {
        /// `"guided_json": SCHEMA`: vLLM 0.4 to 0.11 (deprecated in 0.10.2, removed in 0.12).
        case guidedJSON = "guided_json"
        /// `"structured_outputs": {"json": SCHEMA}`: vLLM 0.10.2 and later.
        case structuredOutputs = "structured_outputs"
        /// `"response_format": {"type": "json_schema", ...}`: the OpenAI API's own field;
        /// vLLM 0.6 and later, and other OpenAI-compatible servers.
        case responseFormat = "response_format"
    }

    public var schema: JSONValue

    public init(schema: JSONValue) throws {
        guard case .object = schema else {
            throw VLLMCtlError.invalidInput(
                "The JSON schema must be a JSON object, like {\"type\": \"object\", ...}",
                hint: "Check the --json-schema value.")
        }
        self.schema = schema
    }

    /// `--json-schema` takes inline JSON (anything starting with `{`) or a file name.
    public static func parse(argument: String) throws -> StructuredOutput {
        let trimmed = argument.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("{") {
            guard let schema = JSONValue.parse(trimmed) else {
                throw VLLMCtlError.invalidInput(
                    "The --json-schema value is not valid JSON",
                    hint: "Quote it for the shell ('{...}'), or put it in a file and pass the file name.")
            }
            return try StructuredOutput(schema: schema)
        }
        guard let data = FileManager.default.contents(atPath: argument) else {
            throw VLLMCtlError.file(
                path: argument,
                message:
                    "cannot read the JSON schema (pass a file name, or the schema itself starting with `{`)")
        }
        guard let schema = try? JSONValue.parse(data) else {
            throw VLLMCtlError.invalidInput(
                "\(argument) is not valid JSON", hint: "A JSON schema file holds one JSON object.")
        }
        return try StructuredOutput(schema: schema)
    }

    /// Which field to send, from the server's `/version`. One field only: vLLM before 0.6
    /// rejects every field it does not know (pydantic `extra="forbid"`), and from 0.12 on it
    /// ignores `guided_json` with only a log line, so sending all of them would either fail on
    /// old servers or silently rely on the newest one.
    ///
    /// - `nil` (no `/version`: not vLLM, or hidden behind a proxy): `response_format`.
    /// - a version before 0.10.2: `guided_json`.
    /// - 0.10.2 and later, or a version string that does not parse (a source build):
    ///   `structured_outputs`.
    public static func field(forServerVersion version: String?) -> Field {
        guard let version else { return .responseFormat }
        guard let parsed = Self.versionNumbers(version) else { return .structuredOutputs }
        return parsed.lexicographicallyPrecedes([0, 10, 2]) ? .guidedJSON : .structuredOutputs
    }

    /// `0.10.1.1` -> [0, 10, 1, 1]; `0.11.0rc1`, `0.6.3.post1` and `0.0.0+vllm-sim` keep their
    /// leading numbers. nil when the string does not start with `N.N`.
    static func versionNumbers(_ version: String) -> [Int]? {
        var numbers: [Int] = []
        for part in version.split(separator: ".", omittingEmptySubsequences: false) {
            let digits = part.prefix(while: \.isNumber)
            guard let number = Int(digits) else { break }
            numbers.append(number)
            if digits.count != part.count { break }
        }
        return numbers.count >= 2 ? numbers : nil
    }

    /// The body fields for `field`.
    public func bodyFields(_ field: Field) -> [String: JSONValue] {
        switch field {
        case .guidedJSON:
            return ["guided_json": schema]
        case .structuredOutputs:
            return ["structured_outputs": .object(["json": schema])]
        case .responseFormat:
            return [
                "response_format": .object([
                    "type": .string("json_schema"),
                    "json_schema": .object(["name": .string(schemaName), "schema": schema]),
                ])
            ]
        }
    }

    /// OpenAI requires a name matching `^[a-zA-Z0-9_-]{1,64}$`: the schema's `title` when it
    /// fits, else `answer`.
    var schemaName: String {
        if let title = schema["title"]?.stringValue, (1...64).contains(title.count),
            title.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
        {
            return title
        }
        return "answer"
    }

    /// Checks an answer against the schema: it must parse as JSON, and an object schema's
    /// `required` keys must be there with the declared top-level types. (A full JSON Schema
    /// validator is beyond a query tool; this catches a server that ignored the schema or cut
    /// the answer short.) Returns the parsed answer.
    public func check(answer: String, truncated: Bool) throws -> JSONValue {
        guard let value = JSONValue.parse(answer.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            let why =
                truncated
                ? "it was cut off at the token limit; raise --max-tokens"
                : "the server may not support structured output (docs/QUERY.md lists the fields vllmctl sends), or ignored the schema"
            throw VLLMCtlError.invalidInput(
                "The answer is not valid JSON: \(why)",
                hint: "The raw answer is above; --json shows the whole response.")
        }
        if schema["type"]?.stringValue == "object" {
            guard let object = value.objectValue else {
                throw VLLMCtlError.invalidInput(
                    "The answer is JSON but not an object, as the schema asks",
                    hint:
                        "The server may have ignored the schema; docs/QUERY.md lists the fields vllmctl sends."
                )
            }
            let required = schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? []
            let missing = required.filter { object[$0] == nil }
            if !missing.isEmpty {
                throw VLLMCtlError.invalidInput(
                    "The answer lacks the required key\(missing.count == 1 ? "" : "s") \(missing.map { "`\($0)`" }.joined(separator: ", "))",
                    hint:
                        "The server may have ignored the schema; docs/QUERY.md lists the fields vllmctl sends."
                )
            }
            let properties = schema["properties"]?.objectValue ?? [:]
            for (key, value) in object.sorted(by: { $0.key < $1.key }) {
                guard let expected = properties[key]?["type"]?.stringValue,
                    !Self.matches(value, type: expected)
                else { continue }
                throw VLLMCtlError.invalidInput(
                    "The answer's `\(key)` is not of type \(expected), as the schema asks",
                    hint:
                        "The server may have ignored the schema; docs/QUERY.md lists the fields vllmctl sends."
                )
            }
        }
        return value
    }

    static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("null", .null),
            ("integer", .int), ("number", .int), ("number", .double):
            return true
        case ("integer", .double(let d)):
            return d.rounded() == d
        case ("object", _), ("array", _), ("string", _), ("boolean", _), ("null", _), ("integer", _),
            ("number", _):
            return false
        default:
            return true
        }
    }
}
