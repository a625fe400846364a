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
        let record = try resolved.requireConnection()
        if resolved.hasEnded {
            throw VLLMCtlError.invalidInput(
                "Job \(resolved.jobID) (\(resolved.name)) has ended, so its server no longer answers",
                hint: "Deploy again with `vllmctl deploy`; `vllmctl status --all` lists your deployments.")
        }
        let tunnel = TunnelStore(records: context.records).open(cluster: cluster, jobID: resolved.jobID).first
        var url = tunnel?.serverURL ?? record.serverURL
        if ssl, url.hasPrefix("http://") { url = "https://" + url.dropFirst("http://".count) }
        return try QueryServer(
            url: url, apiKey: apiKey ?? record.apiKey, caCertificate: caCertificate,
            connectTimeout: connectTimeout, timeout: timeout,
            deploymentName: resolved.name, servedModelName: record.servedModelName)
    }
}
