import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// The Ray processes (raylet, gcs_server, …) of job `jobID` on any node, found by the Ray temp
/// dir that the multi-node template gives each node (`/tmp/vllmctl-ray-JOB-NODE`): pgrep sees
/// every namespace's processes, and this tells the job's apart from everyone else's.
func rayProcesses(job jobID: String) async throws -> [String] {
    let r = try await sh(["pgrep", "-af", "vllmctl-ray-\(jobID)-"])
    return r.stdout.split(separator: "\n").map(String.init).filter {
        !$0.contains("pgrep") && ($0.contains("raylet") || $0.contains("gcs_server") || $0.contains("ray"))
    }
}

/// The job's Ray temp dirs (`/tmp/vllmctl-ray-JOB-NODE`) still in /tmp.
func rayTempDirs(job jobID: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
    return names.filter { $0.hasPrefix("vllmctl-ray-\(jobID)-") }.map { "/tmp/" + $0 }
}

/// Waits up to `seconds` for every Ray process of the job, and its temp dirs, to be gone;
/// returns those left.
func rayProcessesGone(job jobID: String, seconds: Int = 20) async throws -> [String] {
    var left: [String] = []
    for _ in 0..<(seconds * 2) {
        left = try await rayProcesses(job: jobID) + rayTempDirs(job: jobID)
        if left.isEmpty { return [] }
        try await Task.sleep(for: .milliseconds(500))
    }
    return left
}

/// `--nodes 2 --gpus 4 -t 8` is refused before anything is submitted, saying what fits.
@Test func multiNodeShapesThatDoNotFitAreRefusedBeforeSubmission() async throws {
    var cli = try CLI()
    cli.configPath = try renderedClusterConfig()
    let r = try await cli.run([
        "deploy", "sim", "--nodes", "2", "--gpus", "4", "-t", "8", "--name", "mn-refused",
    ])
    #expect(r.status != 0)
    #expect(r.stderr.contains("Tensor parallel 8 does not fit in one node's 4 GPUs"), "\(r.stderr)")
    #expect(r.stderr.contains("-t 4 --pipeline-parallel-size 2"), "\(r.stderr)")
    #expect(!r.stderr.contains("Submitted"), "\(r.stderr)")
    #expect(DeploymentStore(directory: cli.stateDir).all(cluster: "local").isEmpty)
}

extension LocalCluster {
    /// One server across both nodes on a real Ray cluster (Ray from PyPI, slurm/install-ray.sh):
    /// the simulator joins the job's Ray cluster and refuses to serve unless both nodes and
    /// their 4 GPUs are in it (docs/MULTINODE.md).
    @Suite struct MultiNodeTests {
        func cancel(_ cli: CLI, cluster: String) async {
            let ids = DeploymentStore(directory: cli.stateDir).all(cluster: cluster).map(\.jobID)
            if !ids.isEmpty { _ = try? await sh(Scancel(jobIDs: ids).argv) }
        }

        @Test func twoNodeDeployFromTheLaptopServesAndTeardownLeavesNoRay() async throws {
            var cli = try CLI()
            cli.configPath = try renderedClusterConfig()
            cli.extraEnvironment["VLLMCTL_SSH_CONFIG"] = LocalSSH.config
            cli.host = .laptop
            var jobID = ""
            do {
                let deploy = try await cli.run(
                    ["deploy", "sim-2node", "--cluster", "hpc", "--name", "mn-lap", "--json"],
                    timeout: .seconds(300))
                #expect(deploy.status == 0, "stderr: \(deploy.stderr)")
                let object = try #require(
                    try JSONSerialization.jsonObject(with: Data(deploy.stdout.utf8)) as? [String: Any])
                jobID = try #require(object["job_id"] as? String)
                #expect((object["url"] as? String)?.hasPrefix("http://10.77.0.1") == true, "\(object)")

                let q = try await cli.run(
                    ["query", "mn-lap", "--cluster", "hpc", "--prompt", "hello", "--max-tokens", "4"])
                #expect(q.status == 0, "stderr: \(q.stderr)")
                #expect(!q.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)

                let status = try await cli.run(["status", "--cluster", "hpc", "--json"])
                #expect(status.status == 0, "stderr: \(status.stderr)")
                let report = try #require(
                    try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
                let row = try #require(
                    (report["deployments"] as? [[String: Any]])?.first { $0["name"] as? String == "mn-lap" })
                #expect(row["node"] as? String == "node1,node2", "\(row)")
                #expect(row["health"] as? String == "healthy", "\(row)")
                let table = try await cli.run(["status", "--cluster", "hpc"])
                #expect(table.stdout.contains("node1,node2"), "\(table.stdout)")

                // Each node's Ray log, the worker's too.
                let worker = try await cli.run(["logs", "mn-lap", "--cluster", "hpc", "--node", "node2"])
                #expect(worker.status == 0, "stderr: \(worker.stderr)")
                #expect(worker.stdout.contains("Ray worker on node2"), "\(worker.stdout)")
                let err = try await cli.run([
                    "logs", "mn-lap", "--cluster", "hpc", "--stderr", "--lines", "200",
                ])
                #expect(err.stdout.contains("node2 joined the Ray cluster with 2 GPU(s)"), "\(err.stdout)")
                #expect(err.stdout.contains("Ray cluster formed: 2 nodes, 4 GPUs"), "\(err.stdout)")
                // The simulator placed its ranks on both nodes through Ray.
                let out = try await cli.run(["logs", "mn-lap", "--cluster", "hpc", "--lines", "400"])
                #expect(out.stdout.contains("Ray cluster: 2 node(s), 4 GPU(s)"), "\(out.stdout)")
                #expect(out.stdout.contains("on node1, CUDA_VISIBLE_DEVICES"), "\(out.stdout)")
                #expect(out.stdout.contains("on node2, CUDA_VISIBLE_DEVICES"), "\(out.stdout)")
                #expect(!(try await rayProcesses(job: jobID)).isEmpty, "Ray should run while the server does")
                #expect(rayTempDirs(job: jobID).count == 2, "each node's Ray temp dir while it runs")

