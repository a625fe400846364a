import Foundation

/// `vllmctl status JOB`: one deployment in detail. One scheduler call for the job (a squeue
/// that also reports what it asked for; sacct only once it has left the queue), its
/// connection file, and, when it answers /health, what the server says about itself.
public struct StatusDetail: Sendable, Encodable {
    /// The deployment's row, as in the table.
    public var status: DeploymentStatus
    /// The job's output files on the cluster.
    public var stdout: String
    public var stderr: String
    /// What the server says about itself, when it is healthy.
    public var server: ServerFacts?
    /// Partition, account, limits: what the job asked for (while Slurm still lists it).
    public var resources: [(key: String, value: String)] = []
    /// Tunnels open to it from this machine.
    public var tunnels: [TunnelRecord] = []

    enum CodingKeys: String, CodingKey { case status, stdout, stderr, server }

    /// Gathers the detail of the deployment `idOrName` on `cluster`.
    public static func gather(_ idOrName: String, context: Context, cluster: String) async throws
        -> StatusDetail
    {
        let resolved = try await DeploymentResolver(context: context, cluster: cluster).resolve(
            idOrName, detail: true)
        let builder = StatusBuilder(context: context, cluster: cluster)
        let tunnels = TunnelStore(records: context.records).open(cluster: cluster, jobID: resolved.jobID)
        var row: DeploymentStatus
        if let job = resolved.job {
            row = builder.row(
                job: job, record: resolved.record, user: job.user, connection: resolved.connection)
        } else if let record = resolved.record {
            // Neither squeue nor sacct knows it any more: what the record says.
            row = builder.row(record: record, user: (try? await context.host.userName()) ?? "")
        } else {
            throw VLLMCtlError.notFound(
                what: "deployment", name: idOrName, hint: "`vllmctl status --all` lists them.")
        }
        row.tunnelURL = tunnels.first?.baseURL
        row = await builder.checkHealth([row])[0]
        if row.state == JobState.pending.rawValue
            || (row.state == JobState.running.rawValue && row.url == nil)
        {
            row.down = await builder.chainGap(for: row)
        }
        var server: ServerFacts?
        if row.health == .healthy, let info = resolved.connection {
            server = await ServerFacts.fetch(info, http: context.http)
        }
        return StatusDetail(
            status: row, stdout: resolved.stdoutPath, stderr: resolved.stderrPath, server: server,
            resources: resolved.job.map { $0.state.isFinal ? [] : $0.resources } ?? [], tunnels: tunnels)
    }

    /// The JSON form (docs/STATUS_JSON.md).
    public func json() throws -> String { try PrettyJSON.string(self) }

    /// The text form: the table's row, then one labelled line per fact.
    public var text: String {
        var lines = [StatusTable.render([status], listTunnels: false).trimmingCharacters(in: .newlines), ""]
        if !resources.isEmpty {
            lines.append("Resources:   " + resources.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
        if let dir = status.deployDir { lines.append("Directory:   " + dir) }
        if let info = status.infoFile { lines.append("Info file:   " + info) }
        lines.append("Logs:        " + stdout + "\n             " + stderr)
        if tunnels.isEmpty {
            lines.append("Tunnel:      none open (`vllmctl tunnel \(status.name)` opens one)")
        }
        for tunnel in tunnels {
            lines.append(
                "Tunnel:      \(tunnel.baseURL) → \(tunnel.target) (pid \(tunnel.pid)\(tunnel.background ? ", background" : ""))"
            )
        }
        if let server {
            lines.append(
                "Server:      vLLM \(server.version ?? "?")"
                    + (server.simulator ? " (vllm-sim, a simulator)" : ""))
            lines.append("Models:      " + server.models.joined(separator: ", "))
        } else if status.health != .unchecked {
            lines.append(
                "Server:      \(status.health.rawValue)\(status.healthDetail.map { ": " + $0 } ?? "")")
        }
        return lines.joined(separator: "\n")
    }
}

/// What a server says about itself: /version and /v1/models, as the seed's `--info`.
public struct ServerFacts: Sendable, Encodable {
    public var version: String?
    public var simulator: Bool
    public var models: [String]

    /// Asks the server behind `info` (each request bounded to 5 s; what does not answer stays
    /// empty).
    public static func fetch(_ info: ConnectionRecord, http: any HTTPClient) async -> ServerFacts {
        var facts = ServerFacts(version: nil, simulator: false, models: [])
        if let r = try? await http.send(HTTPRequest(url: info.serverURL + "/version", timeout: 5)),
            let o = try? JSONSerialization.jsonObject(with: r.body) as? [String: Any]
        {
            facts.version = o["version"] as? String
            facts.simulator = o["simulator"] as? Bool ?? false
        }
        if let key = try? APIKey(info.apiKey),
            let r = try? await http.send(
                HTTPRequest(url: info.serverURL + "/v1/models", timeout: 5).authorized(key))
        {
            facts.models = ModelList.names(r.body)
        }
        return facts
    }
}
