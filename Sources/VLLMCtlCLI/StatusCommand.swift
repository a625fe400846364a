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

    /// What this run was asked for.
    var request: Request {
        Request(
            cluster: cluster.choice, deployment: deployment, all: all, json: json, watch: watch,
            interval: interval)
    }

    func validate() throws { try request.validate() }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws { try await request.run(ctx) }

    /// A status run as plain values: what the flags say, whether ArgumentParser read them or
    /// ``StatusCommand/shortcut(_:)`` did.
    struct Request: Equatable {
        var cluster = ClusterChoice()
        var deployment: String?
        var all = false
        var json = false
        var watch = false
        var interval: Double = 5

        func validate() throws {
            guard interval.isFinite, (0.1...86400).contains(interval) else {
                throw ValidationError("--interval must be between 0.1 and 86400 seconds.")
            }
        }

        func run(_ ctx: CLIContext) async throws {
            let cluster = try ctx.cluster(self.cluster)
            let terminal = ctx.terminal
            // One table only reads: a signal may end it where it stands, as it ends any reader
            // (signal handling costs a dispatch thread or two, a tenth of what status adds to
            // its squeue). --watch runs until one comes, so it cancels its loop instead.
            guard watch else { return terminal.print(try await render(cluster)) }
            do {
                try await cancellingOnSignal {
                    while true {
                        // A lost SSH connection is replaced (status only reads).
                        let text = try await cluster.context.host.retryingReads(terminal: terminal) {
                            try await render(cluster)
                        }
                        terminal.print(terminal.isInteractive ? "\u{1B}[H\u{1B}[2J" + text : text)
                        try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
                    }
                }
            } catch is CancellationError {
                // Ctrl-C is how a watch ends: not an error.
            }
        }

        func render(_ cluster: ClusterContext) async throws -> String {
            let name = cluster.profile.name
            if let deployment {
                let detail = try await StatusDetail.gather(
                    deployment, context: cluster.context, cluster: name)
                return json ? try detail.json() : detail.text
            }
            let rows = try await StatusBuilder(context: cluster.context, cluster: name).build(
                includeEnded: all)
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
}

extension StatusCommand {
    /// The table as people type it in loops and prompts, `status` with nothing but `--json`,
    /// `--all` and the cluster options, read without ArgumentParser. ArgumentParser reflects
    /// over the command tree and parses twice more to look for a completion-script request
    /// first: ~3 ms of the ~15 that status takes beside its squeue (docs/BENCHMARKS.md).
    ///
    /// Anything else returns nil and goes through ArgumentParser, which explains what is
    /// wrong: help, a deployment, `--watch`, a repeated option, a value that is missing or
    /// starts with `-`. `StatusShortcutTests` checks that both read every line it accepts
    /// alike.
    static func shortcut(_ arguments: [String]) -> Request? {
        guard arguments.first == "status" else { return nil }
        var json = false
        var all = false
        var acceptNewHostKey = false
        var config: String?
        var cluster: String?
        var rest = arguments.dropFirst()
        while let argument = rest.popFirst() {
            let (name, inline) = Self.split(argument)
            let value = { inline ?? rest.popFirst() }
            switch name {
            case "--json" where !json && inline == nil: json = true
            case "--all" where !all && inline == nil: all = true
            case "--accept-new-host-key" where !acceptNewHostKey && inline == nil: acceptNewHostKey = true
            case "--cluster" where cluster == nil:
                guard let v = value(), Self.isPlainValue(v) else { return nil }
                cluster = v
            case "--config" where config == nil:
                guard let v = value(), Self.isPlainValue(v) else { return nil }
                config = v
            default: return nil
            }
        }
        return Request(
            cluster: ClusterChoice(config: config, cluster: cluster, acceptNewHostKey: acceptNewHostKey),
            all: all, json: json)
    }

    /// `--name=value` as `("--name", "value")`; anything else as itself.
    private static func split(_ argument: String) -> (String, String?) {
        guard argument.hasPrefix("--"), let eq = argument.firstIndex(of: "=") else { return (argument, nil) }
        return (String(argument[..<eq]), String(argument[argument.index(after: eq)...]))
    }

    /// A value ArgumentParser would take as one too: not empty, not an option.
    private static func isPlainValue(_ value: String) -> Bool {
        !value.isEmpty && !value.hasPrefix("-")
    }
}
