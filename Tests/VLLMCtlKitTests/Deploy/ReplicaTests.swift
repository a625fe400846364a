import Foundation
import TestSupport
import Testing

@testable import VLLMCtlCLI
@testable import VLLMCtlKit

/// Replicated deployments (issue 14): job names, plans, teardown by name, deploy --dry-run.
@Suite struct ReplicaTests {
    @Test func replicaJobNamesCannotBeTakenForNames() {
        #expect(JobName.of("sim", replica: 2) == "vllmctl-sim@2")
        #expect(JobName.of("sim") == "vllmctl-sim")
        #expect(JobName.split("vllmctl-sim@2") == ("sim", 2))
        #expect(JobName.split("vllmctl-a.b-c_d@12") == ("a.b-c_d", 12))
        #expect(JobName.split("sim@3") == ("sim", 3))  // as a user types it
        // Not a replica number: the whole name (deployment names never hold `@`).
        #expect(JobName.split("vllmctl-sim@0").replica == nil)
        #expect(JobName.split("vllmctl-sim@x").replica == nil)
        #expect(JobName.split("vllmctl-sim").replica == nil)
        #expect(JobName.split("vllmctl-modèle@2") == ("modèle", 2))
        #expect(JobName.split("vllmctl-sim@2x").replica == nil)
        #expect(JobName.split("vllmctl-sim@1000").replica == nil)
        #expect(JobName.belongs("vllmctl-sim@1", to: "sim"))
        #expect(JobName.belongs("vllmctl-sim", to: "sim"))
        #expect(!JobName.belongs("vllmctl-sim-2@1", to: "sim"))
        #expect(!JobName.belongs("sim@1", to: "sim"))  // untagged: not vllmctl's
        #expect(throws: VLLMCtlError.self) { try Validate.name("sim@2") }
    }

    @Test func eachReplicaHasItsOwnJobAndDirectory() throws {
        var settings = DeploySettings()
        settings.model = "org/m"
        settings.replicas = 3
        let plan = try DeployPlan(name: "sim", cluster: "c", settings: settings, workdir: "/w", stamp: "st")
        #expect(plan.replicas == 3)
        #expect(plan.replica == nil)
        let two = plan.replica(2)
        #expect(two.jobName == "vllmctl-sim@2")
        #expect(two.deployDir == "/w/sim-st-r2")
        #expect(two.renderContext["job_name"] as? String == "vllmctl-sim@2")
        #expect(plan.jobName == "vllmctl-sim")
        for bad in [0, DeployPlan.maxReplicas + 1] {
            settings.replicas = bad
            #expect(throws: VLLMCtlError.self) {
                try DeployPlan(name: "sim", cluster: "c", settings: settings, workdir: "/w", stamp: "st")
            }
        }
    }

    @Test func teardownByNameTakesEveryReplicaAndNAtKOnlyThatOne() throws {
        let selector = TeardownSelector(ownership: Ownership(user: me))
        let queue = [job("31", "vllmctl-sim@1"), job("32", "vllmctl-sim@2"), job("33", "vllmctl-other")]
        let survey = TeardownSurvey(now: t0, queue: queue, records: [])
        let all = try selector.plan(.named(["sim"]), survey: survey)
        #expect(all.actions.map(\.jobID).sorted() == ["31", "32"])
        #expect(all.actions.allSatisfy { $0.kind == .cancel })
        let one = try selector.plan(.named(["sim@2"]), survey: survey)
        #expect(one.actions.map(\.jobID) == ["32"])
        // Two deployments that both have a replica 1 under one name: ambiguous, nothing cancelled.
        let twins = TeardownSurvey(
            now: t0, queue: [job("41", "vllmctl-tw@1"), job("42", "vllmctl-tw@1")], records: [])
        #expect(throws: VLLMCtlError.self) { try selector.plan(.named(["tw"]), survey: twins) }
    }

    @Test func statusShowsReplicasAsNameAtK() async throws {
        let host = schedulerHost([job("51", "vllmctl-sim@1"), job("52", "vllmctl-sim@2")])
        let h = try CommandHarness(host: host)
        try await h.run(["status"])
        #expect(h.terminal.stdout.contains("sim@1"))
        #expect(h.terminal.stdout.contains("sim@2"))
        try await h.run(["status", "--json"])
        let json = h.terminal.printed.last ?? ""
        #expect(json.contains("\"replica\" : 2"), "\(json)")
    }

    @Test func scaleDownTakesTheLeastLoadedThenTheNewest() {
        let c = [
            Scaler.Candidate(jobID: "1", replica: 1, load: 0),
            Scaler.Candidate(jobID: "2", replica: 2, load: 3),
            Scaler.Candidate(jobID: "3", replica: 3, load: 0),
            Scaler.Candidate(jobID: "4", replica: 4, load: nil),
        ]
        #expect(Scaler.victims(c, keep: 3).map(\.jobID) == ["3"])
        #expect(Scaler.victims(c, keep: 2).map(\.jobID) == ["3", "1"])
        // A load that could not be read counts as busy: removed last.
        #expect(Scaler.victims(c, keep: 1).map(\.jobID) == ["3", "1", "2"])
        #expect(Scaler.victims(c, keep: 4).isEmpty)
    }

    @Test func scaleRefusesNonsenseBeforeAnythingRuns() throws {
        #expect(throws: (any Error).self) { try VLLMCtlCommand.parseAsRoot(["scale", "sim", "0"]) }
        #expect(throws: (any Error).self) { try VLLMCtlCommand.parseAsRoot(["scale", "sim", "65"]) }
        #expect(throws: (any Error).self) {
            try VLLMCtlCommand.parseAsRoot(["scale", "sim", "2", "--drain-timeout", "1e300"])
        }
    }

    @Test func gatewayAndScaleSayWhenThereIsNothingToWorkOn() async throws {
        let h = try CommandHarness(host: schedulerHost([]))
        let gateway = await #expect(throws: VLLMCtlError.self) {
            try await h.run(["gateway", "sim", "--port", "0"])
        }
        #expect("\(gateway.map { "\($0)" } ?? "")".contains("No replica of `sim` is serving yet"))
        let scale = await #expect(throws: VLLMCtlError.self) { try await h.run(["scale", "sim", "2"]) }
        #expect("\(scale.map { "\($0)" } ?? "")".contains("No running deployment named `sim`"))
        #expect(throws: (any Error).self) {
            try VLLMCtlCommand.parseAsRoot(["gateway", "sim", "--port", "70000"])
        }
    }

    @Test func deployDryRunOfReplicasShowsTheFirstReplicasScript() async throws {
        let host = schedulerHost([])
        let h = try CommandHarness(host: host)
        try await h.run(["deploy", "sim", "--dry-run", "--name", "rep", "--replicas", "2"])
        #expect(h.terminal.stdout.contains("--job-name=vllmctl-rep@1"))
        #expect(!host.programs.contains("sbatch"))
        await #expect(throws: (any Error).self) {
            try await h.run(["deploy", "sim", "--dry-run", "--replicas", "0"])
        }
    }
}
