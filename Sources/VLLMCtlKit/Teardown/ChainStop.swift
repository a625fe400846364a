import Foundation

/// Teardown of a renewing deployment (docs/RENEW.md): its job may submit a successor at any
/// moment, also while it is being cancelled. Before the cancel, a stop mark (`renew.stop`) is
/// written into the deployment's directory: a job checks it right before `sbatch`, and a
/// successor that starts anyway ends at once. After the cancel, the queue is read again, and a
/// job of the same name in the same directory that appeared meanwhile is cancelled too.
extension Teardown {
    /// The stop mark's name in a deployment directory.
    public static let stopMark = "renew.stop"

    /// Writes the stop mark into every directory of `actions` whose deployment renews (its
    /// `deployment.json` says so). Returns those directories.
    func markChainsStopped(_ actions: [TeardownAction]) async -> Set<String> {
        var marked: Set<String> = []
        for dir in Set(actions.compactMap(\.deployDir)) where !dir.isEmpty {
            guard let data = try? await context.host.readFile(dir + "/" + DeploymentFiles.settings),
                let settings = try? JSONDecoder().decode(DeploySettings.self, from: data),
                settings.renew == true
            else { continue }
            let note = Data(
                "torn down by vllmctl at \(ISO8601DateFormatter().string(from: context.clock.now()))\n".utf8)
            if (try? await context.host.writeFileAtomically(note, to: dir + "/" + Self.stopMark, mode: 0o600))
                != nil
            {
                marked.insert(dir)
            }
        }
        return marked
    }

    /// Stops the renewal loop on the login node (``RenewLoop``) of each directory of `cancelled`
    /// that has one (its pid file), only after checking that its recorded pid is still that
    /// loop; says what it did. Before the stop mark, so that the loop is stopped rather than
    /// left to notice the mark.
    func stopRenewLoops(of cancelled: [TeardownAction]) async -> [TeardownOutcome] {
        var out: [TeardownOutcome] = []
        for dir in Set(cancelled.compactMap(\.deployDir)).sorted() where !dir.isEmpty {
            guard let action = cancelled.first(where: { $0.deployDir == dir }) else { continue }
            let loop = TeardownAction(
                kind: .cleanUp, jobID: action.jobID, name: action.name,
                reason: "the renewal loop on the login node", deployDir: dir)
            switch await RenewLoop.stop(deployDir: dir, context: context) {
            case .none, .notRunning:
                continue
            case .stopped(let pid):
                out.append(
                    TeardownOutcome(
                        action: loop, succeeded: true,
                        message: "Stopped the renewal loop of \(action.name) (pid \(pid) on the login node).")
                )
            case .notOurs(let pid):
                out.append(
                    TeardownOutcome(
                        action: loop, succeeded: true,
                        message:
                            "The renewal loop of \(action.name) (pid \(pid)) had ended; that pid is another process now, left alone."
                    ))
            case .failed(let why):
                out.append(
                    TeardownOutcome(
                        action: loop, succeeded: false,
                        message: "The renewal loop of \(action.name) was not stopped: \(why)."))
            }
        }
        return out
    }

    /// Successors submitted while the chain was being cancelled: the user's live jobs with
    /// vllmctl's tag whose directory was marked (a deployment's own: each replica has its
    /// own), not cancelled already. An unanswered squeue finds none (nothing is cancelled on a guess).
    func lateSuccessors(of cancelled: [TeardownAction], marked: Set<String>) async -> [JobSnapshot] {
        guard !marked.isEmpty else { return [] }
        let listing = Squeue(user: ownership.user)
        guard let queue = try? await ask(listing.argv, parse: listing.parse) else { return [] }
        let done = Set(cancelled.map(\.jobID))
        return queue.filter { job in
            ownership.isOurs(job) && !done.contains(job.jobID) && !job.state.isFinal
                && marked.contains(job.workDir)
        }
    }

