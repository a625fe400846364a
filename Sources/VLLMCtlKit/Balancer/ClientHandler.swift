import NIOCore
import NIOHTTP1

/// A request as the client sent it, its body buffered whole (so that it can be sent again to
/// another replica).
struct BufferedRequest: Sendable {
    var head: HTTPRequestHead
    var body: NIOCore.ByteBuffer
}

/// The client side of the endpoint: collects each request (head and body, up to the cap) and
/// hands it to the engine, on this channel's event loop (``Forwarding``), one at a time: a
/// request that arrives while the one before it is being answered (HTTP/1.1 pipelining) waits
/// here until that response's end has been written, so responses go out in order. Writes to
/// the client pass through here on their way out, which is how a response's end is seen.
///
/// It takes the place of NIO's `HTTPServerPipelineHandler`, which keeps order by not reading
/// from the client while a response is in progress: it stopped and restarted reading around
/// every response, two `epoll_ctl` calls a request. Here reading stops only when a client has
/// pipelined ``maxQueued`` requests ahead.
final class ClientHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let engine: BalancerEngine
    private var side: ClientSide?
    private var head: HTTPRequestHead?
    private var body = NIOCore.ByteBuffer()
    private var refused = false
    /// Non-nil while a request is being answered (its response's end not yet written): whether
    /// the connection stays open after it.
    private var answering: Bool?
    /// What came in while a request was being answered, oldest first.
    private var queued = CircularBuffer<Queued>()

    private enum Queued {
        case request(BufferedRequest)
        /// A request whose body is over the cap: its 413 (which closes the connection).
        case tooLarge(HTTPVersion)
    }
    private var readsPaused = false

    /// Pipelined requests held before reading from the client stops.
    static let maxQueued = 4

    init(engine: BalancerEngine) { self.engine = engine }

    func handlerAdded(context: ChannelHandlerContext) {
        side = ClientSide(channel: context.channel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = context.channel.allocator.buffer(capacity: 0)
            if let length = h.headers.first(name: "content-length").flatMap(Int.init), length > engine.maxBody
            {
                tooLarge(context, version: h.version)
                return
            }
            // Not in the middle of another response: a client that pipelines a request with
            // `Expect: 100-continue` sends its body after its own wait instead.
            if answering == nil, h.headers.first(name: "expect")?.lowercased() == "100-continue" {
                context.writeAndFlush(
                    wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: .continue))),
                    promise: nil)
            }
        case .body(var part):
            guard part.readableBytes + body.readableBytes <= engine.maxBody else {
                tooLarge(context, version: head?.version ?? .http1_1)
                return
            }
            body.writeBuffer(&part)
        case .end:
            guard let head else { return }
            self.head = nil
            let request = BufferedRequest(head: head, body: body)
            body = NIOCore.ByteBuffer()
            guard answering != nil else { return serve(request) }
            queued.append(.request(request))
            if queued.count >= Self.maxQueued { pauseReads(context) }
        }
    }

    private func pauseReads(_ context: ChannelHandlerContext) {
        guard !readsPaused else { return }
        readsPaused = true
        context.channel.setOption(.autoRead, value: false).whenFailure { _ in }
    }

    private func serve(_ request: BufferedRequest) {
        guard let side else { return }
        answering = request.head.isKeepAlive
        engine.serve(request, client: side)
    }

    /// A response's end on its way out: the next queued request is served (not after a
    /// response whose connection closes).
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let isEnd: Bool
        if case .end = unwrapOutboundIn(data) { isEnd = true } else { isEnd = false }
        context.write(data, promise: promise)
        guard isEnd, let keepAlive = answering else { return }
        answering = nil
        guard keepAlive else {
            queued.removeAll()
            return
        }
        switch queued.popFirst() {
        case .request(let next): serve(next)
        case .tooLarge(let version): refuse(version: version)
        case nil: break
        }
        if queued.isEmpty && readsPaused && !refused {
            readsPaused = false
            context.channel.setOption(.autoRead, value: true).whenFailure { _ in }
        }
    }

    /// A body above the cap is not buffered: 413, and the connection closes (the rest of the
    /// body is not read). Behind a response in progress, the 413 waits its turn.
    private func tooLarge(_ context: ChannelHandlerContext, version: HTTPVersion) {
        refused = true
        pauseReads(context)
        if answering != nil {
            queued.append(.tooLarge(version))
        } else {
            refuse(version: version)
        }
    }

    private func refuse(version: HTTPVersion) {
        answering = false
        let answer = BalancerAnswer.errorBody(
            message:
                "The request body is larger than the balancer buffers (\(engine.maxBody) bytes); send a smaller request, or send it to one replica directly.",
            type: "invalid_request_error", code: 413)
        engine.answer(side, version: version, status: .payloadTooLarge, json: answer, keepAlive: false)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { side?.becameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        queued.removeAll()
        side?.closed()
        context.fireChannelInactive()
    }

    /// A request NIO's parser cannot read gets a 400 when no response is under way, and the
    /// connection closes (what NIO's `HTTPServerProtocolErrorHandler` did; here every request's
    /// parts and every response's writes pass one handler fewer).
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError, answering == nil, !refused else { return context.close(promise: nil) }
        refused = true
        answering = false
        let answer = BalancerAnswer.errorBody(
            message: "The request is not HTTP/1.1 the balancer can read (\(error)); check the client.",
            type: "invalid_request_error", code: 400)
        engine.answer(side, version: .http1_1, status: .badRequest, json: answer, keepAlive: false)
    }
}
