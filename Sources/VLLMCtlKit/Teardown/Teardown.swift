import Foundation

/// `vllmctl teardown`: cancel deployments, or every stale one, without touching anything else.
///
/// `plan` asks the scheduler everything it needs first (one squeue for all of the user's
/// jobs, then squeue for ids asked for that are not the user's, then one sacct for jobs that
/// left the queue) and checks the servers' /health. If any of that fails, it throws and
/// nothing is cancelled. `execute` then sends one scancel, waits for Slurm to confirm the
/// ends, marks the records ended and removes the connection files.
public struct Teardown: Sendable {
    /// Where Slurm runs, HTTP for the health checks, the records.
    public let context: Context
    /// The cluster whose deployments are torn down.
    public let profile: ClusterProfile
    /// Which jobs count as ours: the user's, with vllmctl's tag.
    public let ownership: Ownership
    /// The limit for each squeue, sacct and scancel call.
    public var schedulerTimeout: Duration = .seconds(30)
    /// How long to wait, after scancel, for Slurm to confirm the jobs are ending or gone.
    public var endWait: Double = 30
    /// Seconds for a /health check (connect and answer).
    public var healthTimeout: Double = 3

    /// `user` is who we are where Slurm runs: `context.host.userName()`.
    public init(context: Context, profile: ClusterProfile, user: String) {
        self.context = context
        self.profile = profile
        self.ownership = Ownership(user: user)
    }

    var marks: HealthMarks { HealthMarks(records: context.records, cluster: profile.name) }

    // MARK: - Deciding

    /// Surveys the cluster and decides. Changes nothing on the cluster; with `--stale` it
    /// notes which servers it found unhealthy (the start of their grace period).
    public func plan(_ scope: TeardownScope) async throws -> TeardownPlan {
        let now = context.clock.now()
        let listing = Squeue(user: ownership.user)
        let queue = try await ask(listing.argv, parse: listing.parse)
        let records = context.records.all(cluster: profile.name)
        let liveOurs = Set(queue.filter(ownership.isOurs).map(\.jobID))

        // Job ids asked for that are neither the user's live jobs nor recorded: squeue tells
        // whether someone else runs them (to refuse clearly), sacct whether they ended.
        var lookups: [String] = []
        if case .named(let targets) = scope {
            let known = Set(queue.map(\.jobID)).union(records.map(\.jobID))
            for target in targets where isJobID(target) && !known.contains(target) {
                if !lookups.contains(target) { lookups.append(target) }
            }
        }
        let lookup = Squeue(jobIDs: lookups)
        let others =
            lookups.isEmpty
            ? [] : try await ask(lookup.argv, parse: lookup.parse, invalidJobMeansNone: true)
        // Records whose job left the queue: sacct says how it ended (or that it is unknown).
        // Asked for by name or id, only the records named matter.
        var gone = records.filter { $0.phase != .ended && !liveOurs.contains($0.jobID) }
        if case .named(let targets) = scope {
            gone = gone.filter { targets.contains($0.jobID) || targets.contains($0.name) }
        }
        var accountIDs = gone.map(\.jobID)
        accountIDs += lookups.filter { id in !others.contains { $0.jobID == id } }
        let sacct = Sacct(jobIDs: accountIDs)
        let accounting = accountIDs.isEmpty ? [] : try await ask(sacct.argv, parse: sacct.parse)

        var survey = TeardownSurvey(
            now: now, queue: queue, others: others, accounting: accounting, records: records)
        if case .stale = scope {
            let recordsByID = Dictionary(
                records.map { ($0.jobID, $0) }, uniquingKeysWith: { _, newer in newer })
            let running = queue.filter { ownership.isOurs($0) && $0.state == .running }
            survey.health = await checkHealth(running.map { ($0.jobID, recordsByID[$0.jobID]) })
            survey.unhealthySince = marks.all()
        }
        let plan = try TeardownSelector(ownership: ownership).plan(scope, survey: survey)
        if case .stale = scope {
            try await context.records.withLock(cluster: profile.name) {
                try marks.replace(with: plan.unhealthySince)
            }
        }
        return plan
    }

