import Foundation
import TestSupport
import Testing

@testable import VLLMCtlCLI
@testable import VLLMCtlKit

/// `keep: N`: which failed replicas are resubmitted, and when the keeper stops.
@Suite struct ReplicaKeepDecisionTests {
    func ended(_ id: String, _ name: String, _ state: JobState) -> JobSnapshot {
        JobSnapshot(jobID: id, name: name, user: me, state: state, workDir: "/work/\(id)")
    }

    func decide(
        queue: [JobSnapshot], history: [JobSnapshot], awaiting: Set<String> = [], replaced: Set<String> = [],
        gaveUp: Set<Int> = [], keep: Int = 2, max: Int = 3
    ) -> KeepDecision {
        ReplicaKeeper.decide(
            queue: queue, history: history, awaiting: awaiting, replaced: replaced, gaveUp: gaveUp,
            policy: KeepPolicy(keep: keep, maxResubmissions: max, window: 3600))
    }

    @Test func aFailedReplicaIsResubmittedUnderItsOwnNumber() {
        let failed = ended("12", "vllmctl-sim@2", .failed)
        let d = decide(queue: [job("11", "vllmctl-sim@1")], history: [failed], awaiting: ["12"])
        #expect(d.actions == [.resubmit(replica: 2, failed: failed, attempt: 1)])
        #expect(!d.unsettled)
        // Every state in which the job, not someone's decision, ended it.
        for state in [JobState.nodeFail, .timeout, .outOfMemory, .bootFail, .deadline, .preempted] {
            let other = ended("12", "vllmctl-sim@2", state)
            #expect(
                decide(queue: [job("11", "vllmctl-sim@1")], history: [other]).actions == [
                    .resubmit(replica: 2, failed: other, attempt: 1)
                ], "\(state)")
        }
        // A deployment of one server is its unnumbered job, replica 1.
        let one = ended("5", "vllmctl-solo", .nodeFail)
        #expect(
            decide(queue: [], history: [one], keep: 1).actions == [
                .resubmit(replica: 1, failed: one, attempt: 1)
            ])
    }

    @Test func cancelledAndCompletedJobsAreNeverReplaced() {
        for state in [JobState.cancelled, .completed] {
            let d = decide(
                queue: [job("11", "vllmctl-sim@1")], history: [ended("12", "vllmctl-sim@2", state)])
            #expect(d.actions.isEmpty, "\(state)")
        }
        // Teardown: everything cancelled, nothing in the queue.
        let gone = decide(
            queue: [],
            history: [ended("11", "vllmctl-sim@1", .cancelled), ended("12", "vllmctl-sim@2", .cancelled)])
        #expect(gone.actions.isEmpty)
    }

    @Test func nothingIsDoneWhileEnoughAreUpOrTheReplicaIsBack() {
        let failed = ended("13", "vllmctl-sim@3", .failed)
        // Three replicas, keep 2: one failing leaves two up.
        #expect(
            decide(queue: [job("11", "vllmctl-sim@1"), job("12", "vllmctl-sim@2")], history: [failed]).actions
                .isEmpty)
        // The failed replica's number has a job in the queue again (a replacement, pending).
        let back = decide(
            queue: [job("11", "vllmctl-sim@1"), job("14", "vllmctl-sim@3", .pending)], history: [failed],
            keep: 3)
        #expect(back.actions.isEmpty)
        // Already replaced (by this keeper, or claimed by another), or given up on.
        #expect(
            decide(queue: [job("11", "vllmctl-sim@1")], history: [failed], replaced: ["13"]).actions.isEmpty)
        #expect(decide(queue: [job("11", "vllmctl-sim@1")], history: [failed], gaveUp: [3]).actions.isEmpty)
        // Two jobs of one replica in the queue (a renewal handover) are one replica up.
        let handover = [job("11", "vllmctl-sim@1"), job("15", "vllmctl-sim@1", .pending)]
        #expect(
            decide(queue: handover, history: [failed], keep: 2).actions == [
                .resubmit(replica: 3, failed: failed, attempt: 1)
            ])
        // The latest job of the number counts: an old failure replaced by a job cancelled since.
        let cancelledLater = ended("20", "vllmctl-sim@3", .cancelled)
        #expect(
            decide(queue: [job("11", "vllmctl-sim@1")], history: [failed, cancelledLater]).actions.isEmpty)
    }

    @Test func aReplicaThatKeepsFailingIsGivenUpAfterTheLimit() {
        let history = ["21", "22", "23"].map { ended($0, "vllmctl-sim@2", .failed) }
        let live = [job("11", "vllmctl-sim@1")]
        // The original and two resubmissions failed: the third is allowed.
        #expect(
            decide(queue: live, history: history).actions == [
                .resubmit(replica: 2, failed: history[2], attempt: 3)
            ])
        // And the third failed too: left down.
        let fourth = ended("24", "vllmctl-sim@2", .outOfMemory)
        #expect(
            decide(queue: live, history: history + [fourth]).actions == [
                .giveUp(replica: 2, failed: fourth, failures: 4)
            ])
        // A limit of 0: never resubmitted.
        #expect(
            decide(queue: live, history: [history[0]], max: 0).actions == [
                .giveUp(replica: 2, failed: history[0], failures: 1)
            ])
    }

    @Test func noMoreAreResubmittedThanAreMissing() {
        let history = [
            ended("11", "vllmctl-sim@1", .failed), ended("12", "vllmctl-sim@2", .failed),
            ended("13", "vllmctl-sim@3", .failed),
        ]
        let d = decide(queue: [], history: history, keep: 2)
        #expect(
            d.actions == [
                .resubmit(replica: 1, failed: history[0], attempt: 1),
                .resubmit(replica: 2, failed: history[1], attempt: 1),
            ])
    }

    @Test func aJobThatLeftTheQueueWithoutAFinalStateIsWaitedFor() {
        // squeue no longer lists 12, and sacct still says RUNNING (slurmdbd catching up): can't tell.
        let d = decide(
            queue: [job("11", "vllmctl-sim@1")], history: [ended("12", "vllmctl-sim@2", .running)],
            awaiting: ["12"])
        #expect(d.actions.isEmpty)
        #expect(d.unsettled)
        // Not in sacct at all yet: the same.
        #expect(decide(queue: [job("11", "vllmctl-sim@1")], history: [], awaiting: ["12"]).unsettled)
        // Not awaited (it left before the keeper's first look), and sacct still says RUNNING: the
        // same, not "nothing to do".
        let lagging = decide(
            queue: [job("11", "vllmctl-sim@1")], history: [ended("12", "vllmctl-sim@2", .running)])
        #expect(lagging.actions.isEmpty)
        #expect(lagging.unsettled)
    }
}

