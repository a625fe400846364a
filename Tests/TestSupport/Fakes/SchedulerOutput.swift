import Foundation

@testable import VLLMCtlKit

/// What squeue prints for `jobs` when called with `argv` (whose `--format` carries the call's
/// marks), one row per job in `Squeue`'s format (fields past time-left stay empty).
package func squeueOutput(_ jobs: [JobSnapshot], for argv: [String]) -> String {
    let format = argv.first { $0.hasPrefix("--format=\u{1E}") } ?? ""
    let token = String(format.dropFirst("--format=\u{1E}".count).prefix { $0 != "%" })
    let marks = SchedulerMarks(token: token)
    let detail = format.contains("%P")
    return jobs.map { j in
        var fields = [
            j.jobID, j.user, j.state.rawValue, j.reason, j.nodes, j.elapsed, "10:00", j.name, j.workDir,
        ]
        if detail {
            fields += Squeue.detailKeys.map { key in j.resources.first { $0.key == key }?.value ?? "N/A" }
        }
        return marks.row + fields.joined(separator: marks.field) + "\n"
    }.joined()
}

/// What sacct prints for `jobs` when called with `argv` (whose `--delimiter` carries the marks).
package func sacctOutput(_ jobs: [JobSnapshot], for argv: [String]) -> String {
    let delimiter = String(
        (argv.first { $0.hasPrefix("--delimiter=") } ?? "").dropFirst("--delimiter=".count))
    return jobs.map { j in
        [j.jobID, j.name, j.user, j.state.rawValue, j.reason, j.nodes, j.elapsed, "0:0", j.workDir, ""]
            .joined(separator: delimiter) + "\n"
    }.joined()
}
