import CBuildInfo
import Foundation

/// A deployment fully decided and checked, before anything touches the cluster: the resolved
/// settings, where its files go, and the values its template is rendered with. A pure function
/// of its inputs: the layered settings come from ``Config/layered(modelOrPreset:flags:profile:)``,
/// the workdir and stamp from ``Deployer``, and the name it is finally submitted under from the
/// records (``DeploymentStore/create(_:cluster:_:)``, through ``renamed(_:)``).
public struct DeployPlan: Sendable {
    /// The Slurm time limit when neither flags, preset nor profile set one.
    public static let defaultTime = "02:00:00"
    /// The port the server asks for first (the job takes the next free one if it is taken).
    public static let defaultPort = 8000
    /// Seconds a running job has to answer before the wait gives up.
    public static let defaultReadyTimeout = 1800.0
    /// The first port a multi-node job tries for its Ray head (the next free one is taken).
    public static let defaultRayPort = 6379
    /// With `renew`: seconds planned between the successor being ready and the predecessor's
    /// end. It also covers the scheduler's delay in starting a job whose begin time has come
    /// when the predecessor cannot start it itself (Slurm's default sched_interval is 60 s).
    public static let defaultRenewMargin = 120.0
    /// With `renew`: seconds a predecessor waits for its requests in flight.
    public static let defaultDrainTimeout = 60.0

    /// The deployment's name.
    public private(set) var name: String
    /// The cluster profile's name.
    public let cluster: String
    /// Flags over preset over profile, merged; for several nodes, with the parallel sizes
    /// filled in (tensor parallel = GPUs per node, pipeline parallel = the rest).
    public let settings: DeploySettings
    /// The model the server loads.
    public let model: String
    /// The name clients use in requests (`--served-model-name`).
    public let servedName: String
    /// The absolute directory deployments' directories are made in.
    public let workdir: String
    /// What makes the deployment's directory unique (time and a random part).
    public let stamp: String
    /// The name of the template the script is rendered from.
    public let template: String
    /// Which replica of a replicated deployment this plan is (1…``replicas``); nil for a
    /// deployment of one server.
    public private(set) var replica: Int?
    /// The most replicas one deployment may have.
    public static let maxReplicas = 64

    /// How many replica jobs the deployment has (the `replicas` setting; 1 by default).
    public var replicas: Int { settings.replicas ?? 1 }

    /// The deployment's directory on the cluster: key, script, logs, connection files.
    public var deployDir: String { workdir + "/" + name + "-" + stamp + (replica.map { "-r\($0)" } ?? "") }
    /// The Slurm job name: ``JobName/prefix`` and the name (and a replica's number).
    public var jobName: String { JobName.of(name, replica: replica) }
    /// The job script's path on the cluster.
    public var scriptPath: String { deployDir + "/" + DeploymentFiles.script }
    /// The API key file's path on the cluster (0600).
    public var keyPath: String { deployDir + "/" + DeploymentFiles.apiKey }

    /// Decides and validates. `workdir` is absolute; `stamp` makes the directory unique.
    public init(name: String, cluster: String, settings: DeploySettings, workdir: String, stamp: String)
        throws
    {
        guard let model = settings.model, !model.isEmpty else {
            throw VLLMCtlError.invalidInput(
                "No model was given",
                hint:
                    "Pass a Hugging Face id, a path, or a preset name: `vllmctl deploy Qwen/Qwen2.5-14B-Instruct`."
            )
        }
        try Validate.name(name)
        self.name = name
        self.cluster = cluster
        self.settings = Self.withParallelDefaults(settings)
        self.model = model
        self.servedName = settings.servedName ?? model
        self.template =
            settings.template
            ?? ((settings.nodes ?? 1) > 1 ? ScriptTemplates.multiNodeName : ScriptTemplates.defaultName)
        self.workdir = workdir
        self.stamp = stamp
        try validate()
    }

    /// The same plan under another name: the free one the records picked.
    public func renamed(_ newName: String) throws -> DeployPlan {
        try Validate.name(newName)
        var plan = self
        plan.name = newName
        try Validate.path(plan.deployDir, key: "workdir")
        return plan
    }

    /// The plan of replica `k` (1…``replicas``): its own job name and directory, the same
    /// name and settings.
    public func replica(_ k: Int) -> DeployPlan {
        var plan = self
        plan.replica = k
        return plan
    }

