import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// Issue 15: a successor that is still pending after its predecessor's end. `status` says the
/// deployment is down until it starts (with Slurm's reason), and only for a renewing
/// deployment whose last published job is no longer live.
@Suite struct ChainGapTests {
    /// A deployment directory under a fresh root whose connection file `published` wrote
    /// (ended), and whose settings say `renew`.
    static func directory(published: String, renew: Bool = true) throws -> String {
        let dir = try temporaryDirectory() + "/work/m-1"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let info = ConnectionRecord(
            serverURL: "http://10.77.0.11:8001", apiKey: testKey, host: "10.77.0.11", port: 8001,
            model: "org/m", servedModelName: "m", jobID: published, node: "node1",
            startedAt: "2026-11-29T10:00:00Z", readyAt: "2026-11-29T10:00:20Z",
            endedAt: "2026-11-29T10:03:00Z")
        try JSONEncoder().encode(info).write(to: URL(fileURLWithPath: dir + "/" + DeploymentFiles.infoJSON))
        var settings = DeploySettings()
        settings.renew = renew
        try JSONEncoder().encode(settings).write(
            to: URL(fileURLWithPath: dir + "/" + DeploymentFiles.settings))
        return dir
    }

    static func rows(_ jobs: [JobSnapshot], store: DeploymentStore? = nil) async throws -> [DeploymentStatus]
    {
        let host = ScriptedHost { argv in
            switch argv[0] {
            case "id": return CommandResult(status: 0, stdout: me + "\n", stderr: "")
            case "squeue": return CommandResult(status: 0, stdout: squeueOutput(jobs, for: argv), stderr: "")
            default: return CommandResult(status: 1, stdout: "", stderr: "")
            }
        }
        let context = Context(
            host: host, http: FixedHTTP(status: 200), clock: SteppingClock(t0), terminal: QuietTerminal(),
            records: try store ?? DeploymentStore(directory: temporaryDirectory()), environment: [:])
        return try await StatusBuilder(context: context, cluster: "local").build(includeEnded: false)
    }

    static func pending(_ id: String, reason: String, dir: String) -> JobSnapshot {
        var j = job(id, "vllmctl-m", .pending, reason: reason)
        j.workDir = dir
        j.nodes = ""
        return j
    }

    @Test func aPendingSuccessorOfAnEndedJobSaysTheDeploymentIsDown() async throws {
        let dir = try Self.directory(published: "40")
        let rows = try await Self.rows([Self.pending("41", reason: "JobHeldUser", dir: dir)])
        let gap = try #require(rows.first?.down)
        #expect(gap.predecessor == "40" && gap.successor == "41")
        #expect(gap.message.hasPrefix("down until successor job 41 starts: it is pending (JobHeldUser"))
        #expect(gap.message.contains("scontrol release 41"))
        let table = StatusTable.render(rows)
        #expect(
            table.contains("\nm is down until successor job 41 starts: it is pending (JobHeldUser"),
            "\(table)")
        let json = try StatusReport(cluster: "local", generatedAt: t0, deployments: rows).json()
        #expect(json.contains(#""predecessor" : "40""#), "\(json)")
    }

    @Test func noGapWhileThePredecessorLivesOrForAFirstJobOrWithoutRenew() async throws {
        // The predecessor still runs (its successor is due later): not down.
        let dir = try Self.directory(published: "40")
        var running = job("40", "vllmctl-m", .running)
        running.workDir = dir
        #expect(
            try await Self.rows([running, Self.pending("41", reason: "BeginTime", dir: dir)]).allSatisfy {
                $0.down == nil
            })
        // A first job, pending: no connection file in its directory.
        let fresh = try temporaryDirectory()
        #expect(try await Self.rows([Self.pending("50", reason: "Priority", dir: fresh)]).first?.down == nil)
        // A deployment that does not renew (another job's file there is not a chain).
        let plain = try Self.directory(published: "60", renew: false)
        #expect(try await Self.rows([Self.pending("61", reason: "Priority", dir: plain)]).first?.down == nil)
    }

    @Test func theDecisionItself() {
        let info = ConnectionRecord(
            serverURL: "http://10.77.0.11:8001", apiKey: testKey, host: "10.77.0.11", port: 8001,
            model: "org/m", servedModelName: "m", jobID: "40", node: "node1",
            startedAt: "x", readyAt: nil, endedAt: nil)
        #expect(
            ChainGap.find(jobID: "41", state: .pending, reason: "Priority", published: info) { _ in true }
                == nil)
        #expect(
            ChainGap.find(jobID: "40", state: .pending, reason: nil, published: info) { _ in false } == nil)
        #expect(
            ChainGap.find(jobID: "41", state: .pending, reason: nil, published: nil) { _ in false } == nil)
        #expect(
            ChainGap.find(jobID: "41", state: .failed, reason: nil, published: info) { _ in false } == nil)
        let loading = ChainGap.find(jobID: "41", state: .running, reason: nil, published: info) { _ in false }
        #expect(loading?.message.hasPrefix("down until successor job 41 is ready") == true)
        var forged = info
        forged.jobID = "40; rm"
        #expect(
            ChainGap.find(jobID: "41", state: .pending, reason: nil, published: forged) { _ in false } == nil)
    }
}
