import Foundation

/// A job as the scheduler reports it, from squeue (live) or sacct (ended).
public struct JobSnapshot: Sendable, Equatable {
    public var jobID: String
    public var name: String
    public var user: String
    public var state: JobState
    /// squeue's reason (`Resources`, `Priority`, `ReqNodeNotAvail`, ...) or "None".
    public var reason: String
    public var nodes: String
    /// Elapsed run time in Slurm's format.
    public var elapsed: String
    /// Time left in Slurm's format (squeue only).
    public var timeLeft: String
    public var exitCode: String
    /// The job's working directory: for vllmctl's jobs, the deployment directory.
    public var workDir: String
    /// What the job asked for (partition, account, QOS, limits), as `Key=value` pairs in
    /// ``Squeue/detailKeys`` order; only from a detail squeue (`Squeue(detail: true)`).
    public var resources: [(key: String, value: String)] = []

    public init(
        jobID: String, name: String = "", user: String = "", state: JobState, reason: String = "",
        nodes: String = "", elapsed: String = "", timeLeft: String = "", exitCode: String = "",
        workDir: String = ""
    ) {
        self.jobID = jobID
        self.name = name
        self.user = user
        self.state = state
        self.reason = reason
        self.nodes = nodes
        self.elapsed = elapsed
        self.timeLeft = timeLeft
        self.exitCode = exitCode
        self.workDir = workDir
    }

    public static func == (a: JobSnapshot, b: JobSnapshot) -> Bool {
        a.jobID == b.jobID && a.name == b.name && a.user == b.user && a.state == b.state
            && a.reason == b.reason && a.nodes == b.nodes && a.elapsed == b.elapsed
            && a.timeLeft == b.timeLeft && a.exitCode == b.exitCode && a.workDir == b.workDir
            && a.resources.elementsEqual(b.resources) { $0.key == $1.key && $0.value == $1.value }
    }
}

/// Marks that split squeue's and sacct's output into rows and fields. A job's own fields are
/// hostile: Slurm takes any byte but NUL in a job name (a newline, `|`, the unit separator)
/// and in a working directory, so a fixed separator lets one job forge another's row. The
/// marks carry a token drawn fresh for every call, after every job was named: no name can hold
/// it. Each field is then exactly what Slurm printed for it.
public struct SchedulerMarks: Sendable, Equatable {
    public let token: String

    public init(token: String) { self.token = token }

    /// A fresh random token (12 hex digits from the OS CSPRNG).
    public static func fresh() -> SchedulerMarks {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef")
        return SchedulerMarks(
            token: String((0..<12).map { _ in digits[Int.random(in: 0..<16, using: &generator)] }))
    }

    /// Before each row (squeue) and between fields.
    var row: String { "\u{1E}" + token }
    var field: String { "\u{1F}" + token }

    /// The rows of `output` whose fields are split at `field`, each with exactly `count` fields.
    /// Rows start with `row` (squeue), or, when `rowStart` is false, end with `field` and a
    /// newline (sacct --parsable, which ends every row with its delimiter).
    func rows(_ output: String, count: Int, rowStart: Bool) -> [[String]] {
        var rows: [[String]] = []
        forEachRow(output, count: count, rowStart: rowStart) { rows.append($0) }
        return rows
    }

