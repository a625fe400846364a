import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Which jobs vllmctl may cancel: those the scheduler lists under the current user AND whose
/// name carries vllmctl's tag (`vllmctl-NAME`). A plain sbatch job of the same user is not
/// ours, nor is a `vllmctl-…` job of someone else. The scheduler's answer decides, never a
/// local record alone: Slurm reuses job ids.
public struct Ownership: Sendable, Equatable {
    public var user: String

    public init(user: String) { self.user = user }

    public func isOurs(_ job: JobSnapshot) -> Bool {
        !user.isEmpty && job.user == user && Self.isTagged(job.name)
    }

    /// `vllmctl-NAME` with no control characters or whitespace: vllmctl's names never hold
    /// them, and a name that does (Slurm takes any byte) was made to look like something else.
    public static func isTagged(_ name: String) -> Bool {
        guard name.hasPrefix(JobName.prefix) else { return false }
        // Printable ASCII without a space, as vllmctl's own names are: decided on the bytes.
        // Only other names pay for the Unicode properties (`status` asks this of every job).
        if name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) { return true }
        return !name.unicodeScalars.contains {
            $0.properties.generalCategory == .control || $0.properties.isWhitespace
        }
    }

    /// The deployment name a job of ours carries (`vllmctl-sim` → `sim`).
    public static func deploymentName(_ job: JobSnapshot) -> String {
        JobName.deploymentName(job.name)
    }

    /// Why `job` is not ours, in words, or nil when it is.
    public func whyNotOurs(_ job: JobSnapshot) -> String? {
        if job.user != user {
            return
                "job \(job.jobID) (\(job.name)) belongs to \(job.user.isEmpty ? "another user" : job.user), not to \(user)"
        }
        if !Self.isTagged(job.name) {
            return
                "job \(job.jobID) (\(job.name.debugDescription)) is yours but was not started by vllmctl (its name is not `\(JobName.prefix)` and a name without control characters)"
        }
        return nil
    }
}
