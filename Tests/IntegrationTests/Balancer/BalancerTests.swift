import Foundation
import NIOCore
import TestSupport
import Testing

@testable import VLLMCtlKit

/// The balancing endpoint against simulator processes on this machine (no Slurm).
@Suite(.serialized) struct BalancerTests {
    let key = APIKey.generate().value

    func twoSims(tokenDelay: Double = 0.01) async throws -> (BalancerSim, BalancerSim) {
        let a = try BalancerSim(key: key, tokenDelay: tokenDelay)
        let b = try BalancerSim(key: key, tokenDelay: tokenDelay)
        try await a.waitHealthy()
        try await b.waitHealthy()
        return (a, b)
    }

    func mixed(_ i: Int) -> TestRequest {
        .completion(stream: i % 2 == 0, key: key, maxTokens: 4 + i % 5, prompt: "request \(i)")
    }

    @Test func spreadsFourHundredMixedRequestsOverTwoReplicas() async throws {
        let (a, b) = try await twoSims()
        try await withBalancer(replicas: [a.replica, b.replica], settings: testBalancerSettings()) {
            balancer, port in
            let results = await TestClient.many(port: port, count: 400, concurrency: 32) { mixed($0) }
            let failed = results.filter { !$0.ok }
            #expect(failed.isEmpty, "\(failed.prefix(3))")
            for (i, r) in results.enumerated() where i % 2 == 0 {
                #expect(r.body.contains("data: [DONE]"))
            }
            let stats = await settledSnapshot(balancer)
            #expect(stats.map(\.successes).reduce(0, +) == 400)
            for s in stats {
                #expect((120...280).contains(s.successes), "\(s.replica) served \(s.successes) of 400")
                #expect(s.failures == 0 && s.inFlight == 0)
                #expect(s.latencyP50 != nil && s.latencyP99 != nil && s.successRate == 1)
            }
        }
    }

    @Test func failsOverWhenAReplicaIsKilledAndTakesItBackWhenItReturns() async throws {
        let (a, b) = try await twoSims(tokenDelay: 0.02)
        let events = BalancerEventLog()
        try await withBalancer(
            replicas: [a.replica, b.replica], settings: testBalancerSettings(), onEvent: events.callback
        ) { balancer, port in
            let results = await TestClient.many(
                port: port, count: 200, concurrency: 16, { mixed($0) },
                afterEach: { done in if done == 60 { a.kill() } })
            // A request whose response had not started never fails: it went to the other replica.
            let unstartedFailures = results.filter { !$0.ok && !$0.started }
            #expect(unstartedFailures.isEmpty, "\(unstartedFailures.prefix(3))")
            // Only streams cut mid-response may fail.
            #expect(results.filter { !$0.ok }.allSatisfy { $0.started })
            // Requests were on it when it died (at concurrency 16 both replicas are busy).
            let killed = balancer.snapshot().first { $0.replica == a.replica }
            #expect((killed?.failures ?? 0) > 0)
            print(
                "balancer failover: \(results.filter { !$0.ok }.count) of 200 failed, all mid-stream; a: \(killed.map { "\($0.requests) requests, \($0.successes) ok, \($0.failures) failed" } ?? "")"
            )
            let saw1 = try await events.wait { isOut($0, a.replica) }
            #expect(saw1)
            #expect(balancer.snapshot().first { $0.replica == a.replica }?.state == "out_of_rotation")
            // While it is out, everything goes to b.
            let during = await TestClient.many(port: port, count: 20, concurrency: 4) { mixed($0) }
            #expect(during.allSatisfy { $0.ok })

            try a.launch(tokenDelay: 0.02)
            let saw2 = try await events.wait { $0 == .backInRotation(a.replica) }
            #expect(saw2)
            let before = balancer.snapshot().first { $0.replica == a.replica }?.successes ?? 0
            let after = await TestClient.many(port: port, count: 40, concurrency: 8) { mixed($0) }
            #expect(after.allSatisfy { $0.ok })
            #expect((balancer.snapshot().first { $0.replica == a.replica }?.successes ?? 0) > before)
        }
    }

    func isOut(_ event: BalancerEvent, _ replica: Replica) -> Bool {
        if case .outOfRotation(let r, _) = event { return r == replica }
        return false
    }

    @Test func aReplicaThatRefusesFromTheStartIsAvoided() async throws {
        let good = try BalancerSim(key: key)
        try await good.waitHealthy()
        let refusing = Replica(host: "127.0.0.1", port: try freePort())
        let events = BalancerEventLog()
        try await withBalancer(
            replicas: [refusing, good.replica], settings: testBalancerSettings(), onEvent: events.callback
        ) { balancer, port in
            let results = await TestClient.many(port: port, count: 40, concurrency: 8) { mixed($0) }
            #expect(results.allSatisfy { $0.ok })
            #expect(events.all.contains { isOut($0, refusing) })
            let stats = await settledSnapshot(balancer)
            #expect(stats.first { $0.replica == refusing }?.state == "out_of_rotation")
            #expect(stats.first { $0.replica == good.replica }?.successes == 40)
        }
    }

