import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Where a balancer's connections to its replicas come from: plain TCP on a login node or a
/// gateway (``DirectConnector``), or the SSH session from a laptop (``RouteConnector``).
public protocol UpstreamConnector: Sendable {
    /// A connected stream channel to `host:port` on `eventLoop`, with an empty pipeline (the
    /// balancer adds the HTTP codec), within `timeout` seconds. Throws
    /// ``UpstreamConnectError`` saying whose fault a failure is; any other error counts as
    /// ``UpstreamConnectError/Kind/ourSide``.
    func connect(host: String, port: Int, timeout: Double, on eventLoop: any EventLoop) async throws
        -> any Channel
}

/// Why a connection to a replica failed, and so what the balancer concludes.
public struct UpstreamConnectError: Error, Sendable, CustomStringConvertible {
    /// Whose fault it is (``ConnectFault``): `.refused` takes the replica out of rotation at
    /// once, `.unanswered` is one strike, `.ourSide` leaves its state as it was.
    public typealias Kind = ConnectFault
    /// Whose fault it is.
    public var kind: Kind
    /// What happened, in words.
    public var message: String

    /// An error of `kind`.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// Connects with plain TCP (NIO's `ClientBootstrap`): on a login node or a gateway, where the
/// replicas' addresses are reachable.
public struct DirectConnector: UpstreamConnector {
    /// Milliseconds sent bytes may stay unacknowledged before the connection fails
    /// (`TCP_USER_TIMEOUT`); 0: the kernel's default.
    public var unacknowledgedMilliseconds: Int

    /// A direct connector whose connections fail once sent bytes stay unacknowledged for
    /// `unacknowledgedTimeout` seconds (``BalancerSettings/unacknowledgedTimeout``; 0: the
    /// kernel's default).
    public init(unacknowledgedTimeout: Double = BalancerSettings().unacknowledgedTimeout) {
        unacknowledgedMilliseconds = Int(max(0, min(unacknowledgedTimeout, 3600)) * 1000)
    }

    public func connect(host: String, port: Int, timeout: Double, on eventLoop: any EventLoop) async throws
        -> any Channel
    {
        let target = URLTarget.hostPort(host, port)
        do {
            // TCP_USER_TIMEOUT, TCP_KEEPIDLE and TCP_KEEPINTVL are 18, 4 and 5 (linux/tcp.h);
            // Swift's Glibc module does not export them. With the timeout, a keepalive probe
            // after 1 s without traffic (an idle pooled connection, a request the replica is
            // still working on) that goes unacknowledged fails the connection too.
            let tcp = SocketOptionLevel(IPPROTO_TCP)
            let probe = unacknowledgedMilliseconds > 0 ? 1 : 0
            return try await ClientBootstrap(group: eventLoop)
                .connectTimeout(.milliseconds(Int64(max(timeout, 0.05) * 1000)))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelOption(.socket(tcp, 18), value: unacknowledgedMilliseconds)
                .channelOption(.socketOption(.so_keepalive), value: probe)
                .channelOption(.socket(tcp, 4), value: 1)
                .channelOption(.socket(tcp, 5), value: 1)
                .connect(host: host, port: port).get()
        } catch let error as NIOConnectionError {
            let errnos = error.connectionErrors.compactMap { ($0.error as? IOError)?.errnoCode }
            if errnos.contains(ECONNREFUSED) || errnos.contains(ECONNRESET) {
                throw UpstreamConnectError(.refused, "\(target) refused the connection")
            }
            if errnos.contains(EMFILE) || errnos.contains(ENFILE) || errnos.contains(ENOBUFS) {
                throw UpstreamConnectError(.ourSide, "cannot connect to \(target): \(error)")
            }
            if error.dnsAError != nil && error.dnsAAAAError != nil && error.connectionErrors.isEmpty {
                throw UpstreamConnectError(.unanswered, "cannot resolve \(host)")
            }
            throw UpstreamConnectError(.unanswered, "cannot connect to \(target): \(error)")
        } catch ChannelError.connectTimeout {
            throw UpstreamConnectError(
                .unanswered, "\(target) did not accept a connection within \(timeout) s")
        } catch let error as IOError where error.errnoCode == ECONNREFUSED {
            throw UpstreamConnectError(.refused, "\(target) refused the connection")
        } catch {
            throw UpstreamConnectError(.unanswered, "cannot connect to \(target): \(error)")
        }
    }
}

/// Connects through an ``HTTPRoute``, such as the ``RemoteHost`` of a profile with `ssh_host`:
/// one end of a Unix socket pair goes to `route.carry(...)` (a direct-tcpip channel of the one
/// SSH session), NIO speaks HTTP over the other.
///
/// The route's ``RouteError`` says whose fault a failure is: the login node was refused by the
/// target (sshd's `connect failed`) is ``UpstreamConnectError/Kind/refused``; no answer about
/// it in time is ``UpstreamConnectError/Kind/unanswered``; a failure of the route itself (the
/// session is down, the login node is unreachable, an open that waited behind another
/// target's) says nothing about the replica: ``UpstreamConnectError/Kind/ourSide``.
public struct RouteConnector: UpstreamConnector {
    /// Where connections come from: the first route, unless a connection it is making has
    /// waited ``spareAfter`` seconds or more (an SSH session opens one channel at a time, and
    /// an open to a node that is gone can wait at sshd for up to a minute); then the first
    /// route that is not held up, or the last. A target with an open pending on a route uses
    /// that route, and one whose last connection got no answer the first, so that its own
    /// opens queue behind its pending one (and fail there once it has waited longer than they
    /// would) instead of holding up a spare as well: one silent target holds up one route.
    public var routes: [any HTTPRoute]
    /// Seconds a route's pending connection may hold it up before the next route is used.
    public var spareAfter: Double = 0.5
    /// A connection may always take this many times its route's typical time to be made
    /// (``HTTPRoute/typicalOpenSeconds``), whatever shorter timeout it was given: on a slow
    /// link (a long round trip to the login node), a short deadline meant to notice a silent
    /// node would otherwise fail connections to healthy ones.
    public var typicalOpenAllowance: Double = 4
    /// Targets (`host:port`) whose last connection got no answer.
    private let unanswered = Locked<Set<String>>([])

