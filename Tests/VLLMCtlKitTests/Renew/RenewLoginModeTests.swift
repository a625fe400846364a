import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// Issue 15's login-node mode: the partition's AllocNodes (scontrol, captured from the local
/// cluster), the mode decided from them, and the loop rendered for the login node.
@Suite struct RenewLoginModeTests {
    @Test func partitionsFromTheLocalCluster() throws {
        let parts = ScontrolPartition.parse(try fixture("scontrol-partitions.txt"))
        #expect(parts.map(\.name) == ["debug", "loginonly"])
        #expect(parts[0].isDefault && parts[0].allocNodes == .all && parts[0].nodes == ["node1", "node2"])
        #expect(!parts[1].isDefault && parts[1].allocNodes == .only(["vm", "localhost"]))
        #expect(ScontrolPartition(name: "gpu").argv == ["scontrol", "show", "partition", "gpu", "-o"])
        #expect(ScontrolPartition(name: nil).argv == ["scontrol", "show", "partition", "-o"])
    }

    @Test func malformedLinesAreDropped() {
        #expect(ScontrolPartition.parse("Partition nosuch not found\n").isEmpty)
        #expect(ScontrolPartition.parse("PartitionName=a AllocNodes=x;rm Nodes=n1\n").isEmpty)
        #expect(ScontrolPartition.parse("PartitionName=a Nodes=n1\n").isEmpty)
        #expect(
            ScontrolPartition.parse("PartitionName=a AllocNodes=ALL Nodes=(null)\n").first?.nodes == [])
    }

    @Test func theModeFollowsAllocNodes() throws {
        let parts = ScontrolPartition.parse(try fixture("scontrol-partitions.txt"))
        func mode(_ asked: RenewFrom, _ partition: String?, _ p: [ScontrolPartition.Partition]?) -> RenewFrom
        {
            RenewModeDecision.decide(asked: asked, partition: partition, partitions: p).mode
        }
        #expect(mode(.auto, nil, parts) == .job)  // the default partition, AllocNodes=ALL
        #expect(mode(.auto, "debug", parts) == .job)
        #expect(mode(.auto, "loginonly", parts) == .login)
        let why = RenewModeDecision.decide(asked: .auto, partition: "loginonly", partitions: parts).reason
        #expect(why.contains("AllocNodes (vm,localhost) do not include its compute nodes"), "\(why)")
        // A list that names every compute node allows jobs to submit.
        let listed = ScontrolPartition.parse("PartitionName=p AllocNodes=login1,node[1-2] Nodes=node[1-2]\n")
        #expect(mode(.auto, "p", listed) == .job)
        // Cannot tell: job mode, and the reason says what to do.
        let unknown = RenewModeDecision.decide(asked: .auto, partition: "gpu", partitions: nil)
        #expect(unknown.mode == .job && unknown.reason.contains("--renew-from login"))
        #expect(mode(.auto, "gpu", parts) == .job)
        // Asked for: taken as it is.
        #expect(mode(.login, "debug", parts) == .login)
        #expect(mode(.job, "loginonly", parts) == .job)
    }

    @Test func anUnknownRenewFromIsRefused() {
        var s = RenewPlanTests.settings()
        s.renewFrom = "laptop"
        #expect(throws: VLLMCtlError.self) { try RenewPlanTests.plan(s) }
    }

    /// The loop for the login node: valid bash, the same chain functions as the job's, no key,
    /// and the job script in login mode waits for the handover instead of submitting.
    @Test func theLoginLoopRendersWithTheJobsChainAndNoKey() async throws {
        let templates = ScriptTemplates(directories: [repoRoot + "/templates"])
        let plan = try RenewPlanTests.plan(
            RenewPlanTests.settings {
                $0.renewFrom = "login"; $0.renewMargin = 90; $0.renewals = 2
            })
        let loop = try templates.render(RenewLoop.template, context: plan.renderContext, partial: true)
        for line in [
            "VLLMCTL_RENEW_FROM=login", "VLLMCTL_RENEW_MARGIN=90", "VLLMCTL_MAX_RENEWALS=2",
            "vllmctl_renew\n",
            "env -u VLLM_API_KEY sbatch --parsable", "vllmctl_server_alive() { [[ ! -e",
        ] {
            #expect(loop.contains(line), "\(line)")
        }
        #expect(!loop.contains("api_key"), "the loop reads no key file")
        let path = try temporaryDirectory() + "/" + RenewLoop.script
        try loop.write(toFile: path, atomically: true, encoding: .utf8)
        let syntax = try await sh(["bash", "-n", path])
        #expect(syntax.status == 0, "\(syntax.stderr)")
        // Refuses to run without a job id and token (never started by hand by mistake).
        let bare = try await sh(["bash", path])
        #expect(bare.status == 2 && bare.stderr.contains("usage"))

        let job = try templates.render(plan.template, context: plan.renderContext)
        #expect(job.contains("VLLMCTL_RENEW_FROM=login"))
        #expect(job.contains("vllmctl_await_handover\n"))
    }

    @Test func thePidFileIsCheckedAndTheStopCommandVerifiesBeforeItKills() {
        #expect(RenewLoop.parsePidFile(Data("1234 abcdefghij0123456789abcdefghij01\n".utf8))?.pid == 1234)
        #expect(RenewLoop.parsePidFile(Data("1 abcdefghij0123456789abcdefghij01\n".utf8)) == nil)
        #expect(RenewLoop.parsePidFile(Data("12 $(rm)\n".utf8)) == nil)
        #expect(RenewLoop.parsePidFile(Data("12 short\n".utf8)) == nil)
        #expect(RenewLoop.token().count == 32)
        #expect(RenewLoop.token() != RenewLoop.token())
        let stop = RenewLoop.stopArgv(pid: 99, token: "t", script: "/d/renew-login.sh")
        #expect(stop.suffix(3) == ["99", "t", "/d/renew-login.sh"])
        #expect(stop[2].contains("/proc/$p/cmdline") && stop[2].contains("-O \"/proc/$p\""))
    }

    /// The stop command against real processes: it stops a process whose command line is the
    /// loop's (script and token), and leaves alone one with another token.
    @Test func theStopCommandKillsOnlyTheVerifiedLoop() async throws {
        let dir = try temporaryDirectory()
        let script = dir + "/" + RenewLoop.script
        try "sleep 30\n".write(toFile: script, atomically: true, encoding: .utf8)
        func start(_ token: String) async throws -> Int {
            let out = try await sh([
                "bash", "-c", #"setsid bash "$0" 1 "$1" </dev/null >/dev/null 2>&1 & echo $!"#, script, token,
            ])
            return try #require(Int(out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let mine = try await start("abcdefghij0123456789abcdefghij01")
        let other = try await start("zzzzefghij0123456789abcdefghij01")
        try await Task.sleep(for: .milliseconds(300))
        let wrong = try await sh(
            RenewLoop.stopArgv(pid: other, token: "abcdefghij0123456789abcdefghij01", script: script))
        #expect(wrong.status == 4)
        #expect(kill(pid_t(other), 0) == 0, "another token's process was left alone")
        let right = try await sh(
            RenewLoop.stopArgv(pid: mine, token: "abcdefghij0123456789abcdefghij01", script: script))
        #expect(right.status == 0, "\(right.stderr)")
        kill(pid_t(other), SIGTERM)
        let gone = try await sh(
            RenewLoop.stopArgv(pid: mine, token: "abcdefghij0123456789abcdefghij01", script: script))
        #expect(gone.status == 3 || gone.status == 4, "\(gone.stderr)")  // gone, or a zombie
    }
}
