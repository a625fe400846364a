import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `vllmctl tunnel NAME`: a local port forwarded to a deployment's server, opened over the
/// profile's SSH session and checked (GET /health through itself) before it is handed out.
public struct DeploymentTunnel: Sendable {
    /// The running tunnel.
    public let tunnel: Tunnel
    /// The deployment it serves.
    public let deployment: ResolvedDeployment
    /// The job's connection file (URL, key).
    public let connection: ConnectionRecord

    /// `node:port`, as the login node reaches the server.
    public var target: String { "\(connection.host):\(connection.port)" }

    /// Resolves `idOrName`, takes over the host's SSH session for a tunnel from `listener` to the
    /// server, and waits until /health answers through it. A deployment that has ended, a
    /// profile without `ssh_host` and a server that does not answer are errors (the tunnel is
    /// closed again).
    public static func open(
        _ idOrName: String, context: Context, cluster: String, listener: LocalListener,
        onEvent: @escaping @Sendable (ForwarderEvent, _ target: String) -> Void
    ) async throws -> DeploymentTunnel {
        let resolved = try await DeploymentResolver(context: context, cluster: cluster).resolve(idOrName)
        let connection = try resolved.requireServing("there is no server to tunnel to")
        guard let remote = context.host as? RemoteHost else {
            throw VLLMCtlError.invalidInput(
                "The profile `\(cluster)` does not reach the cluster over SSH",
                hint: "A tunnel needs a profile with `ssh_host`.")
        }
        let target = "\(connection.host):\(connection.port)"
        let tunnel = try Tunnel(
            session: try await remote.detachSession(), listener: listener, targetHost: connection.host,
            targetPort: connection.port, onEvent: { onEvent($0, target) })
        do {
            try await tunnel.checkHealth(http: context.http, deployment: resolved.name)
        } catch {
            tunnel.stop()
            throw error
        }
        return DeploymentTunnel(tunnel: tunnel, deployment: resolved, connection: connection)
    }

    /// The record `vllmctl status` and `teardown` find the tunnel by (this process's pid).
    public func record(cluster: String, bind: String, background: Bool, logFile: String?) -> TunnelRecord {
        TunnelRecord(
            cluster: cluster, jobID: deployment.jobID, name: deployment.name, pid: getpid(), bind: bind,
            localPort: tunnel.listener.port, target: target, startedAt: Date(), background: background,
            logFile: logFile)
    }

    /// What a user needs to use the tunnel: its URL, and with `key` the key and the
    /// `export` line for OpenAI clients (each value quoted for a shell).
    public static func readyLines(_ record: TunnelRecord, key: String?) -> [String] {
        var lines = [
            "Tunnel open: \(record.baseURL) → \(record.target) (job \(record.jobID), \(record.name))"
        ]
        if let key {
            lines.append("API key: \(key)")
            lines.append(
                "export OPENAI_BASE_URL=\(Shell.quote(record.baseURL)) OPENAI_API_KEY=\(Shell.quote(key))")
        }
        return lines
    }
}

/// A `vllmctl tunnel` that runs on after the command that started it returns: a detached copy
/// of vllmctl, found through the record it saves once it is ready.
public enum BackgroundTunnel {
    /// Starts `vllmctl tunnel DEPLOYMENT` as a detached copy of `executable` for the profile
    /// `cluster` and waits until it is ready (its record is saved). `options`: the
    /// configuration file and host-key choice the child must use too.
    public static func start(
        executable: String, deployment: String, localPort: Int, bind: String, store: TunnelStore,
        cluster: String, config: String?, acceptNewHostKey: Bool, clock: any Clock
    ) async throws -> TunnelRecord {
        try store.prepareDirectory(cluster: cluster)
        let log = store.logPath(
            cluster: cluster, jobID: "tunnel-\(getpid())-\(Int(Date().timeIntervalSince1970))")
        var arguments = [
            "tunnel", deployment, "--local-port", String(localPort), "--bind", bind, "--detached-child",
            "--log-file", log, "--cluster", cluster,
        ]
        if let config { arguments += ["--config", config] }
        if acceptNewHostKey { arguments.append("--accept-new-host-key") }
        return try await start(
            executable: executable, arguments: arguments, log: log, store: store, cluster: cluster,
            clock: clock)
    }

