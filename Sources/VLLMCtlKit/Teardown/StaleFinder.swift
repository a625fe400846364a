import Foundation

/// Decides whether one of our live jobs is stale. Pure: the survey's facts and the clock in,
/// an action with its reason out. A healthy job inside its grace period is never stale.
public struct StaleFinder: Sendable {
    public var criteria: StaleCriteria
    public var now: Date

    public init(criteria: StaleCriteria, now: Date) {
        self.criteria = criteria
        self.now = now
    }

    /// The action for `job` and the unhealthy mark to keep for it (nil: none).
    public func judge(
        _ job: JobSnapshot, record: DeploymentRecord?, health: HealthObservation?, unhealthySince: Date?
    ) -> (action: TeardownAction, unhealthySince: Date?) {
        let name = record?.name ?? Ownership.deploymentName(job)
        func action(_ kind: TeardownAction.Kind, _ reason: String) -> TeardownAction {
            TeardownAction(
                kind: kind, jobID: job.jobID, name: name, reason: reason, record: record,
                deployDir: job.workDir.isEmpty ? nil : job.workDir)
        }
        let grace = DurationText.format(criteria.grace)

        if job.state == .completing {
            return (action(.keep, "already ending (COMPLETING)"), nil)
        }
        if job.state.isWaiting {
            var state = job.state.rawValue
            if !job.reason.isEmpty && job.reason != "None" { state += " (\(job.reason))" }
            guard let record else {
                let note =
                    criteria.pendingLongerThan == nil
                    ? "" : "; deployed from elsewhere, so how long it has waited is unknown here"
                return (action(.keep, state + note), nil)
            }
            let waited = now.timeIntervalSince(record.createdAt)
            if let limit = criteria.pendingLongerThan, waited >= limit {
                return (
                    action(
                        .cancel,
                        "\(state) for \(DurationText.format(waited)), longer than --pending-longer-than \(DurationText.format(limit))"
                    ), nil
                )
            }
            return (action(.keep, "\(state) for \(DurationText.format(waited))"), nil)
        }
        guard job.state == .running else {
            return (action(.keep, job.state.rawValue), nil)
        }

        // squeue's elapsed time; an unreadable one counts as just started (never stale).
        let running = DurationText.slurm(job.elapsed) ?? 0
        if let limit = criteria.olderThan, running >= limit {
            return (
                action(
                    .cancel,
                    "running for \(DurationText.format(running)), longer than --older-than \(DurationText.format(limit))"
                ), nil
            )
        }
        switch health {
        case .healthy:
            return (action(.keep, "healthy, running for \(DurationText.format(running))"), nil)
        case .unhealthy(let detail):
            let since = unhealthySince ?? now
            let bad = now.timeIntervalSince(since)
            if bad >= criteria.grace {
                return (
                    action(
                        .cancel,
                        "unhealthy for \(DurationText.format(bad)) (\(detail)), longer than the \(grace) grace period"
                    ), since
                )
            }
            let first =
                unhealthySince == nil ? "first seen now" : "first seen \(DurationText.format(bad)) ago"
            return (
                action(.keep, "unhealthy (\(detail)), \(first); stale after the \(grace) grace period"), since
            )
        case .notServing:
            // Counted from the job's start, since its server never answered at all; loading a
            // model may take up to deploy's ready timeout.
            let limit = max(criteria.grace, criteria.startupAllowance)
            let what =
                limit > criteria.grace
                ? "the \(DurationText.format(limit)) allowed for startup (ready_timeout)"
                : "the \(grace) grace period"
            if running >= limit {
                return (
                    action(
                        .cancel,
                        "running for \(DurationText.format(running)) and its server never became ready (no connection file), longer than \(what)"
                    ), nil
                )
            }
            return (
                action(
                    .keep,
                    "starting: running for \(DurationText.format(running)), server not ready yet; stale after \(what)"
                ), nil
            )
        case .unknown(let why):
            // Not an observation of the server: its grace neither starts nor ends here, and
            // an earlier mark stays as it was.
            return (
                action(
                    .keep,
                    "health unknown (\(why)); running for \(DurationText.format(running)), not counted as unhealthy"
                ), unhealthySince
            )
        case .unchecked(let why):
            return (action(.keep, "running for \(DurationText.format(running)); \(why)"), nil)
        case nil:
            return (action(.keep, "running for \(DurationText.format(running)); health not checked"), nil)
        }
    }
}
