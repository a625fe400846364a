import ArgumentParser
import VLLMCtlKit

/// The `vllmctl` command: subcommands only.
public struct VLLMCtlCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "vllmctl",
        abstract: "Run vLLM model servers on Slurm clusters and hand out connections that work.",
        version: VLLMCtl.versionLine,
        subcommands: [
            DeployCommand.self, StatusCommand.self, InfoCommand.self, QueryCommand.self, LogsCommand.self,
            MetricsCommand.self, TunnelCommand.self, TeardownCommand.self, ScaleCommand.self,
            GatewayCommand.self,
            TemplatesCommand.self,
            ConfigCommand.self, DoctorCommand.self,
        ])

    public init() {}

    /// The executable's entry: ArgumentParser's `main()`, except for the plain status table
    /// (``StatusCommand/shortcut(_:)``), which is run the way `main()` runs a command.
    public static func start() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard let status = StatusCommand.shortcut(arguments) else { return await main(arguments) }
        do {
            try status.validate()
            try await status.run(.live)
        } catch {
            exit(withError: error)
        }
    }
}

/// Options every command that talks to a cluster takes.
struct ClusterOptions: ParsableArguments {
    @Option(
        name: .long,
        help: "The configuration file (default: $VLLMCTL_CONFIG, else $XDG_CONFIG_HOME/vllmctl/config.yaml).")
    var config: String?

    @Option(name: .long, help: "The cluster profile to use (default: the configuration's default_cluster).")
    var cluster: String?

    @Flag(
        name: .long,
        help: "With `ssh_host`: record an unknown host's key in known_hosts (a changed key is refused).")
    var acceptNewHostKey = false
}

extension ClusterOptions {
    /// The options as plain values.
    var choice: ClusterChoice {
        ClusterChoice(config: config, cluster: cluster, acceptNewHostKey: acceptNewHostKey)
    }
}

/// Which cluster a command works on, and how it may connect: ``ClusterOptions`` as values.
struct ClusterChoice: Sendable, Equatable {
    var config: String?
    var cluster: String?
    var acceptNewHostKey = false
}