                let down = try await cli.run(["teardown", "mn-lap", "--cluster", "hpc", "--yes"])
                #expect(down.status == 0, "stderr: \(down.stderr)")
                let left = try await rayProcessesGone(job: jobID)
                #expect(left.isEmpty, "Ray processes left after teardown: \(left)")
            } catch {
                await cancel(cli, cluster: "hpc")
                throw error
            }
            await cancel(cli, cluster: "hpc")
        }

        /// Deploys `sim-2node` with a `ray` that rewrites each worker's arguments by the bash
        /// `case` branch `rewrite` (a test double for this job only: no node's link is touched),
        /// and a 15 s join timeout. Checks that the deploy fails, the job ends FAILED instead of
        /// holding its nodes until its time limit, and no Ray process is left; returns deploy's
        /// stderr.
        func deployWithBrokenWorker(name: String, rewrite: String) async throws -> String {
            var cli = try CLI()
            cli.configPath = try renderedClusterConfig()
            let fake = try temporaryDirectory() + "/ray"
            let script = """
                #!/bin/bash
                # Test double: the real ray, with each worker's arguments rewritten.
                worker=0
                for a in "$@"; do [[ $a == --address=* ]] && worker=1; done
                args=()
                for a in "$@"; do
                  (( worker )) && case "$a" in \(rewrite) esac
                  args+=("$a")
                done
                exec \(repoRoot)/.cluster/ray-venv/bin/ray "${args[@]}"

                """
            try script.write(toFile: fake, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fake)
            return try await cli.cleaningUp {
                let start = Date()
                let deploy = try await cli.run(
                    [
                        "deploy", "sim-2node", "--name", name, "--setup",
                        "export VLLMCTL_RAY=\(fake) VLLMCTL_RAY_JOIN_TIMEOUT=15",
                    ], timeout: .seconds(300))
                let took = Date().timeIntervalSince(start)
                #expect(deploy.status != 0)
                #expect(deploy.stderr.contains("VLLMCTL_RAY_JOIN_TIMEOUT"), "\(deploy.stderr)")
                #expect(deploy.stderr.contains("FAILED"), "\(deploy.stderr)")
                let record = try #require(
                    DeploymentStore(directory: cli.stateDir).all(cluster: "local").first)
                let sacct = try await sh([
                    "sacct", "-n", "-X", "-P", "-o", "State,Elapsed", "-j", record.jobID,
                ])
                #expect(sacct.stdout.contains("FAILED"), "\(sacct.stdout)")
                // Queue waits aside, the job ended shortly after its join timeout.
                #expect(took < 240, "\(took) s")
                let left = try await rayProcessesGone(job: record.jobID)
                #expect(left.isEmpty, "Ray processes left: \(left)")
                return deploy.stderr
            }
        }

        /// A worker that cannot reach the head (sent to a port where no head listens) fails the
        /// deploy within the join timeout, naming the node and quoting its Ray log.
        @Test func aWorkerThatCannotJoinFailsTheDeployQuicklyNamingTheNode() async throws {
            let stderr = try await deployWithBrokenWorker(
                name: "mn-nojoin", rewrite: #"--address=*) a="${a%:*}:1" ;;"#)
            #expect(stderr.contains("node2 has not joined"), "\(stderr)")
            #expect(stderr.contains("ray-node2-"), "\(stderr)")
        }

        /// A worker that joins without its GPUs (hidden from Ray) is not a formed cluster.
        @Test func aWorkerThatJoinsWithoutItsGPUsFailsTheDeployNamingTheNode() async throws {
            let stderr = try await deployWithBrokenWorker(
                name: "mn-nogpu", rewrite: "--num-gpus=*) a=--num-gpus=0 ;;")
            #expect(stderr.contains("node2 joined with 0 of 2 GPUs"), "\(stderr)")
        }

        /// Teardown while Ray is still starting (before the server) stops Ray on both nodes.
        @Test func teardownWhileRayStartsLeavesNoRay() async throws {
            var cli = try CLI()
            cli.configPath = try renderedClusterConfig()
            try await cli.cleaningUp {
                let deploy = try await cli.run([
                    "deploy", "sim-2node", "--name", "mn-early", "--no-wait", "--json",
                ])
                #expect(deploy.status == 0, "stderr: \(deploy.stderr)")
                let object = try #require(
                    try JSONSerialization.jsonObject(with: Data(deploy.stdout.utf8)) as? [String: Any])
                let jobID = try #require(object["job_id"] as? String)
                var started = false
                for _ in 0..<240 where !started {
                    started = try await rayProcesses(job: jobID).contains { $0.contains("raylet") }
                    if !started { try await Task.sleep(for: .milliseconds(500)) }
                }
                #expect(started, "no raylet of job \(jobID) appeared")
                let down = try await cli.run(["teardown", "mn-early", "--yes"])
                #expect(down.status == 0, "stderr: \(down.stderr)")
                let left = try await rayProcessesGone(job: jobID)
                #expect(left.isEmpty, "Ray processes left after teardown: \(left)")
            }
        }
    }
}
