import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// Scale-down tells a running endpoint first, on the real cluster: the replica leaves the
/// endpoint's balancer while its job still runs, and only then is it cancelled.
extension LocalCluster.DeployTests {
    @Test func scaleDownTakesTheReplicaOutOfARunningEndpointBeforeCancellingIt() async throws {
        let name = Self.uniqueName("drain")
        var flags = DeploySettings()
        flags.gpus = 0
        let request = DeployRequest(modelOrPreset: "sim", name: name, flags: flags)
        try await deployer.withDeployment(request) { first in
            let kept = try #require(first.connection, "\(terminal.stderr)")
            // Added once the first serves: the two never race for one port.
            let scaled = try await Scaler(deployer: deployer).scale(name, to: 2)
            let victim = try #require(scaled.added.first)
            let victimConnection = try #require(victim.connection, "\(terminal.stderr)")
            let gone = Replica(host: victimConnection.host, port: victimConnection.port)

            // When the endpoint lets the replica go, what does squeue say of its job?
            let stateWhenLeft = Locked<JobState?>(nil)
            let jobID = victim.record.jobID
            let endpoint = try await BalancedEndpoint.start(
                name, context: context, cluster: "local", connector: DirectConnector(), bind: "127.0.0.1",
                port: 0, refreshSeconds: 1,
                onEvent: { event in
                    guard event == .left(gone) else { return }
                    Task {
                        let squeue = Squeue(jobIDs: [jobID])
                        let state = squeue.parse((try? await sh(squeue.argv).stdout) ?? "").first?.state
                        stateWhenLeft.withLock { $0 = state ?? .unknown }
                    }
                })
            try await running(
                {
                    let serving = Set(
                        endpoint.balancer.snapshot().map { Replica(host: $0.host, port: $0.port) })
                    #expect(serving == [gone, Replica(host: kept.host, port: kept.port)])
                    let down = try await Scaler(deployer: deployer).scale(name, to: 1, drainTimeout: 30)
                    #expect(down.removed.map(\.action.jobID) == [jobID])
                    #expect(down.removed.allSatisfy { $0.succeeded }, "\(down.removed)")
                    #expect(
                        FileManager.default.fileExists(
                            atPath: victim.record.deployDir + "/" + DeploymentFiles.draining(jobID: jobID)))
                    // (The squeue asked when it left answers within moments.)
                    for _ in 0..<100 where stateWhenLeft.value == nil {
                        try await Task.sleep(for: .milliseconds(200))
                    }
                    // It left while its job was still running: before scale cancelled it.
                    #expect(stateWhenLeft.value == .running)
                    // The endpoint serves on, from the replica that stays.
                    #expect(
                        endpoint.balancer.snapshot().map { Replica(host: $0.host, port: $0.port) } == [
                            Replica(host: kept.host, port: kept.port)
                        ])
                    let health = try await CurlHTTPClient().send(
                        HTTPRequest(url: "http://127.0.0.1:\(endpoint.port)/health", timeout: 10))
                    #expect(health.status == 200)
                }, thenAwaiting: { await endpoint.stop() })
        }
    }
}
