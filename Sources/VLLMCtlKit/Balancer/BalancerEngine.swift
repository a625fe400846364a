import Foundation
import NIOCore
import NIOHTTP1

/// The shared state of a ``Balancer`` and the per-request flow: pick, connect or reuse,
/// forward, fail over.
final class BalancerEngine: Sendable {
    struct State: Sendable {
        var table: ReplicaTable
        var idle: [Replica: [UpstreamConnection]] = [:]
        var drainWaiters: [Replica: [CheckedContinuation<Void, Never>]] = [:]
        var rng = SystemRandomNumberGenerator()
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
        let (events, closing, waking) = state.withLock {
            s -> ([BalancerEvent], [UpstreamConnection], [CheckedContinuation<Void, Never>]) in
            let events = body(&s.table)
            var closing: [UpstreamConnection] = []
            var waking: [CheckedContinuation<Void, Never>] = []
            for r in Array(s.idle.keys) where !s.table.isMember(r) {
                closing += s.idle.removeValue(forKey: r) ?? []
            }
            for r in Array(s.drainWaiters.keys) where (s.table.inFlight(r) ?? 0) == 0 {
                waking += s.drainWaiters.removeValue(forKey: r) ?? []
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

    /// Answers one request: `GET /vllmctl/replicas` here, anything else on a replica, failing
    /// over to another one while no response byte has been sent.
    func serve(_ request: BufferedRequest, client: ClientSide) async {
        let head = request.head
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        if path == "/vllmctl/replicas" {
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
        var tried = Set<Replica>()
        var ourSide: [String] = []
        while !client.isClosed {
            let picked = state.withLock { s in s.table.pick(excluding: tried, using: &s.rng) }
            guard let replica = picked else { break }
            tried.insert(replica)
            let (outcome, next) = await attempt(request, on: replica, client: client)
            update { $0.finish(replica, outcome) }
            switch next {
            case .done: return
            case .closeClient:
                client.channel.close(promise: nil)
                return
            case .tryAnother(let ourSideReason):
                if let ourSideReason { ourSide.append("\(replica): \(ourSideReason)") }
            case .timedOut(let reason):
                answer(
                    client, version: head.version, status: .gatewayTimeout,
                    json: BalancerAnswer.errorBody(
                        message:
                            "The replica \(replica) \(reason) in answer to this request (the balancer's read timeout); it was not sent elsewhere, since the replica may still be working on it. `GET /vllmctl/replicas` on this endpoint shows each replica's state.",
                        type: "timeout", code: 504),
                    keepAlive: head.isKeepAlive)
                return
            }
        }
        guard !client.isClosed else { return }
        if !ourSide.isEmpty {
            answer(
                client, version: head.version, status: .badGateway,
                json: BalancerAnswer.errorBody(
                    message:
                        "The balancer cannot reach the replicas from here (\(ourSide.joined(separator: "; "))); their state is unknown. Check the connection to the cluster (`vllmctl doctor`).",
                    type: "service_unavailable", code: 502),
                keepAlive: head.isKeepAlive)
        } else {
            let message =
                tried.isEmpty
                ? "No replica is healthy: none is in rotation. `GET /vllmctl/replicas` on this endpoint shows each one's state and last error."
                : "No replica is healthy: every replica tried (\(tried.map(\.description).sorted().joined(separator: ", "))) refused or dropped the request before answering. `GET /vllmctl/replicas` on this endpoint shows each one's state."
            answer(
                client, version: head.version, status: .serviceUnavailable,
                json: BalancerAnswer.errorBody(message: message, type: "service_unavailable", code: 503),
                keepAlive: head.isKeepAlive)
        }
    }

    enum Next {
        case done
        case closeClient
        /// With the reason when the failure was on this side (the replica's state is unknown).
        case tryAnother(String?)
        /// The replica did not answer within the read timeout: 504, not retried.
        case timedOut(String)
    }

    /// One replica's go at a request: a kept-alive connection when one is idle (and a fresh one
    /// if that fails before answering: the replica may have closed it as idle), else a new one.
    private func attempt(_ request: BufferedRequest, on replica: Replica, client: ClientSide) async
        -> (AttemptOutcome, Next)
    {
        var pooled = state.withLock { s -> UpstreamConnection? in
            while let c = s.idle[replica]?.popLast() {
                if c.channel.isActive { return c }
            }
            return nil
        }
        while true {
            let connection: UpstreamConnection
            if let p = pooled {
                connection = p
                pooled = nil
            } else {
                do {
                    let channel = try await connector.connect(
                        host: replica.host, port: replica.port, timeout: settings.connectTimeout,
                        on: group.next())
                    connection = try await UpstreamConnection.wrap(channel) { [weak self] reason in
                        self?.update { $0.hostGone(replica, reason: "\(replica) \(reason)") }
                    }
                } catch {
                    let e = RouteConnector.classify(error)
                    switch e.kind {
                    case .refused: return (.refused(e.message), .tryAnother(nil))
                    case .unanswered: return (.unanswered(e.message), .tryAnother(nil))
                    case .ourSide: return (.notCounted, .tryAnother(e.message))
                    }
                }
            }
            let channel = connection.channel
            guard client.attempting(onClose: { channel.close(promise: nil) }) else {
                channel.close(promise: nil)
                return (.notCounted, .done)
            }
            let keepAlive = request.head.isKeepAlive
            let result = await connection.forward(
                head: ForwardedHeaders.request(
                    request.head, bodyBytes: request.body.readableBytes, replica: replica),
                body: request.body, client: client, clientVersion: request.head.version,
                clientKeepAlive: keepAlive, readTimeout: settings.readTimeout)
            client.attemptEnded()
            switch result {
            case .completed(let status, let headSeconds, let reusable):
                if reusable { release(connection, to: replica) } else { channel.close(promise: nil) }
                return (
                    .responded(status: status, headSeconds: headSeconds), keepAlive ? .done : .closeClient
                )
            case .broken(let status, let headSeconds, let reason):
                channel.close(promise: nil)
                if client.isClosed { return (.notCounted, .done) }
                return (
                    .broken(
                        status: status, headSeconds: headSeconds, reason: "\(replica) \(reason) mid-response"),
                    .closeClient
                )
            case .unacknowledged(let reason):
                // Not the idle close a pooled connection may meet: the host is gone.
                channel.close(promise: nil)
                if client.isClosed { return (.notCounted, .done) }
                return (.refused("\(replica) \(reason) before answering"), .tryAnother(nil))
            case .noAnswer(let reason):
                channel.close(promise: nil)
                if client.isClosed { return (.notCounted, .done) }
                return (.unanswered("\(replica) \(reason) in answer to a request"), .timedOut(reason))
            case .beforeResponse(let reason):
                channel.close(promise: nil)
                if client.isClosed { return (.notCounted, .done) }
                if connection.reused { continue }
                return (.refused("\(replica) \(reason) before answering"), .tryAnother(nil))
            }
        }
    }

    private func release(_ connection: UpstreamConnection, to replica: Replica) {
        var c = connection
        c.reused = true
        let kept = state.withLock { s -> Bool in
            guard s.table.isMember(replica), (s.idle[replica]?.count ?? 0) < settings.maxIdlePerReplica else {
                return false
            }
            s.idle[replica, default: []].append(c)
            return true
        }
        if !kept { connection.channel.close(promise: nil) }
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
