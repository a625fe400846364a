import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

/// Teardown of a renewing deployment over a scripted Slurm: the stop mark is written before
/// the cancel, and a successor that appears during the teardown is cancelled too, and nothing
/// else is.
@Suite struct ChainTeardownTests {
    static func chainJob(_ id: String, _ name: String, _ dir: String, _ state: JobState = .running)
        -> JobSnapshot
    {
        var j = job(id, name, state)
        j.workDir = dir
        return j
    }

    @Test func aSuccessorSubmittedDuringTheTeardownIsCancelledToo() async throws {
        let dir = try temporaryDirectory()
        try Data(#"{"renew": true}"#.utf8).write(
            to: URL(fileURLWithPath: dir + "/" + DeploymentFiles.settings))
        let other = try temporaryDirectory()
        let cancels = Mutex<[[String]]>([])
        let markedBeforeCancel = Mutex(false)
        let host = ScriptedHost { argv in
            switch argv[0] {
            case "scancel":
                cancels.withLock { $0.append(argv) }
                if FileManager.default.fileExists(atPath: dir + "/" + Teardown.stopMark) {
                    markedBeforeCancel.withLock { $0 = true }
                }
                return CommandResult(status: 0, stdout: "", stderr: "")
            case "squeue":
                // Before the cancel: the job and its pending successor. After it: a successor
                // the dying job submitted meanwhile, and another deployment's job.
                let queue: [JobSnapshot]
                switch cancels.withLock({ $0.count }) {
                case 0:
                    queue = [
                        Self.chainJob("10", "vllmctl-m", dir),
                        Self.chainJob("11", "vllmctl-m", dir, .pending),
                        Self.chainJob("30", "vllmctl-x", other),
                    ]
                case 1:
                    queue = [
                        Self.chainJob("12", "vllmctl-m", dir, .pending),
                        Self.chainJob("30", "vllmctl-x", other),
                    ]
                default: queue = [Self.chainJob("30", "vllmctl-x", other)]
                }
                return CommandResult(status: 0, stdout: squeueOutput(queue, for: argv), stderr: "")
            default:
                return CommandResult(status: 0, stdout: "", stderr: "")
            }
        }
        let teardown = try scriptedTeardown(host)
        let plan = try await teardown.plan(.named(["m"]))
        #expect(plan.toCancel.map(\.jobID).sorted() == ["10", "11"])
        let outcomes = await teardown.execute(plan)
        #expect(markedBeforeCancel.withLock { $0 })
        let sent = cancels.withLock { $0 }
        #expect(sent.count == 2, "\(sent)")
        #expect(sent.last?.suffix(1) == ["12"], "\(sent)")
        #expect(!sent.joined().contains("30"))
        #expect(
            outcomes.contains {
                $0.succeeded && $0.message.contains("Cancelled job 12 (m), a successor submitted")
            },
            "\(outcomes.map(\.message))")
    }

    @Test func aDeploymentThatDoesNotRenewGetsNoStopMark() async throws {
        let dir = try temporaryDirectory()
        try Data(#"{"gpus": 1}"#.utf8).write(to: URL(fileURLWithPath: dir + "/" + DeploymentFiles.settings))
        let cancelled = Mutex(false)
        let host = ScriptedHost { argv in
            if argv[0] == "scancel" { cancelled.withLock { $0 = true } }
            let queue = cancelled.withLock { $0 } ? [] : [Self.chainJob("10", "vllmctl-p", dir)]
            return CommandResult(
                status: 0, stdout: argv[0] == "squeue" ? squeueOutput(queue, for: argv) : "", stderr: "")
        }
        let teardown = try scriptedTeardown(host)
        _ = await teardown.execute(try await teardown.plan(.named(["p"])))
        #expect(cancelled.withLock { $0 })
        #expect(!FileManager.default.fileExists(atPath: dir + "/" + Teardown.stopMark))
    }
}
