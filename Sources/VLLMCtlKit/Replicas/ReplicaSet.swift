import Foundation

/// One serving replica of a deployment: where its server listens, as the cluster sees it.
public struct ReplicaEndpoint: Sendable, Equatable, Hashable {
    /// 1 for a deployment's unnumbered job; K for `NAME@K`.
    public var replica: Int
    /// Its Slurm job id.
    public var jobID: String
    /// The node's address and the server's port (from the job's connection file).
    public var host: String
    public var port: Int
    /// The node's name.
    public var node: String

    /// `http://HOST:PORT`.
    public var serverURL: String { "http://" + URLTarget.hostPort(host, port) }
}

/// The live replicas of one deployment, as the scheduler and the jobs' connection files say:
/// the seed's list of servers, kept current. Each ``refresh()`` is one squeue call; a job's
/// connection file is read once, when it first runs (it does not move while the job runs).
/// Jobs that end leave; jobs that appear (scale, resubmission) join. A replica whose directory
/// holds its job's `draining-JOBID` marker (`scale` is removing it) leaves at once, before it
/// is cancelled.
public actor ReplicaSet {
    /// Where Slurm runs and files are read; the records for deployment directories.
    public let context: Context
    /// The cluster profile's name.
    public let cluster: String
    /// The deployment's name.
    public let name: String
    private var known: [String: ReplicaEndpoint] = [:]
    private var directories: [String: String] = [:]
    private var draining: Set<String> = []
    /// The deployment's jobs in the queue (any state) at the last refresh that could ask
    /// squeue; nil before the first, or when the last one could not.
    public private(set) var queued: [JobSnapshot]?
    /// The key the replicas share (from their connection files).
    public private(set) var apiKey: String?

    public init(context: Context, cluster: String, name: String) {
        self.context = context
        self.cluster = cluster
        self.name = JobName.split(name).name
    }

    /// The replicas whose jobs run and whose servers have published their connection file,
    /// by replica number, without those being drained. Throws when squeue cannot be asked
    /// (nothing is assumed gone then).
    public func refresh() async throws -> [ReplicaEndpoint] {
        queued = nil
        let user = try await context.host.userName()
        let all = try await StatusBuilder(context: context, cluster: cluster).scheduledJobs(
            user: user, includeEnded: false
        ).filter { JobName.belongs($0.name, to: name) }
        queued = all
        let jobs = all.filter { $0.state == .running }
        let records = Dictionary(
            context.records.all(cluster: cluster).map { ($0.jobID, $0) }, uniquingKeysWith: { $1 })
        var current: [String: ReplicaEndpoint] = [:]
        var draining: Set<String> = []
        let wasDraining = self.draining
        for job in jobs {
            let dir = directories[job.jobID] ?? records[job.jobID]?.deployDir ?? job.workDir
            if !dir.isEmpty {
                do {
                    if try await context.host.readFile(dir + "/" + DeploymentFiles.draining(jobID: job.jobID))
                        != nil
                    {
                        draining.insert(job.jobID)
                    }
                } catch {
                    // Could not tell (an error, not the marker's absence): as it was.
                    if wasDraining.contains(job.jobID) { draining.insert(job.jobID) }
                }
            }
            if let endpoint = known[job.jobID] {
                current[job.jobID] = endpoint
                continue
            }
            guard !dir.isEmpty,
                let data = try? await context.host.readFile(dir + "/" + DeploymentFiles.infoJSON),
                let info = try? JSONDecoder().decode(ConnectionRecord.self, from: data),
                info.jobID == job.jobID, info.isWellFormed, info.endedAt == nil
            else { continue }
            apiKey = apiKey ?? info.apiKey
            current[job.jobID] = ReplicaEndpoint(
                replica: JobName.split(job.name).replica ?? 1, jobID: job.jobID, host: info.host,
                port: info.port,
                node: info.node)
            directories[job.jobID] = dir
        }
        known = current
        self.draining = draining
        directories = directories.filter { current[$0.key] != nil }
        return Self.newestPerSlot(current.values.filter { !draining.contains($0.jobID) })
    }

    /// One endpoint per replica number: the newest job (the highest job id). A renewing
    /// deployment (docs/RENEW.md) has two ready jobs in one slot during a handover; new
    /// requests go to the successor only, while the predecessor drains and ends.
    static func newestPerSlot(_ endpoints: [ReplicaEndpoint]) -> [ReplicaEndpoint] {
        var newest: [Int: ReplicaEndpoint] = [:]
        for endpoint in endpoints {
            if let held = newest[endpoint.replica],
                Self.jobNumber(held.jobID) > Self.jobNumber(endpoint.jobID)
            {
                continue
            }
            newest[endpoint.replica] = endpoint
        }
        return newest.values.sorted { $0.replica < $1.replica }
    }

    static func jobNumber(_ id: String) -> Int { Int(id) ?? 0 }
}
