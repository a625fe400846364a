import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// Issue 15's pure parts: the renewal settings' checks, the rendered chain, the endpoint's
/// choice between a job and its successor, teardown's view of a chain, the status file.
@Suite struct RenewPlanTests {
    static func settings(_ edit: (inout DeploySettings) -> Void = { _ in }) -> DeploySettings {
        var s = DeploySettings()
        s.model = "org/m"
        s.gpus = 1
        s.renew = true
        s.time = "08:00:00"
        edit(&s)
        return s
    }

    static func plan(_ s: DeploySettings) throws -> DeployPlan {
        try DeployPlan(name: "m", cluster: "c", settings: s, workdir: "/w", stamp: "st")
    }

    @Test func slurmTimesInSeconds() {
        #expect(Validate.seconds(ofTime: "90") == 5400)
        #expect(Validate.seconds(ofTime: "3") == 180)
        #expect(Validate.seconds(ofTime: "3:30") == 210)
        #expect(Validate.seconds(ofTime: "02:00:00") == 7200)
        #expect(Validate.seconds(ofTime: "1-00") == 86400)
        #expect(Validate.seconds(ofTime: "1-02:30") == 95400)
        #expect(Validate.seconds(ofTime: "1-00:00:10") == 86410)
        #expect(Validate.seconds(ofTime: "UNLIMITED") == nil)
        #expect(Validate.seconds(ofTime: "soon") == nil)
    }

