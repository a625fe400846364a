import VLLMCtlKit

/// `vllmctl tunnel`'s foreground modes: one job, a balanced deployment, a plain `--to`.
extension TunnelCommand {
    /// `vllmctl tunnel NAME` of one job: a ``Tunnel`` on the local port to its server.
    func runSingle(_ ctx: CLIContext, cluster: ClusterContext, store: TunnelStore, deployment: String)
        async throws
    {
        let terminal = ctx.terminal
        let profile = cluster.profile.name
        // The port first: a port in use is the commonest mistake, and costs no handshake.
        let listener = try LocalListener.bind(address: bind, port: localPort)
        let opened = try await DeploymentTunnel.open(
            deployment, context: cluster.context, cluster: profile, listener: listener,
            onEvent: { terminal.note($0.message(target: $1)) })
        let record = opened.record(cluster: profile, bind: bind, background: detachedChild, logFile: logFile)
        try store.save(record)
        // Closing cleanly leaves nothing behind: the record, and a background tunnel's log.
        defer { store.forget(record) }
        if detachedChild {
            // The log holds no key: the parent prints it.
            terminal.note(
                "Tunnel open: \(record.baseURL) → \(record.target) via \(opened.tunnel.via) (job \(record.jobID), \(record.name)); pid \(record.pid)"
            )
        } else {
            DeploymentTunnel.readyLines(record, key: opened.connection.apiKey).forEach(terminal.print)
            terminal.note("Press Ctrl-C to close it.")
        }
        await holdUntilSignal(opened.tunnel, onExit: { store.forget(record) })
        terminal.note("Tunnel closed.")
    }

    /// `vllmctl tunnel NAME` of a replicated deployment: a ``BalancedEndpoint`` on the local
    /// port, its connections carried to the replicas over an SSH session of its own (the
    /// command's session keeps asking squeue which replicas serve).
    func runBalanced(_ ctx: CLIContext, cluster: ClusterContext, store: TunnelStore, deployment: String)
        async throws
    {
        let terminal = ctx.terminal
        let keeper = await ctx.keeper(cluster, deployment: deployment, label: "tunnel")
        let endpoint = try await BalancedEndpoint.start(
            overSSH: deployment, context: cluster.context, cluster: cluster.profile.name, bind: bind,
            port: localPort, keeper: keeper, onEvent: { terminal.note("tunnel: \($0)") })
        try await endpoint.checkThroughItself(bind: bind)
        let record = await endpoint.record(
            cluster: cluster.profile.name, bind: bind, background: detachedChild, logFile: logFile)
        try store.save(record)
        defer { store.forget(record) }
        if detachedChild {
            terminal.note(
                "Tunnel open: \(record.baseURL) balancing \(record.target) of \(record.name); pid \(record.pid)"
            )
        } else {
            DeploymentTunnel.readyLines(record, key: endpoint.apiKey).forEach(terminal.print)
            let serving = endpoint.balancer.snapshot().map { URLTarget.hostPort($0.host, $0.port) }
            terminal.note("Balancing over \(serving.joined(separator: ", ")); Ctrl-C closes it.")
        }
        await waitForSignal()
        await endpoint.stop()
        terminal.note("Tunnel closed.")
    }

    /// `--to HOST:PORT`: a plain forward, as `ssh -N -L PORT:HOST:PORT`.
    func forwardPlain(_ cluster: ClusterContext, to target: String) async throws {
        let terminal = cluster.context.terminal
        let tunnel = try await Tunnel.forward(
            try LocalListener.bind(address: bind, port: localPort), to: try ForwardTarget(parsing: target),
            over: cluster.context.host, cluster: cluster.profile.name,
            onEvent: { terminal.note($0.message(target: target)) })
        terminal.print("Forwarding \(tunnel.baseURL) → \(target) via \(tunnel.via)")
        await holdUntilSignal(tunnel) {}
    }
}
