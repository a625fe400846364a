import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// Two replicas of one deployment starting together on one node: they share the key, so a
/// replica whose port a sibling took first sees /health and /v1/models answer with its key.
/// The job checks that the listening socket is its own server's and moves on to the next port
/// otherwise: each replica publishes its own server.
extension LocalCluster.DeployTests {
    @Test func twoReplicasStartingTogetherOnOneNodePublishTheirOwnServers() async throws {
        let name = Self.uniqueName("twins")
        var flags = DeploySettings()
        flags.replicas = 2
        flags.gpus = 0
        flags.nodelist = "node1"
        // Replica 1's server binds 3 s after its job picked the port, replica 2's 10 s after:
        // both jobs pick the same free port, replica 1 serves on it, and replica 2's job sees it
        // answer with the shared key while its own server has not tried to bind yet.
        flags.setup = ["export VLLM_SIM_LOAD_SECONDS=0"]
        flags.serverCommand = [
            "bash", "-c",
            "case \"$SLURM_JOB_NAME\" in *@1) sleep 3 ;; *) sleep 10 ;; esac; exec \"$0\" \"$@\"",
            repoRoot + "/slurm/sim/bin/vllm", "serve",
        ]
        let request = DeployRequest(modelOrPreset: "sim", name: name, flags: flags, waitAll: true)
        try await deployer.withDeployment(request) { outcome in
            let connections = outcome.replicas.compactMap(\.connection)
            try #require(connections.count == 2, "\(terminal.stderr)")
            #expect(Set(connections.map(\.port)).count == 2, "\(connections.map(\.serverURL))")
            // Each still runs a while later (a replica that had published its sibling's port
            // would have ended with "address already in use").
            try await Task.sleep(for: .seconds(4))
            let ids = outcome.replicas.map(\.record.jobID)
            let squeue = Squeue(jobIDs: ids)
            let jobs = squeue.parse(try await sh(squeue.argv).stdout)
            #expect(jobs.count == 2 && jobs.allSatisfy { $0.state == .running }, "\(jobs)")
            for connection in connections {
                let models = try await CurlHTTPClient().send(
                    HTTPRequest(url: connection.serverURL + "/v1/models").authorized(
                        try APIKey(connection.apiKey)))
                #expect(models.status == 200)
            }
            for replica in outcome.replicas {
                let log = replica.record.deployDir + "/" + DeploymentFiles.stderr(jobID: replica.record.jobID)
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                #expect(
                    !text.contains("address already in use") || text.contains("trying the next"), "\(text)")
            }
        }
    }
}
