import Foundation

/// A deployment found by job id or name.
public struct ResolvedDeployment: Sendable {
    /// The deployment's name.
    public var name: String
    /// Its Slurm job id.
    public var jobID: String
    /// The local record; nil for a deployment made from another machine.
    public var record: DeploymentRecord?
    /// The scheduler's view, when it still knows the job.
    public var job: JobSnapshot?
    /// The deployment's directory on the cluster.
    public var deployDir: String
    /// The job's connection file, once it has written one.
    public var connection: ConnectionRecord?

    /// The path of `server_connection_info.txt` on the cluster.
    public var infoFile: String { deployDir + "/" + DeploymentFiles.infoText }
    /// The path of the job's standard output on the cluster.
    public var stdoutPath: String { deployDir + "/" + DeploymentFiles.stdout(jobID: jobID) }
    /// The path of the job's standard error on the cluster.
    public var stderrPath: String { deployDir + "/" + DeploymentFiles.stderr(jobID: jobID) }
    /// `NAME`, or `NAME@K` for replica K of a replicated deployment.
    public var displayName: String {
        if let record { return record.displayName }
        guard let replica = job.flatMap({ JobName.split($0.name).replica }) else { return name }
        return name + "\(JobName.replicaMark)\(replica)"
    }
    /// Whether Slurm reports the job RUNNING.
    public var isRunning: Bool { job?.state == .running }

    /// The job's connection file, or an error saying why there is none yet and what to do.
    public func requireConnection() throws -> ConnectionRecord {
        if let connection { return connection }
        if job.map({ $0.state.isFinal }) ?? (record?.phase == .ended) {
            let how = job.map { " (\($0.state.rawValue))" } ?? ""
            throw VLLMCtlError.invalidInput(
                "Job \(jobID) (\(name)) has ended\(how), so its server no longer answers",
                hint: "Deploy again with `vllmctl deploy`; `vllmctl status --all` lists your deployments.")
        }
        let state =
            job.map { $0.state.rawValue + ($0.reason == "None" ? "" : " (\($0.reason))") } ?? "unknown"
        throw VLLMCtlError.invalidInput(
            "Job \(jobID) (\(name)) has not published its connection file yet; it is \(state)",
            hint: "Wait for it with `vllmctl status \(name) --watch`, or read `vllmctl logs \(name)`.")
    }

    /// The connection of a deployment that still serves; an error saying what to do when it
    /// has none yet or has ended (`consequence`: "its server no longer answers").
    public func requireServing(_ consequence: String = "its server no longer answers") throws
        -> ConnectionRecord
    {
        let connection = try requireConnection()
        if hasEnded {
            throw VLLMCtlError.invalidInput(
                "Job \(jobID) (\(name)) has ended, so \(consequence)",
                hint: "Deploy again with `vllmctl deploy`; `vllmctl status --all` lists your deployments.")
        }
        return connection
    }

    /// The job has ended (or its connection file says so): the URL no longer answers.
    public var hasEnded: Bool { connection?.endedAt != nil || (job.map { $0.state.isFinal } ?? true) }
}

/// Finds a deployment: first in the local records, then among the user's jobs carrying
/// vllmctl's tag (deployed from another machine), whose working directory is the deployment
/// directory.
public struct DeploymentResolver: Sendable {
    /// Where Slurm runs and the records.
    public let context: Context
    /// The cluster profile's name.
    public let cluster: String

    /// A resolver for deployments on `cluster`.
    public init(context: Context, cluster: String) {
        self.context = context
        self.cluster = cluster
    }

