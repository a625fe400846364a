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
