import Foundation

/// What the user asked `deploy` for.
public struct DeployRequest: Sendable {
    /// A preset of the configuration (`models:`), or else a model id to serve as it is.
    public var modelOrPreset: String
    /// The deployment's name; nil derives a free one from the preset or model.
    public var name: String?
    /// Settings from the command line; they win over the preset, which wins over the profile.
    public var flags: DeploySettings
    /// The key the server requires; nil generates a new one (``APIKey/generate()``).
    public var apiKey: APIKey?
    /// Plan and render only: nothing is written or submitted.
    public var dryRun: Bool
    /// Wait until the server answers before returning (the default); false returns right
    /// after submission.
    public var wait: Bool
    /// With replicas: wait until every replica is ready, not only the first.
    public var waitAll: Bool

    /// A request; only the model or preset is required.
    public init(
        modelOrPreset: String, name: String? = nil, flags: DeploySettings = .init(), apiKey: APIKey? = nil,
        dryRun: Bool = false, wait: Bool = true, waitAll: Bool = false
    ) {
        self.modelOrPreset = modelOrPreset
        self.name = name
        self.flags = flags
        self.apiKey = apiKey
        self.dryRun = dryRun
        self.wait = wait
        self.waitAll = waitAll
    }
}

/// What `deploy` produced.
public struct DeployOutcome: Sendable {
    /// The resolved and checked deployment (the first replica's, for a replicated one).
    public var plan: DeployPlan
    /// The job script as rendered (it holds no key).
    public var script: String
    /// The local record of the submitted job; nil for a dry run.
    public var record: DeploymentRecord?
    /// What the ready server's job published: URL, key, curl command; nil for a dry run or
    /// when not waiting. For a replicated deployment, the first replica that became ready.
    public var connection: ConnectionInfo?
    /// Every replica's job (one for a deployment of one server); empty for a dry run.
    public var replicas: [ReplicaOutcome] = []

    public init(
        plan: DeployPlan, script: String, record: DeploymentRecord?, connection: ConnectionInfo?,
        replicas: [ReplicaOutcome] = []
    ) {
        self.plan = plan
        self.script = script
        self.record = record
        self.connection = connection
        self.replicas = replicas
    }

    /// The outcome of submitted jobs: the first ready replica stands for the deployment.
    init(_ replicas: [ReplicaOutcome]) {
        let lead = replicas.first { $0.connection != nil } ?? replicas[0]
        self.init(
            plan: lead.plan, script: lead.script, record: lead.record, connection: lead.connection,
            replicas: replicas)
    }
}

/// One submitted job of a deployment: a replica, or the deployment's only job.
public struct ReplicaOutcome: Sendable {
    /// Its plan (its own job name and directory).
    public var plan: DeployPlan
    /// Its job script.
    public var script: String
    /// Its local record.
    public var record: DeploymentRecord
    /// Its server's connection, once ready; nil while it starts or when it failed.
    public var connection: ConnectionInfo?
}

/// `vllmctl deploy`: plan, render, submit, follow, and wait until the server answers.
public struct Deployer: Sendable {
    /// Where Slurm runs, how HTTP travels, the records, the terminal.
    public let context: Context
    /// The configuration whose presets requests may name.
    public let config: Config
    /// The cluster to deploy on.
    public let profile: ClusterProfile
    /// Where job script templates come from.
    public let templates: ScriptTemplates

    /// A deployer for `profile`, whose cluster `context.host` reaches.
    public init(context: Context, config: Config, profile: ClusterProfile, templates: ScriptTemplates) {
        self.context = context
        self.config = config
        self.profile = profile
        self.templates = templates
    }

