import Foundation
import NIOCore
import NIOHTTP1

/// How forwarding one request over one upstream connection ended.
enum ExchangeResult: Sendable {
    /// The whole response but its end went to the client; `reusable`: the connection may carry
    /// another. The request's owner writes the end (with `trailers`) once it has counted the
    /// attempt, so that a client that has its whole answer sees the counters include it.
    case completed(status: Int, headSeconds: Double, reusable: Bool, trailers: HTTPHeaders?)
    /// The response had started when the connection broke (or the client left).
    case broken(status: Int, headSeconds: Double, reason: String)
    /// The replica refused, reset or closed before any response byte: safe to retry.
    case beforeResponse(String)
    /// The replica sent no response head within the read timeout (it may be working on the
    /// request still): not retried.
    case noAnswer(String)
    /// The replica's host did not acknowledge what was sent (`TCP_USER_TIMEOUT`): it or its
    /// link is gone. Before any response byte, so safe to retry elsewhere.
    case unacknowledged(String)
}

/// The client connection a request came in on, as the exchanges that answer it see it.
final class ClientSide: Sendable {
    let channel: any Channel
    private let state = Locked<
        (closed: Bool, onClose: (@Sendable () -> Void)?, onWritable: (@Sendable () -> Void)?)
    >((false, nil, nil))

    init(channel: any Channel) { self.channel = channel }

    var isClosed: Bool { state.value.closed }

    /// Calls `onClose` if the client goes away while an attempt runs (it closes the replica's
    /// connection, so that vLLM aborts the generation); false when it has gone already.
    func attempting(onClose: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { s in
            if s.closed { return false }
            s.onClose = onClose
            return true
        }
    }

    func attemptEnded() { state.withLock { $0.onClose = nil } }

    /// The client's connection closed.
    func closed() {
        let callback = state.withLock { s in
            s.closed = true
            s.onWritable = nil
            let c = s.onClose
            s.onClose = nil
            return c
        }
        callback?()
    }

    /// Calls `body` once the client's connection can take writes again (its outbound buffer
    /// has fallen below NIO's low water mark); at once when it already can. Not called when
    /// the connection closes first.
    func whenWritable(_ body: @escaping @Sendable () -> Void) {
        let registered = state.withLock { s -> Bool in
            if s.closed { return false }
            s.onWritable = body
            return true
        }
        // It may have become writable before the callback was in place.
        if registered && channel.isWritable { becameWritable() }
    }

    /// The client's connection can take writes again (``ClientHandler``).
    func becameWritable() {
        let callback = state.withLock { s in
            let c = s.onWritable
            s.onWritable = nil
            return c
        }
        callback?()
    }
}

/// One request in flight on an upstream connection; lives on that connection's event loop.
/// Its promise is on the client's event loop, where the request's owner (``Forwarding``) lives.
final class Exchange {
    let client: ClientSide
    let clientVersion: HTTPVersion
    let clientKeepAlive: Bool
    let promise: EventLoopPromise<ExchangeResult>
    /// How long the replica may stay silent (``BalancerSettings/readTimeout``).
    let readTimeout: TimeAmount
    let started = NIODeadline.now()
    var status: Int?
    var headSeconds = 0.0
    var upstreamKeepAlive = true

    init(
        client: ClientSide, clientVersion: HTTPVersion, clientKeepAlive: Bool, readTimeout: TimeAmount,
        promise: EventLoopPromise<ExchangeResult>
    ) {
        self.client = client
        self.clientVersion = clientVersion
        self.clientKeepAlive = clientKeepAlive
        self.readTimeout = readTimeout
        self.promise = promise
    }
}

