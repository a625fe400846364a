import Foundation

/// One endpoint in front of a replicated deployment: a ``Balancer`` whose replicas follow the
/// deployment's ``ReplicaSet`` (refreshed every few seconds with one squeue call), so that
/// replicas that appear (scale, resubmission) join and replicas that end leave, without a
/// restart. `vllmctl tunnel NAME` runs one on the laptop (connections carried over SSH);
/// `vllmctl gateway NAME` on the login node (plain TCP).
public final class BalancedEndpoint: Sendable {
    /// The balancer.
    public let balancer: Balancer
    /// The deployment's replicas.
    public let replicas: ReplicaSet
    /// The port it listens on.
    public let port: Int
    /// The key the replicas share.
    public let apiKey: String?
    private let refresher: Task<Void, Never>

    private init(
        balancer: Balancer, replicas: ReplicaSet, port: Int, apiKey: String?, refresher: Task<Void, Never>
    ) {
        self.balancer = balancer
        self.replicas = replicas
        self.port = port
        self.apiKey = apiKey
        self.refresher = refresher
    }

    /// Seconds between two looks at the deployment's replicas (one squeue call each).
    public static let defaultRefreshSeconds: Double = 5

    /// Starts the endpoint on `bind:port` in front of deployment `name`'s replicas. With a
    /// `keeper`, each refresh also resubmits failed replicas (``ReplicaKeeper``). Throws
    /// when the deployment has no serving replica yet (nothing to balance), or the address
    /// cannot be bound. A refresh that cannot ask the scheduler changes nothing: replicas are
    /// never dropped on a guess.
    public static func start(
        _ name: String, context: Context, cluster: String, connector: any UpstreamConnector, bind: String,
        port: Int, refreshSeconds: Double = defaultRefreshSeconds,
        settings: BalancerSettings = BalancerSettings(),
        keeper: ReplicaKeeper? = nil, onEvent: @escaping @Sendable (BalancerEvent) -> Void
    ) async throws -> BalancedEndpoint {
        let set = ReplicaSet(context: context, cluster: cluster, name: name)
        let first = try await set.refresh()
        guard !first.isEmpty else {
            throw VLLMCtlError.invalidInput(
                "No replica of `\(JobName.split(name).name)` is serving yet",
                hint: "`vllmctl status` shows them; try again once one is ready.")
        }
        let balancer = Balancer(
            replicas: first.map { Replica(host: $0.host, port: $0.port) }, connector: connector,
            settings: settings,
            onEvent: onEvent)
        let bound: Int
        do {
            bound = try await balancer.start(host: bind, port: port)
        } catch {
            await balancer.shutdown()
            throw error
        }
        let clock = context.clock
        let refresher = Task {
            while !Task.isCancelled {
                try? await clock.sleep(seconds: refreshSeconds)
                if Task.isCancelled { break }
                if let now = try? await set.refresh() {
                    balancer.setReplicas(now.map { Replica(host: $0.host, port: $0.port) })
                }
                // On the same squeue answer; nothing when squeue could not be asked.
                if let keeper, let queued = await set.queued { await keeper.round(queue: queued) }
            }
        }
        return BalancedEndpoint(
            balancer: balancer, replicas: set, port: bound, apiKey: await set.apiKey, refresher: refresher)
    }

    /// `vllmctl tunnel NAME`: the endpoint on this machine, its connections carried to the
    /// replicas over an SSH session of its own to the login node that `context.host` reaches
    /// (whose own session keeps asking squeue which replicas serve), plus a spare session,
    /// connected when first used, for while an open on the first waits for a node that is gone.
    public static func start(
        overSSH name: String, context: Context, cluster: String, bind: String, port: Int,
        keeper: ReplicaKeeper? = nil, onEvent: @escaping @Sendable (BalancerEvent) -> Void
    ) async throws -> BalancedEndpoint {
        guard let remote = context.host as? RemoteHost else {
            throw VLLMCtlError.invalidInput(
                "The profile `\(cluster)` does not reach the cluster over SSH",
                hint:
                    "A tunnel needs a profile with `ssh_host`; on the cluster itself, use `vllmctl gateway`.")
        }
        let routes = [RemoteHost(options: remote.options), RemoteHost(options: remote.options)]
        return try await start(
            name, context: context, cluster: cluster, connector: RouteConnector(routes: routes), bind: bind,
            port: port, keeper: keeper, onEvent: onEvent)
    }

    /// Asks `/health` through the endpoint itself, as a client will (a replica answers);
    /// throws, and stops the endpoint, when it does not.
    public func checkThroughItself(bind: String) async throws {
        let url = "http://" + URLTarget.hostPort(bind == "0.0.0.0" ? "127.0.0.1" : bind, port) + "/health"
        do {
            let health = try await CurlHTTPClient().send(HTTPRequest(url: url, timeout: 10))
            guard health.status == 200 else {
                throw VLLMCtlError.http(
                    url: url, message: "answered \(health.status) through the endpoint",
                    hint: "See `vllmctl status \(replicas.name)`.")
            }
        } catch {
            await stop()
            throw error
        }
    }

    /// The tunnel record `status` and `teardown` find it by (this process), under the first
    /// serving replica's job.
    public func record(cluster: String, bind: String, background: Bool, logFile: String?) async
        -> TunnelRecord
    {
        let serving = (try? await replicas.refresh()) ?? []
        return TunnelRecord(
            cluster: cluster, jobID: serving.first?.jobID ?? "", name: replicas.name, pid: getpid(),
            bind: bind,
            localPort: port, target: "\(serving.count) replicas", startedAt: Date(), background: background,
            logFile: logFile)
    }

    /// Stops following the deployment and shuts the balancer down.
    public func stop() async {
        refresher.cancel()
        await balancer.shutdown()
    }
}