    /// Resolves the request against the preset and profile into a checked plan, under the
    /// name asked for or the preset's or model's (the records pick the free name it is
    /// submitted under).
    public func plan(_ request: DeployRequest) async throws -> DeployPlan {
        var (settings, baseName) = config.layered(
            modelOrPreset: request.modelOrPreset, flags: request.flags, profile: profile)
        if settings.renew == true,
            let asked = RenewFrom(rawValue: settings.renewFrom ?? RenewFrom.auto.rawValue)
        {
            let decision = await renewMode(asked: asked, partition: settings.partition)
            settings.renewFrom = decision.mode.rawValue
            context.terminal.note("Renewal runs \(decision.mode.described): \(decision.reason).")
        }
        let workdir = try await resolveWorkdir()
        return try DeployPlan(
            name: request.name ?? baseName, cluster: profile.name, settings: settings, workdir: workdir,
            stamp: Self.stamp(context.clock.now()))
    }

    /// Renewal's mode for `asked` (docs/RENEW.md): `auto` asks `scontrol show partition`
    /// (`partition`, or all to find the default one); an unanswered call is job mode, said so.
    func renewMode(asked: RenewFrom, partition: String?) async -> RenewModeDecision {
        var partitions: [ScontrolPartition.Partition]?
        if asked == .auto {
            let show = ScontrolPartition(
                name: partition.flatMap { $0.split(separator: ",").first.map(String.init) })
            if let result = try? await context.host.run(show.argv, input: nil, timeout: .seconds(30)),
                result.status == 0
            {
                partitions = ScontrolPartition.parse(result.stdout)
            }
        }
        return RenewModeDecision.decide(
            asked: asked, partition: partition.flatMap { $0.split(separator: ",").first.map(String.init) },
            partitions: partitions)
    }

    func resolveWorkdir() async throws -> String {
        let configured = profile.workdir ?? "~/vllmctl"
        if configured.hasPrefix("~") {
            let home = try await context.host.homeDirectory()
            return home + configured.dropFirst()
        }
        return configured
    }

    static func stamp(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return f.string(from: date) + "-" + String(UInt32.random(in: 0...0xFFFF), radix: 16)
    }

    /// The job script for `plan`, from its template.
    public func render(_ plan: DeployPlan) throws -> String {
        try templates.render(plan.template, context: plan.renderContext)
    }

    /// Runs the whole deployment. Throws `CancellationError` (job left running) when the
    /// task is cancelled while waiting. With `replicas` above 1, submits one job per replica
    /// (all with the same key, each with its own directory and connection files) and is ready
    /// when one replica is (all, with ``DeployRequest/waitAll``).
    public func deploy(_ request: DeployRequest) async throws -> DeployOutcome {
        let plan = try await plan(request)
        let wanted: DeploymentName = request.name.map { .exactly($0) } ?? .free(base: plan.name)
        let count = plan.replicas
        if request.dryRun {
            let named = try plan.renamed(context.records.name(for: wanted, cluster: profile.name))
            let first = count > 1 ? named.replica(1) : named
            return DeployOutcome(plan: first, script: try render(first), record: nil, connection: nil)
        }
        let key = request.apiKey ?? APIKey.generate()
        var submitted: [ReplicaOutcome] = []
        do {
            for k in 1...count {
                // The first takes the name; the others join it.
                let replicaWanted = submitted.first.map { .exactly($0.plan.name) } ?? wanted
                submitted.append(
                    try await submitOne(
                        count > 1 ? plan.replica(k) : plan, wanted: replicaWanted, key: key))
            }
        } catch {
            // Half a deployment is not what was asked for: the replicas already submitted are
            // cancelled, and the error says so.
            guard !submitted.isEmpty else { throw error }
            throw await cancelPartial(submitted, because: error)
        }
        if plan.renews, plan.settings.renewFrom == RenewFrom.login.rawValue {
            await startRenewLoops(submitted, name: submitted[0].plan.name)
        } else if plan.renews {
            // Job mode: the chain is in the jobs (docs/RENEW.md).
            context.terminal.note(
                "Renewing from the job: before its time limit, each job submits its successor itself (sbatch on the compute node, same key) and hands over; `vllmctl status` shows the chain, `vllmctl teardown \(submitted[0].plan.name)` ends it."
            )
        }
        if let keep = plan.settings.keep {
            context.terminal.note(
                "keep: \(keep): failed replicas are resubmitted while `vllmctl tunnel \(submitted[0].plan.name)`, `vllmctl gateway \(submitted[0].plan.name)` or `vllmctl scale \(submitted[0].plan.name) \(keep) --keep` runs (docs/REPLICAS.md)."
            )
        }
        guard request.wait else { return DeployOutcome(submitted) }
        let timeout = plan.settings.readyTimeout ?? DeployPlan.defaultReadyTimeout
        if count == 1 {
            submitted[0] = try await ready(submitted[0], key: key, timeout: timeout)
            return DeployOutcome(submitted)
        }
        return DeployOutcome(
            try await waitForReplicas(submitted, key: key, timeout: timeout, all: request.waitAll))
    }

