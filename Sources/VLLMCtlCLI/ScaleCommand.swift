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
            its requests have finished or --drain-timeout has passed; a running `tunnel NAME` or \
            `gateway NAME` stops sending them new requests first. With --keep it then stays in the \
            foreground and resubmits failed replicas so that REPLICAS stay up (at most 3 times \
            each per hour), until Ctrl-C. docs/REPLICAS.md.
            """)

    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "The deployment's name.") var deployment: String
    @Argument(help: "How many replicas it should have.") var replicas: Int
    @Option(help: "Seconds a removed replica may take to finish its requests.") var drainTimeout: Double = 60
    @Flag(help: "Return after submitting new replicas.") var noWait = false
    @Flag(help: "Then stay in the foreground and resubmit failed replicas so that REPLICAS stay up.")
    var keep = false

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
        let scaler = ctx.scaler(env)
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
        if keep { try await keepUp(scaler, terminal: terminal) }
    }

    /// Resubmits failed replicas every few seconds until Ctrl-C, or until nothing of the
    /// deployment is left.
    func keepUp(_ scaler: Scaler, terminal: any Terminal) async throws {
        let name = JobName.split(deployment).name
        let keeper = ReplicaKeeper(
            scaler: scaler, name: name, policy: KeepPolicy(keep: replicas),
            onEvent: { terminal.note("\($0)") })
        terminal.note(
            "Keeping \(replicas) replica\(replicas == 1 ? "" : "s") of `\(name)` up: failed ones are resubmitted (at most \(keeper.policy.maxResubmissions) times each per hour). Ctrl-C stops."
        )
        do {
            try await cancellingOnSignal { try await keeper.keepUp() }
        } catch is CancellationError {
            terminal.note("Stopped keeping `\(name)` up; its replicas keep running.")
        }
    }
}
