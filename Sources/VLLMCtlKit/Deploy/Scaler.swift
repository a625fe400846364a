import Foundation

/// `vllmctl scale NAME N`: more or fewer replicas of a running deployment. New replicas get the
/// deployment's settings (its `deployment.json`) and key; replicas removed are the least loaded
/// (vLLM's running + waiting requests), the newest first among equals, each cancelled once its
/// in-flight requests have finished or the drain timeout has passed.
public struct Scaler: Sendable {
    /// The deployer whose context, profile and templates new replicas go through.
    public let deployer: Deployer

    public init(deployer: Deployer) { self.deployer = deployer }

    /// What a scale did.
    public struct Outcome: Sendable {
        /// Replicas submitted (and, when waited for, ready).
        public var added: [ReplicaOutcome] = []
        /// Replicas drained and cancelled: their teardown outcomes.
        public var removed: [TeardownOutcome] = []
    }

    /// One live replica and its load, as scale-down chooses among them.
    public struct Candidate: Sendable, Equatable {
        public var jobID: String
        /// 1 for a deployment's original unnumbered job.
        public var replica: Int
        /// Running + waiting requests; nil when /metrics could not be read.
        public var load: Double?
    }

    /// The replicas to remove to leave `keep`: the least loaded first (an unknown load counts
    /// as busy: it is removed last), and among equals the newest (highest replica number).
    public static func victims(_ candidates: [Candidate], keep: Int) -> [Candidate] {
        let sorted = candidates.sorted {
            let a = $0.load ?? .infinity, b = $1.load ?? .infinity
            return a != b ? a < b : $0.replica > $1.replica
        }
        return Array(sorted.prefix(max(0, candidates.count - keep)))
    }

    /// Scales the deployment `name` to `count` replicas. `wait`: wait until added replicas
    /// are ready; `drainTimeout`: seconds a removed replica may take to finish its requests.
    public func scale(_ name: String, to count: Int, wait: Bool = true, drainTimeout: Double = 60)
        async throws
        -> Outcome
    {
        guard (1...DeployPlan.maxReplicas).contains(count) else {
            throw VLLMCtlError.invalidInput(
                "Cannot scale to \(count) replicas",
                hint: "Give 1 to \(DeployPlan.maxReplicas); `vllmctl teardown \(name)` stops the deployment.")
        }
        let context = deployer.context
        let cluster = deployer.profile.name
        let base = JobName.split(name).name
        let resolved = try await DeploymentResolver(context: context, cluster: cluster).replicas(of: base)
        var live = resolved.filter { $0.job.map { !$0.state.isFinal } ?? true }
        if resolved.contains(where: { $0.job == nil }) {
            // Found by local records, which outlive their jobs (a replica whose server died has
            // ended, and must not count): live means in the queue now. One squeue call; if it
            // fails, nothing is assumed.
            let queued = Dictionary(
                try await StatusBuilder(context: context, cluster: cluster).scheduledJobs(
                    user: try await context.host.userName(), includeEnded: false
                ).map { ($0.jobID, $0.state) }, uniquingKeysWith: { $1 })
            live = resolved.filter { r in
                if let job = r.job { return !job.state.isFinal }
                return queued[r.jobID].map { !$0.isFinal } ?? false
            }
        }
        guard let first = live.first else {
            throw VLLMCtlError.notFound(
                what: "running deployment", name: base, hint: "`vllmctl status` lists them; deploy it first.")
        }
        var outcome = Outcome()
        if count > live.count {
            let settings = try await settings(in: first.deployDir)
            let key = try await apiKey(of: first)
            let plan = try await plan(base, settings: settings)
            let used = live.map { number(of: $0) }
            let next = (used.max() ?? 0) + 1
            for k in next..<(next + count - live.count) {
                outcome.added.append(
                    try await deployer.submitOne(plan.replica(k), wanted: .exactly(base), key: key))
            }
            await deployer.startRenewLoops(outcome.added, name: base)
            if wait {
                let timeout = settings.readyTimeout ?? DeployPlan.defaultReadyTimeout
                outcome.added = try await deployer.waitForReplicas(
                    outcome.added, key: key, timeout: timeout, all: true)
            }
        } else if count < live.count {
            var candidates: [Candidate] = []
            for replica in live {
                candidates.append(
                    Candidate(
                        jobID: replica.jobID, replica: number(of: replica), load: await load(of: replica)))
            }
            let chosen = Self.victims(candidates, keep: count)
            let victims = chosen.compactMap { victim in live.first { $0.jobID == victim.jobID } }
            // Running endpoints (tunnel NAME, gateway NAME) stop sending new requests to a
            // replica whose directory holds the marker, at their next refresh.
            for replica in victims { await markDraining(replica) }
            if drainTimeout > 0 && !victims.isEmpty {
                try? await context.clock.sleep(seconds: min(drainTimeout, Self.endpointGrace))
            }
            for victim in chosen {
                context.terminal.note("Draining replica \(victim.replica) (job \(victim.jobID))…")
                if let replica = live.first(where: { $0.jobID == victim.jobID }) {
                    await drain(replica, timeout: drainTimeout)
                }
            }
            do {
                let teardown = Teardown(
                    context: context, profile: deployer.profile, user: try await context.host.userName())
                let plan = try await teardown.plan(.named(chosen.map(\.jobID)))
                outcome.removed = await teardown.execute(plan)
            } catch {
                // Nothing was cancelled: the replicas serve on, so endpoints take them back.
                for replica in victims { await unmarkDraining(replica) }
                throw error
            }
            for removed in outcome.removed where !removed.succeeded {
                if let replica = victims.first(where: { $0.jobID == removed.action.jobID }) {
                    await unmarkDraining(replica)
                }
            }
        }
        return outcome
    }

