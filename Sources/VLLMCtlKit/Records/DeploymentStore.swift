import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What a new deployment is to be called.
public enum DeploymentName: Sendable, Equatable {
    /// This name (`--name`), even if a live deployment has it.
    case exactly(String)
    /// `base`, or `base-2`, `base-3`…: the first that no deployment that has not ended has.
    case free(base: String)
}

/// A job was submitted, but its record could not be saved (a full disk or quota).
public struct RecordNotSaved: Error {
    /// The record that was not saved: the job's id, name and directory.
    public let record: DeploymentRecord
    /// Why saving failed.
    public let underlying: any Error
}

/// vllmctl's own note of a deployment, kept on the machine where vllmctl runs.
public struct DeploymentRecord: Sendable, Equatable, Codable {
    /// How far the deployment got, as far as vllmctl saw.
    public enum Phase: String, Sendable, Codable {
        /// Submitted to Slurm; the server has not been seen answering.
        case submitted
        /// The server answered with the deployment's key.
        case ready
        /// Torn down, or seen to have ended.
        case ended
    }

    /// The deployment's name, unique among the cluster's records.
    public var name: String
    /// The cluster profile's name.
    public var cluster: String
    /// The Slurm job id.
    public var jobID: String
    /// The model the server loads.
    public var model: String
    /// The model name requests use.
    public var servedModelName: String
    /// The deployment's directory on the cluster.
    public var deployDir: String
    /// How far it got.
    public var phase: Phase
    /// When it was submitted.
    public var createdAt: Date
    /// `http://HOST:PORT`, once the server was ready.
    public var url: String?
    /// The node the job ran on, once the server was ready.
    public var node: String?
    /// The server's port, once it was ready.
    public var port: Int?
    /// The API key. The record file is 0600, like an SSH key.
    public var apiKey: String
    /// When it ended, once it has.
    public var endedAt: Date?
    /// Which replica of a replicated deployment it is (1…); nil for a deployment of one server.
    public var replica: Int? = nil

    /// `NAME`, or `NAME@K` for replica K: how status shows it and commands take it.
    public var displayName: String { name + (replica.map { "\(JobName.replicaMark)\($0)" } ?? "") }

    enum CodingKeys: String, CodingKey {
        case name, cluster
        case jobID = "job_id"
        case model
        case servedModelName = "served_model_name"
        case deployDir = "deploy_dir"
        case phase
        case createdAt = "created_at"
        case url, node, port
        case apiKey = "api_key"
        case endedAt = "ended_at"
        case replica
    }

    /// The path of `server_connection_info.txt` on the cluster.
    public var infoFile: String { deployDir + "/" + DeploymentFiles.infoText }
}

/// The local records: one 0600 JSON file per deployment under
/// `$XDG_STATE_HOME/vllmctl/deployments/CLUSTER/JOBID.json`, each written atomically. Name
/// allocation holds an flock so that two vllmctl processes never pick the same name.
public struct DeploymentStore: Sendable {
    /// The directory holding one folder per cluster.
    public let directory: String

    /// The records under `directory`, which is created when the first record is saved.
    public init(directory: String) { self.directory = directory }

