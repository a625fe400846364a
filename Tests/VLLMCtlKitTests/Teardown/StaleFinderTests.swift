import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

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
