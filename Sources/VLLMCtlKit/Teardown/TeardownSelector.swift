import Foundation

/// Turns a survey into a plan: which jobs to cancel, which records to clean up, what to
/// leave alone, each with its reason. Pure, so every decision is testable without Slurm.
///
/// Only a job the scheduler lists under the user with vllmctl's tag is ever cancelled
/// (`Ownership`). A job asked for by name or id that is not ours refuses the whole run.
public struct TeardownSelector: Sendable {
    public var ownership: Ownership

    public init(ownership: Ownership) { self.ownership = ownership }

    public func plan(_ scope: TeardownScope, survey: TeardownSurvey) throws -> TeardownPlan {
        let facts = Facts(survey: survey, ownership: ownership)
        switch scope {
        case .named(let targets):
            return TeardownPlan(scope: scope, actions: try named(targets, facts))
        case .all:
            let cancels = facts.ours.map {
                cancel($0, facts, reason: "one of your deployments (--all)")
            }
            return TeardownPlan(scope: scope, actions: cancels + orphans(facts))
        case .stale(let criteria):
            let finder = StaleFinder(criteria: criteria, now: survey.now)
            var actions: [TeardownAction] = []
            var marks: [String: Date] = [:]
            for job in facts.ours {
                let (action, mark) = finder.judge(
                    job, record: facts.records[job.jobID], health: survey.health[job.jobID],
                    unhealthySince: survey.unhealthySince[job.jobID])
                actions.append(action)
                marks[job.jobID] = mark
            }
            return TeardownPlan(scope: scope, actions: actions + orphans(facts), unhealthySince: marks)
        }
    }

    /// The survey indexed.
    struct Facts {
        var survey: TeardownSurvey
        /// Our live jobs, in squeue's order.
        var ours: [JobSnapshot]
        var queue: [String: JobSnapshot]
        var others: [String: JobSnapshot]
        var accounting: [String: JobSnapshot]
        var records: [String: DeploymentRecord]

        init(survey: TeardownSurvey, ownership: Ownership) {
            self.survey = survey
            ours = survey.queue.filter(ownership.isOurs)
            queue = Self.index(survey.queue)
            others = Self.index(survey.others)
            accounting = Self.index(survey.accounting)
            records = Dictionary(
                survey.records.map { ($0.jobID, $0) }, uniquingKeysWith: { _, newer in newer })
        }

        static func index(_ jobs: [JobSnapshot]) -> [String: JobSnapshot] {
            Dictionary(jobs.map { ($0.jobID, $0) }, uniquingKeysWith: { first, _ in first })
        }

        func isLiveOurs(_ jobID: String, _ ownership: Ownership) -> Bool {
            queue[jobID].map(ownership.isOurs) ?? false
        }
    }

    private func cancel(_ job: JobSnapshot, _ facts: Facts, reason: String?) -> TeardownAction {
        let record = facts.records[job.jobID]
        var state = job.state.rawValue
        if job.state == .running, !job.nodes.isEmpty { state += " on \(job.nodes)" }
        if job.state.isWaiting, !job.reason.isEmpty, job.reason != "None" { state += " (\(job.reason))" }
        return TeardownAction(
            kind: .cancel, jobID: job.jobID, name: record?.name ?? Ownership.deploymentName(job),
            reason: reason.map { "\(state); \($0)" } ?? state, record: record,
            deployDir: job.workDir.isEmpty ? nil : job.workDir)
    }

    /// Records whose job is no longer live: orphans to clean up (ended records are left out).
    private func orphans(_ facts: Facts) -> [TeardownAction] {
        facts.survey.records
            .filter { $0.phase != .ended && !facts.isLiveOurs($0.jobID, ownership) }
            .map { gone($0, facts) }
    }

    /// What to do with a record whose job is not among our live jobs.
    private func gone(_ record: DeploymentRecord, _ facts: Facts) -> TeardownAction {
        func action(_ kind: TeardownAction.Kind, _ reason: String) -> TeardownAction {
            TeardownAction(kind: kind, jobID: record.jobID, name: record.name, reason: reason, record: record)
        }
        if record.phase == .ended {
            let when = record.endedAt.map { " at " + ISO8601DateFormatter().string(from: $0) } ?? ""
            return action(.alreadyDone, "already torn down (record ended\(when))")
        }
        if let other = facts.accounting[record.jobID] ?? facts.queue[record.jobID], !ownership.isOurs(other) {
            return action(
                .cleanUp,
                "orphan: job id \(record.jobID) now belongs to another job (\(other.name) of \(other.user)); the recorded job is gone"
            )
        }
        if let ended = facts.accounting[record.jobID] {
            if ended.state.isFinal {
                return action(.cleanUp, "orphan: the job ended as \(ended.state.rawValue)")
            }
            return action(
                .undecided,
                "squeue no longer lists the job but sacct still says \(ended.state.rawValue); try again in a minute"
            )
        }
        return action(.cleanUp, "orphan: neither squeue nor sacct knows the job any more")
    }

