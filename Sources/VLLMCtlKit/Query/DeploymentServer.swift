import Foundation

extension QueryServer {
    /// The server of the deployment `idOrName` on `cluster`, for `vllmctl query`: its URL and
    /// key from the job's connection file, through a `vllmctl tunnel` open to it from this
    /// machine when there is one (from a laptop the node's address is out of reach otherwise).
    /// `apiKey` overrides the deployment's key; `ssl` asks for HTTPS at the same address.
    public static func deployment(
        _ idOrName: String, context: Context, cluster: String, apiKey: String? = nil, ssl: Bool = false,
        caCertificate: String? = nil, connectTimeout: Double = 5, timeout: Double? = 120
    ) async throws -> QueryServer {
        let resolved = try await DeploymentResolver(context: context, cluster: cluster).resolve(idOrName)
        let record = try resolved.requireServing()
        let tunnel = TunnelStore(records: context.records).open(cluster: cluster, jobID: resolved.jobID).first
        var url = tunnel?.serverURL ?? record.serverURL
        if ssl, url.hasPrefix("http://") { url = "https://" + url.dropFirst("http://".count) }
        return try QueryServer(
            url: url, apiKey: apiKey ?? record.apiKey, caCertificate: caCertificate,
            connectTimeout: connectTimeout, timeout: timeout,
            deploymentName: resolved.name, servedModelName: record.servedModelName)
    }
}

extension QueryServer {
    /// The servers `vllmctl query NAME` may ask, in the order to try them: for a replicated
    /// deployment every serving replica (an open balancing tunnel to it first, if any), the
    /// others in random order (the seed's random choice); for one server, that server.
    public static func candidates(
        _ idOrName: String, context: Context, cluster: String, apiKey: String? = nil, ssl: Bool = false,
        caCertificate: String? = nil, connectTimeout: Double = 5, timeout: Double? = 120
    ) async throws -> [QueryServer] {
        let (base, replica) = JobName.split(idOrName)
        let resolver = DeploymentResolver(context: context, cluster: cluster)
        let replicas = replica == nil && !isJobID(idOrName) ? try await resolver.replicas(of: base) : []
        guard replicas.count > 1 else {
            return [
                try await deployment(
                    idOrName, context: context, cluster: cluster, apiKey: apiKey, ssl: ssl,
                    caCertificate: caCertificate, connectTimeout: connectTimeout, timeout: timeout)
            ]
        }
        // A tunnel open to the deployment balances over all of them: it comes first.
        let tunnels = TunnelStore(records: context.records).open(cluster: cluster).filter { $0.name == base }
        var urls = tunnels.map(\.serverURL)
        // (Replicas from the records carry no scheduler view: the connection file says whether
        // the server stopped.)
        urls += replicas.compactMap { r in r.connection?.endedAt == nil ? r.connection?.serverURL : nil }
            .shuffled()
        let key = apiKey ?? replicas.lazy.compactMap { $0.connection?.apiKey ?? $0.record?.apiKey }.first
        let served = replicas.lazy.compactMap { $0.connection?.servedModelName }.first
        guard !urls.isEmpty else {
            throw VLLMCtlError.invalidInput(
                "No replica of `\(base)` has published its connection file yet",
                hint: "Wait for one with `vllmctl status \(base) --watch`.")
        }
        return try urls.map { url in
            var url = url
            if ssl, url.hasPrefix("http://") { url = "https://" + url.dropFirst("http://".count) }
            return try QueryServer(
                url: url, apiKey: key, caCertificate: caCertificate, connectTimeout: connectTimeout,
                timeout: timeout, deploymentName: base, servedModelName: served)
        }
    }

    /// Whether a query that failed with `error` may go to another replica: the request never
    /// reached a server that answered (refused, or it could not get there).
    public static func mayTryAnother(after error: any Error) -> Bool {
        switch error {
        case VLLMCtlError.unreachable: return true
        case VLLMCtlError.http(_, let message, _): return message.hasPrefix("connection refused")
        default: return false
        }
    }
}
