import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

extension LocalCluster {
    /// Issue 15's login-node fallback. The test cluster's partition `loginonly` has
    /// `AllocNodes=vm,localhost` (slurm/cluster-up.sh): `auto` must pick login-node mode
    /// there. The cluster cannot enforce AllocNodes (one munged signs for every namespace), so
    /// what is tested is the detection and the loop: deployed from the laptop, the loop runs on
    /// the login host, submits the successor, which takes over with the same key; teardown
    /// leaves no loop and no job.
    @Suite struct RenewLoginTests {
        /// The network namespace of process `pid` (`net:[INODE]`), nil when it is gone.
        static func netns(_ pid: Int) -> String? {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/net")
        }

        /// Processes whose command line mentions `text`.
        static func processes(mentioning text: String) -> [Int] {
            let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return pids.compactMap(Int.init).filter { pid in
                guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else {
                    return false
                }
                return String(decoding: data, as: UTF8.self).contains(text)
            }
        }

        @Test func onAPartitionThatForbidsComputeNodesTheLoginNodeRenewsTheChain() async throws {
            let cli = try CLI.laptop()
            let name = "renewlogin-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
            try await running(
                {
                    let d = try await cli.deploy(
                        ["--cluster", "hpc", "--name", name, "--partition", "loginonly"]
                            + RenewFailureTests.shortChain + RenewTests.port
                            + ["--setup", "export VLLM_SIM_LOAD_SECONDS=3"])
                    // The user is told which mode runs, and why.
                    let notes = d.result.stderr
                    #expect(notes.contains("Renewal runs from the login node"), "\(notes)")
                    #expect(notes.contains("AllocNodes (vm,localhost)"), "\(notes)")
                    #expect(notes.contains("Renewing from the login node: the renewal loop (pid"), "\(notes)")
                    #expect(d.object["renew_from"] as? String == "login", "\(d.object)")

                    // The loop runs on the login host (not in the laptop's namespace), from a
                    // script without the key.
                    let script = d.deployDir + "/" + RenewLoop.script
                    let pidText = try String(
                        contentsOfFile: d.deployDir + "/" + RenewLoop.pidFile, encoding: .utf8)
                    let (pid, _) = try #require(RenewLoop.parsePidFile(Data(pidText.utf8)))
                    #expect(Self.processes(mentioning: script) == [pid])
                    let login = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")
                    #expect(Self.netns(pid) == login)
                    let laptopInode = try await sh(["stat", "-L", "-c", "%i", "/var/run/netns/vc-laptop"])
                    #expect(
                        Self.netns(pid)
                            != "net:[\(laptopInode.stdout.trimmingCharacters(in: .whitespacesAndNewlines))]")
                    let body = try String(contentsOfFile: script, encoding: .utf8)
                    #expect(!body.contains(d.apiKey))
                    let mode =
                        try FileManager.default.attributesOfItem(atPath: script)[.posixPermissions] as? Int
                    #expect(mode == 0o700)

                    // At least one handover: the successor, submitted by the loop, publishes
                    // its connection file with the same key; the first job ends by itself.
                    let successor = try #require(
                        try await RenewPendingTests.poll(240) {
                            RenewTests.publishedJob(d.deployDir).flatMap { $0 == d.jobID ? nil : $0 }
                        }, "no successor took over")
                    let first = RenewFailureTests.chain(d.deployDir, d.jobID)
                    #expect(
                        first?.from == "login" && first?.successor == successor,
                        "\(String(describing: first))")
                    let data = try #require(
                        FileManager.default.contents(atPath: d.deployDir + "/" + DeploymentFiles.infoJSON))
                    #expect(try JSONDecoder().decode(ConnectionRecord.self, from: data).apiKey == d.apiKey)
                    let curl = try await RenewTests.curlFromFile(d.deployDir)
                    #expect(curl.stdout.contains("choices"), "\(curl.stdout) \(curl.stderr)")
                    let log =
                        (try? String(contentsOfFile: d.deployDir + "/" + RenewLoop.log, encoding: .utf8))
                        ?? ""
                    #expect(log.contains("successor job \(successor) is ready"), "\(log)")
                    let handed = try await RenewPendingTests.poll(90) {
                        try await RenewTests.queued(name).map(\.id).contains(d.jobID) ? nil : true
                    }
                    #expect(handed == true, "job \(d.jobID) did not hand over and end")
                    #expect(
                        RenewFailureTests.chain(d.deployDir, d.jobID)?.state == "handed-over",
                        "\(String(describing: RenewFailureTests.chain(d.deployDir, d.jobID)))")
                    // The loop follows the successor.
                    #expect(Self.processes(mentioning: script) == [pid])
                    let status = try await cli.run(["status", "--cluster", "hpc"])
                    #expect(
                        status.stdout.contains("of \(name) (job \(successor)"), "\(status.stdout)")
                    #expect(
                        status.stdout.contains("[successors submitted from the login node]"),
                        "\(status.stdout)")

                    // Teardown: no loop, no job.
                    let down = try await cli.run(["teardown", name, "--cluster", "hpc"])
                    #expect(down.status == 0, "\(down.stdout) \(down.stderr)")
                    #expect(
                        down.stdout.contains("Stopped the renewal loop of \(name) (pid \(pid)"),
                        "\(down.stdout)")
                    #expect(Self.processes(mentioning: script).isEmpty)
                    #expect(try await RenewTests.queued(name).isEmpty)
                    try await Task.sleep(for: .seconds(5))
                    #expect(try await RenewTests.queued(name).isEmpty)
                },
                thenAwaiting: {
                    for pid in Self.processes(mentioning: "/\(name)-") { kill(pid_t(pid), SIGTERM) }
                    await RenewTests.cancelChain(name)
                    await cli.cancelAll()
                })
        }
    }
}