    /// Whether the live jobs of one name are one deployment: each replica number once, or, for
    /// a renewing deployment (docs/RENEW.md), a replica's jobs in one shared directory (the job
    /// and its successor). Two deployments under one name have different directories.
    static func isOneDeployment(_ live: [JobSnapshot]) -> Bool {
        let slots = Dictionary(grouping: live) { JobName.split($0.name).replica }
        if slots.keys.contains(nil) && slots.count > 1 { return false }
        return slots.values.allSatisfy { jobs in
            jobs.count == 1 || (Set(jobs.map(\.workDir)).count == 1 && !jobs[0].workDir.isEmpty)
        }
    }

    private func named(_ targets: [String], _ facts: Facts) throws -> [TeardownAction] {
        var actions: [TeardownAction] = []
        var problems: [VLLMCtlError] = []
        let refusal =
            "vllmctl cancels only your own deployments (your jobs named `\(JobName.prefix)…`). Nothing was cancelled."
        for target in targets {
            var action: TeardownAction?
            var more: [TeardownAction] = []
            if !target.isEmpty && target.allSatisfy(\.isNumber) {
                if let job = facts.queue[target] ?? facts.others[target] {
                    if let why = ownership.whyNotOurs(job) {
                        problems.append(.invalidInput("Refusing to cancel: \(why)", hint: refusal))
                    } else {
                        action = cancel(job, facts, reason: nil)
                    }
                } else if let record = facts.records[target] {
                    action = gone(record, facts)
                } else if let ended = facts.accounting[target] {
                    if let why = ownership.whyNotOurs(ended) {
                        problems.append(.invalidInput("Refusing to touch: \(why)", hint: refusal))
                    } else {
                        action = TeardownAction(
                            kind: .alreadyDone, jobID: target, name: Ownership.deploymentName(ended),
                            reason:
                                "the job already ended as \(ended.state.rawValue) and has no local record here"
                        )
                    }
                } else {
                    problems.append(
                        .notFound(
                            what: "deployment or job", name: target,
                            hint:
                                "Neither squeue, sacct nor the local records know job \(target). Nothing was cancelled."
                        ))
                }
            } else {
                // NAME: its job, or every replica of it (`vllmctl-NAME@K`); NAME@K: that replica.
                let (base, replica) = JobName.split(target)
                let live = facts.ours.filter {
                    replica == nil
                        ? JobName.belongs($0.name, to: base) : $0.name == JobName.of(base, replica: replica)
                }
                let oneDeployment = Self.isOneDeployment(live)
                if !oneDeployment {
                    problems.append(
                        .invalidInput(
                            "`\(target)` names \(live.count) running deployments (jobs \(live.map(\.jobID).joined(separator: ", ")))",
                            hint: "Give the job ids instead. Nothing was cancelled."))
                } else if !live.isEmpty {
                    for job in live { more.append(cancel(job, facts, reason: nil)) }
                } else {
                    let records = facts.survey.records.filter {
                        $0.name == base && (replica == nil || $0.replica == replica)
                    }
                    let replicated = records.filter { $0.replica != nil && $0.phase != .ended }
                    if !replicated.isEmpty {
                        for record in replicated { more.append(gone(record, facts)) }
                    } else if let record = records.last {
                        action = gone(record, facts)
                    } else {
                        problems.append(
                            .notFound(
                                what: "deployment", name: target,
                                hint:
                                    "None of your jobs is named `\(JobName.prefix)\(target)` and no local record has that name. Give a job id, or check `squeue --me`. Nothing was cancelled."
                            ))
                    }
                }
            }
            for extra in more where !actions.contains(where: { $0.jobID == extra.jobID }) {
                actions.append(extra)
            }
            if let action, !actions.contains(where: { $0.jobID == action.jobID }) {
                actions.append(action)
            }
        }
        if problems.count == 1 { throw problems[0] }
        if problems.count > 1 {
            throw VLLMCtlError.invalidInput(
                "Teardown refused:\n" + problems.map { "  - \($0.description)" }.joined(separator: "\n"),
                hint: "Fix the list and run it again.")
        }
        return actions
    }
}
