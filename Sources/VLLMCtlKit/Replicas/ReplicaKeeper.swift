import Foundation

/// How a deployment's replicas are kept up (`keep: N`, `scale NAME N --keep`).
public struct KeepPolicy: Sendable, Equatable {
    /// Replicas to keep up.
    public var keep: Int
    /// Resubmissions of one replica (one replica number) within ``window``; after that many
    /// the replica is left down and the keeper says so.
    public var maxResubmissions: Int
    /// Seconds over which a replica's failures are counted.
    public var window: Double

    public init(keep: Int, maxResubmissions: Int = 3, window: Double = 3600) {
        self.keep = keep
        self.maxResubmissions = maxResubmissions
        self.window = window
    }
}

/// What the keeper does about one replica.
public enum KeepAction: Sendable, Equatable {
    /// Submit a new job for replica `replica` in place of `failed`, its `attempt`th
    /// resubmission within the window.
    case resubmit(replica: Int, failed: JobSnapshot, attempt: Int)
    /// Replica `replica` failed `failures` times within the window (the last: `failed`): it is
    /// left down.
    case giveUp(replica: Int, failed: JobSnapshot, failures: Int)
}

/// What one round of keeping decided: actions, and whether something could not be judged yet.
public struct KeepDecision: Sendable, Equatable {
    public var actions: [KeepAction] = []
    /// A job left the queue but sacct has no final state for it yet: ask again next round.
    public var unsettled = false
}

/// Something the keeper did or could not do, as a log line (`description`).
public enum KeepEvent: Sendable, Equatable, CustomStringConvertible {
    case resubmitted(name: String, failed: JobSnapshot, job: String, attempt: Int, of: Int)
    case gaveUp(name: String, failed: JobSnapshot, failures: Int, window: Double)
    /// Another vllmctl (another tunnel, gateway or `scale --keep`) replaced the job first.
    case replacedElsewhere(name: String, failed: JobSnapshot)
    case resubmitFailed(name: String, failed: JobSnapshot, error: String)
    /// The scheduler could not be asked: nothing was resubmitted this round.
    case cannotTell(String)
    /// No job of the deployment is left in the queue and nothing is to be resubmitted (it was
    /// torn down, or every replica was given up on).
    case nothingLeft(name: String)

    public var description: String {
        switch self {
        case .resubmitted(let name, let failed, let job, let attempt, let max):
            return
                "keep: \(Self.label(name, failed)) (job \(failed.jobID)) ended \(failed.state.rawValue); resubmitted it as job \(job) (resubmission \(attempt) of at most \(max))"
        case .gaveUp(let name, let failed, let failures, let window):
            let dir = failed.workDir.isEmpty ? "its deployment directory" : failed.workDir
            return
                "keep: \(Self.label(name, failed)) failed \(failures) times within \(Int(window / 60)) min (last: job \(failed.jobID), \(failed.state.rawValue)); not resubmitting it again. Its logs are in \(dir) (slurm-\(failed.jobID).err); fix the cause, then `vllmctl scale \(name) N` adds replicas again."
        case .replacedElsewhere(let name, let failed):
            return
                "keep: \(Self.label(name, failed)) (job \(failed.jobID)) was already replaced by another vllmctl"
        case .resubmitFailed(let name, let failed, let error):
            return
                "keep: resubmitting \(Self.label(name, failed)) (job \(failed.jobID)) failed: \(error)"
        case .cannotTell(let why):
            return "keep: \(why); nothing is resubmitted until the scheduler answers"
        case .nothingLeft(let name):
            return "keep: no job of `\(name)` is left and none is to be resubmitted"
        }
    }

    static func label(_ name: String, _ job: JobSnapshot) -> String {
        JobName.split(job.name).replica.map { "\(name)\(JobName.replicaMark)\($0)" } ?? name
    }
}