    /// The deployment with job id or name `idOrName`, with the scheduler's view and its
    /// connection file; throws ``VLLMCtlError/notFound(what:name:hint:)`` when there is none.
    /// With `detail`, the scheduler's view includes what the job asked for (same one call).
    public func resolve(_ idOrName: String, detail: Bool = false) async throws -> ResolvedDeployment {
        let watcher = JobWatcher(host: context.host)
        if let record = context.records.find(idOrName, cluster: cluster) {
            if !isJobID(idOrName), let successor = try await successor(of: record, detail: detail) {
                return successor
            }
            let job = try await watcher.snapshot(jobID: record.jobID, detail: detail)
            if !isJobID(idOrName), job.map({ $0.state.isFinal }) ?? true,
                let next = try await liveSuccessor(of: record, detail: detail)
            {
                return next
            }
            return ResolvedDeployment(
                name: record.name, jobID: record.jobID, record: record, job: job, deployDir: record.deployDir,
                connection: try await connection(deployDir: record.deployDir, jobID: record.jobID))
        }
        let user = try await context.host.userName()
        // A job id deployed from elsewhere: that one job, if it is the user's and vllmctl's.
        if isJobID(idOrName), let job = try await watcher.snapshot(jobID: idOrName, detail: detail),
            Ownership(user: user).isOurs(job), !job.workDir.isEmpty
        {
            return ResolvedDeployment(
                name: Ownership.deploymentName(job), jobID: job.jobID,
                record: nil,
                job: job, deployDir: job.workDir,
                connection: try await connection(deployDir: job.workDir, jobID: job.jobID))
        }
        let (base, replica) = JobName.split(idOrName)
        var found: JobSnapshot?
        // A job that has just left squeue can take a moment to reach sacct (slurmdbd lags):
        // look again twice before saying there is no such deployment.
        for attempt in 0..<3 {
            if attempt > 0 { try await context.clock.sleep(seconds: 0.75) }
            let jobs = try await StatusBuilder(context: context, cluster: cluster).scheduledJobs(
                user: user, includeEnded: true)
            // A name may have been used before: the live job wins, else the newest.
            let named = jobs.filter {
                replica == nil
                    ? JobName.belongs($0.name, to: base) : $0.name == JobName.of(base, replica: replica)
            }
            found =
                jobs.first(where: { $0.jobID == idOrName }) ?? named.last(where: { !$0.state.isFinal })
                ?? named.max(by: { (Int($0.jobID) ?? 0) < (Int($1.jobID) ?? 0) })
            if found != nil { break }
        }
        guard let job = found else {
            throw VLLMCtlError.notFound(
                what: "deployment", name: idOrName,
                hint: "`vllmctl status --all` lists your deployments on \(cluster).")
        }
        guard !job.workDir.isEmpty else {
            throw VLLMCtlError.invalidInput(
                "Slurm does not report the directory of job \(job.jobID)",
                hint: "Look for its files under the profile's workdir.")
        }
        return ResolvedDeployment(
            name: JobName.deploymentName(job.name), jobID: job.jobID, record: nil,
            job: job,
            deployDir: job.workDir, connection: try await connection(deployDir: job.workDir, jobID: job.jobID)
        )
    }

    /// Every live replica of the deployment `name` (one entry for a deployment of one server),
    /// with its connection file, ordered by replica number. From this machine's records when
    /// they know the deployment, else from one squeue call (deployed from elsewhere).
    public func replicas(of name: String) async throws -> [ResolvedDeployment] {
        let base = JobName.split(name).name
        let recorded = context.records.replicas(of: base, cluster: cluster)
        var out: [ResolvedDeployment] = []
        if !recorded.isEmpty {
            for record in recorded {
                out.append(
                    ResolvedDeployment(
                        name: record.name, jobID: record.jobID, record: record, job: nil,
                        deployDir: record.deployDir,
                        connection: try await connection(deployDir: record.deployDir, jobID: record.jobID)))
            }
            return out
        }
        let user = try await context.host.userName()
        let jobs = try await StatusBuilder(context: context, cluster: cluster).scheduledJobs(
            user: user, includeEnded: false)
        for job in jobs where JobName.belongs(job.name, to: base) && !job.workDir.isEmpty {
            out.append(
                ResolvedDeployment(
                    name: base, jobID: job.jobID, record: nil, job: job, deployDir: job.workDir,
                    connection: try await connection(deployDir: job.workDir, jobID: job.jobID)))
        }
        return out.sorted {
            (JobName.split($0.job?.name ?? "").replica ?? 0)
                < (JobName.split($1.job?.name ?? "").replica ?? 0)
        }
    }

