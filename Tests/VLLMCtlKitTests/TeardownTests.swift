import Foundation
import Testing

@testable import VLLMCtlKit

@Suite struct TeardownDurationTests {
    @Test func unitsAndSlurmForms() throws {
        let cases: [(String, TimeInterval)] = [
            ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5h", 5400),
            ("0s", 0),
            ("02:00:00", 7200), ("5:30", 330), ("1-00:00:00", 86400), ("1-02", 93600), ("1-02:30", 95400),
            (" 10M ", 600),
        ]
        for (text, seconds) in cases {
            #expect(try DurationText.parse(text) == seconds, "\(text)")
        }
    }

    @Test func nonsenseIsRefusedWithTheAcceptedForms() {
        for text in ["", "10", "ten minutes", "10x", "m", "1:2:3:4", "a:b", "1h30", "-5m"] {
            let error = #expect(throws: VLLMCtlError.self, "\(text)") { try DurationText.parse(text) }
            #expect("\(error.map { "\($0)" } ?? "")".contains("HH:MM:SS"), "\(text)")
        }
    }

    /// Out-of-range numbers are errors, never a trap (issue 12 item 13).
    @Test func hugeDurationsAreErrorsNotCrashes() {
        for text in ["99999999999999999999:00", "999999999999d", "1-99999999999:00:00", "4000000000h"] {
            #expect(throws: VLLMCtlError.self, "\(text)") { try DurationText.parse(text) }
        }
        #expect(DurationText.slurm("99999999999999999999:00") == nil)
        #expect(DurationText.format(1e300) == DurationText.format(DurationText.longest * 10))
        #expect(DurationText.format(.nan) == "0s")
    }

    @Test func squeueElapsed() {
        #expect(DurationText.slurm("0:05") == 5)
        #expect(DurationText.slurm("12:34") == 754)
        #expect(DurationText.slurm("1:02:03") == 3723)
        #expect(DurationText.slurm("2-03:04:05") == 183_845)
        #expect(DurationText.slurm("INVALID") == nil)
        #expect(DurationText.slurm("UNLIMITED") == nil)
        #expect(DurationText.slurm("") == nil)
    }

    @Test func shortForm() {
        #expect(DurationText.format(45) == "45s")
        #expect(DurationText.format(600) == "10m")
        #expect(DurationText.format(754) == "12m34s")
        #expect(DurationText.format(3900) == "1h05m")
        #expect(DurationText.format(2 * 86400 + 3 * 3600) == "2d03h")
    }
}

// MARK: - Decisions

let me = "alice"
let t0 = Date(timeIntervalSince1970: 1_800_000_000)

func job(
    _ id: String, _ name: String, user: String = me, _ state: JobState = .running, elapsed: String = "0:10",
    reason: String = "None"
) -> JobSnapshot {
    JobSnapshot(
        jobID: id, name: name, user: user, state: state, reason: reason, nodes: "n1", elapsed: elapsed)
}

func record(
    _ id: String, _ name: String, phase: DeploymentRecord.Phase = .ready, created: Date = t0,
    dir: String = "/nowhere"
) -> DeploymentRecord {
    DeploymentRecord(
        name: name, cluster: "local", jobID: id, model: "m", servedModelName: "m",
        deployDir: dir + "/" + name,
        phase: phase, createdAt: created, url: phase == .ready ? "http://127.0.0.1:1" : nil, apiKey: "sk-x")
}

@Suite struct OwnershipTests {
    let ownership = Ownership(user: me)

    @Test func oursNeedsBothOwnerAndTag() {
        #expect(ownership.isOurs(job("1", "vllmctl-sim")))
        #expect(!ownership.isOurs(job("2", "sleep")))  // a plain sbatch job of the same user
        #expect(!ownership.isOurs(job("3", "vllmctl-sim", user: "bob")))  // the tag, another owner
        #expect(!ownership.isOurs(job("4", "my-vllmctl-sim")))
        #expect(!Ownership(user: "").isOurs(job("5", "vllmctl-sim", user: "")))
    }

    @Test func reasonsNameTheOwnerOrTheMissingTag() {
        #expect(
            ownership.whyNotOurs(job("3", "vllmctl-sim", user: "bob"))?.contains("belongs to bob") == true)
        #expect(ownership.whyNotOurs(job("2", "sleep"))?.contains("not started by vllmctl") == true)
        #expect(ownership.whyNotOurs(job("1", "vllmctl-sim")) == nil)
    }

    @Test func theCurrentUserIsKnown() {
        #expect(!LocalHost.currentUser().isEmpty)
    }
}

