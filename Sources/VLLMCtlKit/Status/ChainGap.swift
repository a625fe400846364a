import Foundation

/// A renewing deployment that is down between two jobs of its chain (docs/RENEW.md): the job
/// that served last has ended, and its successor is still pending (or loading). `status`
/// says so on the successor's row, in words and in `--json` (`down`).
public struct ChainGap: Sendable, Equatable, Codable {
    /// The job whose connection file is the deployment's last published one (it has ended).
    public var predecessor: String
    /// The successor the deployment waits for (the row's own job).
    public var successor: String
    /// What the deployment waits for, in words.
    public var message: String

    public init(predecessor: String, successor: String, message: String) {
        self.predecessor = predecessor
        self.successor = successor
        self.message = message
    }

    /// The gap, if `job` (state and pending reason as squeue said) is the successor a renewing
    /// deployment waits for: the deployment's connection file (untrusted: a file on the
    /// cluster) names another job, which is not live (`isLive` false: squeue no longer lists
    /// it, or lists it in a final state). Nil when the file names this job or a live one, when
    /// there is no file (a first job), or when the job is neither pending nor running.
    public static func find(
        jobID: String, state: JobState, reason: String?, published: ConnectionRecord?,
        isLive: (String) -> Bool
    ) -> ChainGap? {
        guard let published, isJobID(published.jobID), published.jobID != jobID, !isLive(published.jobID)
        else { return nil }
        let why =
            reason.map { ": it is pending (\($0)\(words($0, jobID: jobID).map { ": " + $0 } ?? ""))" } ?? ""
        let message: String
        switch state {
        case .pending:
            message =
                "down until successor job \(jobID) starts\(why); job \(published.jobID) served last and has ended"
        case .running:
            message =
                "down until successor job \(jobID) is ready (it is loading); job \(published.jobID) served last and has ended"
        default:
            return nil
        }
        return ChainGap(predecessor: published.jobID, successor: jobID, message: message)
    }

    /// Slurm's common pending reasons for `jobID`, in words (nil for others: shown as Slurm
    /// says them).
    static func words(_ reason: String, jobID: String) -> String? {
        if reason == "JobHeldUser" { return "it is held; `scontrol release \(jobID)` lets it start" }
        return plainWords[reason]
    }

    static let plainWords: [String: String] = [
        "Priority": "jobs of higher priority are ahead of it",
        "Resources": "it waits for free nodes",
        "BeginTime": "its begin time has not come",
        "JobHeldAdmin": "an administrator holds it",
        "QOSMaxJobsPerUserLimit": "you have as many jobs running as your QOS allows",
        "AssocGrpGRES": "your account's GPU limit is reached",
    ]
}