/// Relays a replica's response to the client as it arrives: what one read from the replica
/// brought is written to the client and flushed once that read has been handled
/// (`channelReadComplete`), so SSE events pass unbuffered, and a small response (head, body
/// and end in one read) goes out in one write, as nginx sends it. While the client's
/// connection holds more than NIO's high water mark of unsent bytes (it is not writable),
/// reading from the replica stops (backpressure), until it can take writes again. A replica
/// that sends nothing for the exchange's read timeout (while reading is not paused) ends it:
/// no request waits forever on a replica that accepted and never answers.
final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private var context: ChannelHandlerContext?
    private var exchange: Exchange?
    /// The client channel written to since the last flush.
    private var unflushed: (any Channel)?
    /// Reading from the replica is stopped until the client can take writes again.
    private var paused = false
    /// When the replica last sent something for the exchange (or it began), and the timer
    /// that checks it.
    private var lastRead = NIODeadline.now()
    private var silenceTimer: Scheduled<Void>?
    /// When the scheduled check runs.
    private var silenceDue = NIODeadline.distantFuture
    /// Called when the connection fails, with no request on it, because the replica's host
    /// stopped acknowledging (a keepalive probe of an idle pooled connection).
    private let onHostGone: @Sendable (String) -> Void

    init(onHostGone: @escaping @Sendable (String) -> Void = { _ in }) { self.onHostGone = onHostGone }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Sends `head` and `body` and relays the answer; the exchange's promise says how it ended.
    func begin(_ exchange: Exchange, head: HTTPRequestHead, body: NIOCore.ByteBuffer) {
        guard let context, context.channel.isActive, self.exchange == nil else {
            exchange.promise.succeed(.beforeResponse("the connection was closed"))
            return
        }
        self.exchange = exchange
        lastRead = .now()
        checkSilence(by: lastRead + exchange.readTimeout, context: context)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// Ends the exchange once the replica has been silent for its read timeout; checked when
    /// the timeout could have run out, so a busy stream costs no timer per part. A check due
    /// by `due` already is kept (it looks and schedules the next one), so back-to-back
    /// requests on a kept-alive connection do not schedule a timer each; a check that finds no
    /// exchange schedules none.
    private func checkSilence(by due: NIODeadline, context: ChannelHandlerContext) {
        if silenceTimer != nil && silenceDue <= due { return }
        silenceTimer?.cancel()
        silenceDue = due
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        silenceTimer = context.eventLoop.scheduleTask(deadline: due) {
            let (handler, context) = bound.value
            handler.silenceTimer = nil
            guard let exchange = handler.exchange else { return }
            let now = NIODeadline.now()
            if handler.paused || now - handler.lastRead < exchange.readTimeout {
                // Not silent, or not reading (a slow client): look again later.
                handler.checkSilence(
                    by: (handler.paused ? now : handler.lastRead) + exchange.readTimeout, context: context)
                return
            }
            let seconds = Double(exchange.readTimeout.nanoseconds) / 1e9
            let words =
                "sent nothing for \(seconds == seconds.rounded() ? String(Int(seconds)) : String(format: "%.1f", seconds)) s"
            handler.exchange = nil
            if let status = exchange.status {
                exchange.promise.succeed(
                    .broken(status: status, headSeconds: exchange.headSeconds, reason: words))
            } else {
                exchange.promise.succeed(.noAnswer(words))
            }
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastRead = .now()
        guard let exchange else {
            // Nothing was asked: a replica talking out of turn cannot be trusted with another request.
            context.close(promise: nil)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard head.status.code >= 200 || head.status == .switchingProtocols else { return }
            exchange.status = Int(head.status.code)
            exchange.headSeconds = Double((NIODeadline.now() - exchange.started).nanoseconds) / 1e9
            exchange.upstreamKeepAlive = head.isKeepAlive
            let out = ForwardedHeaders.response(
                head, clientVersion: exchange.clientVersion, keepAlive: exchange.clientKeepAlive)
            relay(.head(out), bytes: 0, exchange: exchange, context: context)
        case .body(let buffer):
            relay(
                .body(.byteBuffer(buffer)), bytes: buffer.readableBytes, exchange: exchange, context: context)
        case .end(let trailers):
            // The silence check stays scheduled, for the connection's next request. Nothing is
            // left to relay: reading goes on (a connection back in the pool must read the
            // answer to its next request, whatever this client does).
            self.exchange = nil
            resume(context)
            exchange.promise.succeed(
                .completed(
                    status: exchange.status ?? 0, headSeconds: exchange.headSeconds,
                    reusable: exchange.upstreamKeepAlive, trailers: trailers))
        }
    }

    private func relay(
        _ part: HTTPServerResponsePart, bytes: Int, exchange: Exchange, context: ChannelHandlerContext
    ) {
        let client = exchange.client
        unflushed = client.channel
        // A client that is gone shows in ClientSide.closed, which closes this connection.
        client.channel.write(part, promise: nil)
        guard bytes > 0, !paused, !client.channel.isWritable else { return }
        paused = true
        context.channel.setOption(.autoRead, value: false).whenFailure { _ in }
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        client.whenWritable {
            loop.execute {
                let (handler, context) = bound.value
                handler.resume(context)
            }
        }
    }

    /// Reading from the replica goes on, if it was paused.
    private func resume(_ context: ChannelHandlerContext) {
        guard paused else { return }
        paused = false
        context.channel.setOption(.autoRead, value: true).whenFailure { _ in }
    }

    /// Flushes what this read relayed (the end, written by the request's owner, is flushed
    /// with it).
    func channelReadComplete(context: ChannelHandlerContext) {
        unflushed?.flush()
        unflushed = nil
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        silenceTimer?.cancel()
        silenceTimer = nil
        fail("closed the connection")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let io = error as? IOError, io.errnoCode == ETIMEDOUT {
            let words = "did not acknowledge what was sent (its host or link is gone)"
            if exchange == nil { onHostGone(words) }
            fail(words, unacknowledged: true)
        } else if let io = error as? IOError, io.errnoCode == ECONNRESET {
            fail("reset the connection")
        } else if error is HTTPParserError {
            fail("sent a malformed response (\(error))")
        } else {
            fail("\(error)")
        }
        context.close(promise: nil)
    }

    private func fail(_ reason: String, unacknowledged: Bool = false) {
        unflushed?.flush()
        unflushed = nil
        guard let exchange else { return }
        self.exchange = nil
        silenceTimer?.cancel()
        silenceTimer = nil
        if let status = exchange.status {
            exchange.promise.succeed(
                .broken(status: status, headSeconds: exchange.headSeconds, reason: reason))
        } else if unacknowledged {
            exchange.promise.succeed(.unacknowledged(reason))
        } else {
            exchange.promise.succeed(.beforeResponse(reason))
        }
    }
}

/// A connection to one replica, with the HTTP client codec and an ``UpstreamHandler``.
struct UpstreamConnection: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<UpstreamHandler>
    /// Whether it carried a request before (a failure then may be the replica's idle timeout).
    var reused = false

    /// Adds the codec and handler to a freshly connected `channel`.
    /// `onHostGone`: see ``UpstreamHandler``.
    static func wrap(_ channel: any Channel, onHostGone: @escaping @Sendable (String) -> Void = { _ in })
        async throws -> UpstreamConnection
    {
        try await channel.eventLoop.submit {
            let handler = UpstreamHandler(onHostGone: onHostGone)
            try channel.pipeline.syncOperations.addHTTPClientHandlers()
            try channel.pipeline.syncOperations.addHandler(handler)
            return UpstreamConnection(
                channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
        }.get()
    }

    /// Forwards one request and relays its response to `client`; `promise` (on the client's
    /// event loop) says how it ended. On the connection's event loop (the usual case:
    /// connections are made on their client's loop) it starts at once, else on that loop.
    func begin(
        head: HTTPRequestHead, body: NIOCore.ByteBuffer, client: ClientSide, clientVersion: HTTPVersion,
        clientKeepAlive: Bool, readTimeout: Double, promise: EventLoopPromise<ExchangeResult>
    ) {
        let readTimeout = TimeAmount.nanoseconds(Int64(max(readTimeout, 0.001) * 1e9))
        let handler = self.handler
        let start: @Sendable () -> Void = {
            handler.value.begin(
                Exchange(
                    client: client, clientVersion: clientVersion, clientKeepAlive: clientKeepAlive,
                    readTimeout: readTimeout, promise: promise),
                head: head, body: body)
        }
        if channel.eventLoop.inEventLoop { start() } else { channel.eventLoop.execute(start) }
    }
}