    /// Cancels ``lateSuccessors(of:marked:)`` (checked again right before, as every cancel),
    /// and says so.
    func cancelLateSuccessors(of cancelled: [TeardownAction], marked: Set<String>) async -> [TeardownOutcome]
    {
        let late = await lateSuccessors(of: cancelled, marked: marked)
        guard !late.isEmpty, let argv = try? Scancel(jobIDs: late.map(\.jobID)).checkedArgv() else {
            return []
        }
        let sent = (try? await context.host.run(argv, input: nil, timeout: schedulerTimeout))?.status == 0
        let (confirmed, _) = sent ? await waitForEnd(late.map(\.jobID)) : ([:], [:])
        return late.map { job in
            let action = TeardownAction(
                kind: .cancel, jobID: job.jobID, name: Ownership.deploymentName(job),
                reason: "a successor submitted while the deployment was being torn down",
                deployDir: job.workDir)
            if let how = confirmed[job.jobID] {
                return TeardownOutcome(
                    action: action, succeeded: true,
                    message:
                        "Cancelled job \(job.jobID) (\(action.name)), a successor submitted during the teardown: \(how)."
                )
            }
            return TeardownOutcome(
                action: action, succeeded: false,
                message:
                    "Job \(job.jobID) (\(action.name)) was submitted as a successor during the teardown and could not be confirmed cancelled; check it with `squeue -j \(job.jobID)` and run teardown again."
            )
        }
    }

    /// Closes this machine's tunnels that followed a torn-down chain (`vllmctl tunnel NAME`
    /// runs a balancing endpoint recorded under the job that served when it opened, which a
    /// handover has replaced since): those named after a deployment in a marked directory of
    /// which no live job is left. An unanswered squeue closes nothing.
    func closeChainTunnels(of cancelled: [TeardownAction], marked: Set<String>) async -> [TeardownOutcome] {
        let names = Set(
            cancelled.filter { $0.deployDir.map(marked.contains) ?? false }.map {
                JobName.split($0.name).name
            })
        guard !names.isEmpty else { return [] }
        let listing = Squeue(user: ownership.user)
        guard let queue = try? await ask(listing.argv, parse: listing.parse) else { return [] }
        let live = Set(
            queue.filter { ownership.isOurs($0) && !$0.state.isFinal }.map {
                JobName.split(Ownership.deploymentName($0)).name
            })
        let tunnels = TunnelStore(records: context.records)
        return tunnels.open(cluster: profile.name).filter {
            names.contains($0.name) && !live.contains($0.name)
        }
        .map { tunnel in
            _ = tunnels.close(tunnel)
            return TeardownOutcome(
                action: TeardownAction(
                    kind: .cleanUp, jobID: tunnel.jobID, name: tunnel.name,
                    reason: "a tunnel that followed the renewing deployment"),
                succeeded: true,
                message: "Closed the tunnel \(tunnel.baseURL) (pid \(tunnel.pid)) to \(tunnel.name).")
        }
    }

    /// Replaces the shared copy a torn-down chain kept current (named in its directory's
    /// ``SharedConnectionFile/pointer``) with a notice: it is named after the chain's first job,
    /// which teardown's own clean-up does not see.
    func noticeChainSharedCopies(of cancelled: [TeardownAction], marked: Set<String>) async
        -> [TeardownOutcome]
    {
        var out: [TeardownOutcome] = []
        for action in cancelled {
            guard let dir = action.deployDir, marked.contains(dir),
                let data = try? await context.host.readFile(dir + "/" + SharedConnectionFile.pointer),
                let path = String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(
                    String.init),
                path.hasPrefix("/"),
                let replaced = try? await SharedConnectionFile(context: context, profile: profile)
                    .replaceWithNotice(path: path, name: JobName.split(action.name).name, jobID: action.jobID)
            else { continue }
            out.append(
                TeardownOutcome(
                    action: action, succeeded: true,
                    message: "Replaced the shared copy \(replaced) of \(action.name) with a stopped notice."))
        }
        return out
    }
}