    /// Calls `body` with the fields of each row of ``rows(_:count:rowStart:)``, in one buffer
    /// that is reused (squeue's output for a busy queue has thousands of rows).
    func forEachRow(_ output: String, count: Int, rowStart: Bool, _ body: ([String]) -> Void) {
        let fieldMark = Array(field.utf8)
        let rowMark = Array(row.utf8)
        var text = output
        text.withUTF8 { bytes in
            guard let base = bytes.baseAddress else { return }
            let end = bytes.count
            func matches(_ mark: [UInt8], at i: Int) -> Bool {
                guard i + mark.count <= end else { return false }
                return mark.withUnsafeBufferPointer { memcmp(base + i, $0.baseAddress!, mark.count) == 0 }
            }
            func string(_ from: Int, _ to: Int) -> String {
                String(
                    decoding: UnsafeBufferPointer(start: base + from, count: max(0, to - from)), as: UTF8.self
                )
            }
            /// Where `byte` next occurs at or after `from`, or `end`.
            func find(_ byte: UInt8, from: Int) -> Int {
                guard from < end, let p = memchr(base + from, Int32(byte), end - from) else { return end }
                return base.distance(to: p.assumingMemoryBound(to: UInt8.self))
            }
            // Only a mark's first byte (0x1E, 0x1F) can start anything: memchr finds the next.
            var next1E = -1
            var next1F = -1
            var fields: [String] = []
            fields.reserveCapacity(count)
            var start = 0
            var inRow = !rowStart
            var i = 0
            func endRow(at end: Int) {
                var last = end
                // squeue ends a row with a newline before the next row's mark.
                if rowStart, last > start, base[last - 1] == 0x0A { last -= 1 }
                fields.append(string(start, last))
                if fields.count == count { body(fields) }
                fields.removeAll(keepingCapacity: true)
            }
            while true {
                if next1F < i { next1F = find(0x1F, from: i) }
                if rowStart && next1E < i { next1E = find(0x1E, from: i) }
                i = rowStart ? min(next1E, next1F) : next1F
                guard i < end else { break }
                let b = base[i]
                if rowStart && b == 0x1E && matches(rowMark, at: i) {
                    if inRow { endRow(at: i) }
                    inRow = true
                    i += rowMark.count
                    start = i
                    continue
                }
                if b == 0x1F && matches(fieldMark, at: i) {
                    if inRow {
                        if !rowStart && fields.count == count - 1 {
                            endRow(at: i)
                            i += fieldMark.count
                            // The row's newline.
                            if i < end && base[i] == 0x0A { i += 1 }
                            start = i
                            continue
                        }
                        fields.append(string(start, i))
                    }
                    i += fieldMark.count
                    start = i
                    continue
                }
                i += 1
            }
            if rowStart && inRow { endRow(at: end) }
        }
    }
}

/// A job id as vllmctl accepts one from the scheduler or a user: digits only. Array and het
/// job ids (`12_3`, `12+1`) are never vllmctl's, and nothing that could read as an option
/// (`-u`) or another job list reaches scancel.
public func isJobID(_ text: String) -> Bool {
    !text.isEmpty && text.utf8.count <= 20 && text.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
}

/// `squeue` for some or all of the user's jobs: one row per job, split by `marks`.
public struct Squeue: Sendable, Equatable {
    public var jobIDs: [String]
    public var user: String?
    public var marks: SchedulerMarks
    /// Also what the job asked for (``JobSnapshot/resources``), for `status JOB`.
    public var detail: Bool

    public init(
        jobIDs: [String] = [], user: String? = nil, detail: Bool = false, marks: SchedulerMarks = .fresh()
    ) {
        self.jobIDs = jobIDs
        self.user = user
        self.detail = detail
        self.marks = marks
    }

    static let fields = ["%i", "%u", "%T", "%r", "%N", "%M", "%L", "%j", "%Z"]
    /// The detail fields: squeue's letters and the names `status JOB` shows them under
    /// (scontrol's names, which Slurm users know).
    static let detailFields: [(letter: String, key: String)] = [
        ("%P", "Partition"), ("%a", "Account"), ("%q", "QOS"), ("%l", "TimeLimit"), ("%C", "NumCPUs"),
        ("%b", "TresPerNode"), ("%m", "MinMemoryNode"), ("%S", "StartTime"),
    ]
    /// The names of ``JobSnapshot/resources``, in order.
    public static var detailKeys: [String] { detailFields.map(\.key) }

    var format: [String] { Self.fields + (detail ? Self.detailFields.map(\.letter) : []) }

    public var argv: [String] {
        var argv = [
            "squeue", "--noheader", "--format=" + marks.row + format.joined(separator: marks.field),
        ]
        if !jobIDs.isEmpty { argv.append("--jobs=" + jobIDs.joined(separator: ",")) }
        if let user { argv.append("--user=" + user) }
        return argv
    }

