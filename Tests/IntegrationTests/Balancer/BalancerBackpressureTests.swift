import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// A client that stops reading a long stream: the balancer stops reading the replica once the
/// client's connection holds NIO's high water mark (the stream waits in the replica's
/// connection, not in the balancer's memory), and goes on when the client reads again; the
/// client gets the whole stream.
extension BalancerTests {
    struct SlowRead: Decodable {
        var stuck: Bool
        var upstreamRecvQ: Int
        var bytes: Int
        var done: Bool

        enum CodingKeys: String, CodingKey {
            case stuck, upstreamRecvQ = "upstream_recv_q", bytes, done
        }
    }

    @Test func aClientThatStopsReadingStopsTheReplicaStreamUntilItReadsAgain() async throws {
        let sim = try BalancerSim(key: key, tokenDelay: 0, extraArgs: ["--max-model-len", "65536"])
        try await sim.waitHealthy()
        var settings = testBalancerSettings()
        settings.healthInterval = 3600
        try await withBalancer(replicas: [sim.replica], settings: settings) { balancer, port in
            let result = try await sh([
                "python3", repoRoot + "/Tests/bench/slowreader.py", String(port), try writtenKeyFile(key),
                String(sim.port), "30",
            ])
            #expect(result.status == 0, "\(result.stderr)")
            let read = try JSONDecoder().decode(SlowRead.self, from: Data(result.stdout.utf8))
            // Reading stopped: the stream waited, unread and unchanged, in the balancer's
            // connection to the replica.
            #expect(read.stuck && read.upstreamRecvQ > 0, "\(result.stdout)")
            #expect(read.done, "\(result.stdout)")
            #expect(read.bytes > 8 << 20, "\(result.stdout)")
            let stats = await settledSnapshot(balancer)
            #expect(stats.first?.successes == 1, "\(stats)")
        }
    }
}
