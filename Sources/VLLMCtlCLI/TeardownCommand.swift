import ArgumentParser
import Foundation
import VLLMCtlKit

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
        do { _ = try criteria(startupAllowance: 0) } catch { throw ValidationError("\(error)") }
    }

    func criteria(startupAllowance: TimeInterval) throws -> StaleCriteria {
        try StaleCriteria(
            grace: grace, olderThan: olderThan, pendingLongerThan: pendingLongerThan,
            startupAllowance: startupAllowance)
    }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let cluster = try ctx.cluster(self.cluster)
        let terminal = ctx.terminal
        let profile = cluster.profile
        let teardown = Teardown(
            context: cluster.context, profile: profile, user: try await cluster.context.host.userName())
        let scope: TeardownScope =
            stale
            ? .stale(
                try criteria(
                    startupAllowance: profile.defaults.readyTimeout ?? DeployPlan.defaultReadyTimeout))
            : all ? .all : .named(deployments)
        let plan = try await teardown.plan(scope)
        let named = !deployments.isEmpty
        if plan.actions.isEmpty {
            terminal.print(
                stale
                    ? "No stale deployments on \(profile.name)."
                    : "No vllmctl deployments of yours on \(profile.name).")
            return
        }
        if !named || dryRun { terminal.print(plan.text) }
        if dryRun { return terminal.print("Dry run: nothing was changed.") }
        if !plan.changesSomething {
            if !named {
                terminal.print("Nothing to tear down.")
                if plan.actions.contains(where: { $0.kind == .undecided }) { throw ExitCode.failure }
                return
            }
        } else if !named && !yes {
            guard ctx.input.isTerminal else {
                throw VLLMCtlError.invalidInput(
                    "Not asking for confirmation: stdin is not a terminal",
                    hint: "Pass --yes to go ahead, or --dry-run to only list. Nothing was changed.")
            }
            let answer =
                ctx.input.ask("\(plan.question(cluster: profile.name)) [y/N] ")?
                .trimmingCharacters(in: .whitespaces).lowercased() ?? ""
            guard answer == "y" || answer == "yes" else { return terminal.print("Nothing was changed.") }
        }
        let outcomes = await teardown.execute(plan)
        for outcome in outcomes where !(outcome.action.kind == .keep && !named) {
            if outcome.succeeded { terminal.print(outcome.message) } else { terminal.note(outcome.message) }
        }
        if outcomes.contains(where: { !$0.succeeded }) { throw ExitCode.failure }
    }
}