    /// Runs a scheduler query. Any failure (exit status, timeout, missing program) becomes an
    /// error that says nothing was cancelled.
    func ask(_ argv: [String], parse: (String) -> [JobSnapshot], invalidJobMeansNone: Bool = false)
        async throws -> [JobSnapshot]
    {
        let result: CommandResult
        do {
            result = try await context.host.run(argv, input: nil, timeout: schedulerTimeout)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw Self.schedulerFailed(argv, "\(error)")
        }
        if result.status != 0 {
            if invalidJobMeansNone && Squeue.isInvalidJobError(result.stderr) { return [] }
            let stderr = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            throw Self.schedulerFailed(
                argv, "exit status \(result.status)" + (stderr.isEmpty ? "" : ": \(stderr)"))
        }
        return parse(result.stdout)
    }

    static func schedulerFailed(_ argv: [String], _ detail: String) -> VLLMCtlError {
        .slurm(
            message: "`\(argv.joined(separator: " "))` failed: \(detail)",
            explanation:
                "Nothing was cancelled: without the scheduler's answer vllmctl cannot tell which jobs are yours and which still run. Check that Slurm answers (`squeue --me`, `sacct`) and run teardown again."
        )
    }

    /// /health of each running deployment, all at once, each bounded by `healthTimeout`.
    func checkHealth(_ jobs: [(String, DeploymentRecord?)]) async -> [String: HealthObservation] {
        await withTaskGroup(of: (String, HealthObservation).self) { group in
            for (jobID, record) in jobs {
                group.addTask { (jobID, await health(jobID: jobID, record: record)) }
            }
            var out: [String: HealthObservation] = [:]
            for await (jobID, observation) in group { out[jobID] = observation }
            return out
        }
    }

    func health(jobID: String, record: DeploymentRecord?) async -> HealthObservation {
        guard let record else {
            return .unchecked("deployed from elsewhere (no local record here), so its health is not checked")
        }
        var url = record.url
        let sidecar = record.deployDir + "/" + DeploymentFiles.infoJSON
        if let data = try? await context.host.readFile(sidecar),
            let info = try? JSONDecoder().decode(ConnectionRecord.self, from: data), info.jobID == jobID
        {
            if info.endedAt != nil { return .unhealthy("the job recorded its server's end") }
            url = info.serverURL
        }
        guard let url else { return .notServing }
        do {
            let response = try await context.http.send(
                HTTPRequest(url: url + "/health", connectTimeout: healthTimeout, timeout: healthTimeout))
            return response.status == 200 ? .healthy : .unhealthy("/health answered \(response.status)")
        } catch VLLMCtlError.http(_, let message, _) {
            return .unhealthy("/health: \(message)")
        } catch VLLMCtlError.unreachable(_, let message, _) {
            return .unknown("/health: \(message)")
        } catch {
            return .unknown("/health: \(error)")
        }
    }

    // MARK: - Doing

