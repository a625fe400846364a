import ArgumentParser
import Foundation
import TestSupport
import Testing

@testable import VLLMCtlCLI
@testable import VLLMCtlKit

/// Stdin as a test gives it.
struct GivenInput: CommandInput {
    var isTerminal = false
    var text = ""
    var answer: String? = nil
    func readAll() -> String { text }
    func ask(_ question: String) -> String? { answer }
}

/// One command run in this process: a config file, a scripted cluster, captured output.
struct CommandHarness {
    let dir: String
    let host: ScriptedHost
    let http: any HTTPClient
    let terminal = CapturedTerminal()
    let written = Locked("")
    var input: any CommandInput = GivenInput()
    var configYAML = """
        default_cluster: test
        clusters:
          test:
            partition: debug
            workdir: WORKDIR
            gpu_request: gres
        models:
          sim:
            model: Qwen/Qwen2.5-0.5B-Instruct
            served_name: sim
            gpus: 1
        """

    init(
        host: ScriptedHost = ScriptedHost { _ in CommandResult(status: 0, stdout: "", stderr: "") },
        http: any HTTPClient = FixedHTTP(status: 200)
    ) throws {
        dir = try temporaryDirectory()
        self.host = host
        self.http = http
    }

    var records: DeploymentStore { DeploymentStore(directory: dir + "/state") }
    var configPath: String { dir + "/config.yaml" }

    /// The context the command sees: this harness's parts, nothing of the real machine.
    var context: CLIContext {
        var ctx = CLIContext.unset
        ctx.environment = [
            "VLLMCTL_CONFIG": configPath, "VLLMCTL_STATE_DIR": dir + "/state",
            "VLLMCTL_TEMPLATES": repoRoot + "/templates", "HOME": dir, "XDG_CONFIG_HOME": dir + "/xdg",
        ]
        ctx.terminal = terminal
        let written = self.written
        ctx.write = { text in written.withLock { $0 += text } }
        ctx.input = input
        let (host, http, records, terminal) = (self.host, self.http, self.records, self.terminal)
        ctx.openCluster = { options, cli in
            let config = try ConfigLocation.load(explicit: options.config, environment: cli.environment)
            let profile = try config.cluster(named: options.cluster)
            return ClusterContext(
                config: config, profile: profile,
                context: Context(
                    host: host, http: http, clock: SteppingClock(t0), terminal: terminal, records: records,
                    environment: cli.environment))
        }
        ctx.directHTTP = http
        return ctx
    }

    func writeConfig() throws {
        try configYAML.replacingOccurrences(of: "WORKDIR", with: dir + "/work")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Parses `arguments` as `vllmctl` would (validation included) and runs the command.
    func run(_ arguments: [String]) async throws {
        try writeConfig()
        var command = try VLLMCtlCommand.parseAsRoot(arguments)
        switch command {
        case let c as StatusCommand: try await c.run(context)
        case let c as InfoCommand: try await c.run(context)
        case let c as QueryCommand: try await c.run(context)
        case let c as LogsCommand: try await c.run(context)
        case let c as MetricsCommand: try await c.run(context)
        case let c as TunnelCommand: try await c.run(context)
        case let c as TeardownCommand: try await c.run(context)
        case let c as TemplatesCommand: try await c.run(context)
        case let c as ConfigCommand.Init: try await c.run(context)
        case let c as ConfigCommand.Check: try await c.run(context)
        case let c as DoctorCommand: try await c.run(context)
        case let c as DeployCommand: try await c.run(context)
        case let c as ScaleCommand: try await c.run(context)
        case let c as GatewayCommand: try await c.run(context)
        default: try command.run()
        }
    }

    /// A running deployment `name` (job `id`) with its record and connection file.
    func deployment(_ name: String, id: String, key: String = testKey) throws -> DeploymentRecord {
        let deployDir = dir + "/work/" + name
        try FileManager.default.createDirectory(atPath: deployDir, withIntermediateDirectories: true)
        let record = DeploymentRecord(
            name: name, cluster: "test", jobID: id, model: "Qwen/Qwen2.5-0.5B-Instruct",
            servedModelName: name,
            deployDir: deployDir, phase: .ready, createdAt: t0, url: "http://10.77.0.11:8000", apiKey: key)
        try records.save(record)
        let connection = ConnectionRecord(
            serverURL: "http://10.77.0.11:8000", apiKey: key, host: "10.77.0.11", port: 8000,
            model: record.model, servedModelName: name, jobID: id, node: "node1",
            startedAt: "2026-11-29T10:00:00Z",
            readyAt: nil, endedAt: nil)
        try JSONEncoder().encode(connection).write(
            to: URL(fileURLWithPath: deployDir + "/" + DeploymentFiles.infoJSON))
        try "one\ntwo\nthree\n".write(
            toFile: deployDir + "/" + DeploymentFiles.stdout(jobID: id), atomically: true, encoding: .utf8)
        return record
    }
}

/// A key of the generated shape, drawn per run (no key-shaped literal in the tree).
let testKey = APIKey.generate().value

/// A host whose squeue lists `jobs` (in the call's own marks) and whose `id -un` is `me`;
/// a job scancel was given leaves squeue and reads CANCELLED in sacct.
func schedulerHost(_ jobs: [JobSnapshot]) -> ScriptedHost {
    let cancelled = Locked<Set<String>>([])
    return ScriptedHost { argv in
        let gone = cancelled.value
        switch argv.first {
        case "id": return CommandResult(status: 0, stdout: me + "\n", stderr: "")
        case "squeue":
            let listed = jobs.filter { !gone.contains($0.jobID) }
            return CommandResult(status: 0, stdout: squeueOutput(listed, for: argv), stderr: "")
        case "sacct":
            var ended = jobs.filter { gone.contains($0.jobID) }
            for i in ended.indices { ended[i].state = .cancelled }
            return CommandResult(status: 0, stdout: sacctOutput(ended, for: argv), stderr: "")
        case "scancel":
            cancelled.withLock { $0.formUnion(argv.dropFirst(2)) }
            return CommandResult(status: 0, stdout: "", stderr: "")
        default: return CommandResult(status: 127, stdout: "", stderr: "unexpected \(argv)")
        }
    }
}