    /// GPUs per node (for one node: the job's GPUs).
    var gpus: Int { settings.gpus ?? 1 }
    var parallelism: Int { (settings.tensorParallelSize ?? 1) * (settings.pipelineParallelSize ?? 1) }
    /// How many nodes the server runs on (the `nodes` setting; 1 by default).
    public var nodes: Int { settings.nodes ?? 1 }
    /// Whether the server runs across several nodes (with Ray: docs/MULTINODE.md).
    public var isMultiNode: Bool { nodes > 1 }

    /// For several nodes, vLLM's multi-node defaults where the settings leave them open:
    /// tensor parallel = the GPUs of one node, pipeline parallel = the job's GPUs / that.
    static func withParallelDefaults(_ settings: DeploySettings) -> DeploySettings {
        let nodes = settings.nodes ?? 1
        guard nodes > 1 else { return settings }
        var s = settings
        let perNode = s.gpus ?? 1
        if s.tensorParallelSize == nil, perNode > 0 {
            s.tensorParallelSize =
                s.pipelineParallelSize.map { max(1, nodes * perNode / max($0, 1)) } ?? perNode
        }
        if s.pipelineParallelSize == nil, let tp = s.tensorParallelSize, tp > 0, (nodes * perNode) % tp == 0 {
            s.pipelineParallelSize = max(1, nodes * perNode / tp)
        }
        return s
    }

    /// The tensor × pipeline parallel sizes that fill `nodes` nodes of `perNode` GPUs, each
    /// tensor-parallel group within one node, largest tensor parallel first.
    public static func fittingShapes(nodes: Int, perNode: Int) -> [(tp: Int, pp: Int)] {
        guard nodes > 0, perNode > 0 else { return [] }
        return (1...perNode).reversed().filter { perNode % $0 == 0 }.map { ($0, nodes * perNode / $0) }
    }

    private func multiNodeValidate() throws {
        let s = settings
        if template == ScriptTemplates.defaultName {
            throw VLLMCtlError.invalidInput(
                "\(nodes) nodes were asked for, but the `\(template)` template runs the server on one node",
                hint:
                    "Leave out --template (the `\(ScriptTemplates.multiNodeName)` template is used for --nodes above 1), or use one node."
            )
        }
        if gpus < 1 {
            throw VLLMCtlError.invalidInput(
                "A server on \(nodes) nodes needs GPUs on every node, but --gpus is \(gpus)",
                hint: "Pass --gpus N: with --nodes, it is the GPUs of each node.")
        }
        let tp = s.tensorParallelSize ?? 1
        let pp = s.pipelineParallelSize ?? 1
        let total = nodes * gpus
        let shapes = Self.fittingShapes(nodes: nodes, perNode: gpus)
            .map { "-t \($0.tp) --pipeline-parallel-size \($0.pp)" }
        let fits =
            "With \(nodes) nodes of \(gpus) GPUs (--gpus is per node with --nodes), these fit: "
            + shapes.joined(separator: ", ") + " (the first is the default)."
        if tp > gpus {
            throw VLLMCtlError.invalidInput(
                "Tensor parallel \(tp) does not fit in one node's \(gpus) GPUs: tensor parallelism stays within a node, pipeline parallelism spans the nodes",
                hint: fits)
        }
        if tp * pp != total {
            throw VLLMCtlError.invalidInput(
                "Tensor parallel \(tp) × pipeline parallel \(pp) = \(tp * pp) GPUs, but the job has \(nodes) nodes × \(gpus) GPUs = \(total)",
                hint: fits)
        }
        for arg in s.vllmArgs ?? [] {
            let parts = arg.split(separator: "=", maxSplits: 1).map(String.init)
            if parts[0] == "--distributed-executor-backend", parts.count == 2, parts[1] != "ray" {
                throw VLLMCtlError.invalidInput(
                    "`\(arg)` was given, but a server on several nodes runs on the Ray cluster the job starts",
                    hint: "Drop it: vllmctl passes --distributed-executor-backend ray.")
            }
        }
        if let words = s.vllmArgs, let i = words.firstIndex(of: "--distributed-executor-backend"),
            i + 1 < words.count, words[i + 1] != "ray"
        {
            throw VLLMCtlError.invalidInput(
                "`--distributed-executor-backend \(words[i + 1])` was given, but a server on several nodes runs on the Ray cluster the job starts",
                hint: "Drop it: vllmctl passes --distributed-executor-backend ray.")
        }
    }

