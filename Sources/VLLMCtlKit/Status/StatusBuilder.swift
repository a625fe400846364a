import Foundation

/// Builds the status table: one squeue call for the user's live jobs (and, with `--all`, one
/// sacct call for ended ones), merged with the local records, then health checked
/// concurrently through libcurl.
public struct StatusBuilder: Sendable {
    /// Where Slurm runs, HTTP for the health checks, the records.
    public let context: Context
    /// The cluster profile's name, whose records are merged in.
    public let cluster: String
    /// Seconds for each server's /health check.
    public var healthTimeout: Double = 2

    /// A builder for the deployments on `cluster`.
    public init(context: Context, cluster: String) {
        self.context = context
        self.cluster = cluster
    }

    /// Scheduler snapshots of the user's vllmctl jobs: squeue, plus sacct with `includeEnded`.
    public func scheduledJobs(user: String, includeEnded: Bool) async throws -> [JobSnapshot] {
        let squeue = Squeue(user: user)
        let live = try await context.host.run(squeue.argv, input: nil, timeout: .seconds(30))
        guard live.status == 0 else {
            throw VLLMCtlError.commandFailed(argv: squeue.argv, status: live.status, stderr: live.stderr)
        }
        var jobs = squeue.parse(live.stdout)
        // In place: a busy queue has thousands of rows, each a dozen strings.
        jobs.removeAll { $0.user != user || !Ownership.isTagged($0.name) }
        if includeEnded {
            let sacct = Sacct(user: user, since: "now-7days")
            let ended = try await context.host.run(sacct.argv, input: nil, timeout: .seconds(30))
            if ended.status == 0 {
                let known = Set(jobs.map(\.jobID))
                jobs += sacct.parse(ended.stdout).filter {
                    $0.user == user && Ownership.isTagged($0.name) && !known.contains($0.jobID)
                        && $0.state.isFinal
                }
            } else {
                context.terminal.note(
                    "sacct failed, so ended jobs are missing: \(ended.stderr.trimmingCharacters(in: .whitespacesAndNewlines))"
                )
            }
        }
        return jobs
    }

    /// Every deployment of the user on this cluster that Slurm runs or the records know, with
    /// its health; with `includeEnded`, also those that ended in the last seven days.
    public func build(includeEnded: Bool) async throws -> [DeploymentStatus] {
        let user = try await context.host.userName()
        let jobs = try await scheduledJobs(user: user, includeEnded: includeEnded)
        let records = context.records.all(cluster: cluster)
        let byID = Dictionary(records.map { ($0.jobID, $0) }, uniquingKeysWith: { $1 })
        var rows: [DeploymentStatus] = []
        rows.reserveCapacity(jobs.count + records.count)
        var seen = Set<String>(minimumCapacity: jobs.count)
        for job in jobs {
            seen.insert(job.jobID)
            // Only a running job has files to read (its connection and renewal files).
            rows.append(
                job.state == .running
                    ? await row(job: job, record: byID[job.jobID], user: user)
                    : row(job: job, record: byID[job.jobID], user: user, connection: nil))
        }
        // Usually every job is live (sacct's ended ones come only with --all): then `seen` is the set.
        let live =
            jobs.contains { $0.state.isFinal }
            ? Set(jobs.lazy.filter { !$0.state.isFinal }.map(\.jobID)) : seen
        rows = await markChainGaps(rows, live: live)
        // Records whose job squeue no longer lists: marked ended only when sacct confirms a
        // final state for that job (an empty squeue, or one that raced a deploy, proves nothing).
        let missing = records.filter { !seen.contains($0.jobID) && $0.phase != .ended }
        if !missing.isEmpty {
            await markEndedIfConfirmed(missing, known: jobs)
        }
        if includeEnded {
            for record in records where !seen.contains(record.jobID) {
                rows.append(row(record: record, user: user))
            }
        }
        // From a laptop the node's URL is out of reach; an open tunnel is not, so health goes
        // through it.
        let tunnels = TunnelStore(records: context.records).open(cluster: cluster)
        if !tunnels.isEmpty {
            for i in rows.indices {
                rows[i].tunnelURL = tunnels.first { $0.jobID == rows[i].jobID }?.baseURL
            }
        }
        rows = await checkHealth(rows)
        // By job id, each parsed once; squeue mostly lists them in that order already.
        let ids = rows.map { Int($0.jobID) ?? 0 }
        if zip(ids, ids.dropFirst()).allSatisfy({ $0 <= $1 }) { return rows }
        return rows.indices.sorted { ids[$0] < ids[$1] }.map { rows[$0] }
    }

