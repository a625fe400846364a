import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

extension LocalCluster {
    /// `deploy --replicas` against the real cluster: one job per replica, one key.
    @Suite struct ReplicaDeployTests {
        @Test func scaleAddsAReplicaWithTheSameKeyAndRemovesTheNewest() async throws {
            let cli = try CLI()
            try await cli.withDeployment(["--name", "grow"]) { _ in
                let up = try await cli.run(["scale", "grow", "2"])
                #expect(up.status == 0, "stderr: \(up.stderr)")
                #expect(up.stdout.contains("Added grow@2"), "\(up.stdout)")
                let store = DeploymentStore(directory: cli.stateDir)
                let live = store.replicas(of: "grow", cluster: "local")
                #expect(live.count == 2)
                #expect(Set(live.map(\.apiKey)).count == 1)
                let added = try #require(live.first { $0.replica == 2 })
                let info = try JSONDecoder().decode(
                    ConnectionRecord.self,
                    from: Data(
                        contentsOf: URL(fileURLWithPath: added.deployDir + "/" + DeploymentFiles.infoJSON)))
                #expect(info.apiKey == added.apiKey)

                // Both idle: the newest goes.
                let down = try await cli.run(["scale", "grow", "1", "--drain-timeout", "5"])
                #expect(down.status == 0, "stderr: \(down.stderr)")
                #expect(down.stdout.contains("Cancelled job \(added.jobID)"), "\(down.stdout)")
                let left = store.replicas(of: "grow", cluster: "local")
                #expect(left.map(\.jobID) == live.filter { $0.replica == nil }.map(\.jobID))
            }
        }

        @Test func twoReplicasOnTwoNodesShareOneKeyAndGoTogether() async throws {
            let cli = try CLI()
            // Two GPUs each: a node apiece.
            let args = ["--name", "rep", "--replicas", "2", "--gpus", "2", "--wait-all"]
            try await cli.withDeployment(args) { deploy in
                let object = deploy.object
                let replicas = try #require(object["replicas"] as? [[String: Any]])
                #expect(replicas.count == 2)
                #expect(replicas.allSatisfy { $0["state"] as? String == "ready" }, "\(replicas)")
                #expect(Set(replicas.compactMap { $0["node"] as? String }) == ["node1", "node2"])
                let key = try #require(object["api_key"] as? String)
                // Each replica wrote its own connection file, with the one key; each serves it.
                let store = DeploymentStore(directory: cli.stateDir)
                let records = store.replicas(of: "rep", cluster: "local")
                #expect(records.map(\.replica) == [1, 2])
                for record in records {
                    let data = try Data(
                        contentsOf: URL(fileURLWithPath: record.deployDir + "/" + DeploymentFiles.infoJSON))
                    let info = try JSONDecoder().decode(ConnectionRecord.self, from: data)
                    #expect(info.apiKey == key)
                    let models = try await CurlHTTPClient().send(
                        HTTPRequest(url: info.serverURL + "/v1/models").authorized(try APIKey(key)))
                    #expect(models.status == 200)
                }
                // The key is not in any job's script.
                for record in records {
                    let script = try String(contentsOfFile: record.deployDir + "/job.sbatch", encoding: .utf8)
                    #expect(!script.contains(key))
                }

                let status = try await cli.run(["status"])
                #expect(
                    status.stdout.contains("rep@1") && status.stdout.contains("rep@2"), "\(status.stdout)")
                let info = try await cli.run(["info", "rep"])
                #expect(info.stdout.contains("Replicas (2, one key)"), "\(info.stdout)")

                // One replica's server dies: `query NAME` goes to the other (the seed's fallback).
                let dead = try #require(records.first)
                let deadInfo = try JSONDecoder().decode(
                    ConnectionRecord.self,
                    from: Data(
                        contentsOf: URL(fileURLWithPath: dead.deployDir + "/" + DeploymentFiles.infoJSON)))
                let node = try #require((1...2).first { TestHost.nodeAddress($0) == deadInfo.host })
                let ss = try await sh(
                    TestHost.node(node).prefix + ["ss", "-ltnpH", "( sport = :\(deadInfo.port) )"])
                let pids = ss.stdout.matches(of: /pid=(\d+)/).compactMap { pid_t(String($0.1)) }
                #expect(!pids.isEmpty, "\(ss.stdout)")
                for pid in Set(pids) { kill(pid, SIGKILL) }
                for _ in 0..<4 {
                    let query = try await cli.run(["query", "rep", "--prompt", "hello", "--max-tokens", "4"])
                    #expect(query.status == 0, "stderr: \(query.stderr)")
                }

                let teardown = try await cli.run(["teardown", "rep"])
                #expect(teardown.status == 0, "stderr: \(teardown.stderr)")
                // The live replica is cancelled (the one whose server died has ended by itself).
                #expect(teardown.stdout.contains("Cancelled job \(records[1].jobID)"), "\(teardown.stdout)")
                let ids = records.map(\.jobID)
                let squeue = Squeue(jobIDs: ids)
                let left = try await sh(squeue.argv)
                #expect(squeue.parse(left.stdout).filter { !$0.state.isFinal }.isEmpty)
            }
        }
    }
}