    /// Login-node mode (docs/RENEW.md): starts the renewal loop of each of `replicas` on the
    /// login node and says so; a loop that does not start is a warning (the job serves until
    /// its limit), with what to do.
    func startRenewLoops(_ replicas: [ReplicaOutcome], name: String) async {
        for replica in replicas
        where replica.plan.renews && replica.plan.settings.renewFrom == RenewFrom.login.rawValue {
            do {
                let pid = try await RenewLoop.start(
                    plan: replica.plan, jobID: replica.record.jobID, templates: templates, context: context)
                context.terminal.note(
                    "Renewing from the login node: the renewal loop (pid \(pid) on \(context.host.displayName), log \(replica.plan.deployDir)/\(RenewLoop.log)) submits each successor (same key) and the job hands over to it; `vllmctl status` shows the chain, `vllmctl teardown \(name)` ends it. Some sites end a user's processes at logout (systemd KillUserProcesses): see docs/RENEW.md."
                )
            } catch {
                context.terminal.note("Warning: no renewal for job \(replica.record.jobID): \(error)")
            }
        }
    }

    /// Names (under the records lock), renders, submits and records one job.
    func submitOne(_ plan: DeployPlan, wanted: DeploymentName, key: APIKey) async throws -> ReplicaOutcome {
        var named = plan
        var script = ""
        let record: DeploymentRecord
        do {
            record = try await context.records.create(wanted, cluster: profile.name) { name in
                named = try plan.renamed(name)
                script = try render(named)
                let jobID = try await submit(named, script: script, key: key)
                return DeploymentRecord(
                    name: named.name, cluster: named.cluster, jobID: jobID, model: named.model,
                    servedModelName: named.servedName, deployDir: named.deployDir, phase: .submitted,
                    createdAt: context.clock.now(), apiKey: key.value, replica: named.replica)
            }
        } catch let unsaved as RecordNotSaved {
            // A job without a record would run unseen by status and teardown: cancel it.
            throw await cancelUnrecorded(
                jobID: unsaved.record.jobID, plan: named, because: unsaved.underlying)
        }
        context.terminal.note(
            "Submitted job \(record.jobID) (\(named.jobName)) on \(profile.name); files in \(named.deployDir)"
        )
        return ReplicaOutcome(plan: named, script: script, record: record)
    }

    /// Waits for one job's server and records it ready.
    func ready(_ replica: ReplicaOutcome, key: APIKey, timeout: Double) async throws -> ReplicaOutcome {
        var replica = replica
        let connection = try await waitUntilReady(
            plan: replica.plan, jobID: replica.record.jobID, key: key, readyTimeout: timeout)
        replica.record.phase = .ready
        replica.record.url = connection.record.serverURL
        replica.record.node = connection.record.node
        replica.record.port = connection.record.port
        try context.records.save(replica.record)
        replica.connection = connection.record.connection
        return replica
    }

