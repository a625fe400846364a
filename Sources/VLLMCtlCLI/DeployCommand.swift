import ArgumentParser
import Foundation
import VLLMCtlKit

struct DeployCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy",
        abstract: "Submit a vLLM server job and wait until it answers.",
        discussion: """
            MODEL is a preset from the configuration, a Hugging Face id or a path on the cluster.
            Flags override the preset, and the preset overrides the cluster profile.
            Arguments after `--` go to the server unchanged.
            """)

    @OptionGroup var cluster: ClusterOptions

    @Argument(help: "A model preset, a Hugging Face id, or a model path on the cluster.")
    var model: String

    @Argument(parsing: .postTerminator, help: "Extra arguments for the server, after `--`.")
    var serverArgs: [String] = []

    @Option(help: "The deployment's name (default: the preset's or model's name).") var name: String?
    /// `--template` … `--max-log-len`: one flag per row of the settings table.
    @OptionGroup var job: SettingFlags<JobSettingRows>

    @Option(help: "Read the API key from this file instead of generating one.") var apiKeyFile: String?
    /// `--timeout`, the settings table's `ready_timeout`.
    @OptionGroup var wait: SettingFlags<WaitSettingRows>
    @Flag(help: "Print the rendered script and submit nothing.") var dryRun = false
    @Flag(help: "Return after submission.") var noWait = false
    @Flag(help: "With --replicas: wait until every replica is ready, not only the first.") var waitAll = false
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(
        help:
            "Once ready, open a background tunnel (`vllmctl tunnel --background`) to it on --tunnel-port; needs a profile with ssh_host."
    )
    var tunnel = false
    @Option(help: "The local port for --tunnel (0: any free port).") var tunnelPort: Int = 8000

    func validate() throws {
        try job.check()
        if let timeout = wait.settings.readyTimeout, !(timeout > 0 && timeout <= 7 * 86400) {
            throw ValidationError(
                "--timeout must be a number of seconds above 0 and at most 604800 (7 days).")
        }
        if tunnel && (noWait || dryRun) {
            throw ValidationError("--tunnel waits for the server to be ready; drop --no-wait/--dry-run.")
        }
    }

    /// The command line's layer of settings: the flags, and the arguments after `--`.
    var flags: DeploySettings {
        var s = job.settings.merged(over: wait.settings)
        s.vllmArgs = serverArgs.isEmpty ? nil : serverArgs
        return s
    }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let env = try ctx.cluster(cluster)
        if tunnel && env.profile.sshHost == nil {
            throw ValidationError(
                "--tunnel needs a profile with ssh_host; `\(env.profile.name)` runs on the cluster, where the server's URL works directly."
            )
        }
        let request = DeployRequest(
            modelOrPreset: model, name: name, flags: flags,
            apiKey: try apiKeyFile.map(APIKey.init(contentsOfFile:)), dryRun: dryRun, wait: !noWait,
            waitAll: waitAll)
        let deployer = Deployer(
            context: env.context, config: env.config, profile: env.profile, templates: ctx.templates)
        let terminal = env.context.terminal
        let outcome: DeployOutcome
        do {
            outcome = try await cancellingOnSignal { try await deployer.deploy(request) }
        } catch is CancellationError {
            terminal.note(
                "\n" + DeployReport.interrupted(records: env.context.records, cluster: env.profile.name))
            throw ExitCode(130)
        }
        if dryRun {
            terminal.print(outcome.script)
            return
        }
        guard let record = outcome.record else { return }
        var tunnelRecord: TunnelRecord?
        if tunnel, outcome.connection != nil {
            do {
                tunnelRecord = try await BackgroundTunnel.start(
                    executable: try ctx.executable(), deployment: record.jobID, localPort: tunnelPort,
                    bind: "127.0.0.1", store: TunnelStore(records: env.context.records),
                    cluster: env.profile.name, config: cluster.config,
                    acceptNewHostKey: cluster.acceptNewHostKey, clock: env.context.clock)
            } catch {
                terminal.note(
                    "The deployment is ready, but its tunnel did not open: \(error)\nRetry with `vllmctl tunnel \(record.name) --background`."
                )
                if json {
                    terminal.print(try DeployReport(record: record, connection: outcome.connection).json())
                }
                throw ExitCode(1)
            }
        }
        let report = DeployReport(outcome: outcome, tunnel: tunnelRecord)
        terminal.print(json ? try report.json() : report.text)
    }
}