    /// `$VLLMCTL_STATE_DIR`, else `$XDG_STATE_HOME/vllmctl/deployments`, else
    /// `~/.local/state/vllmctl/deployments`.
    public static func defaultDirectory(environment: [String: String]) -> String {
        if let dir = environment["VLLMCTL_STATE_DIR"], !dir.isEmpty { return dir }
        if let xdg = environment["XDG_STATE_HOME"], xdg.hasPrefix("/") { return xdg + "/vllmctl/deployments" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.local/state/vllmctl/deployments"
    }

    private func clusterDir(_ cluster: String) -> String { directory + "/" + cluster }

    /// Writes `record` (0600, atomically), replacing the one with its job id.
    public func save(_ record: DeploymentRecord) throws {
        let dir = clusterDir(record.cluster)
        try ensure(dir)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(record)
        try LocalFiles.writeAtomically(data + Data("\n".utf8), to: dir + "/\(record.jobID).json", mode: 0o600)
    }

    /// Every readable record of `cluster`; unreadable files are skipped.
    public func all(cluster: String) -> [DeploymentRecord] {
        let dir = clusterDir(cluster)
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return files.filter { $0.hasSuffix(".json") }.compactMap { file in
            guard let data = FileManager.default.contents(atPath: dir + "/" + file) else { return nil }
            return try? decoder.decode(DeploymentRecord.self, from: data)
        }.sorted { $0.createdAt < $1.createdAt }
    }

    /// Finds a record by job id, name (the newest with that name) or `NAME@K` (replica K).
    public func find(_ idOrName: String, cluster: String) -> DeploymentRecord? {
        let records = all(cluster: cluster)
        if let byID = records.first(where: { $0.jobID == idOrName }) { return byID }
        let (name, replica) = JobName.split(idOrName)
        return records.last { $0.name == name && (replica == nil || $0.replica == replica) }
    }

    /// The records of deployment `name` that have not ended: one, or one per live replica.
    public func replicas(of name: String, cluster: String) -> [DeploymentRecord] {
        all(cluster: cluster).filter { $0.name == name && $0.phase != .ended }
            .sorted { ($0.replica ?? 0) < ($1.replica ?? 0) }
    }

    /// Runs `body` holding an exclusive lock (flock) on this cluster's records, so that two
    /// vllmctl processes never take the same name or write the same record at once.
    public func withLock<T>(cluster: String, _ body: () async throws -> T) async throws -> T {
        let dir = clusterDir(cluster)
        try ensure(dir)
        let fd = open(dir + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw VLLMCtlError.file(
                path: dir + "/.lock", message: "cannot be opened: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR {
                throw VLLMCtlError.file(
                    path: dir + "/.lock", message: "cannot be locked: \(String(cString: strerror(errno)))")
            }
        }
        defer { flock(fd, LOCK_UN) }
        return try await body()
    }

    /// `base`, or `base-2`, `base-3`… so that no deployment that has not ended shares it.
    public func uniqueName(_ base: String, cluster: String) -> String {
        let taken = Set(all(cluster: cluster).filter { $0.phase != .ended }.map(\.name))
        if !taken.contains(base) { return base }
        var n = 2
        while taken.contains("\(base)-\(n)") { n += 1 }
        return "\(base)-\(n)"
    }

    /// The name `wanted` gives now: the one asked for, or the first free one. Outside
    /// ``create(_:cluster:_:)`` another vllmctl may take it a moment later (`deploy --dry-run`
    /// shows it).
    public func name(for wanted: DeploymentName, cluster: String) -> String {
        switch wanted {
        case .exactly(let name): return name
        case .free(let base): return uniqueName(base, cluster: cluster)
        }
    }

    /// A new deployment's name and record, under one lock on `cluster`'s records: picks the
    /// name, runs `submit` with it (which submits the job and returns its record), and saves
    /// the record. A second vllmctl deploying at the same moment waits, then sees this record
    /// and takes another name. When the record cannot be saved, throws ``RecordNotSaved``
    /// (the job runs; the caller cancels it).
    public func create(
        _ wanted: DeploymentName, cluster: String, _ submit: (String) async throws -> DeploymentRecord
    ) async throws -> DeploymentRecord {
        try await withLock(cluster: cluster) {
            let record = try await submit(name(for: wanted, cluster: cluster))
            do {
                try save(record)
            } catch {
                throw RecordNotSaved(record: record, underlying: error)
            }
            return record
        }
    }

    private func ensure(_ dir: String) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw VLLMCtlError.file(
                path: dir, message: "cannot create the directory: \(error.localizedDescription)")
        }
    }
}

extension DeploymentStore {
    /// Marks a record ended (idempotent).
    public func markEnded(_ record: DeploymentRecord, at date: Date) throws {
        var ended = record
        guard ended.phase != .ended else { return }
        ended.phase = .ended
        ended.endedAt = date
        try save(ended)
    }
}
