import Foundation
import NIOPosix
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

    /// A connection held up behind another target's open on one session moves to the other
    /// session (asked for only while another route is left), within the same timeout.
    @Test func aHeldUpConnectionMovesToAnotherRoute() async throws {
        let first = CarryLog(heldUp: true)
        let spare = CarryLog(heldUp: false)
        let connector = RouteConnector(routes: [LoggedRoute(log: first), LoggedRoute(log: spare)])
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let channel = try await connector.connect(host: "10.0.0.1", port: 8000, timeout: 5, on: loop)
        try await channel.close()
        #expect(first.asked == [0.5])
        #expect(spare.asked == [nil])  // no route left to move to: it waits out its timeout
        // One route: nothing to move to, so nothing is given up early.
        let alone = CarryLog(heldUp: false)
        let single = RouteConnector(routes: [LoggedRoute(log: alone)])
        try await single.connect(host: "10.0.0.1", port: 8000, timeout: 5, on: loop).close()
        #expect(alone.asked == [nil])
        // Held up everywhere: the failure is this side's, nothing is held against the target.
        let both = RouteConnector(routes: [
            LoggedRoute(log: CarryLog(heldUp: true)), LoggedRoute(log: CarryLog(heldUp: true)),
        ])
        let error = await #expect(throws: UpstreamConnectError.self) {
            try await both.connect(host: "10.0.0.1", port: 8000, timeout: 5, on: loop)
        }
        #expect(error?.kind == .ourSide)
    }

    /// On a slow link a short connection deadline (a health check's 1 s) is stretched to four
    /// times the route's typical open, so healthy replicas are not failed for the link's sake.
    @Test func aShortDeadlineGrowsWithTheRoutesTypicalOpen() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        for (typical, expected) in [(nil, 1.0), (0.05, 1.0), (0.5, 2.0)] as [(Double?, Double)] {
            let log = CarryLog(heldUp: false, typical: typical)
            let connector = RouteConnector(routes: [LoggedRoute(log: log)])
            try await connector.connect(host: "10.0.0.1", port: 8000, timeout: 1, on: loop).close()
            let given = try #require(log.timeouts.first)
            #expect(abs(given - expected) < 0.05, "typical \(String(describing: typical)): \(given)")
        }
    }

    /// On a slow link an open pending for 0.5 s is the usual wait, not a route held up.
    @Test func aRouteIsHeldUpOnlyByAnOpenLongerThanItsUsual() {
        let slow = RouteConnector(routes: [
            PendingRoute(name: "a", target: "10.0.0.1:8000", seconds: 0.6, typical: 0.4),
            PendingRoute(name: "b"),
        ])
        #expect(name(slow.pickRoute(for: "10.0.0.2:8000")) == "a")
        #expect(slow.heldUpAfter(slow.routes[0]) == 1.6)
        let fast = RouteConnector(routes: [
            PendingRoute(name: "a", target: "10.0.0.1:8000", seconds: 0.6, typical: 0.01),
            PendingRoute(name: "b"),
        ])
        #expect(name(fast.pickRoute(for: "10.0.0.2:8000")) == "b")
    }

    func name(_ route: any HTTPRoute) -> String { (route as? PendingRoute)?.name ?? "?" }
}

/// What a ``LoggedRoute`` was asked: `heldUpAfter` of each carry.
private final class CarryLog: Sendable {
    let heldUp: Bool
    let typical: Double?
    private let calls = Locked<[(after: Double?, timeout: Double)]>([])
    init(heldUp: Bool, typical: Double? = nil) {
        self.heldUp = heldUp
        self.typical = typical
    }
    var asked: [Double?] { calls.value.map(\.after) }
    var timeouts: [Double] { calls.value.map(\.timeout) }
    func add(_ after: Double?, timeout: Double) { calls.withLock { $0.append((after, timeout)) } }
}

/// A route that gives a connection up as held up (when asked to and `log.heldUp`), or else
/// carries it nowhere: the socket stays open, so the connection looks made.
private struct LoggedRoute: HTTPRoute {
    let log: CarryLog
    var typicalOpenSeconds: Double? { log.typical }
    func carry(_ client: Int32, host: String, port: Int, timeout: Double) async throws {
        try await carry(client, host: host, port: port, timeout: timeout, heldUpAfter: nil)
    }
    func carry(_ client: Int32, host: String, port: Int, timeout: Double, heldUpAfter: Double?) async throws {
        log.add(heldUpAfter, timeout: timeout)
        if log.heldUp {
            close(client)
            var error = RouteError(
                .ourSide, .unreachable(url: "http://\(host):\(port)", message: "held up", hint: ""))
            error.heldUp = heldUpAfter != nil
            throw error
        }
        // A real route would carry `client`; this one lets it go with the test process.
        _ = client
    }
}

/// A route that carries nothing and says which open it has pending, and for how long.
private struct PendingRoute: HTTPRoute {
    let name: String
    var target: String?
    var seconds: Double?
    var typical: Double?
    var openPendingSeconds: Double? { seconds }
    var typicalOpenSeconds: Double? { typical }
    var openPendingTarget: String? { target }
    func carry(_ client: Int32, host: String, port: Int, timeout: Double) async throws {
        close(client)
        throw RouteError(.ourSide, .unreachable(url: "http://\(host):\(port)", message: name, hint: ""))
    }
}
