import ArgumentParser
import Foundation
import VLLMCtlKit

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "One stable URL for colleagues in front of a replicated deployment, run on the login node.",
        discussion: """
            Runs where the replicas are reachable directly: the login node (a profile without \
            ssh_host). It balances each request over the replicas that serve (least outstanding \
            requests), follows replicas that come and go, and writes a server_connection_info.txt \
            with its own URL for colleagues (removed when it stops). GET /vllmctl/replicas on it \
            shows each replica's counters. From a laptop, use `vllmctl tunnel NAME` instead. \
            docs/REPLICAS.md.
            """)

    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "The deployment's name.") var deployment: String
    @Option(help: "The port to listen on (0: any free port).") var port: Int = 8000
    @Option(help: "The address to listen on.") var bind = "0.0.0.0"
    @Option(help: "The address written into the gateway's URL (default: this host's first address).")
    var host: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535.") }
    }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let cluster = try ctx.cluster(self.cluster)
        let terminal = ctx.terminal
        guard cluster.profile.sshHost == nil else {
            throw ValidationError(
                "The profile `\(cluster.profile.name)` reaches the cluster over SSH: run `vllmctl gateway` on the login node itself (where the replicas are reachable), or use `vllmctl tunnel \(deployment)` here."
            )
        }
        let keeper = await ctx.keeper(cluster, deployment: deployment, label: "gateway")
        let endpoint = try await BalancedEndpoint.start(
            deployment, context: cluster.context, cluster: cluster.profile.name, connector: DirectConnector(),
            bind: bind, port: port, keeper: keeper, onEvent: { terminal.note("gateway: \($0)") })
        let name = JobName.split(deployment).name
        var address = host ?? ""
        if address.isEmpty { address = try await Self.firstAddress(cluster.context.host) }
        guard let key = endpoint.apiKey else {
            await endpoint.stop()
            throw VLLMCtlError.invalidInput(
                "The replicas' connection files hold no key", hint: "See `vllmctl info \(name)`.")
        }
        let served =
            try await DeploymentResolver(context: cluster.context, cluster: cluster.profile.name)
            .replicas(of: name).first?.connection?.servedModelName ?? name
        let info = ConnectionInfo(host: address, port: endpoint.port, apiKey: key, servedModelName: served)
        let dir = try await ctx.gatewayDirectory(cluster: cluster, name: name, port: endpoint.port)
        let file = dir + "/" + DeploymentFiles.infoText
        try LocalFiles.writeAtomically(Data(info.text.utf8), to: file, mode: 0o600)
        defer {
            unlink(file)
            rmdir(dir)
        }
        terminal.print("Gateway: \(info.baseURL) → the replicas of \(name)")
        terminal.print("API key: \(key)")
        terminal.print("Connection info: \(file)")
        terminal.note("Replica counters: \(info.serverURL)/vllmctl/replicas. Ctrl-C stops the gateway.")
        await waitForSignal()
        await endpoint.stop()
        terminal.note("Gateway stopped.")
    }

    /// This host's first address, as `hostname -I` lists them (what colleagues on the cluster reach).
    static func firstAddress(_ host: any ClusterHost) async throws -> String {
        let listed = try await host.output(["hostname", "-I"])
        guard let first = listed.split(whereSeparator: \.isWhitespace).first else {
            throw VLLMCtlError.invalidInput("`hostname -I` lists no address", hint: "Pass --host ADDRESS.")
        }
        return String(first)
    }
}

extension CLIContext {
    /// `WORKDIR/NAME-gateway-PORT`, 0700, for the gateway's connection file.
    func gatewayDirectory(cluster: ClusterContext, name: String, port: Int) async throws -> String {
        var workdir = cluster.profile.workdir ?? "~/vllmctl"
        if workdir.hasPrefix("~") {
            workdir = try await cluster.context.host.homeDirectory() + workdir.dropFirst()
        }
        let dir = workdir + "/\(name)-gateway-\(port)"
        try FileManager.default.createDirectory(
            atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return dir
    }
}