@Suite struct StaleFinderTests {
    let criteria = StaleCriteria(grace: 600)
    var finder: StaleFinder { StaleFinder(criteria: criteria, now: t0) }

    @Test func aHealthyJobInsideItsGraceIsNeverStale() {
        for elapsed in ["0:01", "9:59", "10:00", "5-00:00:00"] {
            let (action, mark) = finder.judge(
                job("1", "vllmctl-a", elapsed: elapsed), record: record("1", "a"), health: .healthy,
                unhealthySince: t0 - 3600)
            #expect(action.kind == .keep, "\(elapsed)")
            #expect(action.reason.hasPrefix("healthy"))
            #expect(mark == nil, "a healthy answer clears the unhealthy mark")
        }
    }

    /// "Can't tell" is never "unhealthy": a check that failed on vllmctl's side (no route, a
    /// proxy, SSH, a timeout on the way) keeps the job, however long it lasts, and leaves an
    /// earlier mark as it was.
    @Test func unknownHealthIsNeverStale() {
        let days = StaleFinder(criteria: criteria, now: t0 + 86400 * 3)
        let (action, mark) = days.judge(
            job("1", "vllmctl-a", elapsed: "3-00:00:00"), record: record("1", "a"),
            health: .unknown("/health: timed out"), unhealthySince: t0)
        #expect(action.kind == .keep)
        #expect(action.reason.contains("health unknown (/health: timed out)"))
        #expect(mark == t0)
        let (fresh, none) = finder.judge(
            job("1", "vllmctl-a", elapsed: "3:00:00"), record: record("1", "a"),
            health: .unknown("no route"), unhealthySince: nil)
        #expect(fresh.kind == .keep)
        #expect(none == nil, "an unknown check does not start a grace period")
    }

    @Test func unhealthyStartsItsGraceWhenFirstSeen() {
        let (first, mark) = finder.judge(
            job("1", "vllmctl-a", elapsed: "3:00:00"), record: record("1", "a"),
            health: .unhealthy("/health answered 503"), unhealthySince: nil)
        #expect(first.kind == .keep)
        #expect(mark == t0)
        #expect(first.reason.contains("503"))

        let later = StaleFinder(criteria: criteria, now: t0 + 599)
        let (inside, kept) = later.judge(
            job("1", "vllmctl-a"), record: record("1", "a"), health: .unhealthy("/health answered 503"),
            unhealthySince: t0)
        #expect(inside.kind == .keep)
        #expect(kept == t0, "the first sighting is kept, not moved")

        let after = StaleFinder(criteria: criteria, now: t0 + 600)
        let (stale, _) = after.judge(
            job("1", "vllmctl-a"), record: record("1", "a"), health: .unhealthy("/health answered 503"),
            unhealthySince: t0)
        #expect(stale.kind == .cancel)
        #expect(stale.reason.contains("unhealthy for 10m"))
        #expect(stale.reason.contains("10m grace"))
    }

    @Test func aServerThatNeverAnsweredCountsFromTheJobStart() {
        let young = finder.judge(
            job("1", "vllmctl-a", elapsed: "9:59"), record: record("1", "a", phase: .submitted),
            health: .notServing, unhealthySince: nil)
        #expect(young.action.kind == .keep)
        #expect(young.action.reason.contains("not ready yet"))
        let old = finder.judge(
            job("1", "vllmctl-a", elapsed: "10:00"), record: record("1", "a", phase: .submitted),
            health: .notServing, unhealthySince: nil)
        #expect(old.action.kind == .cancel)
        #expect(old.action.reason.contains("never became ready"))
    }

    @Test func aServerStillLoadingGetsTheReadyTimeout() {
        let f = StaleFinder(criteria: StaleCriteria(grace: 600, startupAllowance: 1800), now: t0)
        let loading = f.judge(
            job("1", "vllmctl-a", elapsed: "29:59"), record: record("1", "a", phase: .submitted),
            health: .notServing, unhealthySince: nil)
        #expect(loading.action.kind == .keep)
        #expect(loading.action.reason.contains("30m allowed for startup"))
        let stuck = f.judge(
            job("1", "vllmctl-a", elapsed: "30:00"), record: record("1", "a", phase: .submitted),
            health: .notServing, unhealthySince: nil)
        #expect(stuck.action.kind == .cancel)
        // A server that was ready and then failed gets only the grace period.
        let failed = f.judge(
            job("1", "vllmctl-a", elapsed: "29:59"), record: record("1", "a"),
            health: .unhealthy("/health answered 503"), unhealthySince: t0 - 600)
        #expect(failed.action.kind == .cancel)
    }

