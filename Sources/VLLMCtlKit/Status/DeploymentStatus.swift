import Foundation

/// One deployment as `vllmctl status` reports it. Its JSON form is the stable schema
/// documented in docs/STATUS_JSON.md.
public struct DeploymentStatus: Sendable, Equatable, Codable {
    public enum Health: String, Sendable, Codable {
        /// /health answered 200.
        case healthy
        /// /health answered something else.
        case unhealthy
        /// The connection was refused at the server's address: nothing listens there.
        case unreachable
        /// Checked, but vllmctl could not tell for a reason on its own side (no route, a
        /// timeout on the way, the SSH session, the login node's connection to the node);
        /// `healthDetail` says which. Never counts against the server.
        case unknown
        /// Not checked: the job is not running or its URL is not known yet.
        case unchecked
    }

    /// The health a failed `/health` request shows: only a refusal seen at the server's address
    /// is held against the server.
    public static func health(after error: any Error) -> Health {
        if case VLLMCtlError.http(_, let message, _) = error, message.hasPrefix("connection refused") {
            return .unreachable
        }
        if case VLLMCtlError.http = error { return .unhealthy }
        return .unknown
    }

    public var name: String
    public var jobID: String
    public var cluster: String
    public var user: String
    public var model: String?
    public var servedModelName: String?
    public var state: String
    public var reason: String?
    public var node: String?
    public var url: String?
    public var health: Health
    public var healthDetail: String?
    public var elapsedSeconds: Int?
    public var timeLeftSeconds: Int?
    /// Less than 10 minutes of walltime left.
    public var walltimeLow: Bool
    public var deployDir: String?
    public var infoFile: String?
    /// vllmctl on this machine has a record of it (deployed from here).
    public var recorded: Bool
    /// The OpenAI base URL of a `vllmctl tunnel` open to it from this machine.
    public var tunnelURL: String? = nil
    /// Which replica of a replicated deployment the job is (1…); nil for one server.
    public var replica: Int? = nil
    /// A running replica's requests in flight and waiting, from its server's `/metrics`
    /// (`vllm:num_requests_running`, `vllm:num_requests_waiting`), read beside the health
    /// check; nil when not asked (not a running replica) or not readable.
    public var requestsRunning: Int? = nil
    public var requestsWaiting: Int? = nil
    /// Why a running replica's requests are unknown; nil when they were read or not asked.
    public var requestsDetail: String? = nil

    /// A renewing job's place in its chain (docs/RENEW.md), from its `renew-JOBID.json`; nil
    /// for a job that does not renew.
    public var renewal: RenewalStatus? = nil
    /// On a renewing deployment's successor while the deployment is down: the job that served
    /// last has ended and this one has not started (or is loading). Nil otherwise.
    public var down: ChainGap? = nil

    /// `NAME`, or `NAME@K` for replica K.
    public var displayName: String { name + (replica.map { "\(JobName.replicaMark)\($0)" } ?? "") }

    enum CodingKeys: String, CodingKey {
        case name
        case jobID = "job_id"
        case cluster, user, model
        case servedModelName = "served_model_name"
        case state, reason, node, url, health
        case healthDetail = "health_detail"
        case elapsedSeconds = "elapsed_seconds"
        case timeLeftSeconds = "time_left_seconds"
        case walltimeLow = "walltime_low"
        case deployDir = "deploy_dir"
        case infoFile = "info_file"
        case recorded
        case tunnelURL = "tunnel_url"
        case replica
        case requestsRunning = "requests_running"
        case requestsWaiting = "requests_waiting"
        case requestsDetail = "requests_detail"
        case renewal, down
    }

    public static let lowWalltimeSeconds = 600
}

/// The `status --json` document.
public struct StatusReport: Sendable, Codable {
    public var schema: Int = 2
    public var cluster: String
    public var generatedAt: Date
    public var deployments: [DeploymentStatus]

    public init(cluster: String, generatedAt: Date, deployments: [DeploymentStatus]) {
        self.cluster = cluster
        self.generatedAt = generatedAt
        self.deployments = deployments
    }

    enum CodingKeys: String, CodingKey {
        case schema, cluster
        case generatedAt = "generated_at"
        case deployments
    }

    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

/// Where a renewing job stands in its chain: what it wrote in `renew-JOBID.json` in the
/// deployment directory (a file on the cluster, so read as untrusted).
public struct RenewalStatus: Sendable, Equatable, Codable {
    /// How many successors came before this job (0: the first job).
    public var renewal: Int
    /// `waiting` (successor submitted), `retrying`, `handing-over`, `handed-over`, `ended`
    /// (`--renewals`, `--renew-until`, teardown) or `stopped` (the chain failed).
    public var state: String
    /// The successor's job id, once submitted.
    public var successor: String?
    /// What the job last said about the chain.
    public var message: String
    /// Who submits the successors: `job` or `login` (the loop on the login node); nil when
    /// the file does not say (an older vllmctl's: job).
    public var from: String? = nil

    public init(renewal: Int, state: String, successor: String?, message: String, from: String? = nil) {
        self.renewal = renewal
        self.state = state
        self.successor = successor
        self.message = message
        self.from = from
    }

    /// `from the job` or `from the login node`, for the status line.
    public var fromText: String { from == RenewFrom.login.rawValue ? "from the login node" : "from the job" }

    /// The file's name for `jobID`.
    public static func fileName(jobID: String) -> String { "renew-\(jobID).json" }

    /// Parses the job's file; nil for anything malformed.
    public static func parse(_ data: Data) -> RenewalStatus? {
        struct File: Decodable {
            var renewal: Int
            var state: String
            var successor: String
            var message: String
            var from: String?
        }
        guard data.count < 4096, let file = try? JSONDecoder().decode(File.self, from: data),
            (0...1_000_000).contains(file.renewal),
            file.state.count <= 20, file.state.allSatisfy({ $0.isASCII && ($0.isLetter || $0 == "-") }),
            file.successor.isEmpty || isJobID(file.successor),
            file.message.count <= 600, !file.message.contains(where: { $0.isNewline })
        else { return nil }
        return RenewalStatus(
            renewal: file.renewal, state: file.state,
            successor: file.successor.isEmpty ? nil : file.successor,
            message: file.message,
            from: file.from.flatMap { $0 == "job" || $0 == "login" ? $0 : nil })
    }
}