    private func validate() throws {
        let s = settings
        for (key, value) in [
            ("partition", s.partition), ("account", s.account), ("qos", s.qos),
            ("constraint", s.constraint), ("nodelist", s.nodelist), ("exclude", s.exclude),
        ] {
            if let value { try Validate.sbatchValue(value, key: key) }
        }
        try Validate.path(deployDir, key: "workdir")
        try Validate.time(s.time ?? Self.defaultTime)
        if let memory = s.memory { try Validate.memory(memory) }
        if gpus < 0 { throw VLLMCtlError.invalidInput("--gpus is \(gpus)", hint: "Ask for 0 or more GPUs.") }
        if let r = s.replicas, !(1...Self.maxReplicas).contains(r) {
            throw VLLMCtlError.invalidInput(
                "--replicas is \(r)", hint: "Ask for 1 to \(Self.maxReplicas) replicas of one deployment.")
        }
        if let k = s.keep, !(1...Self.maxReplicas).contains(k) {
            throw VLLMCtlError.invalidInput(
                "--keep is \(k)",
                hint: "Ask to keep 1 to \(Self.maxReplicas) replicas up (or leave it unset).")
        }
        if nodes < 1 {
            throw VLLMCtlError.invalidInput("--nodes is \(nodes)", hint: "Ask for 1 or more nodes.")
        }
        if let tp = s.tensorParallelSize, tp < 1 {
            throw VLLMCtlError.invalidInput("--tensor-parallel-size is \(tp)", hint: "It must be 1 or more.")
        }
        if let pp = s.pipelineParallelSize, pp < 1 {
            throw VLLMCtlError.invalidInput(
                "--pipeline-parallel-size is \(pp)", hint: "It must be 1 or more.")
        }
        if isMultiNode {
            try multiNodeValidate()
        } else if parallelism > 1 && gpus == 0 {
            throw VLLMCtlError.invalidInput(
                "Tensor parallel \(s.tensorParallelSize ?? 1) × pipeline parallel \(s.pipelineParallelSize ?? 1) needs \(parallelism) GPUs, but the job asks for none",
                hint: "Pass --gpus \(parallelism), or lower the parallel sizes.")
        }
        if !isMultiNode && gpus > 0 && parallelism > gpus {
            throw VLLMCtlError.invalidInput(
                "Tensor parallel \(s.tensorParallelSize ?? 1) × pipeline parallel \(s.pipelineParallelSize ?? 1) needs \(parallelism) GPUs, but the job asks for \(gpus)",
                hint: "Pass --gpus \(parallelism), or lower the parallel sizes.")
        }
        if let cpus = s.cpus, cpus < 1 {
            throw VLLMCtlError.invalidInput("--cpus is \(cpus)", hint: "Ask for 1 or more CPUs.")
        }
        if let u = s.gpuMemoryUtilization, !(u > 0 && u <= 1) {
            throw VLLMCtlError.invalidInput(
                "--gpu-memory-utilization is \(u)", hint: "It is a fraction between 0 and 1, e.g. 0.9.")
        }
        let port = s.port ?? Self.defaultPort
        if !(1...65535).contains(port) {
            throw VLLMCtlError.invalidInput(
                "--port is \(port)", hint: "Use a port between 1 and 65535, e.g. 8000.")
        }
        if let len = s.maxModelLen, len < 1 {
            throw VLLMCtlError.invalidInput(
                "--max-model-len is \(len)", hint: "It must be a positive number of tokens.")
        }
        if let wait = s.readyTimeout, !(wait > 0 && wait <= 7 * 86400) {
            throw VLLMCtlError.invalidInput(
                "The ready timeout is \(wait) s", hint: "It must be above 0 and at most 604800 s (7 days).")
        }
        if let host = s.host { try Validate.hostSetting(host) }
        if let bind = s.bindHost { try Validate.hostSetting(bind) }
        try renewValidate()
        if (s.serverCommand ?? ["vllm", "serve"]).isEmpty {
            throw VLLMCtlError.invalidInput(
                "The server command is empty", hint: "Set `server_command`, e.g. [\"vllm\", \"serve\"].")
        }
        for arg in s.vllmArgs ?? [] {
            let flag = arg.split(separator: "=").first.map(String.init) ?? arg
            if Self.namesTheAPIKey(flag) {
                throw VLLMCtlError.invalidInput(
                    "`--api-key` was given among the server's arguments, where every user of the cluster could read it",
                    hint:
                        "Drop it: vllmctl generates a key and hands it to the server through a 0600 file (or pass --api-key-file)."
                )
            }
            if flag == "--port" || flag == "--host" {
                throw VLLMCtlError.invalidInput(
                    "`\(flag)` was given among the server's arguments",
                    hint: "Use vllmctl's --port / --bind-host (the job picks a free port itself).")
            }
        }
    }

