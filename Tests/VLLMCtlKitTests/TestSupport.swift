import Foundation

@testable import VLLMCtlKit

/// The repository root, found from this file's path.
let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            return url.path
        }
    }
    fatalError("no Package.swift above \(#filePath)")
}()

let fixtures = repoRoot + "/Tests/VLLMCtlKitTests/Fixtures"

func fixture(_ name: String) throws -> String {
    try String(contentsOfFile: fixtures + "/" + name, encoding: .utf8)
}

/// Runs a program and returns (status, stdout, stderr).
@discardableResult
func sh(_ argv: [String], input: String? = nil) async throws -> CommandResult {
    try await LocalHost().run(argv, input: input, timeout: .seconds(60))
}

func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "vllmctl-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A deterministic generator for tests that need repeatable draws (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
