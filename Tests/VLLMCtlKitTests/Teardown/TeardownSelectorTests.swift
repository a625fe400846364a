import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

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
