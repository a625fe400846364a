/// One deploy setting: its row in ``DeploySettings/table``. The config parser reads profile and
/// preset keys by it, ``DeploySettings/merged(over:)`` layers by it, `vllmctl deploy` declares
/// its flags from it, and ``DeployPlan`` hands its value to the template by it.
public struct DeploySetting: Sendable {
    /// Its key in config.yaml, in a profile or a preset: `tensor_parallel_size`.
    public let key: String
    /// How `vllmctl deploy` sets it.
    public let flag: Flag
    /// What `vllmctl deploy --help` says about it.
    public let help: String
    /// The ``DeploySettings`` property it fills, and the type that property has.
    public let value: Value
    /// Where the job script's template sees it.
    public let template: TemplateValue

    /// How the command line sets a setting.
    public enum Flag: Sendable, Equatable {
        /// `--NAME VALUE` (and `-SHORT VALUE`); a `bool` setting is a switch (`--exclusive`), a
        /// `list` one a repeatable option, and `server_command` one line split at spaces.
        case option(String, short: Character? = nil)
        /// Not a flag: deploy's argument (`model`) or the words after `--` (`vllm_args`).
        case argument
        /// Only in config.yaml.
        case configOnly
    }

    /// The property a setting fills. YAML reads `string`, `int`, `double` and `bool` as
    /// scalars, `list` as a sequence (or, with `splitWords`, one line split at spaces).
    public enum Value: Sendable {
        /// Text (`partition`).
        case string(any WritableKeyPath<DeploySettings, String?> & Sendable)
        /// A whole number (`gpus`).
        case int(any WritableKeyPath<DeploySettings, Int?> & Sendable)
        /// A number (`gpu_memory_utilization`).
        case double(any WritableKeyPath<DeploySettings, Double?> & Sendable)
        /// True or false (`exclusive`).
        case bool(any WritableKeyPath<DeploySettings, Bool?> & Sendable)
        /// `gres` or `gpus`.
        case gpuRequest(any WritableKeyPath<DeploySettings, GPURequestStyle?> & Sendable)
        /// `addsUp`: layers concatenate (base first) instead of replacing each other.
        case list(any WritableKeyPath<DeploySettings, [String]?> & Sendable, splitWords: Bool, addsUp: Bool)
    }

    /// Where a setting reaches the job script (templates/README.md lists the values).
    public enum TemplateValue: Sendable, Equatable {
        /// `{{KEY}}`, present only when set and not empty: an optional `#SBATCH` line.
        case sbatch(String)
        /// `{{KEY}}`: the value, or `default` when unset.
        case value(String, default: String)
        /// `{{#KEY}}`: true when the setting is true.
        case flag(String)
        /// `{{#KEY}}…{{/KEY}}`: one line per element.
        case lines(String)
        /// In `{{server_argv}}`: this vLLM flag and the value, when set.
        case serverFlag(String)
        /// Not in the job script: it shapes the deployment (how many jobs), which ``Deployer``
        /// reads (`replicas`), or how it is kept (`keep`).
        case deployment
        /// ``DeployPlan`` derives these template values from it (with defaults and other
        /// settings); none for `template`, which picks the template itself.
        case derived([String])
    }

    init(_ key: String, _ flag: Flag, _ value: Value, _ template: TemplateValue, help: String) {
        self.key = key
        self.flag = flag
        self.value = value
        self.template = template
        self.help = help
    }

    /// The value `settings` has for it as one word (`0.9`, `gpus`, `true`); nil when unset or a list.
    public func text(in settings: DeploySettings) -> String? {
        switch value {
        case .string(let p): return settings[keyPath: p]
        case .int(let p): return settings[keyPath: p].map(String.init)
        case .double(let p): return settings[keyPath: p].map { String($0) }
        case .bool(let p): return settings[keyPath: p].map(String.init)
        case .gpuRequest(let p): return settings[keyPath: p]?.rawValue
        case .list: return nil
        }
    }

