import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// A replica whose host goes silent (its node's link down: nothing refuses, nothing answers):
/// the balancer looks at it as soon as its requests stall, and through SSH a silent target
/// holds up one session only.
@Suite struct SilentHostTests {
    let a = Replica(host: "10.0.0.1", port: 8000)
    let b = Replica(host: "10.0.0.2", port: 8000)
    let second: UInt64 = 1_000_000_000

    @Test func aReplicaIsStalledOnlyWithRequestsInFlightAndNoResponseEndingForAWhile() {
        var table = ReplicaTable()
        _ = table.set([a, b])
        var rng = SeededGenerator(state: 1)
        let t0: UInt64 = 100 * second
        // Idle: never stalled, however long.
        #expect(!table.isStalled(a, for: 0.5, now: t0))
        // A first request: the clock starts when it is sent, not at the last response long ago.
        let picked = table.pick(excluding: [b], using: &rng, now: t0)
        #expect(picked == a)
        #expect(!table.isStalled(a, for: 0.5, now: t0 + second / 4))
        #expect(table.isStalled(a, for: 0.5, now: t0 + second / 2))
        // A second request sent meanwhile is no sign of life; a response ending is.
        _ = table.pick(excluding: [b], using: &rng, now: t0 + second / 4)
        #expect(table.isStalled(a, for: 0.5, now: t0 + second))
        _ = table.finish(a, .responded(status: 200, headSeconds: 0.1), now: t0 + second)
        #expect(!table.isStalled(a, for: 0.5, now: t0 + second + second / 4))
        #expect(table.isStalled(a, for: 0.5, now: t0 + 2 * second))
        // An attempt that got no connection is no response either.
        _ = table.pick(excluding: [b], using: &rng, now: t0 + 2 * second)
        _ = table.finish(a, .unanswered("no answer"), now: t0 + 2 * second)
        #expect(table.isStalled(a, for: 0.5, now: t0 + 2 * second))
        // Out of rotation (or with nothing in flight): nothing to look at.
        _ = table.finish(a, .responded(status: 200, headSeconds: 0.1), now: t0 + 3 * second)
        #expect(!table.isStalled(a, for: 0.5, now: t0 + 9 * second))
        _ = table.pick(excluding: [b], using: &rng, now: t0 + 9 * second)
        _ = table.hostGone(a, reason: "gone")
        #expect(!table.isStalled(a, for: 0.5, now: t0 + 20 * second))
    }

    @Test func aTargetWithAPendingOpenKeepsToItsRoute() {
        let connector = RouteConnector(routes: [
            PendingRoute(name: "a", target: "10.0.0.9:8000", seconds: 3), PendingRoute(name: "b"),
        ])
        // The silent target queues behind its own open instead of holding up the spare too.
        #expect(name(connector.pickRoute(for: "10.0.0.9:8000")) == "a")
        // Every other target goes round it.
        #expect(name(connector.pickRoute(for: "10.0.0.1:8000")) == "b")
        // Also when its open is on the spare.
        let onSpare = RouteConnector(routes: [
            PendingRoute(name: "a", target: "10.0.0.1:8000", seconds: 0.1),
            PendingRoute(name: "b", target: "10.0.0.9:8000", seconds: 2),
        ])
        #expect(name(onSpare.pickRoute(for: "10.0.0.9:8000")) == "b")
        #expect(name(onSpare.pickRoute(for: "10.0.0.1:8000")) == "a")
    }

    func name(_ route: any HTTPRoute) -> String { (route as? PendingRoute)?.name ?? "?" }
}

/// A route that carries nothing and says which open it has pending, and for how long.
private struct PendingRoute: HTTPRoute {
    let name: String
    var target: String?
    var seconds: Double?
    var openPendingSeconds: Double? { seconds }
    var openPendingTarget: String? { target }
    func carry(_ client: Int32, host: String, port: Int, timeout: Double) async throws {
        close(client)
        throw RouteError(.ourSide, .unreachable(url: "http://\(host):\(port)", message: name, hint: ""))
    }
}
