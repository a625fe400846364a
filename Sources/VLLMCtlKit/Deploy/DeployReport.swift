import Foundation

/// What `vllmctl deploy` reports once it is done: one JSON object (`--json`) or a few lines.
public struct DeployReport: Encodable, Sendable {
    /// The Slurm job id.
    public var jobID: String
    /// The deployment's name.
    public var name: String
    /// The cluster profile's name.
    public var cluster: String
    /// The server's base URL (`http://NODE:PORT/v1`), once it answered.
    public var url: String?
    /// The key the server requires.
    public var apiKey: String
    /// The model the server loads.
    public var model: String
    /// The name requests use for the model.
    public var servedModelName: String
    /// The node the server runs on, once it answered.
    public var node: String?
    /// `server_connection_info.txt` on the cluster.
    public var infoFile: String
    /// The record's phase: `submitted` or `ready`.
    public var state: String
    /// The local tunnel's base URL, with `--tunnel`.
    public var tunnelURL: String?
    /// Every replica of a replicated deployment (nil for one server).
    public var replicas: [Replica]?
    /// With `renew`: who submits the successors, `job` or `login` (docs/RENEW.md); nil otherwise.
    public var renewFrom: String?

    /// One replica's job in the report.
    public struct Replica: Encodable, Sendable {
        public var replica: Int
        public var jobID: String
        public var state: String
        public var url: String?
        public var node: String?
        enum CodingKeys: String, CodingKey { case replica, jobID = "job_id", state, url, node }
    }

    /// Connection details, kept for the text form (not in the JSON).
    private var connection: ConnectionInfo?
    private var tunnel: TunnelRecord?

    /// The report of a deployment: its record, what the ready server published (nil when not
    /// waiting) and the tunnel opened to it (`--tunnel`).
    public init(record: DeploymentRecord, connection: ConnectionInfo?, tunnel: TunnelRecord? = nil) {
        jobID = record.jobID
        name = record.name
        cluster = record.cluster
        url = connection.map(\.baseURL)
        apiKey = record.apiKey
        model = record.model
        servedModelName = record.servedModelName
        node = record.node
        infoFile = record.infoFile
        state = record.phase.rawValue
        tunnelURL = tunnel?.baseURL
        self.connection = connection
        self.tunnel = tunnel
    }

    /// The report of a deployment with its replicas (the lead replica's record and connection
    /// stand for it, as in ``DeployOutcome``).
    public init(outcome: DeployOutcome, tunnel: TunnelRecord? = nil) {
        self.init(record: outcome.record!, connection: outcome.connection, tunnel: tunnel)
        renewFrom = outcome.replicas.first.flatMap {
            $0.plan.renews ? ($0.plan.settings.renewFrom ?? RenewFrom.job.rawValue) : nil
        }
        if outcome.replicas.count > 1 {
            replicas = outcome.replicas.map {
                Replica(
                    replica: $0.record.replica ?? 1, jobID: $0.record.jobID,
                    state: $0.connection != nil ? "ready" : "starting", url: $0.connection?.baseURL,
                    node: $0.record.node)
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case jobID = "job_id", name, cluster, url, apiKey = "api_key", model
        case servedModelName = "served_model_name", node, infoFile = "info_file", state
        case tunnelURL = "tunnel_url"
        case replicas
        case renewFrom = "renew_from"
    }

    /// `deploy --json`: one line, keys sorted.
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// What `deploy` prints: URL, key, an example curl command and the connection file once
    /// the server is ready (and the tunnel with its `export` line); where the connection file
    /// will be when not waiting.
    public var text: String {
        guard let connection else {
            return "Job \(jobID) submitted; not waiting. Its connection file will be \(infoFile)"
        }
        var lines = """
            Ready: \(name) (job \(jobID) on \(node ?? "?"))
            Server URL: \(connection.serverURL)
            API Key: \(connection.apiKey)
            Example curl command:
            \(connection.curlCommand)
            Connection info: \(infoFile)
            """
        for r in replicas ?? [] {
            lines +=
                "\nReplica \(r.replica): job \(r.jobID), \(r.state)"
                + (r.url.map { " at \($0) on \(r.node ?? "?")" } ?? " (`vllmctl status \(name)` follows it)")
        }
        if let tunnel {
            lines += """

                Tunnel: \(tunnel.baseURL) → \(tunnel.target) (background, pid \(tunnel.pid); `vllmctl teardown \(name)` closes it)
                export OPENAI_BASE_URL=\(Shell.quote(tunnel.baseURL)) OPENAI_API_KEY=\(Shell.quote(connection.apiKey))
                """
        }
        return lines
    }

    /// What to tell the user when they stop a deploy while it waits (Ctrl-C): the jobs
    /// submitted so far keep running, and how to see or cancel them.
    public static func interrupted(records: DeploymentStore, cluster: String) -> String {
        guard let job = records.all(cluster: cluster).last(where: { $0.phase == .submitted }) else {
            return "Stopped before anything was submitted."
        }
        // Every replica of it that was submitted keeps running too.
        let ids = records.replicas(of: job.name, cluster: cluster).filter { $0.phase == .submitted }.map(
            \.jobID)
        let jobs =
            ids.count > 1
            ? "Jobs \(ids.joined(separator: ", ")) (\(job.name)) keep running: see them"
            : "Job \(job.jobID) (\(job.name)) keeps running: see it"
        return "Stopped waiting. \(jobs) with `vllmctl status`, cancel with `vllmctl teardown \(job.name)`."
    }
}
