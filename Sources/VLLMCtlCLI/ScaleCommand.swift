import ArgumentParser
import Foundation
import VLLMCtlKit

struct ScaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "Add or remove replicas of a running deployment.",
        discussion: """
            New replicas get the deployment's settings and key, and are waited for until ready \
            (--no-wait returns after submission). Replicas removed are the least loaded (vLLM's \
            running + waiting requests), the newest first among equals; each is cancelled once \
            its requests have finished or --drain-timeout has passed. docs/REPLICAS.md.
            """)

    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "The deployment's name.") var deployment: String
    @Argument(help: "How many replicas it should have.") var replicas: Int
    @Option(help: "Seconds a removed replica may take to finish its requests.") var drainTimeout: Double = 60
    @Flag(help: "Return after submitting new replicas.") var noWait = false

    func validate() throws {
        guard (1...DeployPlan.maxReplicas).contains(replicas) else {
            throw ValidationError(
                "REPLICAS must be 1 to \(DeployPlan.maxReplicas); `vllmctl teardown NAME` stops a deployment."
            )
        }
        guard drainTimeout.isFinite, (0...86400).contains(drainTimeout) else {
            throw ValidationError("--drain-timeout must be between 0 and 86400 seconds.")
        }
    }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let env = try ctx.cluster(cluster)
        let scaler = Scaler(
            deployer: Deployer(
                context: env.context, config: env.config, profile: env.profile, templates: ctx.templates))
        let outcome = try await cancellingOnSignal {
            try await scaler.scale(deployment, to: replicas, wait: !noWait, drainTimeout: drainTimeout)
        }
        let terminal = ctx.terminal
        for added in outcome.added {
            let state = added.connection.map { "ready at \($0.baseURL)" } ?? "submitted"
            terminal.print("Added \(added.record.displayName) (job \(added.record.jobID)), \(state)")
        }
        for removed in outcome.removed {
            if removed.succeeded { terminal.print(removed.message) } else { terminal.note(removed.message) }
        }
        if outcome.added.isEmpty && outcome.removed.isEmpty {
            terminal.print("`\(deployment)` already has \(replicas) replica\(replicas == 1 ? "" : "s").")
        }
        if outcome.removed.contains(where: { !$0.succeeded }) { throw ExitCode.failure }
    }
}