    /// The first route.
    public var route: any HTTPRoute { routes[0] }

    /// A connector over `route`.
    public init(route: any HTTPRoute) { routes = [route] }

    /// A connector over `routes` (non-empty): the first, and spares for while it is held up
    /// (e.g. two `RemoteHost`s to the same login node; a spare connects when first used).
    public init(routes: [any HTTPRoute]) {
        precondition(!routes.isEmpty, "RouteConnector needs a route")
        self.routes = routes
    }

    /// The route for the next connection to `target`.
    func pickRoute(for target: String) -> any HTTPRoute { routes[pickRouteIndex(for: target, excluding: [])] }

    /// The index of the route for the next connection to `target`, among those not in
    /// `excluding` (all, if it excludes every one).
    func pickRouteIndex(for target: String, excluding: Set<Int>) -> Int {
        var candidates = routes.indices.filter { !excluding.contains($0) }
        if candidates.isEmpty { candidates = Array(routes.indices) }
        if let own = candidates.first(where: { routes[$0].openPendingTarget == target }) { return own }
        if unanswered.withLock({ $0.contains(target) }) { return candidates[0] }
        return candidates.first { (routes[$0].openPendingSeconds ?? 0) < heldUpAfter(routes[$0]) }
            ?? candidates[candidates.count - 1]
    }

    /// Seconds a pending connection on `route` must have waited to count as holding it up:
    /// ``spareAfter``, or longer on a route whose connections typically take long (a slow link),
    /// where a pending one of that age is only the usual wait.
    func heldUpAfter(_ route: any HTTPRoute) -> Double {
        max(spareAfter, typicalOpenAllowance * (route.typicalOpenSeconds ?? 0))
    }

    public func connect(host: String, port: Int, timeout: Double, on eventLoop: any EventLoop) async throws
        -> any Channel
    {
        let target = URLTarget.hostPort(host, port)
        let start = MonotonicClock.now()
        var heldUpOn: Set<Int> = []
        var fds: [Int32] = [-1, -1]
        while true {
            guard socketpair(AF_UNIX, SocketType.stream | SocketType.closeOnExec, 0, &fds) == 0
            else {
                throw UpstreamConnectError(.ourSide, "socketpair: \(String(cString: strerror(errno)))")
            }
            let index = pickRouteIndex(for: target, excluding: heldUpOn)
            let allowed = max(timeout, typicalOpenAllowance * (routes[index].typicalOpenSeconds ?? 0))
            let remaining = allowed - Double(MonotonicClock.now() - start) / 1e9
            // A connection held up behind another target's open (one SSH session opens one
            // channel at a time) moves to a route it has not been held up on, if any is left.
            let another = heldUpOn.count + 1 < routes.count
            do {
                try await routes[index].carry(
                    fds[1], host: host, port: port, timeout: max(remaining, 0.05),
                    heldUpAfter: another ? heldUpAfter(routes[index]) : nil)
                unanswered.withLock { _ = $0.remove(target) }
                break
            } catch let error as RouteError where error.heldUp && another && remaining > 0.1 {
                Glibc.close(fds[0])
                heldUpOn.insert(index)
                continue
            } catch {
                Glibc.close(fds[0])
                let classified = Self.classify(error)
                if classified.kind == .unanswered { unanswered.withLock { _ = $0.insert(target) } }
                throw classified
            }
        }
        do {
            return try await ClientBootstrap(group: eventLoop).withConnectedSocket(fds[0]).get()
        } catch {
            Glibc.close(fds[0])
            throw UpstreamConnectError(.ourSide, "cannot use the route's socket: \(error)")
        }
    }

    /// The kind of a connector's or route's failure, from its type (``RouteError/kind``):
    /// seen at the target, no answer, or on this side. An error of any other type says nothing
    /// about the replica.
    static func classify(_ error: any Error) -> UpstreamConnectError {
        if let error = error as? UpstreamConnectError { return error }
        if let error = error as? RouteError {
            let message: String =
                if case .unreachable(_, let message, _) = error.error { message } else { error.description }
            return UpstreamConnectError(error.kind, message)
        }
        return UpstreamConnectError(.ourSide, "\(error)")
    }
}
