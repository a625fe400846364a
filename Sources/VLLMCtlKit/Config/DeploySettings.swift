/// How a job asks for GPUs.
public enum GPURequestStyle: String, Sendable, Codable {
    /// `#SBATCH --gres=gpu:N`
    case gres
    /// `#SBATCH --gpus=N`
    case gpus
}

/// Everything that shapes one deployment. A cluster profile, a model preset and the command
/// line each fill some of these; `merged(over:)` layers them: flags over preset over profile.
///
/// Each property has one row in ``table``, which says its config key, its flag, its help and
/// where the job script sees it; the config parser, the merge, `deploy`'s flags and the
/// template's values all walk that table.
public struct DeploySettings: Sendable, Equatable, Codable {
    // Scheduler
    public var partition: String?
    public var account: String?
    public var qos: String?
    public var time: String?
    public var constraint: String?
    public var exclusive: Bool?
    public var nodelist: String?
    public var exclude: String?
    public var nodes: Int?
    /// Replica jobs of one deployment, all with the same key (docs/REPLICAS.md).
    public var replicas: Int?
    /// Replicas to keep up: failed ones are resubmitted, within a limit (docs/REPLICAS.md).
    public var keep: Int?
    public var gpus: Int?
    public var cpus: Int?
    public var memory: String?
    public var gpuRequest: GPURequestStyle?
    // Job environment
    public var setup: [String]?
    public var serverCommand: [String]?
    public var template: String?
    /// The address written into the URL: `ip` (the node's first IP), `hostname`, or a literal.
    public var host: String?
    /// The address the server binds.
    public var bindHost: String?
    public var port: Int?
    // vLLM
    public var model: String?
    public var servedName: String?
    public var dtype: String?
    public var tensorParallelSize: Int?
    public var pipelineParallelSize: Int?
    public var gpuMemoryUtilization: Double?
    public var maxModelLen: Int?
    public var guidedDecodingBackend: String?
    public var uvicornLogLevel: String?
    public var maxLogLen: Int?
    public var vllmArgs: [String]?
    // vllmctl
    /// Seconds to wait for the server to become ready once the job runs.
    public var readyTimeout: Double?
    // Renewal (docs/RENEW.md)
    /// Keep the deployment alive across time limits: each job submits its successor.
    public var renew: Bool?
    /// Seconds between the successor being ready and the predecessor's end (the default is
    /// ``DeployPlan/defaultRenewMargin``).
    public var renewMargin: Double?
    /// No successor is submitted that would start after this time (cluster-local
    /// `YYYY-MM-DDTHH:MM[:SS]`).
    public var renewUntil: String?
    /// At most this many successors (renewals) in the chain.
    public var renewals: Int?
    /// Seconds a predecessor waits for its requests in flight before it stops.
    public var drainTimeout: Double?
    /// Where successors are submitted from: `auto` (default), `job` or `login` (``RenewFrom``).
    public var renewFrom: String?

    public init() {}

    /// `self` where set, otherwise `base`. The settings whose row ``DeploySetting/Value/list(_:splitWords:addsUp:)``
    /// adds up (`setup`, `vllm_args`) concatenate, base first, since a preset's extra
    /// arguments complete a profile's rather than replace them.
    public func merged(over base: DeploySettings) -> DeploySettings {
        var out = DeploySettings()
        for row in Self.table {
            switch row.value {
            case .string(let p): out[keyPath: p] = self[keyPath: p] ?? base[keyPath: p]
            case .int(let p): out[keyPath: p] = self[keyPath: p] ?? base[keyPath: p]
            case .double(let p): out[keyPath: p] = self[keyPath: p] ?? base[keyPath: p]
            case .bool(let p): out[keyPath: p] = self[keyPath: p] ?? base[keyPath: p]
            case .gpuRequest(let p): out[keyPath: p] = self[keyPath: p] ?? base[keyPath: p]
            case .list(let p, _, let addsUp):
                if addsUp, self[keyPath: p] != nil || base[keyPath: p] != nil {
                    out[keyPath: p] = (base[keyPath: p] ?? []) + (self[keyPath: p] ?? [])
                } else {
                    out[keyPath: p] = self[keyPath: p] ?? base[keyPath: p]
                }
            }
        }
        return out
    }
}

/// A cluster: where Slurm runs and how jobs are shaped there.
public struct ClusterProfile: Sendable, Equatable {
    /// The profile's key under `clusters:`.
    public var name: String
    /// An SSH host (alias in ~/.ssh/config) to reach the login node; nil runs Slurm locally.
    public var sshHost: String?
    /// Where deployments keep their files on the cluster filesystem; `~` is the remote home.
    public var workdir: String?
    /// Where `vllmctl info --share` copies connection files for colleagues.
    public var shareDir: String?
    /// The proxy vllmctl's own requests to servers go through, for clusters that need one
    /// (`http://proxy:3128`). Without it no proxy is used: the environment's `http_proxy` is
    /// for reaching the internet, not the cluster's nodes.
    public var httpProxy: String?
    /// The job settings every deployment on this cluster starts from.
    public var defaults: DeploySettings

    /// A profile made in code.
    public init(
        name: String, sshHost: String? = nil, workdir: String? = nil, shareDir: String? = nil,
        httpProxy: String? = nil, defaults: DeploySettings = .init()
    ) {
        self.name = name
        self.sshHost = sshHost
        self.workdir = workdir
        self.shareDir = shareDir
        self.httpProxy = httpProxy
        self.defaults = defaults
    }
}

/// A named model, like vec-inf's models file: what to serve and what it needs.
public struct ModelPreset: Sendable, Equatable {
    /// The preset's key under `models:`, and the base of its deployments' names.
    public var name: String
    /// What it sets, over the profile's defaults.
    public var settings: DeploySettings

    /// A preset made in code.
    public init(name: String, settings: DeploySettings) {
        self.name = name
        self.settings = settings
    }
}