    /// Seconds scale-down waits after marking replicas draining, before it counts their
    /// requests: a running endpoint's refresh interval and one more, so that every endpoint
    /// has stopped sending them new requests (capped by the drain timeout).
    public static let endpointGrace = BalancedEndpoint.defaultRefreshSeconds + 1

    /// Writes the `draining-JOBID` marker into the replica's deployment directory.
    func markDraining(_ replica: ResolvedDeployment) async {
        guard !replica.deployDir.isEmpty else { return }
        let path = replica.deployDir + "/" + DeploymentFiles.draining(jobID: replica.jobID)
        let text =
            "job \(replica.jobID) draining since \(Int(deployer.context.clock.now().timeIntervalSince1970))\n"
        do {
            try await deployer.context.host.writeFileAtomically(Data(text.utf8), to: path, mode: 0o600)
        } catch {
            deployer.context.terminal.note(
                "Could not write \(path) (\(error)): a running tunnel or gateway keeps sending it requests until it is cancelled."
            )
        }
    }

    func unmarkDraining(_ replica: ResolvedDeployment) async {
        guard !replica.deployDir.isEmpty else { return }
        try? await deployer.context.host.removeFile(
            replica.deployDir + "/" + DeploymentFiles.draining(jobID: replica.jobID))
    }

    /// Submits a replacement for `failed`, a job of this deployment that ended in failure:
    /// the same replica number (`NAME@K`, or the unnumbered job), with the settings and key
    /// read from the failed job's directory. Does not wait for it.
    public func resubmit(_ failed: JobSnapshot) async throws -> ReplicaOutcome {
        let (base, number) = JobName.split(failed.name)
        let settings = try await settings(in: failed.workDir)
        let key = try await apiKey(in: failed.workDir)
        let plan = try await plan(base, settings: settings)
        let replacement = try await deployer.submitOne(
            number.map(plan.replica) ?? plan, wanted: .exactly(base), key: key)
        await deployer.startRenewLoops([replacement], name: base)
        return replacement
    }

    /// A plan for new jobs of `base` with `settings`, in the profile's workdir, stamped now.
    func plan(_ base: String, settings: DeploySettings) async throws -> DeployPlan {
        try DeployPlan(
            name: base, cluster: deployer.profile.name, settings: settings,
            workdir: try await deployer.resolveWorkdir(), stamp: Deployer.stamp(deployer.context.clock.now()))
    }

    /// The deployment's settings, from `deployment.json` in one of its directories.
    public func settings(in deployDir: String) async throws -> DeploySettings {
        guard let settings = try await DeploySettings.stored(in: deployDir, host: deployer.context.host)
        else {
            throw VLLMCtlError.file(
                path: deployDir + "/" + DeploymentFiles.settings,
                message:
                    "is missing or unreadable, so new replicas cannot get the deployment's settings (it was deployed by an older vllmctl?); deploy it again with --replicas"
            )
        }
        return settings
    }

    func number(of replica: ResolvedDeployment) -> Int {
        replica.record?.replica ?? replica.job.flatMap { JobName.split($0.name).replica } ?? 1
    }

    func apiKey(of replica: ResolvedDeployment) async throws -> APIKey {
        if let text = replica.connection?.apiKey ?? replica.record?.apiKey { return try APIKey(text) }
        return try await apiKey(in: replica.deployDir)
    }

    /// The key in a deployment directory's `api_key` file.
    func apiKey(in deployDir: String) async throws -> APIKey {
        let path = deployDir + "/" + DeploymentFiles.apiKey
        guard let data = try await deployer.context.host.readFile(path) else {
            throw VLLMCtlError.file(path: path, message: "cannot be read, so new replicas cannot get the key")
        }
        return try APIKey(
            String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Running + waiting requests from the replica's /metrics; nil when it cannot be read.
    func load(of replica: ResolvedDeployment) async -> Double? {
        guard let url = replica.connection?.serverURL,
            let r = try? await deployer.context.http.send(HTTPRequest(url: url + "/metrics", timeout: 5)),
            r.status == 200
        else { return nil }
        let metrics = ServerMetrics(samples: PrometheusText.parse(r.text))
        return metrics.running + metrics.waiting
    }

    /// Waits until the replica has no running or waiting request, or `timeout` has passed.
    func drain(_ replica: ResolvedDeployment, timeout: Double) async {
        let clock = deployer.context.clock
        let deadline = clock.now().addingTimeInterval(timeout)
        while clock.now() < deadline {
            guard let load = await load(of: replica), load > 0 else { return }
            try? await clock.sleep(seconds: 1)
        }
        deployer.context.terminal.note(
            "Replica job \(replica.jobID) still had requests after the drain timeout (\(Int(timeout)) s); cancelling it."
        )
    }
}

extension DeploySettings {
    /// The layered settings a deployment was submitted with: `deployment.json` in its
    /// directory `deployDir` on `host` (no key in it). Nil when the file is missing or does
    /// not decode (a deployment from an older vllmctl); an error reading it is thrown.
    public static func stored(in deployDir: String, host: any ClusterHost) async throws -> DeploySettings? {
        guard let data = try await host.readFile(deployDir + "/" + DeploymentFiles.settings) else {
            return nil
        }
        return try? JSONDecoder().decode(DeploySettings.self, from: data)
    }
}