    /// Waits for the replicas side by side until one (or, with `all`, every one) is ready; the
    /// others keep starting. Each replica that becomes ready or fails is said as it happens.
    /// Throws when none became ready, with every replica's reason.
    func waitForReplicas(_ replicas: [ReplicaOutcome], key: APIKey, timeout: Double, all: Bool) async throws
        -> [ReplicaOutcome]
    {
        var out = replicas
        var failures: [String] = []
        let terminal = context.terminal
        try await withThrowingTaskGroup(of: (Int, Result<ReplicaOutcome, any Error>).self) { group in
            for (i, replica) in replicas.enumerated() {
                group.addTask {
                    do {
                        return (i, .success(try await ready(replica, key: key, timeout: timeout)))
                    } catch is CancellationError {
                        throw CancellationError()
                    } catch {
                        return (i, .failure(error))
                    }
                }
            }
            var done = 0
            var readyCount = 0
            while let (i, result) = try await group.next() {
                done += 1
                let label = "replica \(i + 1) of \(replicas.count) (job \(replicas[i].record.jobID))"
                switch result {
                case .success(let replica):
                    out[i] = replica
                    readyCount += 1
                    terminal.note("Ready: \(label) at \(replica.connection?.baseURL ?? "?")")
                case .failure(let error):
                    failures.append("\(label): \(error)")
                    terminal.note("Failed: \(label): \(error)")
                }
                if readyCount > 0 && (!all || done == replicas.count) {
                    // The rest keep starting on the cluster; status shows them.
                    group.cancelAll()
                    break
                }
            }
        }
        guard out.contains(where: { $0.connection != nil }) else {
            throw VLLMCtlError.invalidInput(
                "None of the \(replicas.count) replicas became ready:\n" + failures.joined(separator: "\n"),
                hint:
                    "Fix the cause above and deploy again; `vllmctl teardown \(replicas[0].plan.name)` cancels what is left."
            )
        }
        return out
    }

    /// Cancels the replicas submitted before `error` stopped the deployment, marks their
    /// records ended, and returns the error to throw (saying what was cancelled).
    func cancelPartial(_ submitted: [ReplicaOutcome], because error: any Error) async -> VLLMCtlError {
        let ids = submitted.map(\.record.jobID)
        var cancelled = false
        if let argv = try? Scancel(jobIDs: ids).checkedArgv(),
            let result = try? await context.host.run(argv, input: nil, timeout: .seconds(60)),
            result.status == 0
        {
            cancelled = true
            for replica in submitted {
                try? context.records.markEnded(replica.record, at: context.clock.now())
            }
        }
        let what =
            cancelled
            ? "the \(ids.count) replica job(s) already submitted (\(ids.joined(separator: ", "))) were cancelled"
            : "cancelling the replica job(s) already submitted failed: cancel them with `scancel \(ids.joined(separator: " "))`"
        return .invalidInput(
            "Submitting replica \(submitted.count + 1) failed (\(error)); \(what)",
            hint: "Fix the cause and deploy again, or ask for fewer replicas.")
    }

