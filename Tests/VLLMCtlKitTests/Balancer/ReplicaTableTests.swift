import NIOHTTP1
import Testing

@testable import VLLMCtlKit

@Suite struct ReplicaTableTests {
    let a = Replica(host: "10.77.0.11", port: 8000)
    let b = Replica(host: "10.77.0.12", port: 8000)

    func table() -> ReplicaTable {
        var t = ReplicaTable(failuresToLeave: 2, successesToReturn: 1)
        _ = t.set([a, b])
        return t
    }

    @Test func picksTheLeastBusyAndBreaksTiesAtRandom() {
        var t = table()
        var rng = SystemRandomNumberGenerator()
        var firsts: Set<Replica> = []
        for _ in 0..<64 {
            var u = t
            firsts.insert(u.pick(excluding: [], using: &rng)!)
        }
        #expect(firsts == [a, b])
        let first = t.pick(excluding: [], using: &rng)!
        let second = t.pick(excluding: [], using: &rng)!
        #expect(first != second)
        _ = t.finish(first, .responded(status: 200, headSeconds: 0.1))
        #expect(t.pick(excluding: [], using: &rng) == first)
        #expect(t.pick(excluding: [a, b], using: &rng) == nil)
    }

    @Test func aRefusalTakesAReplicaOutAtOnceAndOneGoodCheckBringsItBack() {
        var t = table()
        var rng = SystemRandomNumberGenerator()
        _ = t.pick(excluding: [b], using: &rng)
        #expect(t.finish(a, .refused("refused")) == [.outOfRotation(a, reason: "refused")])
        for _ in 0..<8 { #expect(t.pick(excluding: [], using: &rng) == b) }
        #expect(t.health(a, .healthy) == [.backInRotation(a)])
    }

    @Test func twoFailedChecksInARowTakeAReplicaOut() {
        var t = table()
        #expect(t.health(a, .unhealthy("503")) == [])
        #expect(t.health(a, .healthy) == [])
        #expect(t.health(a, .unhealthy("503")) == [])
        #expect(t.health(a, .unhealthy("503")) == [.outOfRotation(a, reason: "503")])
        #expect(t.snapshot()[0].state == "out_of_rotation")
    }

    @Test func aCheckThatCannotTellChangesNothing() {
        var t = table()
        for _ in 0..<5 {
            #expect(t.health(a, .unknown("session down")) == [.unknown(a, reason: "session down")])
        }
        #expect(t.snapshot()[0].state == "in_rotation")
        var rng = SystemRandomNumberGenerator()
        _ = t.pick(excluding: [b], using: &rng)
        #expect(t.finish(a, .notCounted) == [])
        #expect(t.snapshot()[0].requests == 0 && t.snapshot()[0].failures == 0)
    }

    @Test func aRemovedReplicaFinishesItsRequestsThenGoes() {
        var t = table()
        var rng = SystemRandomNumberGenerator()
        _ = t.pick(excluding: [b], using: &rng)
        #expect(t.set([b]) == [.left(a)])
        #expect(t.snapshot().map(\.state) == ["leaving", "in_rotation"])
        #expect(t.pick(excluding: [b], using: &rng) == nil)
        _ = t.finish(a, .responded(status: 200, headSeconds: 0.2))
        #expect(t.snapshot().map(\.replica) == [b])
        #expect(t.set([a, b]) == [.joined(a)])
    }

    @Test func drainingStopsNewRequestsAndSaysWhenIdle() {
        var t = table()
        var rng = SystemRandomNumberGenerator()
        _ = t.pick(excluding: [b], using: &rng)
        #expect(t.drain(a) == [.draining(a)])
        #expect(t.pick(excluding: [b], using: &rng) == nil)
        #expect(t.finish(a, .responded(status: 200, headSeconds: 0.1)) == [.drained(a)])
    }

    @Test func countersAndPercentiles() {
        var t = table()
        var rng = SystemRandomNumberGenerator()
        for i in 1...100 {
            _ = t.pick(excluding: [b], using: &rng)
            _ = t.finish(
                a,
                i == 100
                    ? .responded(status: 500, headSeconds: 1)
                    : .responded(status: 200, headSeconds: Double(i) / 100))
        }
        let s = t.snapshot()[0]
        #expect(s.requests == 100 && s.successes == 99 && s.failures == 1)
        #expect(s.successRate == 0.99)
        #expect(s.latencyP50 == 0.5)
        #expect(s.latencyP99 == 0.99)
    }
}

@Suite struct ForwardedHeadersTests {
    let replica = Replica(host: "10.77.0.11", port: 8000)

    @Test func requestKeepsAuthorizationAndDropsHopByHop() {
        let head = HTTPRequestHead(
            version: .http1_1, method: .POST, uri: "/v1/completions",
            headers: [
                "Host": "127.0.0.1:9000", "Authorization": "Bearer sk-x",
                "Connection": "keep-alive, X-Secret",
                "X-Secret": "1", "Keep-Alive": "timeout=5", "TE": "trailers", "Transfer-Encoding": "chunked",
                "Upgrade": "h2c", "Expect": "100-continue", "Content-Type": "application/json",
            ])
        let out = ForwardedHeaders.request(head, bodyBytes: 12, replica: replica)
        #expect(out.headers["Host"] == ["10.77.0.11:8000"])
        #expect(out.headers["Authorization"] == ["Bearer sk-x"])
        #expect(out.headers["Content-Length"] == ["12"])
        #expect(out.headers["Content-Type"] == ["application/json"])
        for name in ["Connection", "X-Secret", "Keep-Alive", "TE", "Transfer-Encoding", "Upgrade", "Expect"] {
            #expect(!out.headers.contains(name: name), "\(name)")
        }
    }

    @Test func responseDropsHopByHopAndSaysWhenTheConnectionEnds() {
        let head = HTTPResponseHead(
            version: .http1_1, status: .ok,
            headers: [
                "Content-Type": "text/event-stream", "Transfer-Encoding": "chunked",
                "Connection": "keep-alive",
            ])
        let out = ForwardedHeaders.response(head, clientVersion: .http1_1, keepAlive: false)
        #expect(out.headers["Content-Type"] == ["text/event-stream"])
        #expect(out.headers["Connection"] == ["close"])
        #expect(!out.headers.contains(name: "Transfer-Encoding"))
    }

    @Test func errorBodiesHaveOpenAIsShape() throws {
        let body = BalancerAnswer.errorBody(
            message: "No replica is healthy", type: "service_unavailable", code: 503)
        #expect(
            body
                == #"{"error":{"code":503,"message":"No replica is healthy","param":null,"type":"service_unavailable"}}"#
        )
    }
}
