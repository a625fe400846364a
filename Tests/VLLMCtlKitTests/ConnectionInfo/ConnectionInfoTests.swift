import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct ConnectionInfoTests {
    /// The seed's example, byte for byte.
    static let seedExample = """
        Server URL: http://10.123.45.67:8000
        API Key: sk-abcdefghijklmnopqrstuvwxyz123456
        Example curl command:
        curl -X POST "http://10.123.45.67:8000/v1/completions" \\
          -H "Content-Type: application/json" \\
          -H "Authorization: Bearer sk-abcdefghijklmnopqrstuvwxyz123456" \\
          -d '{"model":"UI-TARS-7B-DPO", "prompt":"Hello, world", "max_tokens":100}'

        """

    @Test func textMatchesTheSeedByteForByte() {
        let info = ConnectionInfo(
            host: "10.123.45.67", port: 8000, apiKey: "sk-abcdefghijklmnopqrstuvwxyz123456",
            servedModelName: "UI-TARS-7B-DPO")
        #expect(info.text == Self.seedExample)
        #expect(Array(info.text.utf8) == Array(Self.seedExample.utf8))
    }

    @Test func curlCommandStaysOneWordPerArgumentForHostileNames() async throws {
        // The -d body must reach curl as exactly the JSON text, whatever the name holds.
        for name in ["it's", "say \"hi\"", "back\\slash", "$(touch /tmp/x)", "tab\there"] {
            let info = ConnectionInfo(host: "127.0.0.1", port: 1, apiKey: "sk-x", servedModelName: name)
            let command = info.curlCommand.replacingOccurrences(of: "curl ", with: "printf '%s\\n' ")
            let result = try await sh(["bash", "-c", command])
            let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            let body = try #require(lines.first { $0.hasPrefix("{") })
            let decoded = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            #expect(decoded?["model"] as? String == name)
        }
    }

    @Test func ipv6HostsAreBracketed() {
        let info = ConnectionInfo(host: "fe80::1", port: 8000, apiKey: "sk-x", servedModelName: "m")
        #expect(info.serverURL == "http://[fe80::1]:8000")
    }

    @Test func environmentExportsEvaluate() async throws {
        let info = ConnectionInfo(host: "127.0.0.1", port: 8123, apiKey: "sk-abc", servedModelName: "m")
        let result = try await sh([
            "bash", "-c", info.environmentExports + "printf '%s %s' \"$OPENAI_BASE_URL\" \"$OPENAI_API_KEY\"",
        ])
        #expect(result.stdout == "http://127.0.0.1:8123/v1 sk-abc")
    }
}
