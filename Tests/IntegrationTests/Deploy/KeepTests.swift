import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// `keep: N` against the real cluster, in `DeployTests` (its deployer, records and terminal): a
/// replica whose server dies is resubmitted under its number with the deployment's key; a model
/// that always fails is given up on after the limit. Every job the tests (and their keepers)
/// submitted is cancelled afterwards.
extension LocalCluster.DeployTests {
    /// A name no other test (or helper) uses, so that the keeper's squeue and sacct see only ours.
    static func uniqueName(_ base: String) -> String {
        base + "-" + String(UInt32.random(in: 0...0xFFFFF), radix: 16)
    }

    /// Rounds of `keeper` every second until `done` holds for the events so far, or `limit`
    /// seconds have passed; returns every event.
    func rounds(
        _ keeper: ReplicaKeeper, limit: Double, until done: ([KeepEvent]) -> Bool
    ) async throws -> [KeepEvent] {
        var events: [KeepEvent] = []
        let deadline = Date().addingTimeInterval(limit)
        while Date() < deadline {
            events += await keeper.round()
            if done(events) { return events }
            try await Task.sleep(for: .seconds(1))
        }
        return events
    }

    @Test func aReplicaWhoseServerDiesIsResubmittedUnderItsNumberWithTheSameKey() async throws {
        let name = Self.uniqueName("keepr")
        var flags = DeploySettings()
        flags.keep = 2
        flags.gpus = 0
        let request = DeployRequest(modelOrPreset: "sim", name: name, flags: flags)
        try await deployer.withDeployment(request) { first in
            #expect(first.connection != nil, "\(terminal.stderr)")
            // Replica 2 is added once the first serves (the simultaneous start is
            // SiblingPortTests').
            let scaled = try await Scaler(deployer: deployer).scale(name, to: 2)
            let victim = try #require(scaled.added.first)
            #expect(victim.record.replica == 2)
            let connection = try #require(victim.connection, "\(terminal.stderr)")
            // The server dies (SIGKILL): its job ends FAILED by itself.
            let node = try #require((1...2).first { TestHost.nodeAddress($0) == connection.host })
            let ss = try await sh(
                TestHost.node(node).prefix + ["ss", "-ltnpH", "( sport = :\(connection.port) )"])
            let pids = ss.stdout.matches(of: /pid=(\d+)/).compactMap { pid_t(String($0.1)) }
            try #require(!pids.isEmpty, "\(ss.stdout)")
            for pid in Set(pids) { kill(pid, SIGKILL) }

            // A gateway's endpoint keeps the deployment: `keep: 2` from its deployment.json,
            // a round at each refresh of its replica set.
            let kept = Locked<[KeepEvent]>([])
            let keeper = try #require(
                try await ReplicaKeeper.configured(
                    name, scaler: Scaler(deployer: deployer),
                    onEvent: { event in kept.withLock { $0.append(event) } }))
            #expect(keeper.policy.keep == 2)
            let endpoint = try await BalancedEndpoint.start(
                name, context: context, cluster: "local", connector: DirectConnector(), bind: "127.0.0.1",
                port: 0,
                refreshSeconds: 1, keeper: keeper, onEvent: { _ in })
            try await running(
                {
                    var newJob: String?
                    // A keeper re-asks sacct every 30 s while a replica is missing: room for
                    // a slurmdbd that lists the failed job late.
                    for _ in 0..<150 where newJob == nil {
                        try await Task.sleep(for: .seconds(1))
                        newJob =
                            kept.value.compactMap { event -> String? in
                                if case .resubmitted(_, _, let job, _, _) = event { return job }
                                return nil
                            }.first
                    }
                    let events = kept.value
                    if newJob == nil {
                        // What the endpoint's replica set last saw, and what squeue and sacct say
                        // now: enough to tell a keeper that never ran from one that decided
                        // nothing.
                        let queued = await endpoint.replicas.queued
                        let sacct = try? await sh([
                            "sacct", "-X", "-n", "-P", "-o", "JobID,JobName,State,WorkDir", "--name",
                            JobName.of(name) + "," + JobName.of(name, replica: 2),
                        ])
                        Issue.record(
                            "no resubmission in 150 s; endpoint's queue: \(queued.map { $0.map { "\($0.jobID) \($0.name) \($0.state)" } } ?? ["nil"]); sacct: \(sacct?.stdout ?? "failed")"
                        )
                    }
                    let replacement = try #require(newJob, "\(events)")
                    let resubmitted = events.compactMap { event -> JobSnapshot? in
                        if case .resubmitted(_, let failed, _, _, _) = event { return failed }
                        return nil
                    }
                    #expect(resubmitted.map(\.jobID) == [victim.record.jobID], "\(events)")
                    #expect(resubmitted.first?.state == .failed)
                    #expect(
                        events.map(\.description).contains {
                            $0.contains(
                                "keep: \(name)@2 (job \(victim.record.jobID)) ended FAILED; resubmitted it as job \(replacement)"
                            )
                        }, "\(events)")
                    // The failed job's directory holds the claim.
                    #expect(
                        FileManager.default.fileExists(
                            atPath: victim.record.deployDir + "/replaced-\(victim.record.jobID)"))
                    // The replacement is replica 2 again, with the deployment's key.
                    let record = try #require(
                        context.records.all(cluster: "local").first { $0.jobID == replacement })
                    #expect(record.replica == 2)
                    #expect(record.apiKey == connection.apiKey)