    @Test func olderThanTakesAnyRunningJob() {
        let f = StaleFinder(criteria: StaleCriteria(grace: 600, olderThan: 7200), now: t0)
        #expect(
            f.judge(
                job("1", "vllmctl-a", elapsed: "1:59:59"), record: nil, health: .healthy, unhealthySince: nil
            ).action.kind == .keep)
        let (old, _) = f.judge(
            job("1", "vllmctl-a", elapsed: "2:00:00"), record: nil, health: .healthy, unhealthySince: nil)
        #expect(old.kind == .cancel)
        #expect(old.reason.contains("--older-than 2h"))
        // Without the flag, run time alone never makes a healthy job stale.
        #expect(
            finder.judge(
                job("1", "vllmctl-a", elapsed: "9-00:00:00"), record: nil, health: .healthy,
                unhealthySince: nil
            ).action.kind == .keep)
    }

    @Test func pendingLongerThanCountsFromSubmission() {
        let f = StaleFinder(criteria: StaleCriteria(pendingLongerThan: 3600), now: t0)
        let pending = job("1", "vllmctl-a", .pending, elapsed: "0:00", reason: "Resources")
        let fresh = f.judge(
            pending, record: record("1", "a", phase: .submitted, created: t0 - 3599), health: nil,
            unhealthySince: nil)
        #expect(fresh.action.kind == .keep)
        let stuck = f.judge(
            pending, record: record("1", "a", phase: .submitted, created: t0 - 3600), health: nil,
            unhealthySince: nil)
        #expect(stuck.action.kind == .cancel)
        #expect(stuck.action.reason.contains("PENDING (Resources) for 1h00m"))
        // Without a record the submission time is unknown: never cancelled on a guess.
        let unknown = f.judge(pending, record: nil, health: nil, unhealthySince: nil)
        #expect(unknown.action.kind == .keep)
        #expect(unknown.action.reason.contains("unknown"))
        // Without the flag, pending is never stale.
        #expect(
            finder.judge(
                pending, record: record("1", "a", created: t0 - 86400 * 9), health: nil, unhealthySince: nil
            ).action.kind == .keep)
    }

    @Test func uncheckedAndEndingJobsAreKept() {
        #expect(
            finder.judge(
                job("1", "vllmctl-a", elapsed: "5:00:00"), record: nil, health: .unchecked("no record"),
                unhealthySince: nil
            ).action.kind == .keep)
        #expect(
            finder.judge(
                job("1", "vllmctl-a", .completing), record: record("1", "a"), health: .unhealthy("x"),
                unhealthySince: t0 - 9999
            ).action.kind == .keep)
    }
}

@Suite struct TeardownSelectorTests {
    let selector = TeardownSelector(ownership: Ownership(user: me))

    /// Ours (running, healthy), ours (unhealthy for an hour), a plain job of ours, another
    /// user's job with our tag.
    var queue: [JobSnapshot] {
        [
            job("10", "vllmctl-good"), job("11", "vllmctl-sick"), job("12", "sleep"),
            job("13", "vllmctl-theirs", user: "bob"),
        ]
    }

