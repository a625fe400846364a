import ArgumentParser
import Foundation
import VLLMCtlKit

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show your vllmctl deployments on a cluster, or one in detail.",
        discussion:
            "One squeue call builds the table (plus one sacct call with --all). The JSON schema is in docs/STATUS_JSON.md."
    )

    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "A job id or deployment name for the detail view.") var deployment: String?
    @Flag(help: "Include ended deployments.") var all = false
    @Flag(help: "Print JSON (docs/STATUS_JSON.md).") var json = false
    @Flag(help: "Refresh every few seconds (on a terminal).") var watch = false
    @Option(help: "Seconds between refreshes with --watch.") var interval: Double = 5

    func validate() throws {
        guard interval.isFinite, (0.1...86400).contains(interval) else {
            throw ValidationError("--interval must be between 0.1 and 86400 seconds.")
        }
    }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let cluster = try ctx.cluster(self.cluster)
        let terminal = ctx.terminal
        try await cancellingOnSignal {
            repeat {
                // With --watch a lost SSH connection is replaced (status only reads).
                let text =
                    watch
                    ? try await cluster.context.host.retryingReads(terminal: terminal) {
                        try await render(cluster)
                    }
                    : try await render(cluster)
                terminal.print(watch && terminal.isInteractive ? "\u{1B}[H\u{1B}[2J" + text : text)
                if watch { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) }
            } while watch
        }
    }

    func render(_ cluster: ClusterContext) async throws -> String {
        let name = cluster.profile.name
        if let deployment {
            let detail = try await StatusDetail.gather(deployment, context: cluster.context, cluster: name)
            return json ? try detail.json() : detail.text
        }
        let rows = try await StatusBuilder(context: cluster.context, cluster: name).build(includeEnded: all)
        if json {
            return try StatusReport(cluster: name, generatedAt: Date(), deployments: rows).json()
        }
        if rows.isEmpty {
            return
                "No vllmctl deployments on \(name)\(all ? "" : " (--all includes ended ones)"). Start one with `vllmctl deploy MODEL`."
        }
        return StatusTable.render(rows)
    }
}