    /// Whether `settings` sets it.
    public func isSet(in settings: DeploySettings) -> Bool {
        if case .list(let p, _, _) = value { return settings[keyPath: p] != nil }
        return text(in: settings) != nil
    }
}

extension DeploySettings {
    /// Every deploy setting, one row each, in the order `vllmctl deploy --help` lists the flags.
    /// Adding a setting is a property above and a row here.
    public static let table: [DeploySetting] = [
        .init(
            "template", .option("template"), .string(\.template), .derived([]),
            help: "The sbatch template (`vllmctl templates` lists them)."),
        .init(
            "partition", .option("partition"), .string(\.partition), .sbatch("partition"),
            help: "Slurm partition."),
        .init("account", .option("account"), .string(\.account), .sbatch("account"), help: "Slurm account."),
        .init("qos", .option("qos"), .string(\.qos), .sbatch("qos"), help: "Slurm QOS."),
        .init(
            "time", .option("time"), .string(\.time), .value("time", default: DeployPlan.defaultTime),
            help: "Time limit, e.g. 02:00:00."),
        .init(
            "constraint", .option("constraint"), .string(\.constraint), .sbatch("constraint"),
            help: "Node features (--constraint)."),
        .init(
            "exclusive", .option("exclusive"), .bool(\.exclusive), .flag("exclusive"),
            help: "Ask for whole nodes."),
        .init(
            "nodelist", .option("nodelist"), .string(\.nodelist), .sbatch("nodelist"),
            help: "Nodes to run on."),
        .init("exclude", .option("exclude"), .string(\.exclude), .sbatch("exclude"), help: "Nodes to avoid."),
        .init(
            "nodes", .option("nodes"), .int(\.nodes), .value("nodes", default: "1"),
            help:
                "Nodes for one server (default 1). Above 1, --gpus is per node and the multi-node template runs vLLM on Ray (docs/MULTINODE.md)."
        ),
        .init(
            "replicas", .option("replicas"), .int(\.replicas), .deployment,
            help: "Replica jobs of the deployment, all with the same key (default 1; docs/REPLICAS.md)."),
        .init(
            "keep", .option("keep"), .int(\.keep), .deployment,
            help:
                "Replicas to keep up: a tunnel or gateway to the deployment (or `scale --keep`) resubmits failed ones, at most 3 times per replica an hour (docs/REPLICAS.md)."
        ),
        .init(
            "gpus", .option("gpus"), .int(\.gpus), .derived(["gpus", "gpu_gres", "gpu_gpus"]),
            help: "GPUs for the job (per node with --nodes)."),
        .init("cpus", .option("cpus"), .int(\.cpus), .sbatch("cpus"), help: "CPUs for the job."),
        .init("memory", .option("mem"), .string(\.memory), .sbatch("memory"), help: "Memory, e.g. 64G."),
        .init(
            "gpu_request", .option("gpu-request"), .gpuRequest(\.gpuRequest),
            .derived(["gpu_gres", "gpu_gpus"]),
            help: "How to ask for GPUs: gres or gpus."),
        .init(
            "setup", .option("setup"), .list(\.setup, splitWords: false, addsUp: true), .lines("setup"),
            help: "Setup line to run before the server (repeatable), e.g. 'module load cuda'."),
        .init(
            "server_command", .option("server-command"),
            .list(\.serverCommand, splitWords: true, addsUp: false),
            .derived(["server_argv"]), help: "The server program, e.g. 'vllm serve'."),
        .init(
            "port", .option("port"), .int(\.port), .value("port", default: String(DeployPlan.defaultPort)),
            help: "The port to ask for (the job takes the next free one if it is taken)."),
        .init(
            "host", .option("host"), .string(\.host), .value("host", default: "ip"),
            help: "Address written into the URL: ip, hostname, or a literal."),
        .init(
            "bind_host", .option("bind-host"), .string(\.bindHost), .derived(["server_argv", "probe_host"]),
            help: "Address the server binds (default 0.0.0.0)."),
        .init(
            "served_name", .option("served-model-name"), .string(\.servedName),
            .derived(["served_name", "json_served_name", "curl_model", "server_argv"]),
            help: "Name clients use for the model."),
        .init("dtype", .option("dtype"), .string(\.dtype), .serverFlag("--dtype"), help: "vLLM --dtype."),
        .init(
            "tensor_parallel_size", .option("tensor-parallel-size", short: "t"), .int(\.tensorParallelSize),
            .serverFlag("--tensor-parallel-size"), help: "vLLM --tensor-parallel-size."),
        .init(
            "pipeline_parallel_size", .option("pipeline-parallel-size"), .int(\.pipelineParallelSize),
            .serverFlag("--pipeline-parallel-size"), help: "vLLM --pipeline-parallel-size."),
        .init(
            "gpu_memory_utilization", .option("gpu-memory-utilization"), .double(\.gpuMemoryUtilization),
            .serverFlag("--gpu-memory-utilization"), help: "vLLM --gpu-memory-utilization."),
        .init(
            "max_model_len", .option("max-model-len"), .int(\.maxModelLen), .serverFlag("--max-model-len"),
            help: "vLLM --max-model-len."),
        .init(
            "guided_decoding_backend", .option("guided-decoding-backend"), .string(\.guidedDecodingBackend),
            .serverFlag("--guided-decoding-backend"),
            help: "vLLM --guided-decoding-backend (e.g. outlines, lm-format-enforcer, xgrammar)."),
        .init(
            "uvicorn_log_level", .option("uvicorn-log-level"), .string(\.uvicornLogLevel),
            .serverFlag("--uvicorn-log-level"), help: "vLLM --uvicorn-log-level."),
        .init(
            "max_log_len", .option("max-log-len"), .int(\.maxLogLen), .serverFlag("--max-log-len"),
            help: "vLLM --max-log-len."),
        .init(
            "model", .argument, .string(\.model),
            .derived(["model", "json_model", "served_name", "server_argv"]),
            help: "A model preset, a Hugging Face id, or a model path on the cluster."),
        .init(
            "vllm_args", .argument, .list(\.vllmArgs, splitWords: true, addsUp: true),
            .derived(["server_argv"]),
            help: "Extra arguments for the server, after `--`."),
        .init(
            "ready_timeout", .option("timeout"), .double(\.readyTimeout), .derived(["ready_timeout"]),
            help: "Seconds to wait for the server once the job runs."),
        .init(
            "renew", .option("renew"), .bool(\.renew), .flag("renew"),
            help:
                "Outlive the time limit: before it ends, the job submits a successor with the same key and hands over (docs/RENEW.md)."
        ),
        .init(
            "renew_margin", .option("renew-margin"), .double(\.renewMargin), .derived(["renew_margin"]),
            help:
                "With --renew: seconds of overlap planned before the job's end (default 120; it also absorbs the scheduler's start delay)."
        ),
        .init(
            "renew_until", .option("renew-until"), .string(\.renewUntil), .derived(["renew_until"]),
            help:
                "With --renew: submit no successor that would start after this time (YYYY-MM-DDTHH:MM[:SS], the cluster's time)."
        ),
        .init(
            "renewals", .option("renewals"), .int(\.renewals), .derived(["max_renewals"]),
            help: "With --renew: at most this many successors (default: no limit)."),
        .init(
            "drain_timeout", .option("drain-timeout"), .double(\.drainTimeout), .derived(["drain_timeout"]),
            help:
                "With --renew: seconds a job waits for its requests in flight before it hands over (default 60)."
        ),
        .init(
            "renew_from", .option("renew-from"), .string(\.renewFrom), .value("renew_from", default: "job"),
            help:
                "With --renew: who submits the successors: job (sbatch on the compute node), login (a loop on the login node, for clusters that forbid sbatch on compute nodes) or auto (default: from the partition's AllocNodes)."
        ),
    ]

    /// The rows by config key.
    public static let rows: [String: DeploySetting] = Dictionary(
        uniqueKeysWithValues: table.map { ($0.key, $0) })
}
