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
}

/// Field separator for squeue output: a job name may contain `|`, but not the unit separator.
let squeueSeparator = "\u{1F}"

/// `squeue` for some or all of the user's jobs, one line per job, fields separated by US.
public struct Squeue: Sendable, Equatable {
    public var jobIDs: [String]
    public var user: String?

    public init(jobIDs: [String] = [], user: String? = nil) {
        self.jobIDs = jobIDs
        self.user = user
    }

    static let fields = ["%i", "%j", "%u", "%T", "%r", "%N", "%M", "%L", "%Z"]

    public var argv: [String] {
        var argv = ["squeue", "--noheader", "--format=" + Self.fields.joined(separator: squeueSeparator)]
        if !jobIDs.isEmpty { argv.append("--jobs=" + jobIDs.joined(separator: ",")) }
        if let user { argv.append("--user=" + user) }
        return argv
    }

    public static func parse(_ output: String) -> [JobSnapshot] {
        // One pass over the bytes: status tables have thousands of lines.
        var jobs: [JobSnapshot] = []
        var fields: [String] = []
        fields.reserveCapacity(Self.fields.count)
        func emit() {
            if fields.count == Self.fields.count, !fields[0].isEmpty {
                jobs.append(
                    JobSnapshot(
                        jobID: fields[0], name: fields[1], user: fields[2], state: JobState(slurm: fields[3]),
                        reason: fields[4], nodes: fields[5], elapsed: fields[6], timeLeft: fields[7],
                        workDir: fields[8]))
            }
            fields.removeAll(keepingCapacity: true)
        }
        var text = output
        text.withUTF8 { bytes in
            var start = 0
            for i in 0..<bytes.count where bytes[i] == 0x1F || bytes[i] == 0x0A {
                fields.append(
                    String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))
                start = i + 1
                if bytes[i] == 0x0A { emit() }
            }
            if start < bytes.count {
                fields.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[start...]), as: UTF8.self))
            }
            if !fields.isEmpty { emit() }
        }
        return jobs
    }

    /// squeue exits non-zero with this message when asked for a job that has left the queue.
    public static func isInvalidJobError(_ stderr: String) -> Bool {
        stderr.contains("Invalid job id specified")
    }
}

/// `sacct` for jobs that may have ended: one allocation line per job (`-X`), `|`-separated.
public struct Sacct: Sendable, Equatable {
    public var jobIDs: [String]

    /// With `user`, all of that user's jobs since `since` (a Slurm time such as `now-7days`).
    public var user: String?
    public var since: String?

    public init(jobIDs: [String]) { self.jobIDs = jobIDs }

    public init(user: String, since: String) {
        self.jobIDs = []
        self.user = user
        self.since = since
    }

    static let fields = [
        "JobID", "JobName", "User", "State", "Reason", "NodeList", "Elapsed", "ExitCode", "WorkDir",
    ]

    public var argv: [String] {
        var argv = [
            "sacct", "--noheader", "--parsable2", "--allocations",
            "--format=" + Self.fields.joined(separator: ","),
        ]
        if !jobIDs.isEmpty { argv.append("--jobs=" + jobIDs.joined(separator: ",")) }
        if let user { argv += ["--user=" + user, "--starttime=" + (since ?? "now-7days")] }
        return argv
    }

    public static func parse(_ output: String) -> [JobSnapshot] {
        output.split(whereSeparator: \.isNewline).compactMap { line in
            let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= fields.count, !f[0].isEmpty else { return nil }
            // A job name with `|` shifts the later fields; take them from the end.
            let n = f.count
            return JobSnapshot(
                jobID: f[0], name: f[1..<(n - 7)].joined(separator: "|"), user: f[n - 7],
                state: JobState(slurm: f[n - 6]), reason: f[n - 5], nodes: f[n - 4],
                elapsed: f[n - 3], exitCode: f[n - 2], workDir: f[n - 1])
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

/// `scancel JOBID...`.
public struct Scancel: Sendable, Equatable {
    public var jobIDs: [String]
    /// With `user`, all of that user's jobs since `since` (a Slurm time such as `now-7days`).
    public var user: String?
    public var since: String?

    public init(jobIDs: [String]) { self.jobIDs = jobIDs }

    public init(user: String, since: String) {
        self.jobIDs = []
        self.user = user
        self.since = since
    }
    public var argv: [String] { ["scancel"] + jobIDs }
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
        // One pass over the bytes: [D-]a[:b[:c]].
        var days: Int?
        var parts: [Int] = []
        var current = 0
        var digits = 0
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                current = current * 10 + Int(byte - UInt8(ascii: "0"))
                digits += 1
            case UInt8(ascii: "-") where days == nil && parts.isEmpty && digits > 0:
                days = current
                current = 0
                digits = 0
            case UInt8(ascii: ":") where digits > 0:
                parts.append(current)
                current = 0
                digits = 0
            case UInt8(ascii: " "):
                continue
            default:
                return nil
            }
        }
        guard digits > 0 else { return nil }
        parts.append(current)
        let d = days ?? 0
        let hms: Int
        switch parts.count {
        case 3: hms = parts[0] * 3600 + parts[1] * 60 + parts[2]
        case 2: hms = days != nil ? parts[0] * 3600 + parts[1] * 60 : parts[0] * 60 + parts[1]
        case 1: hms = days != nil ? parts[0] * 3600 : parts[0] * 60
        default: return nil
        }
        return d * 86400 + hms
    }

    /// A short human form: `2h05m`, `3m10s`, `1d04h`.
    public static func short(_ seconds: Int) -> String {
        if seconds >= 86400 { return "\(seconds / 86400)d\(String(format: "%02d", seconds % 86400 / 3600))h" }
        if seconds >= 3600 { return "\(seconds / 3600)h\(String(format: "%02d", seconds % 3600 / 60))m" }
        if seconds >= 60 { return "\(seconds / 60)m\(String(format: "%02d", seconds % 60))s" }
        return "\(seconds)s"
    }
}