    @Test func streamsPassThroughAsTheyArrive() async throws {
        let sim = try BalancerSim(key: key, tokenDelay: 0.1)
        try await sim.waitHealthy()
        try await withBalancer(replicas: [sim.replica], settings: testBalancerSettings()) { _, port in
            let runningAtFirstEvent = Locked<Int?>(nil)
            let seen = await TestClient.onOneConnection(
                port: port, [.completion(stream: true, key: key, maxTokens: 30, prompt: "a long story")]
            ) { _, text in
                guard text.contains("data: {"), runningAtFirstEvent.value == nil else { return }
                // The simulator still generates: the last event has not been sent yet.
                let running = (try? await sim.running()) ?? -1
                runningAtFirstEvent.withLock { $0 = running }
            }
            #expect(seen.first?.ok == true)
            #expect(seen.first?.body.hasSuffix("data: [DONE]\n\n") == true)
            #expect(runningAtFirstEvent.value == 1)
            #expect((seen.first?.bodyParts ?? 0) > 5)
        }
    }

    @Test func servesItsCountersAsJSON() async throws {
        let sim = try BalancerSim(key: key)
        try await sim.waitHealthy()
        let missing = Replica(host: "127.0.0.1", port: try freePort())
        try await withBalancer(replicas: [sim.replica, missing], settings: testBalancerSettings()) {
            _, port in
            _ = await TestClient.many(port: port, count: 10, concurrency: 2) { mixed($0) }
            let page = await TestClient.send(port: port, TestRequest(path: "/vllmctl/replicas"))
            #expect(page.status == 200)
            let decoded = try JSONDecoder().decode(ReplicasPage.self, from: Data(page.body.utf8))
            #expect(decoded.replicas.map(\.replica) == [sim.replica, missing])
            #expect(decoded.replicas[0].successes == 10)
            #expect(decoded.replicas[0].state == "in_rotation")
            #expect(decoded.inRotation == 1)
            #expect(page.body.contains("\"latency_p99_s\""))
        }
    }

