import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One local HTTP endpoint in front of several vLLM replicas, balancing each request (not
/// each connection) to the replica with the fewest requests in flight, ties broken at random.
///
/// Connections are kept alive on both sides. Streamed responses pass through as they arrive.
/// Replicas are checked with `GET /health` every ``BalancerSettings/healthInterval`` seconds,
/// and a request that a replica refused or dropped before answering goes to another one. The
/// endpoint serves its counters at `GET /vllmctl/replicas`. See docs/REPLICAS.md.
///
/// ```swift
/// let balancer = Balancer(replicas: [Replica(host: "10.77.0.11", port: 8000),
///                                    Replica(host: "10.77.0.12", port: 8000)])
/// let port = try await balancer.start(host: "127.0.0.1", port: 0)
/// // … clients use http://127.0.0.1:\(port)/v1 with the deployment's key …
/// await balancer.shutdown()
/// ```
///
/// Nothing of NIO exists until a balancer is made: other commands pay nothing for it.
public final class Balancer: Sendable {
    private let engine: BalancerEngine
    private let group: any EventLoopGroup
    private let ownsGroup: Bool
    private let running = Locked<
        (server: (any Channel)?, health: [Replica: Task<Void, Never>], stopped: Bool)
    >(
        (nil, [:], false))

    /// A balancer over `replicas` (none is fine: ``setReplicas(_:)`` adds them later).
    /// - Parameters:
    ///   - connector: where connections to replicas come from; nil: plain TCP
    ///     (``DirectConnector`` with the settings' ``BalancerSettings/unacknowledgedTimeout``).
    ///   - eventLoopGroup: NIO's threads; nil: the balancer makes its own
    ///     (``BalancerSettings/threads``) and shuts it down in ``shutdown()``.
    ///   - onEvent: called on every change of the replica set or a replica's rotation state,
    ///     from any thread; keep it short.
    public init(
        replicas: [Replica], connector: (any UpstreamConnector)? = nil,
        settings: BalancerSettings = BalancerSettings(), eventLoopGroup: (any EventLoopGroup)? = nil,
        onEvent: @escaping @Sendable (BalancerEvent) -> Void = { _ in }
    ) {
        if let eventLoopGroup {
            group = eventLoopGroup
            ownsGroup = false
        } else {
            group = MultiThreadedEventLoopGroup(numberOfThreads: max(settings.threads, 1))
            ownsGroup = true
        }
        engine = BalancerEngine(
            connector: connector ?? DirectConnector(unacknowledgedTimeout: settings.unacknowledgedTimeout),
            settings: settings, group: group, onEvent: onEvent)
        engine.update { $0.set(replicas) }
    }

    /// Listens on `host:port` (0: a free port) and starts the health checks; returns the
    /// port. Throws ``VLLMCtlError/invalidInput(_:hint:)`` when the address cannot be bound.
    @discardableResult
    public func start(host: String = "127.0.0.1", port: Int = 0) async throws -> Int {
        guard !running.value.stopped, running.value.server == nil else {
            throw VLLMCtlError.invalidInput(
                "this balancer has already been started", hint: "Make a new Balancer for another endpoint.")
        }
        let engine = self.engine
        let server: any Channel
        do {
            server = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Response heads are the replica's, parsed by NIO's HTTP decoder (which
                        // takes no CR or LF in a name or value), or the balancer's own: checking
                        // them again on the way out cost 6 % of the CPU a small request takes.
                        // Pipelined requests are kept in order by ClientHandler, which also
                        // answers a request the parser cannot read (400).
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                            withPipeliningAssistance: false, withErrorHandling: false,
                            withOutboundHeaderValidation: false)
                        try channel.pipeline.syncOperations.addHandler(ClientHandler(engine: engine))
                    }
                }
                .bind(host: host, port: port).get()
        } catch {
            throw VLLMCtlError.invalidInput(
                "cannot listen on \(URLTarget.hostPort(host, port)): \(error)",
                hint: "Pick another port, or stop what listens there.")
        }
        running.withLock { $0.server = server }
        syncHealthChecks()
        return server.localAddress?.port ?? port
    }

    /// The port it listens on; nil before ``start(host:port:)``.
    public var port: Int? { running.value.server?.localAddress?.port }

    /// Makes `replicas` the set without restarting: new ones join (in rotation, checked at
    /// once), missing ones leave: no new request goes to them, and requests already on them
    /// finish.
    public func setReplicas(_ replicas: [Replica]) {
        engine.update { $0.set(replicas) }
        syncHealthChecks()
    }

    /// Stops sending new requests to `replica` and returns once none is in flight on it (at
    /// once when it is idle or unknown). It stays a member, out of rotation, until
    /// ``setReplicas(_:)`` removes it.
    public func drain(_ replica: Replica) async {
        engine.update { $0.drain(replica) }
        await engine.waitIdle(replica)
    }

    /// Every replica's counters, in the order they joined.
    public func snapshot() -> [ReplicaStats] {
        engine.state.withLock { $0.table.snapshot() }
    }

    /// Stops listening, stops the health checks and closes the idle connections to replicas.
    /// With a group of its own, the balancer then shuts it down, which closes every connection
    /// and cuts requests in flight. With a group passed in, requests in flight finish on their
    /// connections.
    public func shutdown() async {
        let (server, health, first) = running.withLock { r in
            let result = (r.server, Array(r.health.values), !r.stopped)
            r.server = nil
            r.health = [:]
            r.stopped = true
            return result
        }
        guard first else { return }
        for task in health { task.cancel() }
        try? await server?.close()
        engine.closeIdle()
        for task in health { await task.value }
        if ownsGroup { try? await group.shutdownGracefully() }
    }

    /// One health-check task per member once started; removed members' tasks end.
    private func syncHealthChecks() {
        let members = Set(engine.state.withLock { s in s.table.order.filter { s.table.isMember($0) } })
        let engine = self.engine
        let stale = running.withLock { r -> [Task<Void, Never>] in
            guard r.server != nil, !r.stopped else { return [] }
            var stale: [Task<Void, Never>] = []
            for (replica, task) in r.health where !members.contains(replica) {
                stale.append(task)
                r.health[replica] = nil
            }
            for replica in members where r.health[replica] == nil {
                r.health[replica] = Task {
                    while !Task.isCancelled {
                        let outcome = await HealthCheck.run(
                            replica, connector: engine.connector, on: engine.group.next(),
                            timeout: engine.settings.healthTimeout,
                            connectTimeout: engine.settings.healthConnectTimeout,
                            stalledAfter: engine.settings.stalledCheckAfter,
                            stalled: { [settings = engine.settings] in
                                engine.state.withLock {
                                    $0.table.isStalled(replica, for: settings.stalledCheckAfter)
                                }
                            })
                        if Task.isCancelled { break }
                        engine.update { $0.health(replica, outcome) }
                        // A replica in rotation that just failed a check is checked again at
                        // once: a silent outage (a node gone, no refusal to see) then takes it
                        // out after two check timeouts, without an interval between them.
                        let suspect =
                            if case .unhealthy = outcome {
                                engine.state.withLock { $0.table.isInRotation(replica) }
                            } else { false }
                        if suspect { continue }
                        await Self.waitForNextCheck(of: replica, engine: engine)
                    }
                }
            }
            return stale
        }
        for task in stale { task.cancel() }
    }

    /// Waits for the next health check of `replica`: the interval, or less once its requests
    /// stall (``ReplicaTable/isStalled(_:for:now:)``): a node whose link went down is then
    /// checked within about ``BalancerSettings/stalledCheckAfter`` of its last response instead
    /// of up to an interval later. Looks every 100 ms, under the table's lock only.
    private static func waitForNextCheck(of replica: Replica, engine: BalancerEngine) async {
        let settings = engine.settings
        let gap = max(0.1, min(settings.stalledCheckAfter, settings.healthInterval))
        let start = MonotonicClock.now()
        func elapsed() -> Double { Double(MonotonicClock.now() - start) / 1e9 }
        try? await Task.sleep(for: .seconds(gap))
        while !Task.isCancelled && elapsed() < settings.healthInterval {
            if engine.state.withLock({ $0.table.isStalled(replica, for: settings.stalledCheckAfter) }) {
                return
            }
            try? await Task.sleep(for: .seconds(min(0.1, max(settings.healthInterval - elapsed(), 0.001))))
        }
    }

    /// The safety net: a balancer dropped without ``shutdown()`` stops its health checks and
    /// its own event loops (the listener closes with them).
    deinit {
        let r = running.value
        guard !r.stopped else { return }
        for task in r.health.values { task.cancel() }
        if ownsGroup {
            group.shutdownGracefully { _ in }
        } else {
            r.server?.close(promise: nil)
        }
    }
}

/// Runs `body` with a started ``Balancer`` and its port, and shuts it down afterwards,
/// also when `body` throws.
public func withBalancer<T: Sendable>(
    replicas: [Replica], connector: (any UpstreamConnector)? = nil,
    settings: BalancerSettings = BalancerSettings(), host: String = "127.0.0.1", port: Int = 0,
    onEvent: @escaping @Sendable (BalancerEvent) -> Void = { _ in },
    _ body: (Balancer, Int) async throws -> T
) async throws -> T {
    let balancer = Balancer(replicas: replicas, connector: connector, settings: settings, onEvent: onEvent)
    do {
        let bound = try await balancer.start(host: host, port: port)
        let result = try await body(balancer, bound)
        await balancer.shutdown()
        return result
    } catch {
        await balancer.shutdown()
        throw error
    }
}
