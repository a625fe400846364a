import Foundation
import NIOCore
import NIOHTTP1

/// The shared state of a ``Balancer``: the replica table, the idle upstream connections and
/// the drain waiters, behind one lock that each request takes a few times (pick, pool, finish)
/// for a moment. A request's own flow is a ``Forwarding``.
final class BalancerEngine: Sendable {
    /// Idle connections are kept per replica and per event loop: a request takes one on its
    /// client's loop, so that relaying never crosses threads (nginx's keepalive pool is per
    /// worker in the same way).
    struct PoolKey: Hashable, Sendable {
        var replica: Replica
        var loop: ObjectIdentifier
    }

    struct State: Sendable {
        var table: ReplicaTable
        var idle: [PoolKey: [UpstreamConnection]] = [:]
        var drainWaiters: [Replica: [CheckedContinuation<Void, Never>]] = [:]
        var rng = TieBreaker()
    }

    let state: Locked<State>
    let connector: any UpstreamConnector
    let settings: BalancerSettings
    let group: any EventLoopGroup
    let onEvent: @Sendable (BalancerEvent) -> Void

    var maxBody: Int { settings.maxBufferedBody }

    init(
        connector: any UpstreamConnector, settings: BalancerSettings, group: any EventLoopGroup,
        onEvent: @escaping @Sendable (BalancerEvent) -> Void
    ) {
        self.connector = connector
        self.settings = settings
        self.group = group
        self.onEvent = onEvent
        state = Locked(
            State(
                table: ReplicaTable(
                    failuresToLeave: settings.failuresToLeave, successesToReturn: settings.successesToReturn))
        )
    }

    /// Runs `body` on the table under the lock, then reports its events (outside the lock),
    /// closes the idle connections of replicas that left and wakes drain waiters.
    @discardableResult
    func update(_ body: (inout ReplicaTable) -> [BalancerEvent]) -> [BalancerEvent] {
        updateState { s in body(&s.table) }
    }

    /// ``update(_:)`` with the whole state; every request's attempt ends here (``finish``), so
    /// the sweeps cost nothing when nothing changed: a replica leaves the set only with a
    /// `.left` event, and waiters are looked at only when there are some.
    @discardableResult
    private func updateState(_ body: (inout State) -> [BalancerEvent]) -> [BalancerEvent] {
        let (events, closing, waking) = state.withLock {
            s -> ([BalancerEvent], [UpstreamConnection], [CheckedContinuation<Void, Never>]) in
            let events = body(&s)
            var closing: [UpstreamConnection] = []
            var waking: [CheckedContinuation<Void, Never>] = []
            if !events.isEmpty {
                for key in Array(s.idle.keys) where !s.table.isMember(key.replica) {
                    closing += s.idle.removeValue(forKey: key) ?? []
                }
            }
            if !s.drainWaiters.isEmpty {
                for r in Array(s.drainWaiters.keys) where (s.table.inFlight(r) ?? 0) == 0 {
                    waking += s.drainWaiters.removeValue(forKey: r) ?? []
                }
            }
            return (events, closing, waking)
        }
        for c in closing { c.channel.close(promise: nil) }
        for w in waking { w.resume() }
        for e in events { onEvent(e) }
        return events
    }

    /// Waits until `replica` has no request in flight (after ``ReplicaTable/drain(_:)``).
    func waitIdle(_ replica: Replica) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if (s.table.inFlight(replica) ?? 0) == 0 { return true }
                s.drainWaiters[replica, default: []].append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    // MARK: Requests

    /// Answers one request that came in on `client` (called on its channel's event loop):
    /// `GET /vllmctl/replicas` here, anything else on a replica (``Forwarding``).
    func serve(_ request: BufferedRequest, client: ClientSide) {
        let head = request.head
        // The counters page, with or without a query (no array of parts for every request).
        if head.uri == "/vllmctl/replicas" || head.uri.hasPrefix("/vllmctl/replicas?") {
            guard head.method == .GET else {
                answer(
                    client, version: head.version, status: .methodNotAllowed,
                    json: BalancerAnswer.errorBody(
                        message: "/vllmctl/replicas takes GET", type: "invalid_request_error", code: 405),
                    keepAlive: head.isKeepAlive)
                return
            }
            answer(
                client, version: head.version, status: .ok, json: countersPage(), keepAlive: head.isKeepAlive)
            return
        }
        Forwarding(request, client: client, engine: self).start()
    }

    /// The replica for the next attempt (``ReplicaTable/pick(excluding:using:)``), counted in
    /// flight, with a kept-alive connection to it on `loop` if one is idle (one lock for both);
    /// nil when none not in `tried` is in rotation.
    func pick(excluding tried: Set<Replica>, on loop: any EventLoop) -> (Replica, UpstreamConnection?)? {
        let loopID = ObjectIdentifier(loop)
        return state.withLock { s -> (Replica, UpstreamConnection?)? in
            guard let replica = s.table.pick(excluding: tried, using: &s.rng) else { return nil }
            let key = PoolKey(replica: replica, loop: loopID)
            while let c = s.idle[key]?.popLast() {
                if c.channel.isActive { return (replica, c) }
            }
            return (replica, nil)
        }
    }

    /// Records how an attempt on `replica` ended, and in the same moment puts `connection`
    /// (when it may carry another request) back in its loop's pool; one that the pool does not
    /// keep (full, or the replica left) is closed.
    func finish(_ replica: Replica, _ outcome: AttemptOutcome, keeping connection: UpstreamConnection? = nil)
    {
        var kept = false
        updateState { s in
            let events = s.table.finish(replica, outcome)
            if var c = connection {
                let key = PoolKey(replica: replica, loop: ObjectIdentifier(c.channel.eventLoop))
                if s.table.isMember(replica), (s.idle[key]?.count ?? 0) < settings.maxIdlePerReplica {
                    c.reused = true
                    s.idle[key, default: []].append(c)
                    kept = true
                }
            }
            return events
        }
        if let connection, !kept { connection.channel.close(promise: nil) }
    }

    /// Closes every idle upstream connection.
    func closeIdle() {
        let all = state.withLock { s -> [UpstreamConnection] in
            let all = s.idle.values.flatMap { $0 }
            s.idle = [:]
            return all
        }
        for c in all { c.channel.close(promise: nil) }
    }

    // MARK: Answers of its own

    /// `GET /vllmctl/replicas`: a ``ReplicasPage``.
    func countersPage() -> String {
        let stats = state.withLock { $0.table.snapshot() }
        let page = ReplicasPage(replicas: stats)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: (try? encoder.encode(page)) ?? Data(), as: UTF8.self)
    }

    /// Writes a whole JSON response of the balancer's own.
    func answer(
        _ client: ClientSide?, version: HTTPVersion, status: HTTPResponseStatus, json: String, keepAlive: Bool
    ) {
        guard let client else { return }
        let body = NIOCore.ByteBuffer(string: json + "\n")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let channel = client.channel
        channel.write(
            HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers)),
            promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(body)), promise: nil)
        let done = channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        if !keepAlive { done.whenComplete { _ in channel.close(promise: nil) } }
    }
}

/// The random numbers that break ties between equally busy replicas: SplitMix64, seeded once
/// from the system's generator. Fair enough for a tie and free of the system call
/// (`getrandom`) that `SystemRandomNumberGenerator` makes for every number.
struct TieBreaker: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init() {
        var system = SystemRandomNumberGenerator()
        state = system.next()
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
