import ArgumentParser
import Foundation
import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

struct TeardownCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "teardown",
        abstract: "Cancel deployments, or every stale one, and remove their connection files.",
        discussion: """
            Only your own vllmctl jobs are ever cancelled: jobs Slurm lists under your user with a name starting with `vllmctl-`. If squeue or sacct fails, nothing is cancelled.

            --stale finds running deployments whose server has failed /health for longer than the grace period (counted from the first failed check; a server that never answered gets the longer of the grace period and the profile's ready_timeout, default 30m, counted from the job's start), records and connection files of jobs that no longer exist, and, when asked, jobs running longer than --older-than or pending longer than --pending-longer-than. It asks before acting on a terminal; --yes skips the question.

            Durations: 90s, 10m, 2h, 1d, 1h30m, or Slurm's HH:MM:SS.
            """)

    @OptionGroup var cluster: ClusterOptions

    @Argument(help: "Job ids or deployment names to tear down.") var deployments: [String] = []

    @Flag(help: "Tear down stale deployments (see below).") var stale = false
    @Flag(help: "Tear down all of your vllmctl deployments on the cluster.") var all = false
    @Option(help: "With --stale: how long a server may be unhealthy (default 10m).") var grace: String?
    @Option(help: "With --stale: also tear down jobs running longer than this.") var olderThan: String?
    @Option(help: "With --stale: also tear down jobs pending longer than this.") var pendingLongerThan:
        String?
    @Flag(name: [.short, .long], help: "Do not ask for confirmation.") var yes = false
    @Flag(help: "Only list what would be done.") var dryRun = false

    func validate() throws {
        let modes = [!deployments.isEmpty, stale, all].filter { $0 }.count
        if modes != 1 {
            throw ValidationError(
                "Give deployments to tear down (job ids or names), or --stale, or --all: exactly one of them."
            )
        }
        if !stale && (grace != nil || olderThan != nil || pendingLongerThan != nil) {
            throw ValidationError("--grace, --older-than and --pending-longer-than go with --stale.")
        }
        for (flag, value) in [
            ("--grace", grace), ("--older-than", olderThan), ("--pending-longer-than", pendingLongerThan),
        ] {
            guard let value else { continue }
            do {
                _ = try DurationText.parse(value)
            } catch {
                throw ValidationError("\(flag): \(error)")
            }
        }
    }

    var scope: TeardownScope {
        get throws {
            if stale {
                return .stale(
                    StaleCriteria(
                        grace: try grace.map(DurationText.parse) ?? StaleCriteria.defaultGrace,
                        olderThan: try olderThan.map(DurationText.parse),
                        pendingLongerThan: try pendingLongerThan.map(DurationText.parse)))
            }
            return all ? .all : .named(deployments)
        }
    }

    func run() async throws {
        let env = try CLIEnvironment(options: cluster)
        let terminal = env.context.terminal
        let teardown = Teardown(
            context: env.context, profile: env.profile, user: try await env.context.host.userName())
        var scope = try scope
        if case .stale(var criteria) = scope {
            criteria.startupAllowance = env.profile.defaults.readyTimeout ?? DeployPlan.defaultReadyTimeout
            scope = .stale(criteria)
        }
        let plan = try await teardown.plan(scope)
        let named: Bool
        if case .named = scope { named = true } else { named = false }

        if plan.actions.isEmpty {
            terminal.print(
                stale
                    ? "No stale deployments on \(env.profile.name)."
                    : "No vllmctl deployments of yours on \(env.profile.name).")
            return
        }
        if !named || dryRun {
            terminal.print(Self.render(plan))
        }
        if dryRun {
            terminal.print("Dry run: nothing was changed.")
            return
        }
        if !plan.changesSomething {
            if !named {
                terminal.print("Nothing to tear down.")
                if plan.actions.contains(where: { $0.kind == .undecided }) { throw ExitCode.failure }
                return
            }
        } else if !named && !yes {
            guard isatty(STDIN_FILENO) == 1 else {
                throw VLLMCtlError.invalidInput(
                    "Not asking for confirmation: stdin is not a terminal",
                    hint: "Pass --yes to go ahead, or --dry-run to only list. Nothing was changed.")
            }
            FileHandle.standardError.write(
                Data("\(Self.question(plan, cluster: env.profile.name)) [y/N] ".utf8))
            let answer = readLine()?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
            guard answer == "y" || answer == "yes" else {
                terminal.print("Nothing was changed.")
                return
            }
        }

        let outcomes = await teardown.execute(plan)
        for outcome in outcomes where !(outcome.action.kind == .keep && !named) {
            if outcome.succeeded { terminal.print(outcome.message) } else { terminal.note(outcome.message) }
        }
        if outcomes.contains(where: { !$0.succeeded }) { throw ExitCode.failure }
    }

    /// One line per job: what will happen and why.
    static func render(_ plan: TeardownPlan) -> String {
        let verbs: [TeardownAction.Kind: String] = [
            .cancel: "cancel", .cleanUp: "clean up", .alreadyDone: "done", .keep: "keep",
            .undecided: "unsure",
        ]
        let idWidth = plan.actions.map(\.jobID.count).max() ?? 0
        let nameWidth = min(plan.actions.map(\.name.count).max() ?? 0, 30)
        return plan.actions.map { action in
            let verb = (verbs[action.kind] ?? "").padding(toLength: 9, withPad: " ", startingAt: 0)
            let id = action.jobID.padding(toLength: idWidth, withPad: " ", startingAt: 0)
            let name =
                action.name.count >= nameWidth
                ? action.name : action.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
            return "\(verb) \(id)  \(name)  \(action.reason)"
        }.joined(separator: "\n")
    }

    static func question(_ plan: TeardownPlan, cluster: String) -> String {
        var parts: [String] = []
        let cancel = plan.toCancel.count, clean = plan.toCleanUp.count
        if cancel > 0 { parts.append("cancel \(cancel) job\(cancel == 1 ? "" : "s")") }
        if clean > 0 { parts.append("clean up \(clean) record\(clean == 1 ? "" : "s")") }
        return parts.joined(separator: " and ").prefix(1).uppercased()
            + parts.joined(separator: " and ").dropFirst() + " on \(cluster)?"
    }
}
