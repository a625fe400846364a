import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

/// Teardown of a deployment in login-node mode over a scripted Slurm: the loop is stopped
/// (its verifying command) before the stop mark and the cancel; a pid file whose token is not
/// the one vllmctl recorded stops nothing.
@Suite struct LoopTeardownTests {
    static let token = "abcdefghij0123456789abcdefghij01"

    /// Runs `teardown m` over a directory with a renewing job and the loop's files (`pidToken`
    /// in the pid file); returns the programs run, in order, and the outcomes.
    static func teardown(pidToken: String) async throws -> (argvs: [[String]], outcomes: [TeardownOutcome]) {
        let dir = try temporaryDirectory()
        try Data(#"{"renew": true, "renewFrom": "login"}"#.utf8).write(
            to: URL(fileURLWithPath: dir + "/" + DeploymentFiles.settings))
        try Data("4242 \(pidToken)\n".utf8).write(to: URL(fileURLWithPath: dir + "/" + RenewLoop.pidFile))
        try Data("\(token)\n".utf8).write(to: URL(fileURLWithPath: dir + "/" + RenewLoop.tokenFile))
        let argvs = Mutex<[[String]]>([])
        let host = ScriptedHost { argv in
            argvs.withLock { $0.append(argv) }
            switch argv[0] {
            case "squeue":
                let cancelled = argvs.withLock { $0.contains { $0[0] == "scancel" } }
                var j = job("10", "vllmctl-m", .running)
                j.workDir = dir
                return CommandResult(
                    status: 0, stdout: squeueOutput(cancelled ? [] : [j], for: argv), stderr: "")
            default:
                return CommandResult(status: 0, stdout: "", stderr: "")
            }
        }
        let teardown = try scriptedTeardown(host)
        let outcomes = await teardown.execute(try await teardown.plan(.named(["m"])))
        return (argvs.withLock { $0 }, outcomes)
    }

    @Test func theLoopIsStoppedBeforeTheChainIsCancelled() async throws {
        let (argvs, outcomes) = try await Self.teardown(pidToken: Self.token)
        let stop = try #require(
            argvs.firstIndex { $0.first == "bash" && $0.last?.hasSuffix(RenewLoop.script) == true })
        #expect(argvs[stop].suffix(3).first == "4242" && argvs[stop].contains(Self.token))
        let cancel = try #require(argvs.firstIndex { $0.first == "scancel" })
        #expect(stop < cancel)
        #expect(
            outcomes.contains {
                $0.succeeded && $0.message.contains("Stopped the renewal loop of m (pid 4242")
            },
            "\(outcomes.map(\.message))")
    }

    @Test func aPidFileWithAnotherTokenStopsNothing() async throws {
        let (argvs, outcomes) = try await Self.teardown(pidToken: "zzzzzzzzzz0123456789abcdefghij01")
        #expect(!argvs.contains { $0.first == "bash" }, "\(argvs)")
        #expect(argvs.contains { $0.first == "scancel" })
        #expect(
            outcomes.contains {
                !$0.succeeded && $0.message.contains("does not match the token vllmctl recorded")
            },
            "\(outcomes.map(\.message))")
    }
}