    @Test func answers503WhenNoReplicaIsUp() async throws {
        let replicas = [
            Replica(host: "127.0.0.1", port: try freePort()),
            Replica(host: "127.0.0.1", port: try freePort()),
        ]
        try await withBalancer(replicas: replicas, settings: testBalancerSettings()) { balancer, port in
            for _ in 0..<2 {
                let r = await TestClient.send(port: port, mixed(1))
                #expect(r.status == 503)
                let object = try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any]
                let error = object?["error"] as? [String: Any]
                #expect((error?["message"] as? String)?.contains("No replica is healthy") == true)
                #expect(error?["code"] as? Int == 503)
            }
            #expect(balancer.snapshot().allSatisfy { $0.state == "out_of_rotation" })
        }
    }

    @Test func spreadsRequestsOfOneKeptAliveConnection() async throws {
        let (a, b) = try await twoSims()
        let connector = CountingConnector()
        var settings = testBalancerSettings()
        settings.healthInterval = 3600
        try await withBalancer(replicas: [a.replica, b.replica], connector: connector, settings: settings) {
            balancer, port in
            let results = await TestClient.onOneConnection(port: port, (0..<40).map { mixed($0) })
            #expect(results.count == 40 && results.allSatisfy { $0.ok })
            for s in await settledSnapshot(balancer) { #expect(s.successes > 0, "\(s.replica) got none") }
            // One health check and one kept-alive connection per replica carried all 40.
            #expect(connector.count <= 4, "\(connector.count) connections for 40 requests")
        }
    }

    @Test func curlWithExpectContinueAndAStream() async throws {
        let sim = try BalancerSim(key: key)
        try await sim.waitHealthy()
        try await withBalancer(replicas: [sim.replica], settings: testBalancerSettings()) { _, port in
            let prompt = String(repeating: "word ", count: 400)
            let body = #"{"model":"sim-model","prompt":"\#(prompt)","max_tokens":5,"stream":true}"#
            let result = try await sh([
                "curl", "-sS", "-N", "--http1.1", "-H", "Expect: 100-continue", "-H",
                "Content-Type: application/json",
                "-H", try bearerHeaderFile(key), "-d", body, "http://127.0.0.1:\(port)/v1/completions",
            ])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.hasSuffix("data: [DONE]\n\n"))
            let unauthorized = try await sh([
                "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                "Authorization: Bearer sk-wrong",
                "http://127.0.0.1:\(port)/v1/models",
            ])
            #expect(unauthorized.stdout == "401")
        }
    }

    @Test func aBodyAboveTheCapIsAnswered413() async throws {
        let sim = try BalancerSim(key: key)
        try await sim.waitHealthy()
        var settings = testBalancerSettings()
        settings.maxBufferedBody = 1000
        try await withBalancer(replicas: [sim.replica], settings: settings) { balancer, port in
            let big = await TestClient.send(
                port: port, .completion(stream: false, key: key, prompt: String(repeating: "x", count: 2000)))
            #expect(big.status == 413)
            #expect(big.body.contains("larger than the balancer buffers"))
            let small = await TestClient.send(port: port, mixed(1))
            #expect(small.ok)
            #expect(balancer.snapshot()[0].requests == 1)
        }
    }

    @Test func connectsThroughARoute() async throws {
        let (a, b) = try await twoSims()
        let refusing = Replica(host: "127.0.0.1", port: try freePort())
        try await withBalancer(
            replicas: [a.replica, b.replica, refusing], connector: RouteConnector(route: SplicingRoute()),
            settings: testBalancerSettings()
        ) { balancer, port in
            let results = await TestClient.many(port: port, count: 60, concurrency: 8) { mixed($0) }
            #expect(results.allSatisfy { $0.ok })
            let stats = await settledSnapshot(balancer)
            #expect(stats.first { $0.replica == refusing }?.state == "out_of_rotation")
            #expect(stats.filter { $0.successes > 0 }.count == 2)
        }
    }

    @Test func aRouteThatIsDownLeavesReplicasAsTheyWere() async throws {
        let sim = try BalancerSim(key: key)
        try await sim.waitHealthy()
        let events = BalancerEventLog()
        try await withBalancer(
            replicas: [sim.replica], connector: RouteConnector(route: SplicingRoute(sessionDown: true)),
            settings: testBalancerSettings(), onEvent: events.callback
        ) { balancer, port in
            let r = await TestClient.send(port: port, mixed(0))
            #expect(r.status == 502)
            #expect(r.body.contains("cannot reach the replicas"))
            let saw3 = try await events.wait { if case .unknown = $0 { true } else { false } }
            #expect(saw3)
            #expect(balancer.snapshot().first?.state == "in_rotation")
        }
    }

    @Test func replicasJoinAndLeaveWhileRunning() async throws {
        let (a, b) = try await twoSims()
        let events = BalancerEventLog()
        try await withBalancer(
            replicas: [a.replica], settings: testBalancerSettings(), onEvent: events.callback
        ) {
            balancer, port in
            balancer.setReplicas([a.replica, b.replica])
            #expect(events.all.contains(.joined(b.replica)))
            let first = await TestClient.many(port: port, count: 20, concurrency: 4) { mixed($0) }
            #expect(first.allSatisfy { $0.ok })
            await balancer.drain(a.replica)
            #expect(events.all.contains(.drained(a.replica)))
            balancer.setReplicas([b.replica])
            #expect(events.all.contains(.left(a.replica)))
            let second = await TestClient.many(port: port, count: 20, concurrency: 4) { mixed($0) }
            #expect(second.allSatisfy { $0.ok })
            #expect(balancer.snapshot().map(\.replica) == [b.replica])
        }
    }

    @Test func twoFailedHealthChecksTakeASickReplicaOut() async throws {
        let good = try BalancerSim(key: key)
        let sick = try BalancerSim(key: key, extraArgs: ["--sim-unhealthy-after", "0"])
        try await good.waitHealthy()
        // Listening and sick: a refusal (still loading) would be a different reason.
        try await sick.waitAnswering(status: 503)
        let events = BalancerEventLog()
        try await withBalancer(
            replicas: [sick.replica, good.replica], settings: testBalancerSettings(), onEvent: events.callback
        ) { balancer, port in
            let out = try await events.wait { isOut($0, sick.replica) }
            #expect(out)
            let reason = events.all.compactMap { e -> String? in
                if case .outOfRotation(let r, let reason) = e, r == sick.replica { return reason }
                return nil
            }
            #expect(reason == ["GET /health answered 503"])
            #expect(balancer.snapshot()[0].consecutiveFailures >= 2)
            let results = await TestClient.many(port: port, count: 20, concurrency: 4) { mixed($0) }
            #expect(results.allSatisfy { $0.ok })
            #expect(await settledSnapshot(balancer)[1].successes == 20)
        }
    }

    @Test func pooledConnectionsToARestartedReplicaAreNotHeldAgainstIt() async throws {
        let sim = try BalancerSim(key: key)
        try await sim.waitHealthy()
        var settings = testBalancerSettings()
        settings.healthInterval = 3600
        try await withBalancer(replicas: [sim.replica], settings: settings) { balancer, port in
            let first = await TestClient.many(port: port, count: 8, concurrency: 4) { mixed($0) }
            #expect(first.allSatisfy { $0.ok })
            sim.kill()
            try sim.launch()
            try await sim.waitHealthy()
            let second = await TestClient.many(port: port, count: 8, concurrency: 4) { mixed($0) }
            #expect(second.allSatisfy { $0.ok })
            let stats = await settledSnapshot(balancer)[0]
            #expect(stats.state == "in_rotation" && stats.failures == 0 && stats.successes == 16)
        }
    }
}
