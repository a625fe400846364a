import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct TeardownSchedulerFailureTests {
    func teardown(_ host: ScriptedHost, store: DeploymentStore, http: Int = 200) -> Teardown {
        let context = Context(
            host: host, http: FixedHTTP(status: http), clock: SteppingClock(t0), terminal: QuietTerminal(),
            records: store, environment: [:])
        return Teardown(context: context, profile: ClusterProfile(name: "local"), user: me)
    }

    @Test func aFailingSqueueCancelsNothing() async throws {
        let store = DeploymentStore(directory: try temporaryDirectory())
        try store.save(record("10", "good"))
        for scope in [TeardownScope.all, .stale(StaleCriteria()), .named(["10"])] {
            let host = ScriptedHost { argv in
                if argv[0] == "squeue" {
                    return CommandResult(
                        status: 1, stdout: "", stderr: "squeue: error: Unable to contact slurm controller")
                }
                return CommandResult(status: 0, stdout: "", stderr: "")
            }
            let error = await #expect(throws: VLLMCtlError.self) {
                _ = try await teardown(host, store: store).plan(scope)
            }
            #expect("\(error.map { "\($0)" } ?? "")".contains("Nothing was cancelled"))
            #expect("\(error.map { "\($0)" } ?? "")".contains("Unable to contact"))
            #expect(!host.programs.contains("scancel"))
        }
    }

    @Test func aTimeoutOrAFailingSacctCancelsNothing() async throws {
        let store = DeploymentStore(directory: try temporaryDirectory())
        try store.save(record("20", "orphan"))
        let sacctFails = ScriptedHost { argv in
            switch argv[0] {
            case "squeue":
                return CommandResult(
                    status: 0, stdout: squeueOutput([job("10", "vllmctl-good")], for: argv), stderr: "")
            case "sacct":
                return CommandResult(
                    status: 1, stdout: "", stderr: "sacct: error: slurmdbd: connection refused")
            default: return CommandResult(status: 0, stdout: "", stderr: "")
            }
        }
        await #expect(throws: VLLMCtlError.self) {
            _ = try await teardown(sacctFails, store: store).plan(.all)
        }
        #expect(!sacctFails.programs.contains("scancel"))

        let squeueHangs = ScriptedHost { argv in
            if argv[0] == "squeue" { throw VLLMCtlError.commandTimedOut(argv: argv, seconds: 30) }
            return CommandResult(status: 0, stdout: "", stderr: "")
        }
        let error = await #expect(throws: VLLMCtlError.self) {
            _ = try await teardown(squeueHangs, store: store).plan(.all)
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("did not answer"))
        #expect(!squeueHangs.programs.contains("scancel"))
    }

    @Test func oneSqueueForTheUserThenOneScancelForOurJobsOnly() async throws {
        let dir = try temporaryDirectory()
        let store = DeploymentStore(directory: dir + "/records")
        var rec = record("10", "good", dir: dir)
        try FileManager.default.createDirectory(atPath: rec.deployDir, withIntermediateDirectories: true)
        for file in [DeploymentFiles.infoText, DeploymentFiles.infoJSON] {
            try "x".write(toFile: rec.deployDir + "/" + file, atomically: true, encoding: .utf8)
        }
        rec.phase = .ready
        try store.save(rec)
        let cancelled = Locked(false)
        let host = ScriptedHost { argv in
            switch argv[0] {
            case "squeue":
                let lines =
                    cancelled.value
                    ? [job("12", "sleep"), job("13", "vllmctl-theirs", user: "bob")]
                    : [
                        job("10", "vllmctl-good"), job("12", "sleep"),
                        job("13", "vllmctl-theirs", user: "bob"),
                    ]
                return CommandResult(status: 0, stdout: squeueOutput(lines, for: argv), stderr: "")
            case "scancel":
                cancelled.withLock { $0 = true }
                return CommandResult(status: 0, stdout: "", stderr: "")
            default:
                return CommandResult(status: 0, stdout: "", stderr: "")
            }
        }
        let t = teardown(host, store: store)
        let plan = try await t.plan(.all)
        #expect(
            host.argvs.count == 1 && host.argvs[0][0] == "squeue" && host.argvs[0].last == "--user=\(me)",
            "one squeue for all of the user's jobs, nothing else before deciding")
        let outcomes = await t.execute(plan)
        #expect(host.argvs.filter { $0[0] == "scancel" } == [["scancel", "--", "10"]])
        // Ownership asked again right before the cancel, for that job only.
        #expect(host.argvs[1][0] == "squeue" && host.argvs[1].contains("--jobs=10"))
        #expect(outcomes.allSatisfy { $0.succeeded })
        #expect(store.find("10", cluster: "local")?.phase == .ended)
        #expect(!FileManager.default.fileExists(atPath: rec.infoFile))
        #expect(!FileManager.default.fileExists(atPath: rec.deployDir + "/" + DeploymentFiles.infoJSON))

        // Again: nothing live, the record ended; harmless and said so.
        let again = try await t.plan(.named(["good"]))
        #expect(again.actions.map(\.kind) == [.alreadyDone])
        let repeated = await t.execute(again)
        #expect(repeated.allSatisfy { $0.succeeded })
        #expect(host.argvs.filter { $0[0] == "scancel" }.count == 1)
    }

    /// Between the plan and the cancel the job changed (Slurm reused the id, or it was renamed):
    /// the check right before scancel catches it, and nothing is cancelled.
    @Test func aJobThatChangedSinceThePlanIsNotCancelled() async throws {
        let store = DeploymentStore(directory: try temporaryDirectory())
        try store.save(record("10", "good"))
        let calls = Locked(0)  // squeue calls so far
        let host = ScriptedHost { argv in
            guard argv[0] == "squeue" else { return CommandResult(status: 0, stdout: "", stderr: "") }
            let before = calls.withLock { n in
                defer { n += 1 }; return n
            }
            let jobs = before == 0 ? [job("10", "vllmctl-good")] : [job("10", "not-vllmctl")]
            return CommandResult(status: 0, stdout: squeueOutput(jobs, for: argv), stderr: "")
        }
        let t = teardown(host, store: store)
        let plan = try await t.plan(.all)
        #expect(plan.toCancel.map(\.jobID) == ["10"])
        let outcomes = await t.execute(plan)
        #expect(!host.programs.contains("scancel"))
        #expect(outcomes.count == 1 && !outcomes[0].succeeded)
        #expect(outcomes[0].message.contains("Did not cancel job 10"), "\(outcomes[0].message)")
        #expect(store.find("10", cluster: "local")?.phase != .ended)
    }

    /// The check right before scancel fails: nothing is cancelled.
    @Test func aFailingCheckBeforeTheCancelCancelsNothing() async throws {
        let store = DeploymentStore(directory: try temporaryDirectory())
        try store.save(record("10", "good"))
        let calls = Locked(0)  // squeue calls so far
        let host = ScriptedHost { argv in
            guard argv[0] == "squeue" else { return CommandResult(status: 0, stdout: "", stderr: "") }
            let before = calls.withLock { n in
                defer { n += 1 }; return n
            }
            if before > 0 {
                return CommandResult(status: 1, stdout: "", stderr: "squeue: error: timeout")
            }
            return CommandResult(
                status: 0, stdout: squeueOutput([job("10", "vllmctl-good")], for: argv), stderr: "")
        }
        let t = teardown(host, store: store)
        let outcomes = await t.execute(try await t.plan(.all))
        #expect(!host.programs.contains("scancel"))
        #expect(outcomes.allSatisfy { !$0.succeeded })
        #expect(outcomes.first?.message.contains("nothing was cancelled") == true, "\(outcomes)")
    }

    @Test func aJobSlurmDoesNotEndIsReportedAndItsRecordKept() async throws {
        let store = DeploymentStore(directory: try temporaryDirectory())
        try store.save(record("10", "stuck"))
        let host = ScriptedHost { argv in
            if argv[0] == "squeue" {
                return CommandResult(
                    status: 0, stdout: squeueOutput([job("10", "vllmctl-stuck")], for: argv), stderr: "")
            }
            return CommandResult(
                status: 1, stdout: "",
                stderr: "scancel: error: Kill job error on job id 10: Access/permission denied")
        }
        var t = teardown(host, store: store)
        t.endWait = 3
        let outcomes = await t.execute(try await t.plan(.named(["stuck"])))
        #expect(outcomes.count == 1)
        #expect(outcomes[0].succeeded == false)
        #expect(outcomes[0].message.contains("permission denied"))
        #expect(store.find("10", cluster: "local")?.phase == .ready)
    }

    @Test func theGraceRunsFromTheFirstUnhealthyAnswer() async throws {
        let store = DeploymentStore(directory: try temporaryDirectory())
        try store.save(record("10", "sick"))
        let host = ScriptedHost { argv in
            if argv[0] == "squeue" {
                return CommandResult(
                    status: 0,
                    stdout: squeueOutput([job("10", "vllmctl-sick", elapsed: "5:00:00")], for: argv),
                    stderr: "")
            }
            return CommandResult(status: 0, stdout: "", stderr: "")
        }
        let clock = SteppingClock(t0)
        let context = Context(
            host: host, http: FixedHTTP(status: 503), clock: clock, terminal: QuietTerminal(), records: store,
            environment: [:])
        let t = Teardown(context: context, profile: ClusterProfile(name: "local"), user: me)
        let criteria = StaleCriteria(grace: 60)

        let first = try await t.plan(.stale(criteria))
        #expect(first.actions.map(\.kind) == [.keep])
        #expect(HealthMarks(records: store, cluster: "local").all() == ["10": t0])
        try await clock.sleep(seconds: 59)
        #expect(try await t.plan(.stale(criteria)).actions.map(\.kind) == [.keep])
        try await clock.sleep(seconds: 1)
        let due = try await t.plan(.stale(criteria))
        #expect(due.actions.map(\.kind) == [.cancel])
        #expect(due.actions[0].reason.contains("503"))
        #expect(!host.programs.contains("scancel"), "planning never cancels")
    }

    @Test func sharedCopiesBecomeANotice() async throws {
        let dir = try temporaryDirectory()
        let store = DeploymentStore(directory: dir + "/records")
        try store.save(record("20", "shared", dir: dir))
        try FileManager.default.createDirectory(atPath: dir + "/share", withIntermediateDirectories: true)
        // Named by user and job (issue 12 item 11); only the user's own file is replaced.
        let shared = dir + "/share/" + SharedConnectionFile.fileName(user: me, name: "shared", jobID: "20")
        try "Server URL: http://dead:1\n".write(toFile: shared, atomically: true, encoding: .utf8)
        let host = ScriptedHost { argv in
            // `id -un` and the owner (`stat -c %U`) are the user.
            if argv[0] == "id" || argv[0] == "stat" {
                return CommandResult(status: 0, stdout: me + "\n", stderr: "")
            }
            return CommandResult(status: 0, stdout: "", stderr: "")
        }
        let context = Context(
            host: host, http: FixedHTTP(status: 200), clock: SteppingClock(t0), terminal: QuietTerminal(),
            records: store, environment: [:])
        let t = Teardown(
            context: context, profile: ClusterProfile(name: "local", shareDir: dir + "/share"), user: me)
        let outcomes = await t.execute(try await t.plan(.named(["shared"])))
        #expect(outcomes.map(\.action.kind) == [.cleanUp])
        let text = try String(contentsOfFile: shared, encoding: .utf8)
        #expect(text.hasPrefix("Stopped at 2027-01-15T08:00:00Z"))
        #expect(text.split(separator: "\n").count == 1)
    }

    /// A file at the user's shared path that belongs to someone else is never replaced.
    @Test func anotherUsersSharedFileIsLeftAlone() async throws {
        let dir = try temporaryDirectory()
        let store = DeploymentStore(directory: dir + "/records")
        try store.save(record("20", "shared", dir: dir))
        try FileManager.default.createDirectory(atPath: dir + "/share", withIntermediateDirectories: true)
        let shared = dir + "/share/" + SharedConnectionFile.fileName(user: me, name: "shared", jobID: "20")
        try "theirs\n".write(toFile: shared, atomically: true, encoding: .utf8)
        let host = ScriptedHost { argv in
            if argv[0] == "id" { return CommandResult(status: 0, stdout: me + "\n", stderr: "") }
            if argv[0] == "stat" { return CommandResult(status: 0, stdout: "mallory\n", stderr: "") }
            return CommandResult(status: 0, stdout: "", stderr: "")
        }
        let context = Context(
            host: host, http: FixedHTTP(status: 200), clock: SteppingClock(t0), terminal: QuietTerminal(),
            records: store, environment: [:])
        let t = Teardown(
            context: context, profile: ClusterProfile(name: "local", shareDir: dir + "/share"), user: me)
        _ = await t.execute(try await t.plan(.named(["shared"])))
        #expect(try String(contentsOfFile: shared, encoding: .utf8) == "theirs\n")
    }
}