    @Test func staleTouchesOnlyOurJobs() throws {
        let survey = TeardownSurvey(
            now: t0, queue: queue, records: [record("10", "good"), record("11", "sick")],
            health: ["10": .healthy, "11": .unhealthy("/health answered 503")],
            unhealthySince: ["11": t0 - 3600, "99": t0])
        let plan = try selector.plan(.stale(StaleCriteria(grace: 600, olderThan: 1)), survey: survey)
        #expect(Set(plan.actions.map(\.jobID)) == ["10", "11"])
        #expect(plan.toCancel.map(\.jobID).sorted() == ["10", "11"])  // --older-than 1s: both ours are older
        let relaxed = try selector.plan(.stale(StaleCriteria(grace: 600)), survey: survey)
        #expect(relaxed.toCancel.map(\.jobID) == ["11"])
        #expect(
            relaxed.unhealthySince == ["11": t0 - 3600], "marks of jobs that are gone or healthy are dropped")
    }

    @Test func allCancelsEveryOneOfOursAndNothingElse() throws {
        let plan = try selector.plan(.all, survey: TeardownSurvey(now: t0, queue: queue, records: []))
        #expect(plan.toCancel.map(\.jobID) == ["10", "11"])
        #expect(plan.toCancel.allSatisfy { $0.reason.contains("--all") })
    }

    @Test func orphansAreCleanedUpAndEndedRecordsLeftOut() throws {
        let records = [
            record("20", "gone"), record("21", "failed", phase: .submitted),
            record("22", "old", phase: .ended),
            record("12", "reused"), record("23", "lagging"),
        ]
        let accounting = [
            job("21", "vllmctl-failed", .failed), job("12", "sleep"), job("23", "vllmctl-lagging", .running),
        ]
        let plan = try selector.plan(
            .stale(StaleCriteria()),
            survey: TeardownSurvey(now: t0, queue: [], accounting: accounting, records: records))
        let byID = Dictionary(uniqueKeysWithValues: plan.actions.map { ($0.jobID, $0) })
        #expect(byID["20"]?.kind == .cleanUp)
        #expect(byID["20"]?.reason.contains("neither squeue nor sacct") == true)
        #expect(byID["21"]?.kind == .cleanUp)
        #expect(byID["21"]?.reason.contains("FAILED") == true)
        #expect(byID["22"] == nil)
        #expect(
            byID["12"]?.kind == .cleanUp, "a record whose job id Slurm reused for another job is an orphan")
        #expect(byID["12"]?.reason.contains("another job") == true)
        #expect(byID["23"]?.kind == .undecided, "squeue and sacct disagree: do nothing")
        #expect(plan.toCancel.isEmpty)
    }

    @Test func namedByIDOrName() throws {
        let records = [record("10", "good"), record("30", "done", phase: .ended)]
        let survey = TeardownSurvey(now: t0, queue: queue, records: records)
        let plan = try selector.plan(.named(["good", "11", "10", "done"]), survey: survey)
        #expect(plan.actions.map(\.jobID) == ["10", "11", "30"], "the same job named twice is acted on once")
        #expect(plan.actions.map(\.kind) == [.cancel, .cancel, .alreadyDone])
        #expect(plan.actions[1].name == "sick", "a job without a record is named from its job name")
    }

    @Test func namingAJobThatIsNotOursRefusesEverything() throws {
        let survey = TeardownSurvey(
            now: t0, queue: queue, others: [job("40", "vllmctl-x", user: "carol")], records: [])
        for (target, words) in [
            ("12", "not started by vllmctl"), ("13", "belongs to bob"), ("40", "belongs to carol"),
        ] {
            let error = #expect(throws: VLLMCtlError.self) {
                try selector.plan(.named(["10", target]), survey: survey)
            }
            #expect("\(error.map { "\($0)" } ?? "")".contains(words))
            #expect("\(error.map { "\($0)" } ?? "")".contains("Nothing was cancelled"))
        }
        let both = #expect(throws: VLLMCtlError.self) {
            try selector.plan(.named(["12", "nosuch"]), survey: survey)
        }
        #expect("\(both.map { "\($0)" } ?? "")".contains("not started by vllmctl"))
        #expect("\(both.map { "\($0)" } ?? "")".contains("nosuch"))
    }

    @Test func unknownAndAmbiguousNamesAreErrors() throws {
        let survey = TeardownSurvey(
            now: t0, queue: [job("1", "vllmctl-twin"), job("2", "vllmctl-twin")], records: [])
        let twin = #expect(throws: VLLMCtlError.self) { try selector.plan(.named(["twin"]), survey: survey) }
        #expect("\(twin.map { "\($0)" } ?? "")".contains("jobs 1, 2"))
        #expect(throws: VLLMCtlError.self) { try selector.plan(.named(["99"]), survey: survey) }
        // A job id that ended, of ours but unrecorded here: harmless, and said so.
        let ended = TeardownSurvey(
            now: t0, queue: [], accounting: [job("50", "vllmctl-x", .cancelled)], records: [])
        let plan = try selector.plan(.named(["50"]), survey: ended)
        #expect(plan.actions.map(\.kind) == [.alreadyDone])
        #expect(plan.actions[0].reason.contains("CANCELLED"))
    }
}

// MARK: - Scheduler failures, with a scripted host