/// Keeps N replicas of a deployment up: a replica whose job ended in failure (FAILED,
/// NODE_FAIL, TIMEOUT, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE, PREEMPTED, as sacct reports it) is
/// resubmitted through ``Scaler/resubmit(_:)`` (same number, settings and key), at most
/// ``KeepPolicy/maxResubmissions`` times per replica within ``KeepPolicy/window``. A job that
/// was cancelled (teardown, scale) or completed is never replaced, and nothing is done when
/// squeue or sacct cannot be asked. Several keepers of one deployment (a tunnel and a gateway)
/// replace each failed job once between them: each claims it first by creating the directory
/// `replaced-JOBID` in the failed job's deployment directory, which only one can create.
public actor ReplicaKeeper {
    /// Submits the replacements (the deployment's settings and key).
    public nonisolated let scaler: Scaler
    /// The deployment's name.
    public nonisolated let name: String
    /// How many to keep up, and the attempt limit.
    public nonisolated let policy: KeepPolicy
    private let onEvent: @Sendable (KeepEvent) -> Void
    private var previousQueue: Set<String>?
    /// Jobs out of the queue (left it, or submitted here and not seen in it) whose final state
    /// sacct has not reported yet, with when they were first missed. After
    /// ``settleLimit`` seconds one is no longer waited for (a record slurmdbd lost, or one it
    /// shows running forever), so that sacct is not asked every round for good.
    private var awaiting: [String: Date] = [:]
    /// Jobs waited for longer than that: their sacct record is not believed any more.
    private var overdue: Set<String> = []
    private var settled = false
    /// When sacct was last asked.
    private var lastSacct: Date?
    private var replaced: Set<String> = []
    private var gaveUp: Set<Int> = []
    private var submitFailures: [String: Int] = [:]

    public init(
        scaler: Scaler, name: String, policy: KeepPolicy, onEvent: @escaping @Sendable (KeepEvent) -> Void
    ) {
        self.scaler = scaler
        self.name = JobName.split(name).name
        self.policy = policy
        self.onEvent = onEvent
    }

    /// The directory a keeper creates in a failed job's deployment directory to claim its
    /// replacement (named by job: the jobs of a renewal chain share one directory).
    public static func claim(jobID: String) -> String { "replaced-\(jobID)" }

    /// The states a replica is resubmitted after: the job failed, not someone's decision.
    public static func isReplaceable(_ state: JobState) -> Bool {
        switch state {
        case .failed, .nodeFail, .timeout, .outOfMemory, .bootFail, .deadline, .preempted: return true
        default: return false
        }
    }

    /// Which replica a job is: K for `NAME@K`, 1 for the unnumbered job.
    static func replica(_ job: JobSnapshot) -> Int { JobName.split(job.name).replica ?? 1 }

    /// The decision, from what the scheduler says and what was done before. `queue`: the
    /// deployment's jobs squeue lists now; `history`: its jobs sacct lists within the window;
    /// `awaiting`: jobs out of the queue whose end sacct must confirm (they left it, or were
    /// submitted and never seen in it); `replaced`: failed jobs already replaced; `gaveUp`:
    /// replicas already given up on.
    public static func decide(
        queue: [JobSnapshot], history: [JobSnapshot], awaiting: Set<String>, replaced: Set<String>,
        gaveUp: Set<Int>, policy: KeepPolicy
    ) -> KeepDecision {
        var decision = KeepDecision()
        let live = queue.filter { !$0.state.isFinal }
        let liveReplicas = Set(live.map(replica))
        let liveIDs = Set(live.map(\.jobID))
        let ended = (history + queue).filter { $0.state.isFinal && !liveIDs.contains($0.jobID) }
        let endedIDs = Set(ended.map(\.jobID))
        // sacct still says pending or running for a job squeue no longer lists: slurmdbd has
        // not caught up (the job may have left before this keeper's first round).
        let queuedIDs = Set(queue.map(\.jobID))
        let lagging = history.contains { !$0.state.isFinal && !queuedIDs.contains($0.jobID) }
        decision.unsettled = !awaiting.subtracting(endedIDs).isEmpty || lagging
        // Up is counted by replica number: during a renewal handover (docs/RENEW.md) one
        // replica has two jobs in the queue.
        guard liveReplicas.count < policy.keep else { return decision }
        var room = policy.keep - liveReplicas.count
        let byReplica = Dictionary(grouping: ended, by: replica)
        for k in byReplica.keys.sorted() where !liveReplicas.contains(k) && !gaveUp.contains(k) {
            let jobs = byReplica[k] ?? []
            guard let latest = jobs.max(by: { (Int($0.jobID) ?? 0) < (Int($1.jobID) ?? 0) }),
                isReplaceable(latest.state), !replaced.contains(latest.jobID)
            else { continue }
            let failures = Set(jobs.filter { isReplaceable($0.state) }.map(\.jobID)).count
            if failures > policy.maxResubmissions {
                decision.actions.append(.giveUp(replica: k, failed: latest, failures: failures))
            } else if room > 0 {
                decision.actions.append(.resubmit(replica: k, failed: latest, attempt: failures))
                room -= 1
            }
        }
        return decision
    }

    /// `vllmctl scale NAME N --keep`: a round every `seconds` until nothing of the deployment
    /// is left (returns). Throws `CancellationError` when the task is cancelled (Ctrl-C).
    public func keepUp(every seconds: Double = BalancedEndpoint.defaultRefreshSeconds) async throws {
        let clock = scaler.deployer.context.clock
        while true {
            if await round().contains(.nothingLeft(name: name)) { return }
            try await clock.sleep(seconds: seconds)
        }
    }

    /// One round: looks at the deployment's jobs and resubmits what failed. `queue` is its
    /// jobs as squeue listed them just now (a ``ReplicaSet`` refresh's); nil asks squeue here.
    /// sacct is asked only when fewer than ``KeepPolicy/keep`` are in the queue, and then when
    /// something changed since a round that settled everything or ``recheckSeconds`` have
    /// passed since sacct was last asked (slurmdbd can list a job that ended minutes late: one
    /// that left the queue before this keeper's first look is then known only to sacct).
    @discardableResult
    public func round(queue given: [JobSnapshot]? = nil) async -> [KeepEvent] {
        var events: [KeepEvent] = []
        defer { events.forEach(onEvent) }
        let context = scaler.deployer.context
        let builder = StatusBuilder(context: context, cluster: scaler.deployer.profile.name)
        let user: String
        let queue: [JobSnapshot]
        do {
            user = try await context.host.userName()
            if let given {
                queue = given
            } else {
                queue = try await builder.scheduledJobs(user: user, includeEnded: false)
                    .filter { JobName.belongs($0.name, to: name) }
            }
        } catch {
            events.append(.cannotTell("squeue failed (\(error))"))
            return events
        }
        let ids = Set(queue.map(\.jobID))
        let now = context.clock.now()
        // Jobs out of the queue whose end sacct has not confirmed yet: those that left it since
        // the last round, and replacements submitted that the queue may never have shown (a
        // job that fails at once).
        awaiting = awaiting.filter { !ids.contains($0.key) }
        for id in previousQueue.map({ $0.subtracting(ids) }) ?? []
        where awaiting[id] == nil && !overdue.contains(id) {
            awaiting[id] = now
        }
        let changed = previousQueue != ids
        previousQueue = ids
        let live = Set(queue.filter { !$0.state.isFinal }.map(Self.replica)).count
        if live >= policy.keep { return events }
        if !changed && settled, let last = lastSacct, now.timeIntervalSince(last) < Self.recheckSeconds {
            return events
        }
        lastSacct = now
        let sacct = Sacct(user: user, since: "now-\(Int(policy.window))")
        guard
            let result = try? await context.host.run(sacct.argv, input: nil, timeout: .seconds(30)),
            result.status == 0
        else {
            events.append(.cannotTell("sacct failed, so whether replicas failed is unknown"))
            settled = false
            return events
        }
        var history = sacct.parse(result.stdout).filter {
            $0.user == user && JobName.belongs($0.name, to: name)
        }
        // Out of the queue and not final in sacct: waited for, like a job seen leaving.
        for job in history
        where !job.state.isFinal && !ids.contains(job.jobID) && !overdue.contains(job.jobID) {
            awaiting[job.jobID] = awaiting[job.jobID] ?? now
        }
        overdue.formUnion(awaiting.filter { now.timeIntervalSince($0.value) > Self.settleLimit }.keys)
        awaiting = awaiting.filter { !overdue.contains($0.key) }
        history.removeAll { !$0.state.isFinal && overdue.contains($0.jobID) }
        let decision = Self.decide(
            queue: queue, history: history, awaiting: Set(awaiting.keys), replaced: replaced, gaveUp: gaveUp,
            policy: policy)
        for job in history where job.state.isFinal { awaiting[job.jobID] = nil }
        settled = !decision.unsettled && decision.actions.isEmpty
        if live == 0 && settled { events.append(.nothingLeft(name: name)) }
        for action in decision.actions {
            switch action {
            case .giveUp(let k, let failed, let failures):
                gaveUp.insert(k)
                events.append(.gaveUp(name: name, failed: failed, failures: failures, window: policy.window))
            case .resubmit(_, let failed, let attempt):
                events.append(await resubmit(failed, attempt: attempt))
            }
        }
        return events
    }

    /// Claims `failed` (so that no other keeper replaces it too) and submits its replacement.
    func resubmit(_ failed: JobSnapshot, attempt: Int) async -> KeepEvent {
        let host = scaler.deployer.context.host
        guard !failed.workDir.isEmpty else {
            replaced.insert(failed.jobID)
            return .resubmitFailed(
                name: name, failed: failed,
                error:
                    "sacct does not say its deployment directory, so its settings cannot be read; not trying again"
            )
        }
        let claim = failed.workDir + "/" + Self.claim(jobID: failed.jobID)
        do {
            try await host.makeNewDirectory(claim, mode: 0o700)
        } catch {
            if let test = try? await host.run(["test", "-d", claim], input: nil, timeout: .seconds(10)),
                test.status == 0
            {
                replaced.insert(failed.jobID)
                return .replacedElsewhere(name: name, failed: failed)
            }
            return submissionFailed(failed, error: error)
        }
        do {
            let outcome = try await scaler.resubmit(failed)
            replaced.insert(failed.jobID)
            awaiting[outcome.record.jobID] = scaler.deployer.context.clock.now()
            return .resubmitted(
                name: name, failed: failed, job: outcome.record.jobID, attempt: attempt,
                of: policy.maxResubmissions)
        } catch {
            // Not submitted: give the claim back, so that the next round (or another keeper)
            // tries again.
            _ = try? await host.run(["rmdir", claim], input: nil, timeout: .seconds(10))
            return submissionFailed(failed, error: error)
        }
    }

    /// Submissions that fail (sbatch refusing, a full disk) are tried again next round, at
    /// most ``maxSubmitFailures`` times per failed job, so that a refusal does not loop either.
    func submissionFailed(_ failed: JobSnapshot, error: any Error) -> KeepEvent {
        settled = false
        let count = (submitFailures[failed.jobID] ?? 0) + 1
        submitFailures[failed.jobID] = count
        guard count < Self.maxSubmitFailures else {
            replaced.insert(failed.jobID)
            return .resubmitFailed(
                name: name, failed: failed,
                error: "\(error); after \(count) failed tries it is not tried again")
        }
        return .resubmitFailed(name: name, failed: failed, error: "\(error); trying again next round")
    }

    /// Seconds between sacct calls while fewer than ``KeepPolicy/keep`` replicas are in the
    /// queue and nothing changed.
    public static let recheckSeconds: Double = 30

    /// Seconds a job out of the queue is waited for until sacct reports how it ended.
    public static let settleLimit: Double = 600

    /// Failed submissions of one replacement before the keeper stops trying.
    public static let maxSubmitFailures = 3

    /// The keeper a deployment's settings ask for (`keep: N` in its `deployment.json`, read
    /// from a replica's directory); nil when it has none.
    public static func configured(
        _ name: String, scaler: Scaler, onEvent: @escaping @Sendable (KeepEvent) -> Void
    ) async throws -> ReplicaKeeper? {
        let deployer = scaler.deployer
        let replicas = try await DeploymentResolver(context: deployer.context, cluster: deployer.profile.name)
            .replicas(of: name)
        for replica in replicas {
            guard let settings = try? await scaler.settings(in: replica.deployDir) else { continue }
            return settings.keep.map {
                ReplicaKeeper(scaler: scaler, name: name, policy: KeepPolicy(keep: $0), onEvent: onEvent)
            }
        }
        return nil
    }
}
