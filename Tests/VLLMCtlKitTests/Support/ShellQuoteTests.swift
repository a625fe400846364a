import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct ShellQuoteTests {
    static let hostile = [
        "x; rm -rf ~", "$(touch /tmp/pwned)", "`id`", "a'b", "'", "\"quoted\"", "new\nline", "tab\there",
        "*", "~", "$HOME", "back\\slash", "", " leading", "semi;colon&&amp|pipe>redirect<in", "é ünïcödé",
    ]

    @Test func plainWordsStayUnquoted() {
        #expect(Shell.quote("vllm") == "vllm")
        #expect(Shell.quote("Qwen/Qwen2.5-14B-Instruct") == "Qwen/Qwen2.5-14B-Instruct")
        #expect(Shell.quote("--max-model-len=4096") == "--max-model-len=4096")
    }

    @Test func emptyAndSpecialWordsAreQuoted() {
        #expect(Shell.quote("") == "''")
        #expect(Shell.quote("a b") == "'a b'")
        #expect(Shell.quote("a'b") == #"'a'\''b'"#)
    }

    @Test(arguments: hostile)
    func bashReadsBackTheSameWord(_ value: String) async throws {
        let result = try await sh(["bash", "-c", "printf '%s' " + Shell.quote(value)])
        #expect(result.status == 0)
        #expect(result.stdout == value)
    }

    @Test func joinKeepsArgvBoundaries() async throws {
        let argv = ["printf", "[%s]", "a b", "c'd", "$(echo no)"]
        let result = try await sh(["bash", "-c", Shell.join(argv)])
        #expect(result.stdout == "[a b][c'd][$(echo no)]")
    }
}
