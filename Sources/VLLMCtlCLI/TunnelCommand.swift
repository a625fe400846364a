import ArgumentParser
import Foundation
import VLLMCtlKit

struct TunnelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tunnel",
        abstract: "Forward a local port to a deployment's server through the login node, like `ssh -L`.",
        discussion: """
            Needs a cluster profile with `ssh_host`. Each local connection is carried over the one SSH \
            session (libssh2) to the job's node and port. The tunnel checks GET /health through itself \
            before it says it is ready, reconnects if the session drops (the local port stays bound), \
            and closes on Ctrl-C or SIGTERM. With --background it keeps running after this command \
            returns; `vllmctl status` shows it and `vllmctl teardown` (or `tunnel --close`) closes it.
            """)

    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "A job id or deployment name.") var deployment: String?
    @Option(
        help: ArgumentHelp(
            "Forward to HOST:PORT as the login node sees it, instead of a deployment (plain TCP, no /health check).",
            valueName: "host:port"))
    var to: String?
    @Option(help: "The local port to listen on (0: any free port).") var localPort: Int = 8000
    @Option(help: "The local address to listen on (0.0.0.0 lets other machines in).") var bind = "127.0.0.1"
    @Flag(help: "Keep the tunnel open in the background after this command returns.") var background = false
    @Flag(help: "Close this deployment's open tunnels instead.") var close = false
    @Flag(help: .hidden) var detachedChild = false
    @Option(help: .hidden) var logFile: String?

    func validate() throws {
        if (deployment == nil) == (to == nil) {
            throw ValidationError("Name a deployment (JOB|NAME), or give --to HOST:PORT.")
        }
        if to != nil && (background || close) {
            throw ValidationError(
                "--to runs in the foreground only; --background and --close take a deployment.")
        }
        if let to {
            do { _ = try ForwardTarget(parsing: to) } catch { throw ValidationError("\(error)") }
        }
    }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let cluster = try ctx.cluster(self.cluster)
        let terminal = ctx.terminal
        let profile = cluster.profile.name
        guard let deployment else { return try await forwardPlain(cluster, to: to ?? "") }
        let store = TunnelStore(records: cluster.context.records)
        if close {
            let closed = store.closeAll(deployment, cluster: profile)
            if closed.isEmpty { terminal.print("No open tunnel to `\(deployment)` on \(profile).") }
            for record in closed {
                terminal.print("Closed the tunnel \(record.baseURL) (pid \(record.pid)).")
            }
            return
        }
        guard cluster.profile.sshHost != nil else {
            throw ValidationError(
                "The profile `\(profile)` has no ssh_host: vllmctl runs on the cluster itself, where the server's URL (`vllmctl info \(deployment)`) is reachable directly. A tunnel needs a profile that reaches the cluster over SSH (e.g. --cluster local-ssh)."
            )
        }
        if background && !detachedChild {
            let record = try await BackgroundTunnel.start(
                executable: try ctx.executable(), deployment: deployment, localPort: localPort, bind: bind,
                store: store, cluster: profile, config: self.cluster.config,
                acceptNewHostKey: self.cluster.acceptNewHostKey, clock: cluster.context.clock)
            let key = try await BackgroundTunnel.apiKey(for: record, context: cluster.context)
            DeploymentTunnel.readyLines(record, key: key).forEach(terminal.print)
            terminal.note(
                "It runs in the background (pid \(record.pid)); `vllmctl tunnel --close \(record.name)` or `vllmctl teardown \(record.name)` closes it."
            )
            return
        }
        // A replicated or renewing deployment: one local port balancing over every replica,
        // which follows the jobs (a renewing deployment's successor joins when it is ready).
        if try await DeploymentResolver(context: cluster.context, cluster: profile).balances(deployment) {
            return try await runBalanced(ctx, cluster: cluster, store: store, deployment: deployment)
        }
        try await runSingle(ctx, cluster: cluster, store: store, deployment: deployment)
    }
}
