import Foundation

/// Since when each deployment's server has been seen unhealthy: one small file per job,
/// `CLUSTER/JOBID.unhealthy-since` beside the records, holding an ISO 8601 time. `teardown
/// --stale` writes a mark the first time it finds a server unhealthy and removes it once the
/// server answers again, so the grace period runs from the first bad answer.
public struct HealthMarks: Sendable {
    public let directory: String
    public static let suffix = ".unhealthy-since"

    public init(records: DeploymentStore, cluster: String) {
        directory = records.directory + "/" + cluster
    }

    private func path(_ jobID: String) -> String { directory + "/" + jobID + Self.suffix }

    /// Every mark, by job id.
    public func all() -> [String: Date] {
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [:] }
        var marks: [String: Date] = [:]
        for file in files where file.hasSuffix(Self.suffix) {
            let jobID = String(file.dropLast(Self.suffix.count))
            guard let data = FileManager.default.contents(atPath: directory + "/" + file),
                let date = ISO8601DateFormatter().date(
                    from: String(decoding: data, as: UTF8.self).trimmingCharacters(
                        in: .whitespacesAndNewlines))
            else { continue }
            marks[jobID] = date
        }
        return marks
    }

    /// Makes the marks exactly `marks`: writes new or changed ones, removes the rest. Call it
    /// under the records lock.
    public func replace(with marks: [String: Date]) throws {
        let old = all()
        for (jobID, date) in marks where old[jobID] != date {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try LocalFiles.writeAtomically(
                Data((ISO8601DateFormatter().string(from: date) + "\n").utf8), to: path(jobID), mode: 0o600)
        }
        for jobID in old.keys where marks[jobID] == nil { try remove(jobID) }
    }

    /// Forgets one job's mark (a missing mark is not an error).
    public func remove(_ jobID: String) throws {
        if unlink(path(jobID)) != 0 && errno != ENOENT {
            throw VLLMCtlError.file(
                path: path(jobID), message: "cannot be removed: \(String(cString: strerror(errno)))")
        }
    }
}
