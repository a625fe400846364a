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
    /// `VLLMCtlError.unreachable` (and closes `client`) when the route cannot reach the target.
    func carry(_ client: Int32, host: String, port: Int, timeout: Double) async throws
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
        (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
    }
}
