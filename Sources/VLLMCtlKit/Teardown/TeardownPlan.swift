import Foundation

/// What `teardown` was asked to act on.
public enum TeardownScope: Sendable, Equatable {
    /// Deployments named by job id or deployment name.
    case named([String])
    /// Our deployments that are stale by these criteria.
    case stale(StaleCriteria)
    /// All of the user's deployments on the cluster.
    case all
}

/// When a deployment counts as stale.
public struct StaleCriteria: Sendable, Equatable {
    public static let defaultGrace: TimeInterval = 600

    /// How long a running job's server may fail /health (or not answer yet) before it is stale.
    public var grace: TimeInterval
    /// Any job running longer than this is stale.
    public var olderThan: TimeInterval?
    /// Any job waiting in the queue longer than this is stale.
    public var pendingLongerThan: TimeInterval?
    /// How long a server may take to become ready at all (deploy's ready timeout): one that
    /// never answered is stale only after the longer of this and `grace`, so a big model
    /// that is still loading is not called stale.
    public var startupAllowance: TimeInterval

    public init(
        grace: TimeInterval = Self.defaultGrace, olderThan: TimeInterval? = nil,
        pendingLongerThan: TimeInterval? = nil, startupAllowance: TimeInterval = 0
    ) {
        self.grace = grace
        self.olderThan = olderThan
        self.pendingLongerThan = pendingLongerThan
        self.startupAllowance = startupAllowance
    }

    /// The criteria from durations as the user typed them (``DurationText``); a text that
    /// does not parse throws an error that names its flag (`--grace`, `--older-than`,
    /// `--pending-longer-than`).
    public init(
        grace: String?, olderThan: String?, pendingLongerThan: String?, startupAllowance: TimeInterval = 0
    ) throws {
        func parse(_ text: String?, flag: String) throws -> TimeInterval? {
            guard let text else { return nil }
            do { return try DurationText.parse(text) } catch let VLLMCtlError.invalidInput(message, hint) {
                throw VLLMCtlError.invalidInput("\(flag): \(message)", hint: hint)
            }
        }
        self.init(
            grace: try parse(grace, flag: "--grace") ?? Self.defaultGrace,
            olderThan: try parse(olderThan, flag: "--older-than"),
            pendingLongerThan: try parse(pendingLongerThan, flag: "--pending-longer-than"),
            startupAllowance: startupAllowance)
    }
}

/// What a server's /health said when `teardown --stale` asked.
public enum HealthObservation: Sendable, Equatable {
    /// 200.
    case healthy
    /// Seen unhealthy: another status, a refused connection at its address, a broken answer,
    /// or the job recorded its server's end; the detail says which.
    case unhealthy(String)
    /// Could not tell, for a reason on vllmctl's side (no route, a timeout on the way, the SSH
    /// session, the login node's connection to the node): never counts toward staleness.
    case unknown(String)
    /// The job has not published a connection file: its server never became ready.
    case notServing
    /// Not asked; the reason says why (e.g. no local record, so no URL).
    case unchecked(String)
}

/// One thing `teardown` will do, and why.
public struct TeardownAction: Sendable, Equatable {
    /// What is done.
    public enum Kind: String, Sendable {
        /// scancel the job, wait for Slurm to end it, then clean up.
        case cancel
        /// The job is gone: mark the record ended, remove the connection files.
        case cleanUp
        /// Torn down before: nothing left to do (said so, harmlessly).
        case alreadyDone
        /// Not stale: left alone.
        case keep
        /// The scheduler's answers disagree; nothing is done and the run fails.
        case undecided
    }

    /// What is done.
    public var kind: Kind
    /// The Slurm job id.
    public var jobID: String
    /// The deployment's name (the job name without vllmctl's tag, for jobs without a record).
    public var name: String
    /// Why, in words for the user.
    public var reason: String
    /// The local record, if this machine has one.
    public var record: DeploymentRecord?
    /// The job's deployment directory, where its connection files are.
    public var deployDir: String?

    public init(
        kind: Kind, jobID: String, name: String, reason: String, record: DeploymentRecord? = nil,
        deployDir: String? = nil
    ) {
        self.kind = kind
        self.jobID = jobID
        self.name = name
        self.reason = reason
        self.record = record
        self.deployDir = deployDir ?? record?.deployDir
    }

