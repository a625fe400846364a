import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// HTTP to cluster addresses through the login node: each request gets a direct-tcpip channel
/// on the invocation's one SSH session (no second handshake), and libcurl talks over a local
/// socket (`UnixBridge`) whose other end the channel carries. The channels are pumped by a
/// `PortForwarder` that runs on the session's queue only while requests are in flight, so
/// exec and SFTP keep using the same session in between.
extension RemoteHost: HTTPRoute {
    /// Seconds the channel open in progress on the HTTP forwarder's session has waited for
    /// sshd's answer (nil: none is, or no forwarder runs); see
    /// ``PortForwarder/openPendingSeconds``.
    public var openPendingSeconds: Double? { currentHTTPForwarder?.openPendingSeconds }

    /// The target of that open; see ``PortForwarder/openPendingTarget``.
    public var openPendingTarget: String? { currentHTTPForwarder?.openPendingTarget }

    /// See ``PortForwarder/typicalOpenSeconds``.
    public var typicalOpenSeconds: Double? { currentHTTPForwarder?.typicalOpenSeconds }

    public func carry(_ client: Int32, host: String, port: Int, timeout: Double) async throws {
        try await carry(client, host: host, port: port, timeout: timeout, heldUpAfter: nil)
    }

    public func carry(_ client: Int32, host: String, port: Int, timeout: Double, heldUpAfter: Double?)
        async throws
    {
        let target = URLTarget.hostPort(host, port)
        let url = "http://\(target)"
        let forwarder: PortForwarder
        do {
            forwarder = try await httpForwarder()
        } catch let error as SSHError {
            Glibc.close(client)
            throw RouteError(
                .ourSide,
                .unreachable(
                    url: url, message: "cannot reach the login node \(displayName): \(error.message)",
                    hint: error.hint))
        } catch {
            Glibc.close(client)
            throw RouteError(
                .ourSide,
                .unreachable(
                    url: url, message: "cannot reach the login node \(displayName): \(error)",
                    hint: "`vllmctl doctor` checks the connection."))
        }
        let failure = await withCheckedContinuation {
            (continuation: CheckedContinuation<ChannelOpenFailure?, Never>) in
            forwarder.inject(
                client: client, host: host, port: port, timeout: max(timeout, 0.5), heldUpAfter: heldUpAfter
            ) {
                continuation.resume(returning: $0)
            }
        }
        guard let failure else { return }
        let text = failure.reason
        let meaning =
            failure.kind == .refused
            ? ": nothing listens there, or the node is down (sshd does not say which)"
            : text.contains("administratively prohibited")
                ? ": sshd there does not allow TCP forwarding (AllowTcpForwarding/PermitOpen)" : ""
        var error = RouteError(
            failure.kind,
            .unreachable(
                url: url,
                message: "the login node \(displayName) could not connect to \(target) (\(text))\(meaning)",
                hint:
                    "Check the job with `vllmctl status`; from the login node itself, `curl \(url)/health` shows what it sees."
            ))
        error.heldUp = failure.heldUp
        throw error
    }
}
