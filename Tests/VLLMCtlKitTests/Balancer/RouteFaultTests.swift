import Foundation
import NIOPosix
import Testing

@testable import VLLMCtlKit

/// Whose fault a failed connection is travels as a type, from the one place that reads the
/// SSH server's words to the balancer's choice; no error text is interpreted on the way.
@Suite struct RouteFaultTests {
    @Test func theSSHServersReasonIsReadOnce() {
        #expect(ChannelOpenFailure(serverSaid: "Connect failed").kind == .refused)
        #expect(ChannelOpenFailure(serverSaid: "connect failed").kind == .refused)
        #expect(ChannelOpenFailure(serverSaid: "administratively prohibited").kind == .ourSide)
        #expect(ChannelOpenFailure(serverSaid: "resource shortage").kind == .ourSide)
    }

    @Test func theBalancerTakesTheRoutesKindAsItIs() {
        for kind in [ConnectFault.refused, .unanswered, .ourSide] {
            let error = RouteError(
                kind, .unreachable(url: "http://10.0.0.1:8000", message: "the words", hint: "what to do"))
            let classified = RouteConnector.classify(error)
            #expect(classified.kind == kind)
            #expect(classified.message == "the words")
        }
        // Words alone mean nothing: an error of another type says nothing about the replica.
        let text = VLLMCtlError.unreachable(
            url: "http://10.0.0.1:8000", message: "the login node x could not connect to 10.0.0.1:8000",
            hint: "")
        #expect(RouteConnector.classify(text).kind == .ourSide)
    }
}

/// A route that carries nothing and says how long its pending connection has waited.
private struct HeldRoute: HTTPRoute {
    let name: String
    let pending: Double?
    var openPendingSeconds: Double? { pending }
    func carry(_ client: Int32, host: String, port: Int, timeout: Double) async throws {
        close(client)
        throw RouteError(.unanswered, .unreachable(url: "http://\(host):\(port)", message: name, hint: ""))
    }
}

/// A balancing tunnel's spare SSH session: used while the first one's channel open waits for
/// a node that is gone (libssh2 opens one channel at a time), never for that node itself.
@Suite struct SpareRouteTests {
    func name(_ route: any HTTPRoute) -> String { (route as? HeldRoute)?.name ?? "?" }

    @Test func theFirstRouteUnlessItIsHeldUp() {
        let free = RouteConnector(routes: [
            HeldRoute(name: "a", pending: nil), HeldRoute(name: "b", pending: nil),
        ])
        #expect(name(free.pickRoute(for: "10.0.0.1:8000")) == "a")
        let quick = RouteConnector(routes: [
            HeldRoute(name: "a", pending: 0.1), HeldRoute(name: "b", pending: nil),
        ])
        #expect(name(quick.pickRoute(for: "10.0.0.1:8000")) == "a")
        let held = RouteConnector(routes: [
            HeldRoute(name: "a", pending: 3), HeldRoute(name: "b", pending: nil),
        ])
        #expect(name(held.pickRoute(for: "10.0.0.1:8000")) == "b")
        let both = RouteConnector(routes: [
            HeldRoute(name: "a", pending: 3), HeldRoute(name: "b", pending: 2),
        ])
        #expect(name(both.pickRoute(for: "10.0.0.1:8000")) == "b")
    }

    @Test func aTargetThatGotNoAnswerStaysOnTheFirstRoute() async throws {
        let connector = RouteConnector(routes: [
            HeldRoute(name: "a", pending: nil), HeldRoute(name: "b", pending: nil),
        ])
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let error = await #expect(throws: UpstreamConnectError.self) {
            try await connector.connect(host: "10.0.0.2", port: 8000, timeout: 1, on: loop)
        }
        #expect(error?.kind == .unanswered)
        let now = RouteConnector(routes: [
            HeldRoute(name: "a", pending: 3), HeldRoute(name: "b", pending: nil),
        ])
        #expect(name(now.pickRoute(for: "10.0.0.2:8000")) == "b")  // another connector knows nothing
        var held = connector
        held.routes = [HeldRoute(name: "a", pending: 3), HeldRoute(name: "b", pending: nil)]
        #expect(name(held.pickRoute(for: "10.0.0.2:8000")) == "a")
        #expect(name(held.pickRoute(for: "10.0.0.3:8000")) == "b")
    }
}
