import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct TemplateSearchTests {
    func make(_ root: String, _ dir: String) throws {
        try FileManager.default.createDirectory(atPath: root + dir, withIntermediateDirectories: true)
        try "x".write(
            toFile: root + dir + "/" + ScriptTemplates.defaultName + ScriptTemplates.fileSuffix,
            atomically: true,
            encoding: .utf8)
    }

    /// Only the documented places (issue 12 item 16): a `templates/` folder in some writable
    /// ancestor of the binary could plant a runtime partial that reads keys.
    @Test func onlyTheDocumentedPlacesAreSearched() throws {
        let root = try temporaryDirectory()
        try make(root, "/a/templates")
        #expect(ScriptTemplates.builtInDirectory(executable: root + "/a/b/c/bin/vllmctl") == nil)
        try make(root, "/checkout/templates")
        #expect(
            ScriptTemplates.builtInDirectory(executable: root + "/checkout/.build/x86_64/debug/vllmctl")
                == root + "/checkout/templates")
        try make(root, "/prefix/share/vllmctl/templates")
        #expect(
            ScriptTemplates.builtInDirectory(executable: root + "/prefix/bin/vllmctl")
                == root + "/prefix/share/vllmctl/templates")
    }
}
