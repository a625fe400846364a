import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A running `vllmctl tunnel`, as it records itself once its path answered /health.
public struct TunnelRecord: Sendable, Equatable, Codable {
    public var cluster: String
    public var jobID: String
    public var name: String
    public var pid: Int32
    public var bind: String
    public var localPort: Int
    /// `node:port` as the login node reaches it.
    public var target: String
    public var startedAt: Date
    public var background: Bool
    /// Where a background tunnel writes its messages.
    public var logFile: String?

    enum CodingKeys: String, CodingKey {
        case cluster
        case jobID = "job_id"
        case name, pid, bind
        case localPort = "local_port"
        case target
        case startedAt = "started_at"
        case background
        case logFile = "log_file"
    }

    public init(
        cluster: String, jobID: String, name: String, pid: Int32, bind: String, localPort: Int,
        target: String,
        startedAt: Date, background: Bool, logFile: String?
    ) {
        self.cluster = cluster
        self.jobID = jobID
        self.name = name
        self.pid = pid
        self.bind = bind
        self.localPort = localPort
        self.target = target
        self.startedAt = startedAt
        self.background = background
        self.logFile = logFile
    }

    /// `http://127.0.0.1:PORT/v1`: the OpenAI base URL through the tunnel.
    public var baseURL: String { serverURL + "/v1" }

    /// `http://127.0.0.1:PORT`: the server's root through the tunnel (for /health).
    public var serverURL: String { "http://\(LocalListener.clientHost(bind: bind)):\(localPort)" }
}

/// The records of open tunnels: one 0600 JSON file per tunnel under the deployment records'
/// directory, `CLUSTER/tunnels/JOBID-PORT.json`. A record whose process is gone is stale and
/// is removed when read.
public struct TunnelStore: Sendable {
    public let directory: String

    public init(records: DeploymentStore) {
        directory = records.directory
    }

    private func dir(_ cluster: String) -> String { directory + "/" + cluster + "/tunnels" }

    private func path(_ record: TunnelRecord) -> String {
        dir(record.cluster) + "/\(record.jobID)-\(record.localPort).json"
    }

    /// Where a background tunnel for `jobID` writes its messages.
    public func logPath(cluster: String, jobID: String) -> String {
        dir(cluster) + "/\(jobID).log"
    }

    public func prepareDirectory(cluster: String) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: dir(cluster), withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw VLLMCtlError.file(
                path: dir(cluster), message: "cannot create the directory: \(error.localizedDescription)")
        }
    }

    public func save(_ record: TunnelRecord) throws {
        try prepareDirectory(cluster: record.cluster)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        try LocalFiles.writeAtomically(
            try encoder.encode(record) + Data("\n".utf8), to: path(record), mode: 0o600)
    }

    public func remove(_ record: TunnelRecord) {
        unlink(path(record))
    }

    /// What a tunnel that closes cleanly leaves behind, removed: its record and, for a
    /// background tunnel, its log.
    public func forget(_ record: TunnelRecord) {
        remove(record)
        if let log = record.logFile { unlink(log) }
    }

    /// Closes every open tunnel of `cluster` to the job or deployment `deployment` (``close(_:waitSeconds:)``);
    /// returns those it closed.
    @discardableResult
    public func closeAll(_ deployment: String, cluster: String) -> [TunnelRecord] {
        let open = open(cluster: cluster).filter { $0.jobID == deployment || $0.name == deployment }
        for record in open { close(record) }
        return open
    }

    /// The tunnels of `cluster` whose process still runs.
    public func open(cluster: String) -> [TunnelRecord] {
        let dir = dir(cluster)
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        var live: [TunnelRecord] = []
        for file in files where file.hasSuffix(".json") {
            guard let data = FileManager.default.contents(atPath: dir + "/" + file),
                let record = try? decoder.decode(TunnelRecord.self, from: data)
            else { continue }
            if Self.isRunning(record) {
                live.append(record)
            } else {
                unlink(dir + "/" + file)
                if let log = record.logFile { unlink(log) }
            }
        }
        return live.sorted { $0.startedAt < $1.startedAt }
    }

    /// The open tunnels to one job.
    public func open(cluster: String, jobID: String) -> [TunnelRecord] {
        open(cluster: cluster).filter { $0.jobID == jobID }
    }

    /// Whether the record's process is still a vllmctl tunnel of this user (a recycled pid
    /// running something else does not count).
    public static func isRunning(_ record: TunnelRecord) -> Bool {
        guard record.pid > 0, kill(record.pid, 0) == 0,
            let argv = FileManager.default.contents(atPath: "/proc/\(record.pid)/cmdline")
        else { return false }
        let words = argv.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return words.contains("tunnel") && (words.first.map { $0.hasSuffix("vllmctl") } ?? false)
    }

    /// Stops a tunnel (SIGTERM; it closes within 2 s) and removes its record. True if it was
    /// running.
    @discardableResult
    public func close(_ record: TunnelRecord, waitSeconds: Double = 5) -> Bool {
        defer { forget(record) }
        guard Self.isRunning(record) else { return false }
        kill(record.pid, SIGTERM)
        let deadline = Date().addingTimeInterval(waitSeconds)
        while Date() < deadline {
            if !Self.isRunning(record) || Self.hasEnded(record.pid) { return true }
            usleep(20_000)
        }
        kill(record.pid, SIGKILL)
        return true
    }

    /// Gone, or a zombie waiting to be reaped.
    static func hasEnded(_ pid: Int32) -> Bool {
        guard let stat = FileManager.default.contents(atPath: "/proc/\(pid)/stat") else { return true }
        let text = String(decoding: stat, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return false }
        return text[text.index(after: close)...].hasPrefix(" Z")
    }
}