    /// A renewing deployment (docs/RENEW.md) known here by its first job's record: the job
    /// that has taken over since, when the deployment's connection file names another job
    /// that Slurm runs for the user under the record's job name, in the record's directory.
    /// Nil otherwise (then the record's own job is the deployment).
    func successor(of record: DeploymentRecord, detail: Bool) async throws -> ResolvedDeployment? {
        guard let data = try await context.host.readFile(record.deployDir + "/" + DeploymentFiles.infoJSON),
            let info = try? JSONDecoder().decode(ConnectionRecord.self, from: data), info.isWellFormed,
            info.jobID != record.jobID, isJobID(info.jobID),
            let job = try await JobWatcher(host: context.host).snapshot(jobID: info.jobID, detail: detail),
            job.name == JobName.of(record.name, replica: record.replica), job.workDir == record.deployDir,
            Ownership(user: try await context.host.userName()).isOurs(job)
        else { return nil }
        return ResolvedDeployment(
            name: record.name, jobID: job.jobID, record: nil, job: job, deployDir: record.deployDir,
            connection: info)
    }

    /// Whether `vllmctl tunnel NAME` runs a balancing endpoint for `name`: a deployment of
    /// several replicas, one that renews (one job at a time, but its successor takes over) or
    /// one whose settings keep replicas up (a failed job's replacement joins). Never for a job
    /// id or one replica's own name: those get a plain tunnel.
    public func balances(_ name: String) async throws -> Bool {
        guard JobName.split(name).replica == nil, !isJobID(name) else { return false }
        let replicas = try await replicas(of: name)
        if replicas.count > 1 { return true }
        let settings = await settings(in: replicas)
        return settings?.renew == true || (settings?.keep ?? 0) > 0
    }

    /// A renewing deployment whose recorded job has ended and whose successor has not taken
    /// over yet (still pending or loading, docs/RENEW.md): the newest live job of the user
    /// under the record's job name in the record's directory (one squeue call). Nil when there
    /// is none.
    func liveSuccessor(of record: DeploymentRecord, detail: Bool) async throws -> ResolvedDeployment? {
        let ownership = Ownership(user: try await context.host.userName())
        let name = JobName.of(record.name, replica: record.replica)
        let jobs = try await StatusBuilder(context: context, cluster: cluster).scheduledJobs(
            user: ownership.user, includeEnded: false)
        guard
            let newest = jobs.filter({
                $0.name == name && $0.workDir == record.deployDir && $0.jobID != record.jobID
                    && !$0.state.isFinal && ownership.isOurs($0)
            }).max(by: { (Int($0.jobID) ?? 0) < (Int($1.jobID) ?? 0) }),
            let job = detail
                ? try await JobWatcher(host: context.host).snapshot(jobID: newest.jobID, detail: true)
                : newest
        else { return nil }
        return ResolvedDeployment(
            name: record.name, jobID: job.jobID, record: nil, job: job, deployDir: record.deployDir,
            connection: try await connection(deployDir: record.deployDir, jobID: job.jobID))
    }

    /// The layered settings in the first of `replicas` whose `deployment.json` can be read;
    /// nil when none can (a deployment from an older vllmctl).
    func settings(in replicas: [ResolvedDeployment]) async -> DeploySettings? {
        for replica in replicas {
            if let settings = try? await DeploySettings.stored(in: replica.deployDir, host: context.host) {
                return settings
            }
        }
        return nil
    }

    func connection(deployDir: String, jobID: String) async throws -> ConnectionRecord? {
        guard let data = try await context.host.readFile(deployDir + "/" + DeploymentFiles.infoJSON) else {
            return nil
        }
        guard let info = try? JSONDecoder().decode(ConnectionRecord.self, from: data), info.jobID == jobID,
            info.isWellFormed
        else { return nil }
        return info
    }
}