/// `scale NAME N --keep` and the keepers of tunnel and gateway, over a scripted cluster.
@Suite struct ReplicaKeeperTests {
    /// A failed replica's directory: its settings and key, as deploy left them.
    func failedDirectory(_ h: CommandHarness, _ name: String) throws -> String {
        let dir = h.dir + "/work/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var settings = DeploySettings()
        settings.model = "Qwen/Qwen2.5-0.5B-Instruct"
        settings.servedName = "sim"
        settings.partition = "debug"
        settings.gpus = 1
        settings.replicas = 2
        settings.keep = 2
        try JSONEncoder().encode(settings).write(
            to: URL(fileURLWithPath: dir + "/" + DeploymentFiles.settings))
        try Data(testKey.utf8).write(to: URL(fileURLWithPath: dir + "/" + DeploymentFiles.apiKey))
        return dir
    }

    /// Replica 2 (job 12) fails while `scale sim 2 --keep` keeps it: it is resubmitted once as
    /// `sim@2` with the deployment's settings and key, and the keeper stops once the
    /// deployment is torn down.
    @Test func scaleKeepResubmitsAFailedReplicaOnceAndStopsWhenNothingIsLeft() async throws {
        let phase = Locked(0)  // 0: both run; 1: 12 failed; 2: replacement 13 pending; 3: torn down
        let submitted = Locked<[[String]]>([])
        let dirs = Locked<[String: String]>([:])
        let host = ScriptedHost { argv in
            let ok = { (out: String) in CommandResult(status: 0, stdout: out, stderr: "") }
            let d = dirs.value
            let one = JobSnapshot(
                jobID: "11", name: "vllmctl-sim@1", user: me, state: .running, workDir: d["11"] ?? "")
            var two = JobSnapshot(
                jobID: "12", name: "vllmctl-sim@2", user: me, state: .running, workDir: d["12"] ?? "")
            var three = JobSnapshot(
                jobID: "13", name: "vllmctl-sim@2", user: me, state: .pending, workDir: "")
            switch argv.first {
            case "id": return ok(me + "\n")
            case "squeue":
                let p = phase.value
                if p == 0 { phase.withLock { $0 = 1 } }
                let listed = [[one, two], [one], [one, three], []][p]
                if p == 2 { phase.withLock { $0 = 3 } }
                return ok(squeueOutput(listed, for: argv))
            case "sacct":
                two.state = .failed
                var rows = [two]
                if phase.value == 3 {
                    var cancelled = one
                    cancelled.state = .cancelled
                    three.state = .cancelled
                    rows += [cancelled, three]
                }
                return ok(sacctOutput(rows, for: argv))
            case "sbatch":
                submitted.withLock { $0.append(argv) }
                phase.withLock { $0 = 2 }
                return ok("13\n")
            default: return CommandResult(status: 127, stdout: "", stderr: "unexpected \(argv)")
            }
        }
        let h = try CommandHarness(host: host)
        let failedDir = try failedDirectory(h, "sim-r2")
        dirs.withLock { $0 = ["11": h.dir + "/work/sim-r1", "12": failedDir] }
        try await h.run(["scale", "sim", "2", "--keep"])

        #expect(submitted.value.count == 1)
        let script = try #require(submitted.value.first?.last)
        #expect(script.hasPrefix(h.dir + "/work/sim-") && script.contains("-r2/"), "\(script)")
        // The replacement has the deployment's key and is replica 2 again.
        let record = try #require(h.records.all(cluster: "test").first { $0.jobID == "13" })
        #expect(record.replica == 2)
        #expect(record.apiKey == testKey)
        let scriptText = try String(contentsOfFile: script, encoding: .utf8)
        #expect(scriptText.contains("vllmctl-sim@2"))
        #expect(!scriptText.contains(testKey))
        // The failed job is claimed, so that no other keeper replaces it too.
        var isDir: ObjCBool = false
        #expect(
            FileManager.default.fileExists(atPath: failedDir + "/replaced-12", isDirectory: &isDir)
                && isDir.boolValue)
        let err = h.terminal.stderr
        #expect(err.contains("keep: sim@2 (job 12) ended FAILED; resubmitted it as job 13"), "\(err)")
        #expect(err.contains("keep: no job of `sim` is left"), "\(err)")
    }

    /// A scripted cluster for a keeper: `script` answers first (nil: not its call); then `id`,
    /// and `test -d` and `rmdir` run on this machine's files (where the harness keeps them).
    func keeperHost(_ script: @escaping @Sendable ([String]) -> CommandResult?) -> ScriptedHost {
        ScriptedHost { argv in
            if let answer = script(argv) { return answer }
            switch argv.first {
            case "id": return CommandResult(status: 0, stdout: me + "\n", stderr: "")
            case "test":
                let exists = FileManager.default.fileExists(atPath: argv[2])
                return CommandResult(status: exists ? 0 : 1, stdout: "", stderr: "")
            case "rmdir":
                try? FileManager.default.removeItem(atPath: argv[1])
                return CommandResult(status: 0, stdout: "", stderr: "")
            default: return CommandResult(status: 127, stdout: "", stderr: "unexpected \(argv)")
            }
        }
    }

    /// A keeper of `name` over the harness's cluster (its config written), on `clock` when given.
    func keeper(
        _ h: CommandHarness, _ name: String, _ policy: KeepPolicy, clock: SteppingClock? = nil
    ) throws -> ReplicaKeeper {
        try h.writeConfig()
        let cluster = try h.context.cluster(ClusterOptions.parse([]))
        var context = cluster.context
        if let clock { context.clock = clock }
        return ReplicaKeeper(
            scaler: Scaler(
                deployer: Deployer(
                    context: context, config: cluster.config, profile: cluster.profile,
                    templates: h.context.templates)),
            name: name, policy: policy, onEvent: { _ in })
    }

    /// sacct's answer: job 12, replica 2 of `sim`, ended in `state`, its directory `dir`.
    func failedReplica2(_ argv: [String], _ state: JobState, dir: String) -> CommandResult {
        let failed = JobSnapshot(jobID: "12", name: "vllmctl-sim@2", user: me, state: state, workDir: dir)
        return CommandResult(status: 0, stdout: sacctOutput([failed], for: argv), stderr: "")
    }

    /// A scripted cluster where replica 2 of `sim` (job 12, its directory written) ended in
    /// `state()` (asked at each sacct; nil: sacct does not list it), and sbatch submits job 13;
    /// with the count of sbatches.
    func replica2Cluster(
        _ state: @escaping @Sendable () -> JobState?
    ) throws -> (CommandHarness, Locked<Int>) {
        let sbatches = Locked(0)
        let dir = Locked("")
        let host = keeperHost { argv in
            switch argv.first {
            case "sacct":
                guard let state = state() else { return CommandResult(status: 0, stdout: "", stderr: "") }
                return failedReplica2(argv, state, dir: dir.value)
            case "sbatch":
                sbatches.withLock { $0 += 1 }
                return CommandResult(status: 0, stdout: "13\n", stderr: "")
            default: return nil
            }
        }
        let h = try CommandHarness(host: host)
        dir.withLock { $0 = (try? failedDirectory(h, "sim-r2")) ?? "" }
        return (h, sbatches)
    }

    /// Two keepers of one deployment (a tunnel and a gateway): the failed job is replaced once.
    @Test func aSecondKeeperFindsTheFailedJobClaimed() async throws {
        let (h, sbatches) = try replica2Cluster { .failed }
        let queue = [job("11", "vllmctl-sim@1")]
        let first = try keeper(h, "sim", KeepPolicy(keep: 2))
        let second = try keeper(h, "sim", KeepPolicy(keep: 2))
        let a = await first.round(queue: queue)
        let b = await second.round(queue: queue)
        #expect(sbatches.value == 1)
        #expect(a.count == 1 && "\(a[0])".contains("resubmitted it as job 13"), "\(a)")
        #expect(b.count == 1 && "\(b[0])".contains("was already replaced by another vllmctl"), "\(b)")
        // The first remembers it replaced it: no second attempt, no sbatch.
        _ = await first.round(queue: queue + [job("13", "vllmctl-sim@2", .pending)])
        _ = await first.round(queue: queue)
        #expect(sbatches.value == 1)
    }

    /// A replacement that fails before any squeue lists it (and before sacct knows it) is
    /// still waited for, judged, and counted against the limit.
    @Test func aReplacementThatFailsUnseenIsStillJudged() async throws {
        let sbatches = Locked(0)
        let sacctCalls = Locked(0)
        let dir = Locked("")
        let host = keeperHost { argv in
            let ok = { (out: String) in CommandResult(status: 0, stdout: out, stderr: "") }
            switch argv.first {
            case "squeue": return ok(squeueOutput([], for: argv))
            case "sacct":
                let call = sacctCalls.withLock {
                    $0 += 1; return $0
                }
                let failed = { (id: String) in
                    JobSnapshot(jobID: id, name: "vllmctl-solo", user: me, state: .failed, workDir: dir.value)
                }
                // The first replacement (20) reaches sacct only on the third call.
                return ok(sacctOutput(call < 3 ? [failed("10")] : [failed("10"), failed("20")], for: argv))
            case "sbatch":
                let n = sbatches.withLock {
                    $0 += 1; return $0
                }
                return ok("\(n * 10 + 10)\n")
            default: return nil
            }
        }
        let h = try CommandHarness(host: host)
        dir.withLock { $0 = (try? failedDirectory(h, "solo")) ?? "" }
        let keeper = try keeper(h, "solo", KeepPolicy(keep: 1, maxResubmissions: 1, window: 600))
        var events: [KeepEvent] = []
        for _ in 0..<5 { events += await keeper.round() }
        #expect(sbatches.value == 1, "\(events)")
        #expect(
            events.contains {
                if case .gaveUp(_, let failed, 2, _) = $0 { failed.jobID == "20" } else { false }
            }, "\(events)")
        #expect(events.contains(.nothingLeft(name: "solo")), "\(events)")
    }

    /// A replica's job that left the queue before the keeper's first round, while sacct still
    /// says RUNNING, is asked about again until sacct says how it ended (then replaced); one
    /// whose sacct record never ends is given up on after ``ReplicaKeeper/settleLimit``, so that
    /// sacct is not asked every round for good.
    @Test func aJobThatLeftBeforeTheFirstRoundIsJudgedOnceSacctCatchesUp() async throws {
        let sacctCalls = Locked(0)
        let endsAfter = Locked(3)
        let (h, sbatches) = try replica2Cluster {
            let call = sacctCalls.withLock {
                $0 += 1; return $0
            }
            return call < endsAfter.value ? .running : .failed
        }
        let queue = [job("11", "vllmctl-sim@1")]
        let caughtUp = try keeper(h, "sim", KeepPolicy(keep: 2))
        var events: [KeepEvent] = []
        for _ in 0..<3 { events += await caughtUp.round(queue: queue) }
        #expect(sacctCalls.value == 3)
        #expect(sbatches.value == 1, "\(events)")
        #expect(
            events.contains { "\($0)".contains("(job 12) ended FAILED; resubmitted it as job 13") },
            "\(events)")

        // sacct says RUNNING for good: asked while within the limit, then no more.
        sacctCalls.withLock { $0 = 0 }
        endsAfter.withLock { $0 = .max }
        let clock = SteppingClock(t0)
        let stuck = try keeper(h, "sim", KeepPolicy(keep: 2), clock: clock)
        for _ in 0..<3 { _ = await stuck.round(queue: queue) }
        #expect(sacctCalls.value == 3)
        try await clock.sleep(seconds: ReplicaKeeper.settleLimit + 1)
        for _ in 0..<3 { _ = await stuck.round(queue: queue) }
        #expect(sacctCalls.value == 4)
        #expect(sbatches.value == 1)
    }

    /// A replica's job that left the queue before the keeper's first round, and that sacct
    /// does not list at all yet (slurmdbd behind): with the queue unchanged, sacct is asked
    /// again every ``ReplicaKeeper/recheckSeconds`` while a replica is missing, and the job is
    /// replaced once sacct lists it (CI's KeepTests: the keeper settled on an empty history
    /// and never asked again).
    @Test func aFailedJobThatSacctListsLateIsStillReplaced() async throws {
        let sacctCalls = Locked(0)
        let (h, sbatches) = try replica2Cluster {
            let call = sacctCalls.withLock {
                $0 += 1; return $0
            }
            return call < 3 ? nil : .failed
        }
        let clock = SteppingClock(t0)
        let keeper = try keeper(h, "sim", KeepPolicy(keep: 2), clock: clock)
        let queue = [job("11", "vllmctl-sim@1")]
        var events: [KeepEvent] = []
        // Every 5 s (a refresh): sacct at 0 s, then once per 30 s.
        for _ in 0..<13 {
            events += await keeper.round(queue: queue)
            try await clock.sleep(seconds: 5)
        }
        #expect(sacctCalls.value == 3, "\(events)")
        #expect(sbatches.value == 1, "\(events)")
        #expect(
            events.contains { "\($0)".contains("(job 12) ended FAILED; resubmitted it as job 13") },
            "\(events)")
    }

    /// sbatch refusing (a QOS limit) is tried again a few times, then no more: no loop.
    @Test func aRefusedSubmissionIsTriedAFewTimesThenNoMore() async throws {
        let sbatches = Locked(0)
        let dir = Locked("")
        let host = keeperHost { argv in
            switch argv.first {
            case "sacct": return failedReplica2(argv, .nodeFail, dir: dir.value)
            case "sbatch":
                sbatches.withLock { $0 += 1 }
                return CommandResult(
                    status: 1, stdout: "", stderr: "sbatch: error: QOSMaxSubmitJobPerUserLimit")
            default: return nil
            }
        }
        let h = try CommandHarness(host: host)
        dir.withLock { $0 = (try? failedDirectory(h, "sim-r2")) ?? "" }
        let keeper = try keeper(h, "sim", KeepPolicy(keep: 2))
        var events: [KeepEvent] = []
        for _ in 0..<6 { events += await keeper.round(queue: [job("11", "vllmctl-sim@1")]) }
        #expect(sbatches.value == ReplicaKeeper.maxSubmitFailures, "\(events)")
        let lines = events.map(\.description)
        #expect(lines.filter { $0.contains("trying again next round") }.count == 2, "\(lines)")
        #expect(lines.last?.contains("after 3 failed tries it is not tried again") == true, "\(lines)")
        #expect(lines.allSatisfy { $0.contains("QOSMaxSubmitJobPerUserLimit") }, "\(lines)")
        // The claim was given back each time: another keeper may still try.
        #expect(!FileManager.default.fileExists(atPath: dir.value + "/" + ReplicaKeeper.claim(jobID: "12")))
    }

    /// squeue or sacct failing is "can't tell": nothing is submitted.
    @Test func nothingIsResubmittedWhenTheSchedulerCannotBeAsked() async throws {
        let failing = Locked("squeue")
        let host = keeperHost { argv in
            switch argv.first {
            case "sbatch": return CommandResult(status: 0, stdout: "13\n", stderr: "")
            case failing.value: return CommandResult(status: 1, stdout: "", stderr: "slurm_load_jobs error")
            case "squeue":
                return CommandResult(
                    status: 0, stdout: squeueOutput([job("11", "vllmctl-sim@1")], for: argv), stderr: "")
            default: return nil
            }
        }
        let keeper = try keeper(try CommandHarness(host: host), "sim", KeepPolicy(keep: 2))
        let noSqueue = await keeper.round()
        #expect(noSqueue.count == 1 && "\(noSqueue[0])".contains("squeue failed"), "\(noSqueue)")
        failing.withLock { $0 = "sacct" }
        let noSacct = await keeper.round()
        #expect(noSacct.count == 1 && "\(noSacct[0])".contains("sacct failed"), "\(noSacct)")
        #expect(!host.programs.contains("sbatch"))
    }

    @Test func keepIsASettingWithItsLimits() async throws {
        #expect(throws: (any Error).self) {
            try VLLMCtlCommand.parseAsRoot(["deploy", "sim", "--keep", "x"])
        }
        let h = try CommandHarness(host: schedulerHost([]))
        let zero = await #expect(throws: VLLMCtlError.self) {
            try await h.run(["deploy", "sim", "--keep", "0", "--dry-run"])
        }
        #expect("\(zero.map { "\($0)" } ?? "")".contains("--keep is 0"))
        _ = try VLLMCtlCommand.parseAsRoot(["scale", "sim", "2", "--keep"])
    }
}