                    // The endpoint follows it: two replicas in rotation again, one of them the
                    // replacement, and requests through the endpoint are answered.
                    var serving: [ReplicaEndpoint] = []
                    for _ in 0..<90 {
                        serving = (try? await endpoint.replicas.refresh()) ?? []
                        if serving.contains(where: { $0.jobID == replacement }),
                            endpoint.balancer.snapshot().filter({ $0.state == "in_rotation" }).count == 2
                        {
                            break
                        }
                        try await Task.sleep(for: .seconds(1))
                    }
                    #expect(serving.map(\.replica) == [1, 2], "\(serving)")
                    #expect(endpoint.balancer.snapshot().filter { $0.state == "in_rotation" }.count == 2)
                    for _ in 0..<4 {
                        let models = try await CurlHTTPClient().send(
                            HTTPRequest(url: "http://127.0.0.1:\(endpoint.port)/v1/models")
                                .authorized(try APIKey(connection.apiKey)))
                        #expect(models.status == 200)
                    }

                    // status: each replica's requests, from the simulator's own /metrics (the
                    // first job, unnumbered, is replica 1).
                    let rows = try await StatusBuilder(context: context, cluster: "local").build(
                        includeEnded: false
                    )
                    .filter { $0.name == name && $0.state == JobState.running.rawValue }
                    #expect(rows.count == 2)
                    #expect(rows.allSatisfy { $0.requestsRunning == 0 && $0.requestsWaiting == 0 }, "\(rows)")

                    // Both up again: the rounds since resubmitted nothing more.
                    #expect(
                        kept.value.filter { if case .resubmitted = $0 { true } else { false } }.count == 1,
                        "\(kept.value)")
                }, thenAwaiting: { await endpoint.stop() })
        }
    }

    @Test func aModelThatAlwaysFailsIsGivenUpAfterTheLimit() async throws {
        let name = Self.uniqueName("keepf")
        var flags = DeploySettings()
        flags.keep = 1
        flags.gpus = 0
        // Fails before the server starts, every time (the setting is in deployment.json).
        flags.setup = ["echo 'this model is broken' >&2; exit 3"]
        let request = DeployRequest(modelOrPreset: "sim", name: name, flags: flags, wait: false)
        try await deployer.withDeployment(request) { outcome in
            let first = try #require(outcome.record)
            let keeper = ReplicaKeeper(
                scaler: Scaler(deployer: deployer), name: name,
                policy: KeepPolicy(keep: 1, maxResubmissions: 2, window: 600), onEvent: { _ in })
            let events = try await rounds(keeper, limit: 180) { events in
                events.contains { if case .gaveUp = $0 { true } else { false } }
            }
            let attempts = events.compactMap { event -> Int? in
                if case .resubmitted(_, _, _, let attempt, _) = event { return attempt }
                return nil
            }
            #expect(attempts == [1, 2], "\(events)")
            let gaveUp = try #require(
                events.first { if case .gaveUp = $0 { true } else { false } }, "\(events)")
            guard case .gaveUp(_, let failed, let failures, _) = gaveUp else { return }
            #expect(failures == 3)
            #expect(failed.state == .failed)
            #expect(failed.jobID != first.jobID)
            let message = "\(gaveUp)"
            #expect(message.contains("keep: \(name) failed 3 times within 10 min"), "\(message)")
            #expect(message.contains("not resubmitting it again"), "\(message)")

            // It stays given up: more rounds submit nothing, and say nothing is left.
            let later = try await rounds(keeper, limit: 10) { events in
                events.contains(.nothingLeft(name: name))
            }
            #expect(!later.contains { if case .resubmitted = $0 { true } else { false } }, "\(later)")
            #expect(later.contains(.nothingLeft(name: name)), "\(later)")
            #expect(context.records.all(cluster: "local").count == 3)
        }
    }
}