    /// The jobs in squeue's output for this call; rows whose job id is not a plain job id
    /// are dropped.
    public func parse(_ output: String) -> [JobSnapshot] {
        let detail = self.detail
        var jobs: [JobSnapshot] = []
        marks.forEachRow(output, count: format.count, rowStart: true) { f in
            guard isJobID(f[0]) else { return }
            var job = JobSnapshot(
                jobID: f[0], name: f[7], user: f[1], state: JobState(slurm: f[2]), reason: f[3], nodes: f[4],
                elapsed: f[5], timeLeft: f[6], workDir: f[8])
            if detail {
                job.resources = zip(Self.detailKeys, f[Self.fields.count...]).compactMap { key, value in
                    // squeue prints N/A (or (null)) for what the job did not ask for.
                    value.isEmpty || value == "N/A" || value == "(null)" ? nil : (key, value)
                }
            }
            jobs.append(job)
        }
        return jobs
    }

    /// squeue exits non-zero with this message when asked for a job that has left the queue.
    public static func isInvalidJobError(_ stderr: String) -> Bool {
        stderr.contains("Invalid job id specified")
    }
}

/// `sacct` for jobs that may have ended: one allocation row per job (`-X`), fields split by
/// `marks` (`--parsable --delimiter`, which also ends every row with the delimiter).
public struct Sacct: Sendable, Equatable {
    public var jobIDs: [String]

    /// With `user`, all of that user's jobs since `since` (a Slurm time such as `now-7days`).
    public var user: String?
    public var since: String?
    public var marks: SchedulerMarks

    public init(jobIDs: [String], marks: SchedulerMarks = .fresh()) {
        self.jobIDs = jobIDs
        self.marks = marks
    }

    public init(user: String, since: String, marks: SchedulerMarks = .fresh()) {
        self.jobIDs = []
        self.user = user
        self.since = since
        self.marks = marks
    }

    static let fields = [
        "JobID", "JobName", "User", "State", "Reason", "NodeList", "Elapsed", "ExitCode", "WorkDir",
    ]

    public var argv: [String] {
        var argv = [
            "sacct", "--noheader", "--parsable", "--delimiter=" + marks.field, "--allocations",
            "--format=" + Self.fields.joined(separator: ","),
        ]
        if !jobIDs.isEmpty { argv.append("--jobs=" + jobIDs.joined(separator: ",")) }
        if let user { argv += ["--user=" + user, "--starttime=" + (since ?? "now-7days")] }
        return argv
    }

    public func parse(_ output: String) -> [JobSnapshot] {
        marks.rows(output, count: Self.fields.count, rowStart: false).compactMap { f in
            guard isJobID(f[0]) else { return nil }
            return JobSnapshot(
                jobID: f[0], name: f[1], user: f[2], state: JobState(slurm: f[3]), reason: f[4], nodes: f[5],
                elapsed: f[6], exitCode: f[7], workDir: f[8])
        }
    }
}

/// `sbatch --parsable SCRIPT`: prints `JOBID` or `JOBID;CLUSTER`.
public struct Sbatch: Sendable, Equatable {
    public var scriptPath: String

    public init(scriptPath: String) { self.scriptPath = scriptPath }

    public var argv: [String] { ["sbatch", "--parsable", scriptPath] }

    /// The job id from sbatch's output. A warning on stderr with exit 0 is still success.
    public static func parseJobID(_ result: CommandResult, argv: [String]) throws -> String {
        let line = result.stdout.split(whereSeparator: \.isNewline).last.map(String.init) ?? ""
        let id = line.split(separator: ";").first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
        if result.status == 0, !id.isEmpty, id.allSatisfy(\.isNumber) {
            return id
        }
        throw SlurmErrors.explain(
            sbatchStderr: result.stderr.isEmpty ? result.stdout : result.stderr, status: result.status)
    }
}

/// `scancel JOBID...`: plain job ids only (`isJobID`), after `--` so that none reads as an
/// option.
public struct Scancel: Sendable, Equatable {
    public var jobIDs: [String]

    public init(jobIDs: [String]) { self.jobIDs = jobIDs }

    /// Throws (cancelling nothing) when any id is not a plain job id.
    public func checkedArgv() throws -> [String] {
        if let bad = jobIDs.first(where: { !isJobID($0) }) {
            throw VLLMCtlError.invalidInput(
                "`\(bad)` is not a job id, so nothing was cancelled",
                hint: "Give job ids as digits, or deployment names; `vllmctl status` lists them.")
        }
        return argv
    }

    public var argv: [String] { ["scancel", "--"] + jobIDs }
}