    /// Whether the deployment renews itself across time limits (docs/RENEW.md).
    public var renews: Bool { settings.renew ?? false }

    /// The renewal settings make sense: a margin and drain timeout of 0 or more, a limit of 1
    /// or more, a well-formed `renew_until`, and (with `renew`) a time limit long enough that a
    /// job that takes its whole ready timeout to start is ready before its successor is due.
    private func renewValidate() throws {
        let s = settings
        for (flag, value) in [("--renew-margin", s.renewMargin), ("--drain-timeout", s.drainTimeout)] {
            if let value, !(value >= 0 && value <= 7 * 86400) {
                throw VLLMCtlError.invalidInput(
                    "\(flag) is \(value) s", hint: "It must be between 0 and 604800 s (7 days).")
            }
        }
        if let n = s.renewals, n < 1 {
            throw VLLMCtlError.invalidInput(
                "--renewals is \(n)", hint: "Give 1 or more successors, or leave it out for no limit.")
        }
        if let until = s.renewUntil { try Validate.renewUntil(until) }
        if let from = s.renewFrom, RenewFrom(rawValue: from) == nil {
            throw VLLMCtlError.invalidInput(
                "--renew-from is `\(from)`", hint: "Give auto, job or login (docs/RENEW.md).")
        }
        guard renews else { return }
        let time = s.time ?? Self.defaultTime
        guard let limit = Validate.seconds(ofTime: time) else {
            throw VLLMCtlError.invalidInput(
                "--renew needs a time limit, but the time is `\(time)`",
                hint:
                    "A job without a limit needs no successor: drop --renew, or give --time (e.g. 08:00:00).")
        }
        let ready = s.readyTimeout ?? Self.defaultReadyTimeout
        let margin = s.renewMargin ?? Self.defaultRenewMargin
        let needed = 2 * ready + margin
        if Double(limit) < needed {
            throw VLLMCtlError.invalidInput(
                "With --renew, a job must be ready before its successor is due: the time limit \(time) (\(limit) s) is below 2 × the ready timeout (\(Int(ready)) s) + the renew margin (\(Int(margin)) s) = \(Int(needed)) s",
                hint:
                    "Raise --time, or lower --timeout (the most a server may take to load) or --renew-margin."
            )
        }
    }

    /// The address the job probes its own server at: the bind address when the server binds
    /// one (`--bind-host 10.1.2.3`), else loopback (it binds every address).
    static func probeHost(bind: String?) -> String {
        guard let bind, !["", "0.0.0.0", "::", "[::]", "*"].contains(bind) else { return "127.0.0.1" }
        return bind.hasPrefix("[") && bind.hasSuffix("]") ? String(bind.dropFirst().dropLast()) : bind
    }

    /// Whether vLLM's argument parser reads `flag` as `--api-key`: it takes `_` for `-`, and
    /// argparse takes any unambiguous prefix (`--api-k`; `--api` in versions without
    /// `--api-server-count`).
    static func namesTheAPIKey(_ flag: String) -> Bool {
        let f = flag.lowercased().replacingOccurrences(of: "_", with: "-")
        return f.count >= "--api".count && "--api-key".hasPrefix(f)
    }

    /// The server's argv, without `--port` (the job adds the port it picked).
    public var serverArgv: [String] {
        let s = settings
        let command = s.serverCommand ?? ["vllm", "serve"]
        var argv = command
        if command.contains(where: { $0.hasSuffix("vllm.entrypoints.openai.api_server") }) {
            argv += ["--model", model]
        } else {
            argv.append(model)
        }
        argv += ["--host", s.bindHost ?? "0.0.0.0", "--served-model-name", servedName]
        for row in DeploySettings.table {
            if case .serverFlag(let flag) = row.template, let value = row.text(in: s) {
                argv += [flag, value]
            }
        }
        if isMultiNode,
            !(s.vllmArgs ?? []).contains(where: { $0.hasPrefix("--distributed-executor-backend") })
        {
            argv += ["--distributed-executor-backend", "ray"]
        }
        argv += s.vllmArgs ?? []
        return argv
    }