    /// Marks the successors that a renewing deployment waits for while it is down
    /// (``ChainGap``). One file read per deployment directory whose live jobs have published
    /// no URL and include one without a local record (a successor is never recorded: a first
    /// job deployed from here is), and one more when that file names another job that is not
    /// live: the deployment's settings, which must say `renew`.
    func markChainGaps(_ rows: [DeploymentStatus], live: Set<String>) async -> [DeploymentStatus] {
        // Rows are read field by field (a busy queue has thousands; a row is a large value).
        struct Group: Hashable {
            let name: String
            let dir: String
        }
        var groups: [Group: [Int]] = [:]
        for i in rows.indices where live.contains(rows[i].jobID) {
            guard let dir = rows[i].deployDir else { continue }
            groups[Group(name: rows[i].displayName, dir: dir), default: []].append(i)
        }
        var out = rows
        for indices in groups.values {
            guard indices.allSatisfy({ rows[$0].url == nil }),
                indices.contains(where: { !rows[$0].recorded }),
                let dir = rows[indices[0]].deployDir
            else { continue }
            let published = await publishedConnection(dir)
            let gaps = indices.compactMap { i -> (Int, ChainGap)? in
                guard !rows[i].recorded else { return nil }
                return ChainGap.find(
                    jobID: rows[i].jobID, state: JobState(slurm: rows[i].state), reason: rows[i].reason,
                    published: published, isLive: { live.contains($0) }
                ).map { (i, $0) }
            }
            guard !gaps.isEmpty, await renews(dir) else { continue }
            for (i, gap) in gaps { out[i].down = gap }
        }
        return out
    }

    /// The gap of `row` (``ChainGap``), for `status NAME`: the deployment's connection file,
    /// one squeue (or sacct) call for the job it names, and the settings.
    func chainGap(for row: DeploymentStatus) async -> ChainGap? {
        guard row.url == nil, let dir = row.deployDir, let published = await publishedConnection(dir),
            published.jobID != row.jobID, isJobID(published.jobID),
            let named = try? await JobWatcher(host: context.host).snapshot(jobID: published.jobID)
        else { return nil }
        let live = !named.state.isFinal
        guard
            let gap = ChainGap.find(
                jobID: row.jobID, state: JobState(slurm: row.state), reason: row.reason, published: published,
                isLive: { _ in live }),
            await renews(dir)
        else { return nil }
        return gap
    }

    /// The deployment's connection file in `dir` (whichever job wrote it), if well formed.
    func publishedConnection(_ dir: String) async -> ConnectionRecord? {
        guard let data = try? await context.host.readFile(dir + "/" + DeploymentFiles.infoJSON),
            let info = try? JSONDecoder().decode(ConnectionRecord.self, from: data), info.isWellFormed
        else { return nil }
        return info
    }

    /// Whether the deployment in `dir` renews (its `deployment.json` says `renew`).
    func renews(_ dir: String) async -> Bool {
        (try? await DeploySettings.stored(in: dir, host: context.host))??.renew ?? false
    }

