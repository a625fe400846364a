import NIOCore
import NIOHTTP1

/// One request on its way through the balancer: pick a replica, take a kept-alive connection
/// to it or make one, forward, and fail over to another replica while no response byte has
/// been sent.
///
/// It lives on the client connection's event loop, and so does the upstream connection it uses:
/// pooled connections are taken from that loop's pool and new ones are made on that loop. A
/// request then never crosses threads on its way (no task, no hop between event loops), as in
/// nginx, where one worker thread carries a request and its upstream connection. Only making a
/// connection goes through the connector's `async` API. The attempt is counted
/// (``BalancerEngine/finish(_:_:keeping:)``) before the response's end goes to the client, so a
/// client that has its whole answer sees the counters include it.
final class Forwarding {
    private let request: BufferedRequest
    private let client: ClientSide
    private let engine: BalancerEngine
    private let loop: any EventLoop
    private var tried = Set<Replica>()
    /// Failures on this side (the connector), with the replica: the 502's words.
    private var ourSide: [String] = []

    /// What comes after an attempt.
    private enum Next {
        case done
        case closeClient
        /// With the reason when the failure was on this side (the replica's state is unknown).
        case tryAnother(String?)
        /// The replica did not answer within the read timeout: 504, not retried.
        case timedOut(String)
    }

    /// A request that came in on `client`; call ``start()`` on the client channel's event loop.
    init(_ request: BufferedRequest, client: ClientSide, engine: BalancerEngine) {
        self.request = request
        self.client = client
        self.engine = engine
        loop = client.channel.eventLoop
    }

    func start() {
        loop.preconditionInEventLoop()
        nextReplica()
    }

    /// The next replica not tried yet, or the balancer's own answer when there is none.
    private func nextReplica() {
        guard !client.isClosed else { return }
        guard let (replica, pooled) = engine.pick(excluding: tried, on: loop) else {
            answerNoReplica()
            return
        }
        tried.insert(replica)
        if let pooled {
            send(on: pooled, to: replica)
        } else {
            connect(to: replica)
        }
    }

    /// A new connection to `replica` on this loop (also when a pooled one failed before
    /// answering: the replica may have closed it as idle).
    private func connect(to replica: Replica) {
        let engine = self.engine
        let loop = self.loop
        loop.makeFutureWithTask {
            let channel = try await engine.connector.connect(
                host: replica.host, port: replica.port, timeout: engine.settings.connectTimeout, on: loop)
            return try await UpstreamConnection.wrap(channel) { [weak engine] reason in
                engine?.update { $0.hostGone(replica, reason: "\(replica) \(reason)") }
            }
        }.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let connection):
                self.send(on: connection, to: replica)
            case .failure(let error):
                let e = RouteConnector.classify(error)
                switch e.kind {
                case .refused: self.ended(replica, .refused(e.message), .tryAnother(nil))
                case .unanswered: self.ended(replica, .unanswered(e.message), .tryAnother(nil))
                case .ourSide: self.ended(replica, .notCounted, .tryAnother(e.message))
                }
            }
        }
    }

    private func send(on connection: UpstreamConnection, to replica: Replica) {
        let channel = connection.channel
        guard client.attempting(onClose: { channel.close(promise: nil) }) else {
            channel.close(promise: nil)
            ended(replica, .notCounted, .done)
            return
        }
        let promise = loop.makePromise(of: ExchangeResult.self)
        connection.begin(
            head: ForwardedHeaders.request(
                request.head, bodyBytes: request.body.readableBytes, replica: replica),
            body: request.body, client: client, clientVersion: request.head.version,
            clientKeepAlive: request.head.isKeepAlive, readTimeout: engine.settings.readTimeout,
            promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { result in
            self.client.attemptEnded()
            switch result {
            case .success(let exchange): self.exchangeEnded(exchange, on: connection, replica: replica)
            case .failure(let error):
                channel.close(promise: nil)
                self.ended(replica, .refused("\(replica) \(error) before answering"), .tryAnother(nil))
            }
        }
    }

    private func exchangeEnded(_ result: ExchangeResult, on connection: UpstreamConnection, replica: Replica)
    {
        let channel = connection.channel
        switch result {
        case .completed(let status, let headSeconds, let reusable, let trailers):
            engine.finish(
                replica, .responded(status: status, headSeconds: headSeconds),
                keeping: reusable ? connection : nil)
            let keepAlive = request.head.isKeepAlive
            let clientChannel = client.channel
            let written = clientChannel.writeAndFlush(HTTPServerResponsePart.end(trailers))
            if !keepAlive { written.whenComplete { _ in clientChannel.close(promise: nil) } }
        case .broken(let status, let headSeconds, let reason):
            channel.close(promise: nil)
            if client.isClosed { return ended(replica, .notCounted, .done) }
            ended(
                replica,
                .broken(
                    status: status, headSeconds: headSeconds, reason: "\(replica) \(reason) mid-response"),
                .closeClient)
        case .unacknowledged(let reason):
            // Not the idle close a pooled connection may meet: the host is gone.
            channel.close(promise: nil)
            if client.isClosed { return ended(replica, .notCounted, .done) }
            ended(replica, .refused("\(replica) \(reason) before answering"), .tryAnother(nil))
        case .noAnswer(let reason):
            channel.close(promise: nil)
            if client.isClosed { return ended(replica, .notCounted, .done) }
            ended(replica, .unanswered("\(replica) \(reason) in answer to a request"), .timedOut(reason))
        case .beforeResponse(let reason):
            channel.close(promise: nil)
            if client.isClosed { return ended(replica, .notCounted, .done) }
            // Still the same attempt (counted once): a fresh connection to the same replica.
            if connection.reused { return connect(to: replica) }
            ended(replica, .refused("\(replica) \(reason) before answering"), .tryAnother(nil))
        }
    }

    /// Counts an attempt that did not complete, then does what comes next.
    private func ended(_ replica: Replica, _ outcome: AttemptOutcome, _ next: Next) {
        engine.finish(replica, outcome)
        let head = request.head
        switch next {
        case .done: return
        case .closeClient: client.channel.close(promise: nil)
        case .tryAnother(let ourSideReason):
            if let ourSideReason { ourSide.append("\(replica): \(ourSideReason)") }
            nextReplica()
        case .timedOut(let reason):
            engine.answer(
                client, version: head.version, status: .gatewayTimeout,
                json: BalancerAnswer.errorBody(
                    message:
                        "The replica \(replica) \(reason) in answer to this request (the balancer's read timeout); it was not sent elsewhere, since the replica may still be working on it. `GET /vllmctl/replicas` on this endpoint shows each replica's state.",
                    type: "timeout", code: 504),
                keepAlive: head.isKeepAlive)
        }
    }

    /// No replica left to try: 502 when some failed on this side, else 503.
    private func answerNoReplica() {
        let head = request.head
        if !ourSide.isEmpty {
            engine.answer(
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
            engine.answer(
                client, version: head.version, status: .serviceUnavailable,
                json: BalancerAnswer.errorBody(message: message, type: "service_unavailable", code: 503),
                keepAlive: head.isKeepAlive)
        }
    }
}
