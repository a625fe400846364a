import ArgumentParser
import Foundation
import VLLMCtlKit

/// `vllmctl query`'s request: the prompt and how to ask.
struct QueryRequestFlags: ParsableArguments {
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

    func validate() throws {
        if let problem = QueryOptions.problem(maxTokens: maxTokens, temperature: temperature, topP: topP) {
            throw ValidationError(problem)
        }
    }

    /// Whether anything beyond the server's facts is asked (`--info` takes none of it).
    var asksSomething: Bool { prompt != nil || stream || image != nil || jsonSchema != nil || system != nil }

    /// The request, with everything that can be checked locally checked (the image, the
    /// schema) and stdin read once, before the first request, whichever replica answers.
    func options(input: any CommandInput) throws -> QueryOptions {
        QueryOptions(
            prompt: try readPrompt(input), chat: chat, system: system, maxTokens: maxTokens,
            temperature: temperature, topP: topP, model: model, stream: stream,
            image: try image.map { try ImageAttachment.load(path: $0) },
            structuredOutput: try jsonSchema.map { try StructuredOutput.parse(argument: $0) })
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
