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

    func run() async throws {
        let env = try CLIEnvironment(options: cluster)
        let terminal = env.context.terminal
        try await cancellingOnSignal {
            repeat {
                // With --watch a lost SSH connection is replaced (status only reads).
                let host = env.context.host
                let text =
                    watch
                    ? try await host.retryingReads(terminal: terminal) { try await render(env) }
                    : try await render(env)
                if watch && terminal.isInteractive {
                    terminal.print("\u{1B}[H\u{1B}[2J" + text)
                } else {
                    terminal.print(text)
                }
                if watch { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) }
            } while watch
        }
    }

    func render(_ env: CLIEnvironment) async throws -> String {
        let builder = StatusBuilder(context: env.context, cluster: env.profile.name)
        if let deployment {
            return try await detail(deployment, env: env, builder: builder)
        }
        let rows = try await builder.build(includeEnded: all)
        if json {
            return try StatusReport(cluster: env.profile.name, generatedAt: Date(), deployments: rows).json()
        }
        if rows.isEmpty {
            return
                "No vllmctl deployments on \(env.profile.name)\(all ? "" : " (--all includes ended ones)"). Start one with `vllmctl deploy MODEL`."
        }
        return StatusTable.render(rows)
    }

    func detail(_ idOrName: String, env: CLIEnvironment, builder: StatusBuilder) async throws -> String {
        let resolved = try await DeploymentResolver(context: env.context, cluster: env.profile.name).resolve(
            idOrName)
        let rows = try await builder.build(includeEnded: true)
        guard let row = rows.first(where: { $0.jobID == resolved.jobID }) else {
            throw VLLMCtlError.notFound(
                what: "deployment", name: idOrName, hint: "`vllmctl status --all` lists them.")
        }
        var server: ServerFacts?
        if row.health == .healthy, let info = resolved.connection {
            server = await ServerFacts.fetch(info, http: env.context.http)
        }
        if json {
            return try DetailReport(
                status: row, stdout: resolved.stdoutPath, stderr: resolved.stderrPath, server: server
            ).json()
        }
        var lines = [StatusTable.render([row], listTunnels: false).trimmingCharacters(in: .newlines), ""]
        if let job = resolved.job, job.state.isFinal == false {
            let scontrol = try await env.context.host.run(
                ["scontrol", "show", "job", "--oneliner", resolved.jobID], input: nil, timeout: .seconds(30))
            let fields = ScontrolJob.parse(scontrol.stdout)
            let keys = [
                "Partition", "Account", "QOS", "TimeLimit", "NumCPUs", "TresPerNode", "TRES", "MinMemoryNode",
                "StartTime",
            ]
            let resources = keys.compactMap { k in fields[k].map { "\(k)=\($0)" } }.joined(separator: " ")
            if !resources.isEmpty { lines.append("Resources:   " + resources) }
        }
        lines.append("Directory:   " + resolved.deployDir)
        lines.append("Info file:   " + resolved.infoFile)
        lines.append("Logs:        " + resolved.stdoutPath + "\n             " + resolved.stderrPath)
        let tunnels = TunnelStore(records: env.context.records).open(
            cluster: env.profile.name, jobID: resolved.jobID)
        if tunnels.isEmpty {
            lines.append("Tunnel:      none open (`vllmctl tunnel \(resolved.name)` opens one)")
        }
        for tunnel in tunnels {
            lines.append(
                "Tunnel:      \(tunnel.baseURL) → \(tunnel.target) (pid \(tunnel.pid)\(tunnel.background ? ", background" : ""))"
            )
        }
        if let server {
            lines.append(
                "Server:      vLLM \(server.version ?? "?")"
                    + (server.simulator ? " (vllm-sim, a simulator)" : ""))
            lines.append("Models:      " + server.models.joined(separator: ", "))
        } else if row.health != .unchecked {
            lines.append("Server:      \(row.health.rawValue)\(row.healthDetail.map { ": " + $0 } ?? "")")
        }
        return lines.joined(separator: "\n")
    }
}

/// What the server says about itself: /version and /v1/models, as the seed's `--info`.
struct ServerFacts: Encodable {
    var version: String?
    var simulator: Bool
    var models: [String]

    static func fetch(_ info: ConnectionRecord, http: any HTTPClient) async -> ServerFacts {
        var facts = ServerFacts(version: nil, simulator: false, models: [])
        if let r = try? await http.send(HTTPRequest(url: info.serverURL + "/version", timeout: 5)),
            let o = try? JSONSerialization.jsonObject(with: r.body) as? [String: Any]
        {
            facts.version = o["version"] as? String
            facts.simulator = o["simulator"] as? Bool ?? false
        }
        if let key = try? APIKey(info.apiKey),
            let r = try? await http.send(
                HTTPRequest(url: info.serverURL + "/v1/models", timeout: 5).authorized(key))
        {
            facts.models = ModelList.names(r.body)
        }
        return facts
    }
}

struct DetailReport: Encodable {
    var status: DeploymentStatus
    var stdout: String
    var stderr: String
    var server: ServerFacts?

    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
