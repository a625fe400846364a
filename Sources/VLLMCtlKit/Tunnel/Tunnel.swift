import Foundation

/// A local port forwarded to a deployment's server through the login node: a bound listener
/// and a `PortForwarder` on its own thread.
public final class Tunnel: @unchecked Sendable {
    /// The local port it listens on.
    public let listener: LocalListener
    /// The server's host, as the login node sees it (the compute node's address).
    public let targetHost: String
    /// The server's port.
    public let targetPort: Int
    /// The SSH server the tunnel runs through, for messages.
    public let via: String
    let forwarder: PortForwarder
    private let finished = DispatchSemaphore(value: 0)
    /// The SSH server's last refusal to open a channel, to explain a failed check.
    private let refusals: RefusalBox

    /// Starts forwarding `listener` to `targetHost:targetPort` over `session`, which the tunnel
    /// takes over. Lost sessions are replaced with new ones to the same host.
    public init(
        session: SSHSession, listener: LocalListener, targetHost: String, targetPort: Int,
        settings: ForwarderSettings? = nil, onEvent: @escaping @Sendable (ForwarderEvent) -> Void = { _ in }
    ) throws {
        self.listener = listener
        self.targetHost = targetHost
        self.targetPort = targetPort
        let options = session.options
        via = options.displayName
        var chosen = settings ?? ForwarderSettings()
        if settings == nil, options.serverAliveInterval > 0 {
            chosen.keepaliveInterval = options.serverAliveInterval
            chosen.keepaliveCountMax = options.serverAliveCountMax
        }
        let box = RefusalBox()
        refusals = box
        forwarder = try PortForwarder(
            listener: listener.fd, session: session, targetHost: targetHost, targetPort: targetPort,
            settings: chosen,
            connect: {
                try SSHSession(connecting: options, queue: DispatchQueue(label: "vllmctl.ssh.tunnel"))
            },
            onEvent: { event in
                if case .channelOpenFailed(_, let reason, _) = event { box.set(reason) }
                onEvent(event)
            })
        let forwarder = self.forwarder
        let finished = self.finished
        let thread = Thread {
            forwarder.run()
            finished.signal()
        }
        thread.name = "vllmctl.tunnel"
        thread.start()
    }

    /// `vllmctl tunnel --to HOST:PORT`: a plain forward of `listener` to `target` as the login
    /// node sees it, like `ssh -N -L`, over a session of its own to the login node that `host`
    /// reaches. Throws when `host` is not reached over SSH.
    public static func forward(
        _ listener: LocalListener, to target: ForwardTarget, over host: any ClusterHost, cluster: String,
        onEvent: @escaping @Sendable (ForwarderEvent) -> Void = { _ in }
    ) async throws -> Tunnel {
        guard let remote = host as? RemoteHost else {
            throw VLLMCtlError.invalidInput(
                "The profile `\(cluster)` has no ssh_host: a tunnel needs one",
                hint: "Use --cluster with a profile that reaches the login node over SSH (e.g. local-ssh).")
        }
        return try Tunnel(
            session: try await remote.detachSession(), listener: listener, targetHost: target.host,
            targetPort: target.port, onEvent: onEvent)
    }

    /// `http://127.0.0.1:PORT`.
    public var baseURL: String { listener.baseURL }

    /// Closes the listener, every connection and the session; returns once all is closed.
    public func stop() {
        forwarder.stop()
        finished.wait()
        finished.signal()
    }

    /// Asks the tunnel to close without waiting (for signal handlers).
    public func requestStop() { forwarder.stop() }

    /// Waits until the tunnel has closed.
    public func waitUntilClosed() async {
        let finished = self.finished
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                finished.wait()
                finished.signal()
                continuation.resume()
            }
        }
    }

    /// Checks the whole path with `GET /health` through the tunnel, so that "ready" means a
    /// request works. A refusal by the SSH server is explained in its own words.
    public func checkHealth(http: any HTTPClient, deployment: String, timeout: Double = 10) async throws {
        let url = baseURL + "/health"
        do {
            let response = try await http.send(HTTPRequest(url: url, connectTimeout: 5, timeout: timeout))
            guard response.status == 200 else {
                throw VLLMCtlError.http(
                    url: "http://\(targetHost):\(targetPort)/health",
                    message: "the server answered \(response.status) through the tunnel",
                    hint:
                        "It is still loading or unwell: see `vllmctl status \(deployment)` and `vllmctl logs \(deployment)`."
                )
            }
        } catch let error as VLLMCtlError {
            if let reason = refusals.value { throw refusalError(reason, deployment: deployment) }
            throw error
        }
    }

    func refusalError(_ reason: String, deployment: String) -> VLLMCtlError {
        let target = "\(targetHost):\(targetPort)"
        if reason.contains("connect failed") {
            return .invalidInput(
                "The login node \(via) could not connect to \(target) (\"connect failed\"): the server of `\(deployment)` is gone or no longer listening",
                hint:
                    "Check the job with `vllmctl status \(deployment)`; `vllmctl logs \(deployment)` shows why the server stopped. Deploy again if it ended."
            )
        }
        if reason.hasPrefix("no answer from") {
            return .unreachable(
                url: "http://\(target)",
                message:
                    "The login node \(via) could not reach \(target): \(reason) (the node is down or unreachable, a firewall drops the packets, or the server's backlog is full)",
                hint:
                    "Check the job with `vllmctl status \(deployment)`; if it still runs, the node may be failing: see `vllmctl logs \(deployment)`."
            )
        }
        if reason.contains("administratively prohibited") {
            return .invalidInput(
                "The SSH server \(via) refused to forward to \(target) (\"administratively prohibited\"): it does not allow TCP forwarding there (sshd's AllowTcpForwarding or PermitOpen)",
                hint:
                    "Ask the cluster admins to allow forwarding to compute nodes, or run vllmctl on the login node and use the server's URL directly."
            )
        }
        return .invalidInput(
            "The SSH server \(via) could not open a connection to \(target) (\(reason))",
            hint: "Check the job with `vllmctl status \(deployment)`.")
    }
}

private final class RefusalBox: @unchecked Sendable {
    private let lock = NSLock()
    private var reason: String?
    func set(_ r: String) { lock.withLock { reason = r } }
    var value: String? { lock.withLock { reason } }
}