    /// Marks `records` ended whose jobs sacct reports in a final state (one sacct call unless
    /// `known` already has them), under the records lock, re-reading each record there.
    func markEndedIfConfirmed(_ records: [DeploymentRecord], known: [JobSnapshot]) async {
        var final = Set(known.filter { $0.state.isFinal }.map(\.jobID))
        let ask = records.map(\.jobID).filter { !final.contains($0) }
        if !ask.isEmpty {
            let sacct = Sacct(jobIDs: ask)
            guard let result = try? await context.host.run(sacct.argv, input: nil, timeout: .seconds(30)),
                result.status == 0
            else { return }
            final.formUnion(sacct.parse(result.stdout).filter { $0.state.isFinal }.map(\.jobID))
        }
        let ended = Set(records.map(\.jobID)).intersection(final)
        guard !ended.isEmpty else { return }
        try? await context.records.withLock(cluster: cluster) {
            for record in context.records.all(cluster: cluster)
            where ended.contains(record.jobID) && record.phase != .ended {
                try context.records.markEnded(record, at: context.clock.now())
            }
        }
    }

    func row(job: JobSnapshot, record: DeploymentRecord?, user: String) async -> DeploymentStatus {
        var connection: ConnectionRecord?
        // The job's own connection file knows the URL, also for jobs deployed elsewhere.
        if job.state == .running,
            let deployDir = record?.deployDir ?? (job.workDir.isEmpty ? nil : job.workDir),
            let data = try? await context.host.readFile(deployDir + "/" + DeploymentFiles.infoJSON),
            let info = try? JSONDecoder().decode(ConnectionRecord.self, from: data), info.jobID == job.jobID
        {
            connection = info
        }
        var status = row(job: job, record: record, user: user, connection: connection)
        // A renewing job says where its chain stands (docs/RENEW.md).
        if job.state == .running, let dir = status.deployDir,
            let data = try? await context.host.readFile(dir + "/" + RenewalStatus.fileName(jobID: job.jobID))
        {
            status.renewal = RenewalStatus.parse(data)
        }
        return status
    }

    /// The row of `job`, with its connection file already read (nil: none yet).
    func row(job: JobSnapshot, record: DeploymentRecord?, user: String, connection: ConnectionRecord?)
        -> DeploymentStatus
    {
        let deployDir = record?.deployDir ?? (job.workDir.isEmpty ? nil : job.workDir)
        let jobName = JobName.split(job.name)
        var status = DeploymentStatus(
            name: record?.name ?? jobName.name,
            jobID: job.jobID, cluster: cluster, user: job.user.isEmpty ? user : job.user,
            model: record?.model, servedModelName: record?.servedModelName, state: job.state.rawValue,
            reason: (job.reason.isEmpty || job.reason == "None") ? nil : job.reason,
            node: (job.nodes.isEmpty || job.nodes == "None assigned")
                ? nil : Hostlist.expand(job.nodes).joined(separator: ","), url: record?.url,
            health: .unchecked,
            elapsedSeconds: SlurmTime.seconds(job.elapsed), timeLeftSeconds: SlurmTime.seconds(job.timeLeft),
            walltimeLow: false, deployDir: deployDir,
            infoFile: deployDir.map { $0 + "/" + DeploymentFiles.infoText }, recorded: record != nil)
        status.replica = record?.replica ?? jobName.replica
        if let left = status.timeLeftSeconds, job.state == .running {
            status.walltimeLow = left < DeploymentStatus.lowWalltimeSeconds
        }
        if job.state == .running, let info = connection, info.jobID == job.jobID {
            status.url = info.serverURL
            status.model = status.model ?? info.model
            status.servedModelName = status.servedModelName ?? info.servedModelName
        }
        return status
    }

    func row(record: DeploymentRecord, user: String) -> DeploymentStatus {
        DeploymentStatus(
            name: record.name, jobID: record.jobID, cluster: cluster, user: user, model: record.model,
            servedModelName: record.servedModelName, state: "ENDED", reason: nil, node: record.node, url: nil,
            health: .unchecked, elapsedSeconds: nil, timeLeftSeconds: nil, walltimeLow: false,
            deployDir: record.deployDir, infoFile: record.infoFile, recorded: true, replica: record.replica)
    }