    /// Carries the plan out: one scancel for every job to cancel, a bounded wait for Slurm
    /// to confirm, then the local clean-up. Never throws: each action reports its outcome.
    public func execute(_ plan: TeardownPlan) async -> [TeardownOutcome] {
        let cancels = plan.toCancel.map(\.jobID)
        var confirmed: [String: String] = [:]
        var stillListed: [String: JobState] = [:]
        var scancelProblem: String?
        var notOurs: [String: String] = [:]
        var late: [TeardownOutcome] = []
        if !cancels.isEmpty {
            // Ownership again, from the scheduler, right before the cancel: a job that changed
            // hands or name since the plan is not cancelled.
            var toCancel: [String] = []
            do {
                let recheck = Squeue(jobIDs: cancels)
                let current = try await ask(recheck.argv, parse: recheck.parse, invalidJobMeansNone: true)
                for id in cancels {
                    guard let job = current.first(where: { $0.jobID == id }) else { continue }
                    if let why = ownership.whyNotOurs(job) { notOurs[id] = why } else { toCancel.append(id) }
                }
            } catch {
                scancelProblem = "nothing was cancelled: the check right before scancel failed (\(error))"
            }
            // A renewing deployment's jobs check this mark before they submit a successor.
            // Login-node mode: the loop that submits successors stops first (docs/RENEW.md).
            late += await stopRenewLoops(of: plan.toCancel.filter { toCancel.contains($0.jobID) })
            let marked = await markChainsStopped(plan.toCancel.filter { toCancel.contains($0.jobID) })
            if !toCancel.isEmpty {
                do {
                    let argv = try Scancel(jobIDs: toCancel).checkedArgv()
                    let result = try await context.host.run(argv, input: nil, timeout: schedulerTimeout)
                    let stderr = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
                    if result.status != 0 {
                        scancelProblem =
                            "scancel exited with status \(result.status)"
                            + (stderr.isEmpty ? "" : ": \(stderr)")
                    }
                } catch {
                    scancelProblem = "scancel failed: \(error)"
                }
            }
            if scancelProblem == nil || !toCancel.isEmpty {
                (confirmed, stillListed) = await waitForEnd(cancels.filter { notOurs[$0] == nil })
            }
            late += await cancelLateSuccessors(of: plan.toCancel, marked: marked)
            late += await closeChainTunnels(of: plan.toCancel, marked: marked)
            late += await noticeChainSharedCopies(of: plan.toCancel, marked: marked)
        }

        var outcomes: [TeardownOutcome] = []
        for action in plan.actions {
            let label = "job \(action.jobID) (\(action.name))"
            switch action.kind {
            case .cancel:
                if let why = notOurs[action.jobID] {
                    outcomes.append(
                        .init(
                            action: action, succeeded: false,
                            message:
                                "Did not cancel \(label): since the plan, \(why). Check it with `squeue -j \(action.jobID)`."
                        ))
                } else if let how = confirmed[action.jobID] {
                    let (ok, summary) = await cleanUp(action)
                    outcomes.append(
                        .init(
                            action: action, succeeded: ok, message: "Cancelled \(label): \(how). \(summary)"))
                } else {
                    var text =
                        "Could not confirm the end of \(label): Slurm still lists it as \(stillListed[action.jobID]?.rawValue ?? "unknown") after \(Int(endWait)) s."
                    if let scancelProblem { text += " \(scancelProblem)." }
                    text +=
                        " Its record and files were left as they are; check it with `squeue -j \(action.jobID)` and run teardown again."
                    outcomes.append(.init(action: action, succeeded: false, message: text))
                }
            case .cleanUp:
                let (ok, summary) = await cleanUp(action)
                outcomes.append(
                    .init(
                        action: action, succeeded: ok,
                        message: "Cleaned up \(label): \(action.reason). \(summary)"))
            case .alreadyDone:
                // Harmless to repeat; it also catches files a job wrote after the last run.
                let (ok, summary) = await cleanUp(action)
                let extra = summary == Self.nothingChanged ? "" : " \(summary)"
                outcomes.append(
                    .init(
                        action: action, succeeded: ok,
                        message: "Nothing to do for \(label): \(action.reason).\(extra)"))
            case .keep:
                outcomes.append(
                    .init(action: action, succeeded: true, message: "Kept \(label): \(action.reason)."))
            case .undecided:
                outcomes.append(
                    .init(action: action, succeeded: false, message: "Left \(label) alone: \(action.reason).")
                )
            }
        }
        return outcomes + late
    }

