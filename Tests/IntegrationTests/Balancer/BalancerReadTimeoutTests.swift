import Foundation
import NIOCore
import TestSupport
import Testing

@testable import VLLMCtlKit

/// ``BalancerSettings/readTimeout``: a replica that goes silent does not hold a request forever.
@Suite struct BalancerReadTimeoutTests {
    let key = APIKey.generate().value

    func settings(readTimeout: Double) -> BalancerSettings {
        var s = testBalancerSettings()
        s.readTimeout = readTimeout
        // No health check gets in the way of the request under test.
        s.healthInterval = 60
        return s
    }

    /// A "replica" that accepts connections (the kernel's backlog) and never answers: the
    /// request gets 504 once the read timeout runs out, in OpenAI's error shape, and the
    /// replica gets a failure and a strike.
    @Test func aReplicaThatAcceptsAndNeverAnswersGets504AfterTheReadTimeout() async throws {
        let silent = try LocalListener.bind(address: "127.0.0.1", port: 0)
        defer { close(silent.fd) }
        let replica = Replica(host: "127.0.0.1", port: silent.port)
        try await withBalancer(replicas: [replica], settings: settings(readTimeout: 1)) { balancer, port in
            let seen = await TestClient.send(port: port, .completion(stream: false, key: key))
            #expect(seen.status == 504, "\(seen)")
            #expect(
                seen.body.contains("\"code\":504") && seen.body.contains("sent nothing for 1 s"),
                "\(seen.body)")
            // One attempt, counted as a failure. (Its health checks get no answer either and
            // strike it too once their 2 s run out, so its state depends on the machine's pace.)
            let stats = try #require(balancer.snapshot().first)
            #expect(stats.requests == 1 && stats.failures >= 1 && stats.inFlight == 0, "\(stats)")
            #expect(stats.successes == 0 && stats.consecutiveFailures >= 1, "\(stats)")
        }
    }

    /// A stream that stops mid-response (a token every 3 s against a read timeout of 1 s): the
    /// client's connection is cut after the first part, as for any break mid-response.
    @Test func aStreamThatGoesSilentMidResponseIsCut() async throws {
        let sim = try BalancerSim(key: key, tokenDelay: 3)
        try await sim.waitHealthy()
        try await withBalancer(replicas: [sim.replica], settings: settings(readTimeout: 1)) {
            balancer, port in
            let seen = await TestClient.send(port: port, .completion(stream: true, key: key, maxTokens: 4))
            #expect(seen.status == 200 && seen.started && !seen.ok, "\(seen)")
            #expect(!seen.body.contains("[DONE]"), "\(seen.body)")
            let stats = try #require(balancer.snapshot().first)
            #expect(stats.failures == 1 && stats.inFlight == 0, "\(stats)")
            #expect(stats.lastError?.contains("sent nothing for 1 s mid-response") == true, "\(stats)")
        }
    }

    /// The same stream with a read timeout longer than its silences is whole.
    @Test func aSlowStreamWithinTheReadTimeoutIsWhole() async throws {
        let sim = try BalancerSim(key: key, tokenDelay: 0.5)
        try await sim.waitHealthy()
        try await withBalancer(replicas: [sim.replica], settings: settings(readTimeout: 3)) {
            balancer, port in
            let seen = await TestClient.send(port: port, .completion(stream: true, key: key, maxTokens: 4))
            #expect(seen.ok && seen.body.contains("[DONE]"), "\(seen)")
            #expect(balancer.snapshot().first?.failures == 0)
        }
    }
}
