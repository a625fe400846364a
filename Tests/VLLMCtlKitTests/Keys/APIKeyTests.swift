import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct APIKeyTests {
    @Test func generatedKeysHaveTheSeedShape() {
        for _ in 0..<200 {
            let key = APIKey.generate()
            #expect(key.value.hasPrefix("sk-"))
            #expect(key.value.count == 35)
            #expect(APIKey.isGeneratedShape(key.value))
            #expect(
                key.value.dropFirst(3).allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) })
        }
    }

    @Test func keysDoNotRepeatAndUseTheWholeAlphabet() {
        var seen = Set<String>()
        var symbols = Set<Character>()
        for _ in 0..<2000 {
            let key = APIKey.generate().value
            #expect(seen.insert(key).inserted)
            symbols.formUnion(key.dropFirst(3))
        }
        #expect(symbols.count == 36)
    }

    @Test func entropyIsAbove160Bits() {
        let bits = Double(APIKey.length) * log2(Double(APIKey.alphabet.count))
        #expect(bits > 160)
    }

    @Test func symbolsAreUniformWithASeededSource() {
        var generator = SeededGenerator(state: 42)
        var counts: [Character: Int] = [:]
        for _ in 0..<3600 {
            for ch in APIKey.generate(using: &generator).value.dropFirst(3) { counts[ch, default: 0] += 1 }
        }
        // 115,200 symbols over 36: about 3,200 each. A biased modulo draw would skew some.
        #expect(counts.count == 36)
        #expect(counts.values.allSatisfy { (2900...3500).contains($0) })
    }

    @Test func descriptionNeverShowsTheKey() {
        let key = APIKey.generate()
        #expect(!"\(key)".contains(key.value))
        #expect(!String(describing: [key]).contains(key.value))
    }

    @Test func givenKeysAreChecked() throws {
        #expect(throws: VLLMCtlError.self) { try APIKey("hunter2") }
        #expect(throws: VLLMCtlError.self) { try APIKey("sk-has space in it 1234567890") }
        // Shell code would run when a colleague pastes the info file's curl line.
        for hostile in [
            "sk-0123456789abcdef$(touch${IFS}/tmp/x)", "sk-0123456789abcdef`id`", "sk-0123456789abcdef\"x",
            "sk-0123456789abcdef\nAPI Key: forged", "sk-0123456789abcdef\u{7}", "sk-0123456789abcdéf",
            "sk-0123456789abcdef;rm", String(repeating: "a", count: 513),
        ] {
            #expect(throws: VLLMCtlError.self, "\(hostile)") { try APIKey(hostile) }
        }
        let error = #expect(throws: VLLMCtlError.self) { try APIKey("sk-0123456789abcdef$(x)") }
        #expect("\(error.map { "\($0)" } ?? "no error")".contains("letters, digits and `-._~+/=`"))
        #expect("\(error.map { "\($0)" } ?? "no error")".contains("openssl rand"))
        // Tokens of the usual alphabets are fine, with or without `sk-`.
        for fine in ["tok_0123456789ABCDEF", "c2VjcmV0LXRva2VuLWJhc2U2NA==", "a.b-c~d+e/f=0123456789"] {
            #expect(try APIKey(fine).value == fine)
        }
        #expect(
            try APIKey("sk-abcdefghijklmnopqrstuvwxyz123456").value == "sk-abcdefghijklmnopqrstuvwxyz123456")
    }
}