    /// Starts `executable arguments` detached (its messages to `log`) and waits until it has
    /// saved its record; its own error if it stops first.
    public static func start(
        executable: String, arguments: [String], log: String, store: TunnelStore, cluster: String,
        clock: any Clock, timeout: Double = 90
    ) async throws -> TunnelRecord {
        let pid = try Detached.spawn(executable: executable, arguments: arguments, log: log)
        let deadline = clock.now().addingTimeInterval(timeout)
        while clock.now() < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                unlink(log)
                var message = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
                throw VLLMCtlError.invalidInput(
                    "The background tunnel stopped: "
                        + (message.isEmpty ? "exit status \(status), no message" : message),
                    hint: "Nothing was left running.")
            }
            if let record = store.open(cluster: cluster).first(where: { $0.pid == pid }) { return record }
            try await clock.sleep(seconds: 0.05)
        }
        kill(pid, SIGTERM)
        throw VLLMCtlError.invalidInput(
            "The background tunnel was not ready within \(Int(timeout)) s", hint: "Its log is \(log).")
    }

    /// The key of the deployment `record` serves: from the local record if there is one, else
    /// its connection file.
    public static func apiKey(for record: TunnelRecord, context: Context) async throws -> String? {
        if let local = context.records.find(record.jobID, cluster: record.cluster) { return local.apiKey }
        let resolved = try await DeploymentResolver(context: context, cluster: record.cluster).resolve(
            record.jobID)
        return resolved.connection?.apiKey
    }
}

extension ForwarderEvent {
    /// The event in words for the tunnel's user (stderr or its log), with what it means.
    public func message(target: String) -> String {
        switch self {
        case .channelOpenFailed(let to, let reason, let alsoSince):
            let meaning =
                reason.contains("connect failed")
                ? ": the server is gone or not listening; see `vllmctl status`"
                : reason.contains("administratively prohibited")
                    ? ": the SSH server does not allow forwarding there (AllowTcpForwarding/PermitOpen)"
                    : reason.hasPrefix("no answer")
                        ? ": the node is down or unreachable, or a firewall drops the packets; see `vllmctl status`"
                        : ""
            let more =
                alsoSince > 0 ? " (and \(alsoSince) more failed connections since the last message)" : ""
            return "tunnel: a connection to \(to) failed (\(reason))\(meaning)\(more)"
        case .sessionLost(let reason):
            return "tunnel: the SSH session was lost (\(reason)); reconnecting, the local port stays open"
        case .reconnected:
            return "tunnel: reconnected"
        case .acceptFailed(let reason):
            return
                "tunnel: cannot accept more connections: \(reason); new ones wait until some close (raise the limit with `ulimit -n`)"
        case .reconnectFailed(let reason, let retryIn):
            return "tunnel: reconnecting failed (\(reason)); next try in \(String(format: "%.1f", retryIn)) s"
        }
    }
}

/// Where `vllmctl tunnel --to HOST:PORT` forwards: an address as the login node sees it.
public struct ForwardTarget: Sendable, Equatable {
    public var host: String
    public var port: Int

    /// `HOST:PORT`, `[IPv6]:PORT`; throws, saying the form, for anything else.
    public init(parsing text: String) throws {
        guard let colon = text.lastIndex(of: ":"), colon != text.startIndex,
            let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port)
        else {
            throw VLLMCtlError.invalidInput(
                "--to takes HOST:PORT, not `\(text)`.", hint: "For example --to gpu017:8000.")
        }
        host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        self.port = port
    }
}
