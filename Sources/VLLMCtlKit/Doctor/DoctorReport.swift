import Foundation

/// How one `vllmctl doctor` check came out.
public enum DoctorVerdict: String, Sendable, Equatable, Codable, Comparable {
    case ok
    /// Works, but something is likely to bite (a proxy that would catch the cluster's nodes).
    case warning
    /// Deploying or reaching a server will fail until this is fixed.
    case problem

    private var rank: Int {
        switch self {
        case .ok: 0
        case .warning: 1
        case .problem: 2
        }
    }

    public static func < (a: DoctorVerdict, b: DoctorVerdict) -> Bool { a.rank < b.rank }
}

/// One check's result: a one-line verdict and, for anything not ok, the exact next step.
public struct DoctorCheck: Sendable, Equatable, Codable {
    /// A stable id for scripts: `config`, `ssh.login`, `slurm.partition`, ...
    public var id: String
    /// What was checked, for people: `ssh login`, `partition`.
    public var title: String
    public var verdict: DoctorVerdict
    /// What was found, one line.
    public var detail: String
    /// What to do next; nil when the check is ok.
    public var fix: String?

    public init(id: String, title: String, verdict: DoctorVerdict, detail: String, fix: String? = nil) {
        self.id = id
        self.title = title
        self.verdict = verdict
        self.detail = detail
        self.fix = verdict == .ok ? nil : fix
    }

    static func ok(_ id: String, _ title: String, _ detail: String) -> DoctorCheck {
        DoctorCheck(id: id, title: title, verdict: .ok, detail: detail)
    }
}

/// Everything `vllmctl doctor` found, in the order it checked.
public struct DoctorReport: Sendable, Equatable {
    /// The profile checked (nil when the configuration could not be read).
    public var cluster: String?
    public var checks: [DoctorCheck]
    public var seconds: Double

    public init(cluster: String?, checks: [DoctorCheck], seconds: Double = 0) {
        self.cluster = cluster
        self.checks = checks
        self.seconds = seconds
    }

    public var problems: Int { checks.count { $0.verdict == .problem } }
    public var warnings: Int { checks.count { $0.verdict == .warning } }

    /// 0 when nothing is a problem (warnings allowed), 1 otherwise.
    public var exitStatus: Int32 { problems == 0 ? 0 : 1 }

    public func check(_ id: String) -> DoctorCheck? { checks.first { $0.id == id } }

    /// One line per check (`ok`, `warning`, `problem`), the fix indented under it, then a summary.
    public var text: String {
        let width = (checks.map(\.title.count).max() ?? 0) + 2
        var lines: [String] = []
        for check in checks {
            let verdict = check.verdict.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
            let title = check.title.padding(toLength: width, withPad: " ", startingAt: 0)
            lines.append("\(verdict)\(title)\(check.detail)")
            if let fix = check.fix {
                lines.append(String(repeating: " ", count: 9 + width) + "fix: " + fix)
            }
        }
        let time = String(format: "%.2f s", seconds)
        if problems == 0 && warnings == 0 {
            lines.append("\nNo problems found (\(checks.count) checks, \(time)).")
        } else {
            func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
            lines.append(
                "\n\(plural(problems, "problem")), \(plural(warnings, "warning")) (\(checks.count) checks, \(time))."
            )
        }
        return lines.joined(separator: "\n")
    }

    /// `{"cluster", "ok", "problems", "warnings", "seconds", "checks": [{id, title, verdict, detail, fix}]}`.
    public var json: String {
        struct Body: Encodable {
            var cluster: String?
            var ok: Bool
            var problems: Int
            var warnings: Int
            var seconds: Double
            var checks: [DoctorCheck]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let body = Body(
            cluster: cluster, ok: problems == 0, problems: problems, warnings: warnings,
            seconds: (seconds * 1000).rounded() / 1000, checks: checks)
        return String(decoding: (try? encoder.encode(body)) ?? Data("{}".utf8), as: UTF8.self)
    }
}