    /// The values the template sees. Plain values are shell-quoted by the template engine;
    /// the `#SBATCH` values were validated above.
    public var renderContext: [String: Any] {
        let s = settings
        var c: [String: Any] = [
            "job_name": jobName,
            "deploy_dir": deployDir,
            "stdout_path": deployDir + "/slurm-%j.out",
            "stderr_path": deployDir + "/slurm-%j.err",
            "server_argv": serverArgv,
            "probe_host": Self.probeHost(bind: s.bindHost),
            "ready_timeout": String(Int((s.readyTimeout ?? Self.defaultReadyTimeout).rounded(.up))),
            "model": model,
            "served_name": servedName,
            "json_model": ConnectionInfo.jsonStringBody(model),
            "json_served_name": ConnectionInfo.jsonStringBody(servedName),
            "curl_model": ConnectionInfo.curlModelLiteral(servedName),
            "vllmctl_version": VLLMCtl.version,
            "renew_margin": String(Int((s.renewMargin ?? Self.defaultRenewMargin).rounded(.up))),
            "drain_timeout": String(Int((s.drainTimeout ?? Self.defaultDrainTimeout).rounded(.up))),
            "max_renewals": String(s.renewals ?? 0),
            "renew_until": s.renewUntil ?? "",
        ]
        if isMultiNode {
            c["ray_port"] = String(Self.defaultRayPort)
            c["total_gpus"] = String(nodes * gpus)
        }
        if gpus > 0 {
            c["gpus"] = String(gpus)
            c[(s.gpuRequest ?? .gres) == .gres ? "gpu_gres" : "gpu_gpus"] = true
        }
        for row in DeploySettings.table {
            switch row.template {
            case .sbatch(let key):
                if let value = row.text(in: s), !value.isEmpty { c[key] = value }
            case .value(let key, let fallback):
                c[key] = row.text(in: s) ?? fallback
            case .flag(let key):
                if row.text(in: s) == "true" { c[key] = true }
            case .lines(let key):
                if case .list(let p, _, _) = row.value { c[key] = s[keyPath: p] ?? [] }
            case .serverFlag, .derived, .deployment:
                break
            }
        }
        return c
    }
}

/// vllmctl's own version.
public enum VLLMCtl {
    /// The release version, `0.1.0`.
    public static let version = "0.1.0"
    /// The git commit it was built from (12 hex digits, `+dirty` with uncommitted changes), or
    /// `unknown` outside a git checkout.
    public static let commit = String(cString: vc_build_commit())
    /// What `vllmctl --version` prints: `0.1.0 (commit 0123456789ab)`.
    public static var versionLine: String { "\(version) (commit \(commit))" }
}

/// Checks on values before they reach a script or sbatch.
public enum Validate {
    /// Deployment names become job names and directory names.
    public static func name(_ name: String) throws {
        let ok = !name.isEmpty && name.count <= 64 && (name.first!.isLetter || name.first!.isNumber)
        guard ok,
            name.unicodeScalars.allSatisfy({
                CharacterSet.alphanumerics.contains($0) && $0.isASCII || "-_.".unicodeScalars.contains($0)
            })
        else {
            throw VLLMCtlError.invalidInput(
                "`\(name)` cannot be a deployment name",
                hint: "Use letters, digits, `-`, `_` and `.`, starting with a letter or digit (--name).")
        }
    }

    /// Derives a deployment name from a model id: `Qwen/Qwen2.5-14B-Instruct` → `qwen2.5-14b-instruct`.
    public static func derivedName(from model: String) -> String {
        let last = model.split(separator: "/").last.map(String.init) ?? model
        var out = ""
        for ch in last.lowercased() {
            if ch.isASCII && (ch.isLetter || ch.isNumber || ch == "." || ch == "_") {
                out.append(ch)
            } else if out.last != "-" {
                out.append("-")
            }
        }
        out = String(out.trimmingCharacters(in: CharacterSet(charactersIn: "-._")).prefix(48))
        return out.isEmpty ? "model" : out
    }

