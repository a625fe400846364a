import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// HTTP/1.1 pipelining through the balancer: requests written all at once on one connection
/// are answered one after another, in order (`ClientHandler` holds the later ones while one is
/// answered), and a request over the body cap gets its 413 in its turn, then the close.
extension BalancerTests {
    struct Answer: Decodable {
        var status: String
        var body: String
    }

    func pipelined(port: Int, bigBody: Int) async throws -> [Answer] {
        let result = try await sh([
            "python3", repoRoot + "/Tests/bench/pipelined.py", String(port), try writtenKeyFile(key),
            String(bigBody),
        ])
        #expect(result.status == 0, "\(result.stderr)")
        return try result.stdout.split(separator: "\n").map {
            try JSONDecoder().decode(Answer.self, from: Data($0.utf8))
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        // Slow tokens: the streamed completion, first in line, takes the longest.
        let (a, b) = try await twoSims(tokenDelay: 0.05)
        try await withBalancer(replicas: [a.replica, b.replica], settings: testBalancerSettings()) {
            balancer, port in
            let answers = try await pipelined(port: port, bigBody: 0)
            #expect(answers.map(\.status) == Array(repeating: "HTTP/1.1 200 OK", count: 4), "\(answers)")
            guard answers.count == 4 else { return }
            #expect(answers[0].body.hasPrefix("data: ") && answers[0].body.hasSuffix("data: [DONE]\n\n"))
            #expect(answers[1].body.contains(#""object": "list""#), "\(answers[1].body)")
            #expect(answers[2].body.contains(#""object": "text_completion""#), "\(answers[2].body)")
            #expect(answers[3].body.contains(#""object": "list""#), "\(answers[3].body)")
            let served = await settledSnapshot(balancer).map(\.requests).reduce(0, +)
            #expect(served == 4)
        }
    }

    @Test func aPipelinedRequestOverTheCapIsAnswered413InItsTurn() async throws {
        let sim = try BalancerSim(key: key, tokenDelay: 0.05)
        try await sim.waitHealthy()
        var settings = testBalancerSettings()
        settings.maxBufferedBody = 1000
        try await withBalancer(replicas: [sim.replica], settings: settings) { balancer, port in
            let answers = try await pipelined(port: port, bigBody: 2000)
            // The three before it, then its 413; the connection closes, so the last is never read.
            #expect(
                answers.map(\.status) == [
                    "HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 413 Payload Too Large",
                ], "\(answers)")
            guard answers.count == 4 else { return }
            #expect(answers[0].body.hasSuffix("data: [DONE]\n\n"))
            #expect(answers[3].body.contains("larger than the balancer buffers"))
            #expect(await settledSnapshot(balancer).map(\.requests).reduce(0, +) == 3)
        }
    }

    /// A request NIO's parser cannot read gets a 400, and the connection closes (ClientHandler,
    /// in place of NIO's protocol error handler; pipelined.py reads until the close); nothing
    /// reaches a replica.
    @Test func aRequestTheParserCannotReadIsAnswered400() async throws {
        let sim = try BalancerSim(key: key, tokenDelay: 0.05)
        try await sim.waitHealthy()
        try await withBalancer(replicas: [sim.replica], settings: testBalancerSettings()) { balancer, port in
            let answers = try await pipelined(port: port, bigBody: -1)
            #expect(answers.map(\.status) == ["HTTP/1.1 400 Bad Request"], "\(answers)")
            #expect(await settledSnapshot(balancer).map(\.requests).reduce(0, +) == 0)
        }
    }
}