    /// What one concurrent check of a row found.
    enum Probe: Sendable {
        case health(DeploymentStatus.Health, detail: String?)
        /// Running and waiting requests, or why they are unknown.
        case requests(running: Int, waiting: Int)
        case requestsUnknown(String)
    }

    /// /health of every running row and, for a running replica of a replicated deployment
    /// (`NAME@K`, or the unnumbered job of a deployment scaled up beside its `NAME@K`s), its
    /// requests from /metrics, all side by side (a deployment of one server costs no /metrics
    /// request).
    func checkHealth(_ rows: [DeploymentStatus]) async -> [DeploymentStatus] {
        let http = context.http
        let timeout = healthTimeout
        let running = rows.indices.filter { rows[$0].state == JobState.running.rawValue }
        guard !running.isEmpty else { return rows }
        let replicated = Set(rows.lazy.filter { $0.replica != nil }.map(\.name))
        return await withTaskGroup(of: (Int, Probe).self) { group in
            for i in running {
                if !replicated.isEmpty, replicated.contains(rows[i].name), let url = rows[i].url {
                    group.addTask { (i, await Self.requests(url: url, http: http, timeout: timeout)) }
                }
                guard let url = rows[i].tunnelURL.map({ String($0.dropLast("/v1".count)) }) ?? rows[i].url
                else {
                    continue
                }
                group.addTask {
                    do {
                        let r = try await http.send(
                            HTTPRequest(url: url + "/health", connectTimeout: timeout, timeout: timeout))
                        return (
                            i,
                            .health(
                                r.status == 200 ? .healthy : .unhealthy,
                                detail: r.status == 200 ? nil : "HTTP \(r.status)")
                        )
                    } catch {
                        return (i, .health(DeploymentStatus.health(after: error), detail: "\(error)"))
                    }
                }
            }
            var out = rows
            for await (i, probe) in group {
                switch probe {
                case .health(let health, let detail):
                    out[i].health = health
                    out[i].healthDetail = detail
                case .requests(let running, let waiting):
                    out[i].requestsRunning = running
                    out[i].requestsWaiting = waiting
                case .requestsUnknown(let why):
                    out[i].requestsDetail = why
                }
            }
            return out
        }
    }

    /// A server's running and waiting requests from its /metrics (asked at its own URL: over
    /// the SSH session from a laptop, never through a balancing tunnel, which would answer
    /// for whichever replica it picked).
    static func requests(url: String, http: any HTTPClient, timeout: Double) async -> Probe {
        do {
            let r = try await http.send(
                HTTPRequest(url: url + "/metrics", connectTimeout: timeout, timeout: timeout))
            guard r.status == 200 else { return .requestsUnknown("/metrics answered \(r.status)") }
            let samples = PrometheusText.parse(r.text)
            guard let running = PrometheusText.total(samples, "vllm:num_requests_running"),
                let waiting = PrometheusText.total(samples, "vllm:num_requests_waiting"),
                running.isFinite, waiting.isFinite, running >= 0, waiting >= 0, running < 1e9, waiting < 1e9
            else { return .requestsUnknown("/metrics has no vllm:num_requests_running/waiting") }
            return .requests(running: Int(running), waiting: Int(waiting))
        } catch {
            return .requestsUnknown("\(error)")
        }
    }
}

