import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

extension LocalCluster {
    /// Issues 14 and 15 together: every replica of a renewing deployment renews itself (its
    /// job submits its own successor, under its own number, with the one key), and the
    /// balancing tunnel on the laptop follows the successors without a failed request.
    @Suite struct RenewReplicasTests {
        /// The deployment's jobs in the queue, replicas included: (job id, job name, state).
        static func queued(_ name: String) async throws -> [(id: String, jobName: String, state: String)] {
            let out = try await sh(["squeue", "-h", "-o", "%i|%j|%T"]).stdout
            return out.split(separator: "\n").compactMap {
                let f = $0.split(separator: "|").map(String.init)
                guard f.count == 3, JobName.belongs(f[1], to: name) else { return nil }
                return (f[0], f[1], f[2])
            }
        }

        @Test func eachReplicaHandsOverToItsOwnSuccessorUnderTrafficWithTheOneKey() async throws {
            let cli = try CLI.laptop()
            let name = "renrep-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
            let scratch = try temporaryDirectory()
            let stop = scratch + "/stop"
            try await running(
                {
                    let d = try await cli.deploy(
                        [
                            "--cluster", "hpc", "--name", name, "--replicas", "2", "--wait-all", "--gpus",
                            "0",
                            "--renew", "--time", "3", "--timeout", "50", "--renew-margin", "60",
                            "--drain-timeout", "20", "--setup", "export VLLM_SIM_LOAD_SECONDS=20",
                        ] + RenewTests.port)
                    let records = DeploymentStore(directory: cli.stateDir).replicas(of: name, cluster: "hpc")
                    try #require(records.map(\.replica) == [1, 2], "\(records)")
                    let firsts = records.map(\.jobID)
                    let dirs = records.map(\.deployDir)
                    #expect(dirs.map(RenewTests.publishedJob) == firsts)

                    let base = try await RenewTests.backgroundTunnel(cli, to: name)
                    try base.write(toFile: scratch + "/url", atomically: true, encoding: .utf8)
                    let trafficArgv =
                        TestHost.laptop.prefix + [
                            "python3", repoRoot + "/Tests/bench/steady.py", scratch + "/url",
                            try writtenKeyFile(d.apiKey), stop,
                        ]
                    let traffic = Task { try await sh(trafficArgv, timeout: .seconds(600)) }

                    // Each replica's directory publishes a successor's job, and the first jobs end.
                    var published = firsts
                    var queue: [(id: String, jobName: String, state: String)] = []
                    for _ in 0..<360 {
                        try await Task.sleep(for: .seconds(1))
                        published = zip(dirs, published).map { RenewTests.publishedJob($0) ?? $1 }
                        queue = try await Self.queued(name)
                        let ids = Set(queue.map(\.id))
                        if zip(published, firsts).allSatisfy({ $0 != $1 }), ids.isDisjoint(with: firsts) {
                            break
                        }
                    }
                    // A few more seconds of traffic on the successors alone.
                    try await Task.sleep(for: .seconds(3))
                    _ = FileManager.default.createFile(atPath: stop, contents: nil)
                    let client = try await traffic.value

                    #expect(
                        zip(published, firsts).allSatisfy { $0 != $1 },
                        "published: \(published), firsts \(firsts)")
                    let result = try #require(
                        try JSONSerialization.jsonObject(with: Data(client.stdout.utf8)) as? [String: Any],
                        "\(client.stdout) \(client.stderr)")
                    #expect(result["failed"] as? Int == 0, "\(result)")
                    #expect((result["ok"] as? Int ?? 0) > 300, "\(result)")

                    // Each successor runs under its predecessor's replica number, with the key.
                    for (k, dir) in dirs.enumerated() {
                        let data = try #require(
                            FileManager.default.contents(atPath: dir + "/" + DeploymentFiles.infoJSON))
                        let info = try JSONDecoder().decode(ConnectionRecord.self, from: data)
                        #expect(info.apiKey == d.apiKey)
                        #expect(info.jobID == published[k])
                        let row = queue.first { $0.id == published[k] }
                        #expect(row?.jobName == JobName.of(name, replica: k + 1), "\(queue)")
                        #expect(row?.state == "RUNNING", "\(queue)")
                    }

                    let down = try await cli.run(["teardown", name, "--cluster", "hpc", "--yes"])
                    #expect(down.status == 0, "stderr: \(down.stderr)")
                    var left = try await Self.queued(name)
                    for _ in 0..<20 where !left.isEmpty {
                        try await Task.sleep(for: .seconds(1))
                        left = try await Self.queued(name)
                    }
                    #expect(left.isEmpty, "left after teardown: \(left)")
                },
                thenAwaiting: {
                    _ = FileManager.default.createFile(atPath: stop, contents: nil)
                    _ = try? await cli.run(["tunnel", "--close", name, "--cluster", "hpc"])
                    for _ in 0..<3 {
                        let ids = ((try? await Self.queued(name)) ?? []).map(\.id)
                        if ids.isEmpty { break }
                        _ = try? await sh(Scancel(jobIDs: ids).argv)
                        try? await Task.sleep(for: .seconds(1))
                    }
                    await cli.cancelAll()
                })
        }
    }
}