    /// Whether carrying it out changes anything (what the confirmation asks about).
    public var changesSomething: Bool { kind == .cancel || kind == .cleanUp }
}

/// Everything teardown learned before deciding, gathered before any scancel.
public struct TeardownSurvey: Sendable {
    public var now: Date
    /// All of the user's jobs in squeue (tagged or not).
    public var queue: [JobSnapshot]
    /// Jobs asked for by id that squeue lists under another user.
    public var others: [JobSnapshot]
    /// sacct's answer for jobs that have left the queue.
    public var accounting: [JobSnapshot]
    /// The local records of this cluster, ended ones included.
    public var records: [DeploymentRecord]
    /// /health per job id (`--stale` only).
    public var health: [String: HealthObservation]
    /// Since when each job has been seen unhealthy.
    public var unhealthySince: [String: Date]

    public init(
        now: Date, queue: [JobSnapshot], others: [JobSnapshot] = [], accounting: [JobSnapshot] = [],
        records: [DeploymentRecord], health: [String: HealthObservation] = [:],
        unhealthySince: [String: Date] = [:]
    ) {
        self.now = now
        self.queue = queue
        self.others = others
        self.accounting = accounting
        self.records = records
        self.health = health
        self.unhealthySince = unhealthySince
    }
}

/// The decided actions, before any is carried out.
public struct TeardownPlan: Sendable {
    /// What teardown was asked to act on.
    public var scope: TeardownScope
    /// One decision per deployment in scope.
    public var actions: [TeardownAction]
    /// The unhealthy marks to keep after this survey.
    public var unhealthySince: [String: Date]

    public init(scope: TeardownScope, actions: [TeardownAction], unhealthySince: [String: Date] = [:]) {
        self.scope = scope
        self.actions = actions
        self.unhealthySince = unhealthySince
    }

    /// The actions that cancel a job.
    public var toCancel: [TeardownAction] { actions.filter { $0.kind == .cancel } }
    /// The actions that only clean up after a job that already ended.
    public var toCleanUp: [TeardownAction] { actions.filter { $0.kind == .cleanUp } }
    /// Whether carrying the plan out would change anything.
    public var changesSomething: Bool { actions.contains(where: \.changesSomething) }
}

/// How one action went.
public struct TeardownOutcome: Sendable, Equatable {
    /// The action carried out.
    public var action: TeardownAction
    /// Whether it did all it should; false says the message holds a problem.
    public var succeeded: Bool
    /// What happened, in a sentence for the user.
    public var message: String

    public init(action: TeardownAction, succeeded: Bool, message: String) {
        self.action = action
        self.succeeded = succeeded
        self.message = message
    }
}

extension TeardownPlan {
    /// One line per job: what will happen and why.
    public var text: String {
        let verbs: [TeardownAction.Kind: String] = [
            .cancel: "cancel", .cleanUp: "clean up", .alreadyDone: "done", .keep: "keep",
            .undecided: "unsure",
        ]
        let idWidth = actions.map(\.jobID.count).max() ?? 0
        let nameWidth = min(actions.map(\.name.count).max() ?? 0, 30)
        return actions.map { action in
            let verb = (verbs[action.kind] ?? "").padding(toLength: 9, withPad: " ", startingAt: 0)
            let id = action.jobID.padding(toLength: idWidth, withPad: " ", startingAt: 0)
            let name =
                action.name.count >= nameWidth
                ? action.name : action.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
            return "\(verb) \(id)  \(name)  \(action.reason)"
        }.joined(separator: "\n")
    }

    /// The confirmation question: "Cancel 2 jobs and clean up 1 record on CLUSTER?"
    public func question(cluster: String) -> String {
        var parts: [String] = []
        let cancel = toCancel.count, clean = toCleanUp.count
        if cancel > 0 { parts.append("cancel \(cancel) job\(cancel == 1 ? "" : "s")") }
        if clean > 0 { parts.append("clean up \(clean) record\(clean == 1 ? "" : "s")") }
        let sentence = parts.joined(separator: " and ")
        return sentence.prefix(1).uppercased() + sentence.dropFirst() + " on \(cluster)?"
    }
}