/// A fixed-width text table.
public enum StatusTable {
    /// `listTunnels`: a "Tunnels:" line under the table (the detail view has its own).
    public static func render(_ rows: [DeploymentStatus], listTunnels: Bool = true) -> String {
        // Requests running/waiting: a column only when a deployment has replicas.
        let requests = rows.contains {
            $0.replica != nil || $0.requestsDetail != nil || $0.requestsRunning != nil
        }
        var header = ["NAME", "JOB", "MODEL", "STATE", "NODE", "URL", "HEALTH", "UPTIME", "LEFT"]
        if requests { header.insert("RUN/WAIT", at: 7) }
        let columns = header.count
        // Every cell, row after row, with its width: each measured once. Built as bytes in one
        // buffer: the table has a line per job, thousands with a busy queue.
        var cells: [String] = []
        cells.reserveCapacity((rows.count + 1) * columns)
        cells += header
        for r in rows {
            var state = r.state
            if let reason = r.reason { state += " (\(reason))" }
            var left = r.timeLeftSeconds.map(SlurmTime.short) ?? (r.state == "RUNNING" ? "unlimited" : "-")
            if r.walltimeLow { left += " !" }
            cells.append(r.displayName)
            cells.append(r.jobID)
            cells.append(r.servedModelName ?? r.model ?? "-")
            cells.append(state)
            cells.append(r.node ?? "-")
            cells.append(r.url.map { $0 + "/v1" } ?? "-")
            cells.append(r.health == .unchecked ? "-" : r.health.rawValue)
            if requests { cells.append(requestsCell(r)) }
            cells.append(
                r.state == JobState.running.rawValue ? (r.elapsedSeconds.map(SlurmTime.short) ?? "-") : "-")
            cells.append(left)
        }
        let cellWidths = cells.map(width)
        var widths = [Int](repeating: 0, count: columns)
        for (i, w) in cellWidths.enumerated() where w > widths[i % columns] { widths[i % columns] = w }
        var bytes: [UInt8] = []
        bytes.reserveCapacity((rows.count + 1) * (widths.reduce(0, +) + 2 * columns + 1))
        for (i, cell) in cells.enumerated() {
            let c = i % columns
            if c > 0 {
                bytes.append(UInt8(ascii: " "))
                bytes.append(UInt8(ascii: " "))
            } else if i > 0 {
                bytes.append(UInt8(ascii: "\n"))
            }
            bytes.append(contentsOf: cell.utf8)
            if c < columns - 1 {
                bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: widths[c] - cellWidths[i]))
            }
        }
        var text = String(decoding: bytes, as: UTF8.self)
        let tunneled = listTunnels ? rows.filter { $0.tunnelURL != nil } : []
        if !tunneled.isEmpty {
            text +=
                "\nTunnels: "
                + tunneled.map { "\($0.displayName) → \($0.tunnelURL ?? "")" }.joined(separator: ", ")
        }
        for r in rows {
            guard let chain = r.renewal else { continue }
            text +=
                "\nRenewal \(chain.renewal) of \(r.displayName) (job \(r.jobID), \(chain.state)): \(chain.message) [successors submitted \(chain.fromText)]"
        }
        for r in rows {
            guard let gap = r.down else { continue }
            text += "\n\(r.displayName) is \(gap.message)."
        }
        let renewing = Set(rows.filter { $0.renewal != nil }.map(\.displayName))
        if rows.contains(where: { $0.walltimeLow && !renewing.contains($0.displayName) }) {
            text += "\n! less than 10 minutes of walltime left: deploy a replacement now."
        }
        return text + "\n"
    }

    /// `running/waiting`, `unknown` when /metrics could not be read, `-` when not asked.
    static func requestsCell(_ r: DeploymentStatus) -> String {
        if let running = r.requestsRunning, let waiting = r.requestsWaiting { return "\(running)/\(waiting)" }
        return r.requestsDetail == nil ? "-" : "unknown"
    }

    /// Characters in `cell` (its UTF-8 length when it is ASCII, as cells nearly always are).
    static func width(_ cell: String) -> Int {
        var cell = cell
        let ascii = cell.withUTF8 { bytes in bytes.allSatisfy { $0 < 0x80 } ? bytes.count : nil }
        return ascii ?? cell.count
    }
}