    /// Polls squeue (one call for all the user's jobs) until each job is gone or in a final
    /// state, for at most `endWait` seconds. A job still COMPLETING at the end counts as
    /// ending. Returns how each confirmed job ended, and the last state of the others.
    func waitForEnd(_ jobIDs: [String]) async -> ([String: String], [String: JobState]) {
        let clock = context.clock
        let started = clock.now()
        var remaining = Set(jobIDs)
        var confirmed: [String: String] = [:]
        var last: [String: JobState] = [:]
        let squeue = Squeue(user: ownership.user)
        while !remaining.isEmpty {
            if let result = try? await context.host.run(squeue.argv, input: nil, timeout: schedulerTimeout),
                result.status == 0
            {
                let queue = squeue.parse(result.stdout)
                for id in remaining {
                    if let job = queue.first(where: { $0.jobID == id }) {
                        last[id] = job.state
                        if job.state.isFinal { confirmed[id] = "Slurm reports \(job.state.rawValue)" }
                    } else {
                        confirmed[id] = "it has left Slurm's queue"
                    }
                }
                remaining.subtract(confirmed.keys)
            }
            let waited = clock.now().timeIntervalSince(started)
            if remaining.isEmpty || waited >= endWait || Task.isCancelled { break }
            context.terminal.progress(
                "waiting for Slurm to end job\(remaining.count == 1 ? "" : "s") \(remaining.sorted().joined(separator: ", ")), \(Int(waited))s"
            )
            try? await clock.sleep(seconds: 0.5)
        }
        context.terminal.progress(nil)
        for id in remaining where last[id] == .completing {
            confirmed[id] = "Slurm reports it COMPLETING (ending)"
        }
        return (confirmed, last)
    }

    static let nothingChanged = "Nothing left to clean up."

    /// Removes the connection files, marks the record ended, forgets the unhealthy mark, and
    /// replaces a shared copy of the connection file with a notice. Idempotent.
    func cleanUp(_ action: TeardownAction) async -> (Bool, String) {
        var done: [String] = []
        var problems: [String] = []
        if let dir = await deploymentDirectory(action) {
            var removed: [String] = []
            for file in [DeploymentFiles.infoText, DeploymentFiles.infoJSON] {
                let path = dir + "/" + file
                do {
                    if try await context.host.readFile(path) != nil {
                        try await context.host.removeFile(path)
                        removed.append(file)
                    }
                } catch {
                    problems.append("\(error)")
                }
            }
            if !removed.isEmpty { done.append("removed \(removed.joined(separator: " and ")) from \(dir)") }
        } else if action.record == nil {
            done.append(
                "it has no local record and its working directory holds no connection file of this job, so nothing there was touched"
            )
        }
        let tunnels = TunnelStore(records: context.records)
        for tunnel in tunnels.open(cluster: profile.name, jobID: action.jobID) {
            tunnels.close(tunnel)
            done.append("closed the tunnel \(tunnel.baseURL) (pid \(tunnel.pid))")
        }
        do {
            let marked = try await context.records.withLock(cluster: profile.name) { () -> Bool in
                try marks.remove(action.jobID)
                guard
                    let record = context.records.all(cluster: profile.name).first(where: {
                        $0.jobID == action.jobID
                    }),
                    record.phase != .ended
                else { return false }
                try context.records.markEnded(record, at: context.clock.now())
                return true
            }
            if marked { done.insert("marked the record ended", at: 0) }
        } catch {
            problems.append("\(error)")
        }
        do {
            if let shared = try await SharedConnectionFile(context: context, profile: profile)
                .replaceWithNotice(
                    name: action.record?.name ?? action.name, jobID: action.jobID)
            {
                done.append("replaced the shared copy \(shared) with a stopped notice")
            }
        } catch {
            problems.append("\(error)")
        }
        var summary = done.isEmpty ? Self.nothingChanged : done.joined(separator: "; ").capitalizedFirst + "."
        if !problems.isEmpty { summary += " Problems: " + problems.joined(separator: "; ") }
        return (problems.isEmpty, summary)
    }

    /// The directory whose connection files teardown may remove: the record's, or, for a job
    /// deployed elsewhere, its working directory only when that holds this job's own connection
    /// JSON (a job's working directory is whatever it was submitted with; `~` must not lose a
    /// file of the same name).
    func deploymentDirectory(_ action: TeardownAction) async -> String? {
        if let record = action.record { return record.deployDir }
        guard let dir = action.deployDir, !dir.isEmpty,
            let data = try? await context.host.readFile(dir + "/" + DeploymentFiles.infoJSON),
            let info = try? JSONDecoder().decode(ConnectionRecord.self, from: data),
            info.jobID == action.jobID
        else { return nil }
        return dir
    }

    static let stoppedPrefix = SharedConnectionFile.stoppedPrefix
}

extension String {
    fileprivate var capitalizedFirst: String { prefix(1).uppercased() + dropFirst() }
}
