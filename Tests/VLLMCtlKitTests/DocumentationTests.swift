import Foundation
import TestSupport
import Testing

/// The DocC catalog stays true: the article's code is the code that the integration test
/// `LibraryUsageTests` compiles and runs against the local cluster.
@Suite struct DocumentationTests {
    static let catalog = repoRoot + "/Sources/VLLMCtlKit/VLLMCtlKit.docc"
    static let article = catalog + "/UsingTheLibrary.md"
    static let testedCode = repoRoot + "/Tests/IntegrationTests/LibraryUsageTests.swift"

    @Test func theArticlesCodeIsTheTestedCode() throws {
        let article = try String(contentsOfFile: Self.article, encoding: .utf8)
        let source = try String(contentsOfFile: Self.testedCode, encoding: .utf8)
        let blocks = Snippets.fencedBlocks(in: article, language: "swift")
        try #require(blocks.count == 1, "UsingTheLibrary.md holds \(blocks.count) ```swift blocks, not 1")
        let region = try #require(
            Snippets.markedRegion(in: source),
            "LibraryUsageTests.swift has no // snippet:begin … // snippet:end")
        let difference = Snippets.firstDifference(Snippets.dedented(blocks[0]), Snippets.dedented(region))
        #expect(
            difference == nil,
            "UsingTheLibrary.md's code differs from LibraryUsageTests.swift's snippet region; copy the tested code into the article. \(difference ?? "")"
        )
    }

    @Test func theLandingPageLinksTheArticle() throws {
        let landing = try String(contentsOfFile: Self.catalog + "/VLLMCtlKit.md", encoding: .utf8)
        #expect(landing.hasPrefix("# ``VLLMCtlKit``"))
        #expect(landing.contains("<doc:UsingTheLibrary>"))
    }

    @Test func extractionHelpers() {
        let markdown = """
            Text.

            ```swift
            let a = 1
            ```

              ```swift
                func f() {
                    g()
                }
              ```

            ```sh
            ls
            ```
            """
        #expect(
            Snippets.fencedBlocks(in: markdown, language: "swift") == [
                "let a = 1", "  func f() {\n      g()\n  }",
            ])
        #expect(Snippets.dedented("\n    a\n\n      b  \n    c\n") == "a\n\n  b\nc")
        let source = "x\n    // snippet:begin\n    y\n    // snippet:end\nz"
        #expect(Snippets.markedRegion(in: source) == "    y")
        #expect(Snippets.markedRegion(in: "no markers") == nil)
        #expect(Snippets.firstDifference("a\nb", "a\nb") == nil)
        #expect(Snippets.firstDifference("a\nb", "a\nc") == "Line 2: article `b`, tested code `c`.")
        #expect(Snippets.firstDifference("a", "a\nc") == "Line 2: article ``, tested code `c`.")
    }
}

/// Code in Markdown and Swift files, compared as text.
enum Snippets {
    /// The contents of each fenced block that opens with ```` ```language ````, without the
    /// indentation of its fence.
    static func fencedBlocks(in markdown: String, language: String) -> [String] {
        var blocks: [String] = []
        var current: [Substring]?
        var fenceIndent = 0
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop(while: { $0 == " " })
            if var lines = current {
                if trimmed.trimmingCharacters(in: .whitespaces) == "```" {
                    blocks.append(lines.joined(separator: "\n"))
                    current = nil
                } else {
                    let indent = line.prefix(while: { $0 == " " }).count
                    lines.append(line.dropFirst(min(indent, fenceIndent)))
                    current = lines
                }
            } else if trimmed.trimmingCharacters(in: .whitespaces) == "```" + language {
                fenceIndent = line.count - trimmed.count
                current = []
            }
        }
        return blocks
    }

    /// The lines between `// snippet:begin` and `// snippet:end`, nil without both markers.
    static func markedRegion(in source: String) -> String? {
        let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
        let marker = { (line: Substring, word: String) in
            line.trimmingCharacters(in: .whitespaces) == "// snippet:" + word
        }
        guard let begin = lines.firstIndex(where: { marker($0, "begin") }),
            let end = lines[begin...].firstIndex(where: { marker($0, "end") })
        else { return nil }
        return lines[(begin + 1)..<end].joined(separator: "\n")
    }

    /// `text` without trailing spaces, leading and trailing blank lines, and the indentation
    /// all its non-blank lines share.
    static func dedented(_ text: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            String($0.reversed().drop(while: { $0 == " " }).reversed())
        }
        while lines.first?.isEmpty == true { lines.removeFirst() }
        while lines.last?.isEmpty == true { lines.removeLast() }
        let common = lines.filter { !$0.isEmpty }.map { $0.prefix(while: { $0 == " " }).count }.min() ?? 0
        return lines.map { String($0.dropFirst(common)) }.joined(separator: "\n")
    }

    /// The first line where `article` and `tested` differ, in words; nil when they are equal.
    static func firstDifference(_ article: String, _ tested: String) -> String? {
        let a = article.split(separator: "\n", omittingEmptySubsequences: false)
        let b = tested.split(separator: "\n", omittingEmptySubsequences: false)
        for i in 0..<max(a.count, b.count) {
            let left = i < a.count ? a[i] : ""
            let right = i < b.count ? b[i] : ""
            if left != right || (i >= a.count) != (i >= b.count) {
                return "Line \(i + 1): article `\(left)`, tested code `\(right)`."
            }
        }
        return nil
    }
}