    @Test func renewNeedsALimitLongEnoughForTwoLoadsAndTheMargin() throws {
        _ = try Self.plan(Self.settings())
        // 3 minutes, a 50 s ready timeout and a 60 s margin: 2 × 50 + 60 = 160 ≤ 180.
        _ = try Self.plan(
            Self.settings {
                $0.time = "3"; $0.readyTimeout = 50; $0.renewMargin = 60
            })
        let short = #expect(throws: VLLMCtlError.self) {
            try Self.plan(Self.settings { $0.time = "01:00:00" })  // 2 × 1800 + 120 > 3600
        }
        #expect("\(short.map { "\($0)" } ?? "")".contains("Raise --time, or lower --timeout"))
        let unlimited = #expect(throws: VLLMCtlError.self) {
            try Self.plan(Self.settings { $0.time = "UNLIMITED" })
        }
        #expect("\(unlimited.map { "\($0)" } ?? "")".contains("needs a time limit"))
        // Without --renew the same limit is fine.
        _ = try Self.plan(
            Self.settings {
                $0.time = "01:00:00"; $0.renew = nil
            })
    }

    @Test func renewalSettingsAreChecked() {
        #expect(throws: VLLMCtlError.self) { try Self.plan(Self.settings { $0.renewals = 0 }) }
        #expect(throws: VLLMCtlError.self) { try Self.plan(Self.settings { $0.renewMargin = -1 }) }
        #expect(throws: VLLMCtlError.self) { try Self.plan(Self.settings { $0.drainTimeout = -5 }) }
        for bad in ["tomorrow", "2026-12-01 08:00", "2026-12-01T08:00; rm -rf ~", "now+1day"] {
            #expect(throws: VLLMCtlError.self, "\(bad)") {
                try Self.plan(Self.settings { $0.renewUntil = bad })
            }
        }
        for good in ["2026-12-01", "2026-12-01T08:00", "2026-12-01T08:00:30"] {
            #expect(throws: Never.self, "\(good)") { try Self.plan(Self.settings { $0.renewUntil = good }) }
        }
    }

    /// The rendered script of a renewing deployment: the chain is in it, it is valid bash, and
    /// the key is not in it. A script that does not renew has none of it.
    @Test func theRenewingScriptRendersAndParses() async throws {
        let templates = ScriptTemplates(directories: [repoRoot + "/templates"])
        let plan = try Self.plan(
            Self.settings {
                $0.renewMargin = 90; $0.renewals = 4; $0.renewUntil = "2030-01-01T08:00"; $0.drainTimeout = 30
            })
        let script = try templates.render(plan.template, context: plan.renderContext)
        for line in [
            "VLLMCTL_RENEW=1", "VLLMCTL_RENEW_MARGIN=90", "VLLMCTL_MAX_RENEWALS=4",
            "VLLMCTL_RENEW_UNTIL=2030-01-01T08:00", "VLLMCTL_DRAIN_TIMEOUT=30", "vllmctl_renew\n",
            "env -u VLLM_API_KEY sbatch --parsable",
        ] {
            #expect(script.contains(line), "\(line)")
        }
        let path = try temporaryDirectory() + "/job.sbatch"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let syntax = try await sh(["bash", "-n", path])
        #expect(syntax.status == 0, "\(syntax.stderr)")

        let plain = try templates.render(
            "single-node", context: try Self.plan(Self.settings { $0.renew = nil }).renderContext)
        #expect(!plain.contains("VLLMCTL_RENEW=1") && !plain.contains("vllmctl_renew\n"))
        let multi = try Self.plan(Self.settings { $0.nodes = 2 })
        #expect(
            try templates.render(multi.template, context: multi.renderContext).contains("vllmctl_renew\n"))
    }

    /// During a handover a replica slot has two ready jobs: new requests go to the newest.
    @Test func theEndpointSendsNewRequestsToTheNewestJobOfEachReplica() {
        func endpoint(_ replica: Int, _ job: String, _ port: Int) -> ReplicaEndpoint {
            ReplicaEndpoint(replica: replica, jobID: job, host: "10.0.0.1", port: port, node: "n1")
        }
        let chosen = ReplicaSet.newestPerSlot([
            endpoint(1, "99", 8000), endpoint(2, "120", 8001), endpoint(1, "100", 8002),
            endpoint(2, "119", 8003),
        ])
        #expect(chosen.map(\.jobID) == ["100", "120"])
        #expect(ReplicaSet.newestPerSlot([endpoint(1, "7", 8000)]).map(\.jobID) == ["7"])
    }

    /// `teardown NAME` of a renewing deployment cancels the job and its successor (one
    /// directory); two deployments that share a name (two directories) are still refused.
    @Test func teardownTakesAChainAsOneDeployment() throws {
        func chainJob(_ id: String, _ name: String, _ dir: String, _ state: JobState = .running)
            -> JobSnapshot
        {
            var j = job(id, name, state)
            j.workDir = dir
            return j
        }
        let selector = TeardownSelector(ownership: Ownership(user: me))
        let chain = [chainJob("10", "vllmctl-m", "/w/m-1"), chainJob("11", "vllmctl-m", "/w/m-1", .pending)]
        let plan = try selector.plan(
            .named(["m"]), survey: TeardownSurvey(now: t0, queue: chain, records: []))
        #expect(plan.toCancel.map(\.jobID).sorted() == ["10", "11"])

        let replicas = [
            chainJob("20", "vllmctl-r@1", "/w/r-r1"), chainJob("21", "vllmctl-r@1", "/w/r-r1", .pending),
            chainJob("22", "vllmctl-r@2", "/w/r-r2"),
        ]
        let both = try selector.plan(
            .named(["r"]), survey: TeardownSurvey(now: t0, queue: replicas, records: []))
        #expect(both.toCancel.map(\.jobID).sorted() == ["20", "21", "22"])

        let twoDeployments = [chainJob("30", "vllmctl-x", "/w/x-1"), chainJob("31", "vllmctl-x", "/w/x-2")]
        #expect(throws: VLLMCtlError.self) {
            try selector.plan(
                .named(["x"]), survey: TeardownSurvey(now: t0, queue: twoDeployments, records: []))
        }
    }

    @Test func theChainStatusFileIsReadAsUntrusted() {
        let good = Data(
            #"{"job_id": "12", "renewal": 2, "state": "waiting", "successor": "13", "message": "successor job 13 (renewal 3) is due at 2026-11-29T23:19:17", "at": "2026-11-29T23:17:57Z"}"#
                .utf8)
        #expect(
            RenewalStatus.parse(good)
                == RenewalStatus(
                    renewal: 2, state: "waiting", successor: "13",
                    message: "successor job 13 (renewal 3) is due at 2026-11-29T23:19:17"))
        let none = Data(#"{"renewal": 0, "state": "ended", "successor": "", "message": "done"}"#.utf8)
        #expect(RenewalStatus.parse(none)?.successor == nil)
        for bad in [
            #"{"renewal": 0, "state": "waiting", "successor": "13; rm", "message": "x"}"#,
            #"{"renewal": -1, "state": "waiting", "successor": "", "message": "x"}"#,
            #"{"renewal": 0, "state": "wait\u001b[31m", "successor": "", "message": "x"}"#,
            #"{"renewal": 0, "state": "waiting", "successor": "", "message": "a\nb"}"#,
            "not json",
        ] {
            #expect(RenewalStatus.parse(Data(bad.utf8)) == nil, "\(bad)")
        }
    }
}