/// Answers Slurm's commands from a script and records every argv; files are local.
final class ScriptedHost: ClusterHost, @unchecked Sendable {
    private let lock = NSLock()
    private var calls: [[String]] = []
    let answer: @Sendable ([String]) throws -> CommandResult

    init(_ answer: @escaping @Sendable ([String]) throws -> CommandResult) { self.answer = answer }

    var displayName: String { "scripted" }
    var argvs: [[String]] { lock.withLock { calls } }
    var programs: [String] { argvs.compactMap(\.first) }

    func run(_ argv: [String], input: String?, timeout: Duration) async throws -> CommandResult {
        lock.withLock { calls.append(argv) }
        return try answer(argv)
    }
    func readFile(_ path: String) async throws -> Data? { try await LocalHost().readFile(path) }
    func writeFileAtomically(_ data: Data, to path: String, mode: Int) async throws {
        try await LocalHost().writeFileAtomically(data, to: path, mode: mode)
    }
    func makeDirectory(_ path: String, mode: Int) async throws {
        try await LocalHost().makeDirectory(path, mode: mode)
    }
    func makeNewDirectory(_ path: String, mode: Int) async throws {
        try await LocalHost().makeNewDirectory(path, mode: mode)
    }
    func removeFile(_ path: String) async throws { try await LocalHost().removeFile(path) }
    func homeDirectory() async throws -> String { NSHomeDirectory() }
}

struct FixedHTTP: HTTPClient {
    var status: Int
    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        HTTPResponse(status: status, headers: [:], body: Data())
    }
    func stream(_ request: HTTPRequest, onChunk: @escaping @Sendable (Data) -> Void) async throws
        -> HTTPResponse
    { try await send(request) }
}

final class SteppingClock: Clock, @unchecked Sendable {
    private let lock = NSLock()
    private var time: Date
    init(_ start: Date) { time = start }
    func now() -> Date { lock.withLock { time } }
    func sleep(seconds: Double) async throws { lock.withLock { time += seconds } }
}

final class QuietTerminal: Terminal, @unchecked Sendable {
    var isInteractive: Bool { false }
    func print(_ text: String) {}
    func note(_ text: String) {}
    func progress(_ text: String?) {}
}

/// One line of squeue output in `Squeue`'s format (fields past time-left stay empty).
/// What squeue prints for `jobs` when called with `argv` (whose `--format` carries the call's
/// marks).
func squeueOutput(_ jobs: [JobSnapshot], for argv: [String]) -> String {
    let format = argv.first { $0.hasPrefix("--format=\u{1E}") } ?? ""
    let token = String(format.dropFirst("--format=\u{1E}".count).prefix { $0 != "%" })
    let marks = SchedulerMarks(token: token)
    let detail = format.contains("%P")
    return jobs.map { j in
        var fields = [
            j.jobID, j.user, j.state.rawValue, j.reason, j.nodes, j.elapsed, "10:00", j.name, j.workDir,
        ]
        if detail {
            fields += Squeue.detailKeys.map { key in j.resources.first { $0.key == key }?.value ?? "N/A" }
        }
        return marks.row + fields.joined(separator: marks.field) + "\n"
    }.joined()
}

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
        let cancelled = Flag()
        let host = ScriptedHost { argv in
            switch argv[0] {
            case "squeue":
                let lines =
                    cancelled.isSet
                    ? [job("12", "sleep"), job("13", "vllmctl-theirs", user: "bob")]
                    : [
                        job("10", "vllmctl-good"), job("12", "sleep"),
                        job("13", "vllmctl-theirs", user: "bob"),
                    ]
                return CommandResult(status: 0, stdout: squeueOutput(lines, for: argv), stderr: "")
            case "scancel":
                cancelled.set()
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
        let calls = Counter()
        let host = ScriptedHost { argv in
            guard argv[0] == "squeue" else { return CommandResult(status: 0, stdout: "", stderr: "") }
            let jobs = calls.next() == 0 ? [job("10", "vllmctl-good")] : [job("10", "not-vllmctl")]
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
        let calls = Counter()
        let host = ScriptedHost { argv in
            guard argv[0] == "squeue" else { return CommandResult(status: 0, stdout: "", stderr: "") }
            if calls.next() > 0 {
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

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    /// The count before this call.
    func next() -> Int {
        lock.withLock {
            defer { n += 1 }; return n
        }
    }
}
