import Foundation
import Synchronization

@testable import VLLMCtlKit

/// Answers Slurm's commands from a script and records every argv; files are local.
package final class ScriptedHost: ClusterHost {
    private let calls = Mutex<[[String]]>([])
    package let answer: @Sendable ([String]) throws -> CommandResult

    package init(_ answer: @escaping @Sendable ([String]) throws -> CommandResult) { self.answer = answer }

    package var displayName: String { "scripted" }
    package var argvs: [[String]] { calls.withLock { $0 } }
    package var programs: [String] { argvs.compactMap(\.first) }

    package func run(_ argv: [String], input: String?, timeout: Duration) async throws -> CommandResult {
        calls.withLock { $0.append(argv) }
        return try answer(argv)
    }
    package func readFile(_ path: String) async throws -> Data? { try await LocalHost().readFile(path) }
    package func writeFileAtomically(_ data: Data, to path: String, mode: Int) async throws {
        try await LocalHost().writeFileAtomically(data, to: path, mode: mode)
    }
    package func makeDirectory(_ path: String, mode: Int) async throws {
        try await LocalHost().makeDirectory(path, mode: mode)
    }
    package func makeNewDirectory(_ path: String, mode: Int) async throws {
        try await LocalHost().makeNewDirectory(path, mode: mode)
    }
    package func removeFile(_ path: String) async throws { try await LocalHost().removeFile(path) }
    package func homeDirectory() async throws -> String { NSHomeDirectory() }
}
