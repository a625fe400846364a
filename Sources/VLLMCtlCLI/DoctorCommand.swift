import ArgumentParser
import Foundation
import VLLMCtlKit

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract:
            "Check the configuration, SSH, Slurm, the workdir and this machine; say how to fix what is not ok.",
        discussion: """
            Each check prints ok, warning or problem, and for anything not ok the next step. \
            Exits 0 when nothing is a problem, 1 otherwise. Nothing is changed: known_hosts is not \
            written and no job is submitted unless --submit-probe is given.
            """)

    @Option(
        name: .long,
        help: "The configuration file (default: $VLLMCTL_CONFIG, else $XDG_CONFIG_HOME/vllmctl/config.yaml).")
    var config: String?

    @Option(name: .long, help: "The cluster profile to check (default: the configuration's default_cluster).")
    var cluster: String?

    @Flag(name: .long, help: "Print the report as JSON (for scripts).")
    var json = false

    @Flag(
        name: .long,
        help:
            "Submit a small job that writes a file in the workdir, to check the compute nodes share it (uses the queue)."
    )
    var submitProbe = false

    @Option(name: .long, help: "The local port `vllmctl tunnel` would use.")
    var localPort: Int = 8000

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let doctor = Doctor(
            options: DoctorOptions(
                configPath: config, cluster: cluster, environment: ctx.environment,
                submitProbe: submitProbe, tunnelPort: localPort))
        let report = await doctor.run()
        ctx.terminal.print(json ? report.json : report.text)
        if report.exitStatus != 0 { throw ExitCode(report.exitStatus) }
    }
}
