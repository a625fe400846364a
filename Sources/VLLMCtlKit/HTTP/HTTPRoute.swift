import Foundation

/// Where an HTTP request's connection comes from when libcurl should not connect by itself.
///
/// From a laptop, a compute node's address is out of reach: a profile with `ssh_host` routes
/// every request to a cluster address through the invocation's one SSH session (a
/// direct-tcpip channel per request, as `ssh -W` does), and libcurl speaks HTTP over the
/// socket the route hands it.
public protocol HTTPRoute: Sendable {
    /// Takes over `client`, a connected stream socket, and carries its bytes to `host:port` as
    /// the route's far end sees it, within `timeout` seconds for the connection. Throws
    /// ``RouteError`` (and closes `client`) when the route cannot reach the target.
    func carry(_ client: Int32, host: String, port: Int, timeout: Double) async throws

    /// ``carry(_:host:port:timeout:)``, except that a connection that has waited
    /// `heldUpAfter` seconds behind another target's pending one (connections that wait for
    /// one another, see ``openPendingSeconds``) is given up with a ``RouteError`` whose
    /// ``RouteError/heldUp`` is true, so that the caller may carry it by another route; nil:
    /// it waits out its timeout.
    func carry(_ client: Int32, host: String, port: Int, timeout: Double, heldUpAfter: Double?) async throws

    /// Seconds a connection this route is making has been waiting for the far end's answer,
    /// when connections wait for one another (one SSH session opens one channel at a time);
    /// nil when none waits. A caller with another route may use that one meanwhile.
    var openPendingSeconds: Double? { get }

    /// The target (`host:port`) of the connection counted by ``openPendingSeconds``; nil when
    /// none waits.
    var openPendingTarget: String? { get }

    /// Seconds a connection has typically taken to be made on this route (through SSH: the
    /// round trip to the SSH server and its connect); nil when unknown.
    var typicalOpenSeconds: Double? { get }
}

extension HTTPRoute {
    /// Routes whose connections do not wait for one another.
    public var openPendingSeconds: Double? { nil }
    public var openPendingTarget: String? { nil }
    public var typicalOpenSeconds: Double? { nil }

    /// Routes whose connections do not wait for one another are never held up.
    public func carry(_ client: Int32, host: String, port: Int, timeout: Double, heldUpAfter: Double?)
        async throws
    {
        try await carry(client, host: host, port: port, timeout: timeout)
    }
}

/// Whose fault a failed connection to a target is, and so what can be concluded about the
/// target: what a route (``RouteError``), the SSH forwarder (`ChannelOpenFailure`) and a
/// balancer's connector (`UpstreamConnectError`) all report.
public enum ConnectFault: Sendable, Equatable {
    /// The target was seen refusing (nothing listens there; through SSH: the login node tried
    /// and could not connect, so the host may be down): a replica leaves rotation at once.
    case refused
    /// No answer about the target in time: one strike, as a failed health check.
    case unanswered
    /// The failure is on this side (the SSH session is down, the login node is unreachable,
    /// forwarding is not allowed, no file descriptors): nothing is known about the target.
    case ourSide
}

/// A route could not carry a connection to its target: whose fault that is, and the words for
/// a user.
public struct RouteError: Error, Sendable, CustomStringConvertible {
    /// Whose fault it is.
    public var kind: ConnectFault
    /// What to tell a user (``VLLMCtlError/unreachable(url:message:hint:)``).
    public var error: VLLMCtlError
    /// The connection was given up because it waited behind another target's pending one
    /// (``HTTPRoute/carry(_:host:port:timeout:heldUpAfter:)``): ``ConnectFault/ourSide``, and
    /// another route may carry it.
    public var heldUp = false

    /// A failure of `kind`, told as `error`.
    public init(_ kind: ConnectFault, _ error: VLLMCtlError) {
        self.kind = kind
        self.error = error
    }

    public var description: String { error.description }
}

/// The parts of a URL a route needs.
public struct URLTarget: Sendable, Equatable {
    /// The host, without brackets around an IPv6 address.
    public var host: String
    /// The port; 80 or 443 when the URL gives none.
    public var port: Int
    /// Whether the scheme is `https`.
    public var isTLS: Bool

    /// `http(s)://HOST[:PORT]/…`; nil for anything else.
    public init?(url: String) {
        guard let parts = URLComponents(string: url), let scheme = parts.scheme?.lowercased(),
            scheme == "http" || scheme == "https", var host = parts.host, !host.isEmpty
        else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host
        isTLS = scheme == "https"
        port = parts.port ?? (isTLS ? 443 : 80)
    }

    /// 127.0.0.0/8, ::1 and `localhost`: this machine, where tunnels listen.
    public var isLoopback: Bool {
        let h = host.lowercased()
        return h == "localhost" || h.hasSuffix(".localhost") || h == "::1" || h.hasPrefix("127.")
    }

    /// `host:port`, with brackets around an IPv6 address.
    public var hostPort: String { Self.hostPort(host, port) }

    /// `host:port`, with brackets around an IPv6 address.
    public static func hostPort(_ host: String, _ port: Int) -> String {
        (host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]" : host) + ":\(port)"
    }
}