/// Turns Slurm's terse errors into plain words.
public enum SlurmErrors {
    public static func explain(sbatchStderr stderr: String, status: Int32) -> VLLMCtlError {
        let message = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        let lower = message.lowercased()
        let explanation: String
        if lower.contains("invalid partition") {
            explanation =
                "The partition does not exist on this cluster. List the partitions with `sinfo -s` and set `partition` in the cluster profile or pass --partition."
        } else if lower.contains("invalid account") || lower.contains("invalid account or account/partition")
        {
            explanation =
                "Your user cannot charge that account (or not on that partition). See yours with `sacctmgr show assoc user=$USER` and set `account`."
        } else if lower.contains("invalid qos") {
            explanation =
                "That QOS does not exist or is not allowed for you. See `sacctmgr show assoc user=$USER format=qos` and set `qos`."
        } else if lower.contains("requested node configuration is not available") {
            explanation =
                "No node in the partition has what the job asks for (GPUs, CPUs, memory or constraint). Ask for less, or pick another partition; `sinfo -o '%P %G %c %m %f'` shows what nodes have."
        } else if lower.contains("time limit") {
            explanation =
                "The requested time is above the partition's limit. Lower --time; `sinfo -o '%P %l'` shows the limits."
        } else if lower.contains("invalid generic resource") || lower.contains("invalid gres") {
            explanation =
                "The cluster does not know that GPU request. Try `gpu_request: gpus` (or `gres`) in the cluster profile, or check `sinfo -o '%P %G'`."
        } else if lower.contains("unable to contact slurm controller") || lower.contains("connection refused")
        {
            explanation =
                "The Slurm controller is not answering. Try again in a minute; if it persists, ask your cluster admins."
        } else {
            explanation =
                "sbatch exited with status \(status). Check the options in the rendered script with `vllmctl deploy … --dry-run`."
        }
        return .slurm(
            message: message.isEmpty ? "sbatch exited with status \(status) and printed nothing" : message,
            explanation: explanation)
    }
}

/// Slurm's durations: `D-HH:MM:SS`, `HH:MM:SS`, `MM:SS`, `UNLIMITED`, ...
public enum SlurmTime {
    /// Seconds, or nil for UNLIMITED, INVALID, NOT_SET and empty.
    public static func seconds(_ text: String) -> Int? {
        // One pass over the bytes: [D-]a[:b[:c]], the parts in three integers (no array:
        // `status` reads two of these per job, thousands in a busy queue).
        var days: Int?
        var parts = (0, 0, 0)
        var count = 0
        var current = 0
        var digits = 0
        func push() -> Bool {
            switch count {
            case 0: parts.0 = current
            case 1: parts.1 = current
            case 2: parts.2 = current
            default: return false
            }
            count += 1
            current = 0
            digits = 0
            return true
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                // No part of a Slurm duration has 10 digits; more would overflow.
                guard digits < 9 else { return nil }
                current = current * 10 + Int(byte - UInt8(ascii: "0"))
                digits += 1
            case UInt8(ascii: "-") where days == nil && count == 0 && digits > 0:
                days = current
                current = 0
                digits = 0
            case UInt8(ascii: ":") where digits > 0:
                guard push() else { return nil }
            case UInt8(ascii: " "):
                continue
            default:
                return nil
            }
        }
        guard digits > 0, push() else { return nil }
        let d = days ?? 0
        let hms: Int
        switch count {
        case 3: hms = parts.0 * 3600 + parts.1 * 60 + parts.2
        case 2: hms = days != nil ? parts.0 * 3600 + parts.1 * 60 : parts.0 * 60 + parts.1
        default: hms = days != nil ? parts.0 * 3600 : parts.0 * 60
        }
        return d * 86400 + hms
    }

    /// A short human form: `2h05m`, `3m10s`, `1d04h`.
    public static func short(_ seconds: Int) -> String {
        // Two digits without `String(format:)`, which costs microseconds a call through
        // Foundation: `status` formats two of these per job, thousands in a busy queue.
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        if seconds >= 86400 { return "\(seconds / 86400)d\(two(seconds % 86400 / 3600))h" }
        if seconds >= 3600 { return "\(seconds / 3600)h\(two(seconds % 3600 / 60))m" }
        if seconds >= 60 { return "\(seconds / 60)m\(two(seconds % 60))s" }
        return "\(seconds)s"
    }
}