    /// Values on `#SBATCH` lines are read by Slurm, not by a shell: allow only what Slurm's
    /// names, node lists and constraint expressions use.
    public static func sbatchValue(_ value: String, key: String) throws {
        let allowed = CharacterSet(
            charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.,:=@+-[]*&|()!")
        guard !value.isEmpty, value.unicodeScalars.allSatisfy({ allowed.contains($0) }) else {
            throw VLLMCtlError.invalidInput(
                "The \(key) `\(value)` has characters Slurm does not use in a \(key)",
                hint: "Check the value (letters, digits and _ . , : = @ + - [ ] * & | ( ) ! only).")
        }
    }

    public static func path(_ path: String, key: String) throws {
        guard path.hasPrefix("/"),
            !path.contains(where: { $0.isWhitespace || $0 == "%" || $0 == "\"" || $0 == "'" || $0 == "\\" })
        else {
            throw VLLMCtlError.invalidInput(
                "The \(key) path `\(path)` cannot be used in an sbatch script",
                hint: "Use an absolute path without spaces, quotes, backslashes or `%`.")
        }
    }

    /// Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, or UNLIMITED.
    public static func time(_ value: String) throws {
        let patterns = [
            #"^\d+$"#, #"^\d+:\d{1,2}$"#, #"^\d+:\d{1,2}:\d{1,2}$"#, #"^\d+-\d{1,2}$"#,
            #"^\d+-\d{1,2}:\d{1,2}$"#, #"^\d+-\d{1,2}:\d{1,2}:\d{1,2}$"#, #"^(UNLIMITED|INFINITE)$"#,
        ]
        guard patterns.contains(where: { value.range(of: $0, options: .regularExpression) != nil }) else {
            throw VLLMCtlError.invalidInput(
                "The time limit `\(value)` is not in a format Slurm reads",
                hint: "Use HH:MM:SS (e.g. 02:00:00), D-HH:MM:SS (1-00:00:00) or minutes (90).")
        }
    }

    /// A Slurm time limit in seconds; nil for UNLIMITED/INFINITE or a malformed value.
    public static func seconds(ofTime value: String) -> Int? {
        guard (try? time(value)) != nil, !["UNLIMITED", "INFINITE"].contains(value) else { return nil }
        var days = 0
        var rest = Substring(value)
        if let dash = value.firstIndex(of: "-") {
            days = Int(value[..<dash]) ?? 0
            rest = value[value.index(after: dash)...]
        }
        let parts = rest.split(separator: ":").map { Int($0) ?? 0 }
        let (h, m, sec): (Int, Int, Int)
        if value.contains("-") {
            // D-H, D-H:M, D-H:M:S
            (h, m, sec) = (parts[0], parts.count > 1 ? parts[1] : 0, parts.count > 2 ? parts[2] : 0)
        } else {
            // M, M:S, H:M:S
            switch parts.count {
            case 1: (h, m, sec) = (0, parts[0], 0)
            case 2: (h, m, sec) = (0, parts[0], parts[1])
            default: (h, m, sec) = (parts[0], parts[1], parts[2])
            }
        }
        return ((days * 24 + h) * 60 + m) * 60 + sec
    }

    /// `renew_until`: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM` or `YYYY-MM-DDTHH:MM:SS` (the cluster's
    /// local time, as Slurm's own `--begin`).
    public static func renewUntil(_ value: String) throws {
        guard
            value.range(
                of: #"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?)?$"#, options: .regularExpression) != nil
        else {
            throw VLLMCtlError.invalidInput(
                "--renew-until `\(value)` is not a date and time",
                hint: "Use YYYY-MM-DDTHH:MM[:SS] in the cluster's time, e.g. 2026-12-01T08:00.")
        }
    }

    public static func memory(_ value: String) throws {
        guard value.range(of: #"^\d+[KMGTkmgt]?$"#, options: .regularExpression) != nil else {
            throw VLLMCtlError.invalidInput(
                "The memory request `\(value)` is not in Slurm's format",
                hint: "Use a number with an optional unit, e.g. 64G or 32000M.")
        }
    }

    /// `ip`, `hostname`, or an address/hostname literal.
    public static func hostSetting(_ value: String) throws {
        let allowed = CharacterSet(
            charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:")
        guard !value.isEmpty, value.unicodeScalars.allSatisfy({ allowed.contains($0) }) else {
            throw VLLMCtlError.invalidInput(
                "The host `\(value)` is not a host name or address",
                hint: "Use `ip`, `hostname`, or an address such as 10.1.2.3.")
        }
    }
}
