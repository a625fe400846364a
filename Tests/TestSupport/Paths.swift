import Foundation

@testable import VLLMCtlKit

/// The repository root, found from this file's path.
package let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            return url.path
        }
    }
    fatalError("no Package.swift above \(#filePath)")
}()

/// The unit tests' fixture files (squeue/sacct output captured from real Slurm, golden scripts).
package let fixtures = repoRoot + "/Tests/VLLMCtlKitTests/Fixtures"

package func fixture(_ name: String) throws -> String {
    try String(contentsOfFile: fixtures + "/" + name, encoding: .utf8)
}

/// A new, empty directory under the system's temporary directory.
package func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "vllmctl-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// curl's `-H @FILE` argument for `Authorization: Bearer KEY`: the header in a new 0600 file,
/// so that the key is never on a command line (every user of a cluster can read argv).
package func bearerHeaderFile(_ key: String) throws -> String {
    let path = try temporaryDirectory() + "/authorization"
    try LocalFiles.writeAtomically(Data("Authorization: Bearer \(key)\n".utf8), to: path, mode: 0o600)
    return "@" + path
}

/// `key` in a new 0600 file, for a client that reads its key from a file.
package func writtenKeyFile(_ key: String) throws -> String {
    let path = try temporaryDirectory() + "/key"
    try LocalFiles.writeAtomically(Data(key.utf8), to: path, mode: 0o600)
    return path
}

/// Runs a program (argv, no shell) and returns its status, stdout and stderr.
@discardableResult
package func sh(_ argv: [String], input: String? = nil, timeout: Duration = .seconds(120)) async throws
    -> CommandResult
{
    try await LocalHost().run(argv, input: input, timeout: timeout)
}

/// Runs `body` and returns the error's text (nil when it did not throw).
package func thrownText(_ body: () async throws -> some Any) async -> String? {
    do {
        _ = try await body()
        return nil
    } catch {
        return "\(error)"
    }
}

/// A deterministic generator for tests that need repeatable draws (SplitMix64).
package struct SeededGenerator: RandomNumberGenerator {
    package var state: UInt64
    package init(state: UInt64) { self.state = state }
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