    /// Writes the key and the script into a new deployment directory and submits the script;
    /// returns the job id. On failure nothing half-made is left behind.
    func submit(_ plan: DeployPlan, script: String, key: APIKey) async throws -> String {
        let host = context.host
        try await host.makeNewDirectory(plan.deployDir, mode: 0o700)
        var sbatchSent = false
        do {
            try await host.writeFileAtomically(Data(key.value.utf8), to: plan.keyPath, mode: 0o600)
            try await host.writeFileAtomically(Data(script.utf8), to: plan.scriptPath, mode: 0o600)
            try await host.writeFileAtomically(
                try JSONEncoder().encode(plan.settings), to: plan.deployDir + "/" + DeploymentFiles.settings,
                mode: 0o600)
            let sbatch = Sbatch(scriptPath: plan.scriptPath)
            sbatchSent = true
            let result = try await host.run(sbatch.argv, input: nil, timeout: .seconds(60))
            let jobID = try Sbatch.parseJobID(result, argv: sbatch.argv)
            if !result.stderr.isEmpty {
                context.terminal.note(
                    "sbatch: " + result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            return jobID
        } catch {
            // The connection died while sbatch ran: the job may exist. Its files stay, and the
            // user is told how to find out.
            if sbatchSent, let lost = error as? SSHError, lost.connectionLost {
                throw VLLMCtlError.invalidInput(
                    "The SSH connection was lost while sbatch ran, so whether `\(plan.jobName)` was submitted is unknown (\(lost.message)); its files are kept in \(plan.deployDir)",
                    hint:
                        "Check with `vllmctl status --cluster \(profile.name)`: if `\(plan.name)` is listed, it runs (tear it down with `vllmctl teardown \(plan.name)` if unwanted); if not, deploy again."
                )
            }
            // Nothing half-made is left behind: no key file, no script, no empty directory.
            try? await host.removeFile(plan.keyPath)
            try? await host.removeFile(plan.scriptPath)
            try? await host.removeFile(plan.deployDir + "/" + DeploymentFiles.settings)
            _ = try? await host.run(["rmdir", plan.deployDir], input: nil, timeout: .seconds(10))
            throw error
        }
    }

    /// The job was submitted but its record could not be saved (a full disk or quota): cancel
    /// it, and say what happened either way.
    func cancelUnrecorded(jobID: String, plan: DeployPlan, because error: any Error) async -> VLLMCtlError {
        var cancelled = false
        if let argv = try? Scancel(jobIDs: [jobID]).checkedArgv(),
            let result = try? await context.host.run(argv, input: nil, timeout: .seconds(60)),
            result.status == 0
        {
            cancelled = true
        }
        if cancelled {
            // Nothing of it is left but its log, if it started at all.
            try? await context.host.removeFile(plan.keyPath)
            try? await context.host.removeFile(plan.scriptPath)
            try? await context.host.removeFile(plan.deployDir + "/" + DeploymentFiles.settings)
            _ = try? await context.host.run(["rmdir", plan.deployDir], input: nil, timeout: .seconds(10))
        }
        let what =
            cancelled
            ? "vllmctl cancelled it, so that nothing runs that status and teardown cannot see"
            : "cancelling it failed too: cancel it yourself with `scancel \(jobID)`"
        return .file(
            path: context.records.directory,
            message:
                "job \(jobID) (\(plan.jobName)) was submitted, but its local record could not be saved (\(error)); \(what). Free space or fix the permissions there, then deploy again"
        )
    }

    struct Ready {
        var record: ConnectionRecord
    }

    /// Follows the job from PENDING to RUNNING, then waits for the job to publish its
    /// connection file and for the server to answer /health and /v1/models.
    ///
    /// Scheduler calls: the first 2 s after submission, then backing off from 2 s to 10 s
    /// while the job is pending, and every 5 s while it runs. The connection file, which the
    /// job writes only once its server answers, is read every 0.1 s from the start: that costs
    /// the scheduler nothing and makes readiness show within a fraction of a second.
    func waitUntilReady(plan: DeployPlan, jobID: String, key: APIKey, readyTimeout: Double) async throws
        -> Ready
    {
        let clock = context.clock
        let started = clock.now()
        var pendingInterval = 2.0
        var nextPoll = started.addingTimeInterval(pendingInterval)
        var runningSince: Date?
        var last: JobSnapshot?
        var lastHTTPError: String?
        let jsonPath = plan.deployDir + "/" + DeploymentFiles.infoJSON
        let watcher = JobWatcher(host: context.host)
        // Every call here only reads, so a lost SSH connection is replaced and the call repeated.
        let host = context.host
        let terminal = context.terminal

        while true {
            try Task.checkCancellation()
            let now = clock.now()
            if now >= nextPoll {
                let snapshot = try await host.retryingReads(terminal: terminal) {
                    try await watcher.snapshot(jobID: jobID)
                }
                guard let job = snapshot else {
                    throw VLLMCtlError.jobEnded(
                        jobID: jobID, state: "gone (neither squeue nor sacct knows it)", reason: nil,
                        logTail: await logTail(plan: plan, jobID: jobID))
                }
                last = job
                if job.state.isFinal || job.state == .completing {
                    var state = job.state
                    if job.state == .completing {
                        // Let Slurm finish the job, then read its final state.
                        try await clock.sleep(seconds: 1)
                        state =
                            try await host.retryingReads(terminal: terminal) {
                                try await watcher.snapshot(jobID: jobID)
                            }?.state ?? .completing
                    }
                    throw VLLMCtlError.jobEnded(
                        jobID: jobID, state: state.rawValue, reason: job.reason,
                        logTail: await logTail(plan: plan, jobID: jobID))
                }
                if job.state == .running {
                    if runningSince == nil { runningSince = now }
                    nextPoll = now.addingTimeInterval(5)
                } else {
                    nextPoll = now.addingTimeInterval(pendingInterval)
                    pendingInterval = min(pendingInterval * 1.5, 10)
                }
            }
            let elapsed = Int(now.timeIntervalSince(started))
            if let job = last {
                var line = "job \(jobID) \(job.state.rawValue)"
                if job.state == .pending, !job.reason.isEmpty, job.reason != "None" {
                    line += " (\(job.reason))"
                }
                if job.state == .running { line += " on \(job.nodes), waiting for the server" }
                context.terminal.progress(line + ", \(elapsed)s")
            } else {
                context.terminal.progress("job \(jobID) submitted, \(elapsed)s")
            }
            if let data = try await host.retryingReads(
                terminal: terminal, { try await host.readFile(jsonPath) }),
                let info = try? JSONDecoder().decode(ConnectionRecord.self, from: data), info.jobID == jobID,
                info.endedAt == nil
            {
                do {
                    try await checkServer(info, key: key, servedName: plan.servedName)
                    context.terminal.progress(nil)
                    return Ready(record: info)
                } catch let error as VLLMCtlError {
                    lastHTTPError = error.description
                }
            }
            if let since = runningSince, clock.now().timeIntervalSince(since) > readyTimeout {
                context.terminal.progress(nil)
                throw VLLMCtlError.notReady(
                    jobID: jobID, waited: readyTimeout,
                    detail: lastHTTPError
                        ?? "the job has not published its connection file yet (the model may still be loading)"
                )
            }
            try await clock.sleep(seconds: 0.1)
        }
    }

    /// /health is 200 and /v1/models, with the key, lists the served name.
    func checkServer(_ info: ConnectionRecord, key: APIKey, servedName: String) async throws {
        let base = info.serverURL
        let health = try await context.http.send(
            HTTPRequest(url: base + "/health", connectTimeout: 2, timeout: 5))
        guard health.status == 200 else {
            throw VLLMCtlError.http(url: base + "/health", message: "answered \(health.status)", hint: "")
        }
        let models = try await context.http.send(
            HTTPRequest(url: base + "/v1/models", connectTimeout: 2, timeout: 5).authorized(key))
        guard models.status == 200 else {
            throw VLLMCtlError.http(
                url: base + "/v1/models", message: "answered \(models.status) to the deployment's key",
                hint: "")
        }
        let names = ModelList.names(models.body)
        guard names.contains(servedName) else {
            throw VLLMCtlError.http(
                url: base + "/v1/models", message: "lists \(names) but not `\(servedName)`", hint: "")
        }
    }

    /// The last lines of the job's stdout and stderr.
    func logTail(plan: DeployPlan, jobID: String, lines: Int = 15) async -> String {
        var parts: [String] = []
        for file in [DeploymentFiles.stdout(jobID: jobID), DeploymentFiles.stderr(jobID: jobID)] {
            let path = plan.deployDir + "/" + file
            guard let data = try? await context.host.readFile(path) else { continue }
            let text = String(decoding: data, as: UTF8.self)
            let tail = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines + 1).joined(
                separator: "\n"
            )
            .trimmingCharacters(in: .whitespacesAndNewlines)
            if !tail.isEmpty { parts.append("==> \(path) <==\n" + tail) }
        }
        return parts.joined(separator: "\n")
    }
}

/// The OpenAI model list.
public enum ModelList {
    /// The model ids in a `/v1/models` response body; empty when it is not one.
    public static func names(_ body: Data) -> [String] {
        struct List: Decodable {
            struct Model: Decodable { var id: String }
            var data: [Model]
        }
        return (try? JSONDecoder().decode(List.self, from: body))?.data.map(\.id) ?? []
    }
}
