import NIOCore
import NIOHTTP1

/// A request as the client sent it, its body buffered whole (so that it can be sent again to
/// another replica).
struct BufferedRequest: Sendable {
    var head: HTTPRequestHead
    var body: NIOCore.ByteBuffer
}

/// The client side of the endpoint: collects each request (head and body, up to the cap) and
/// hands it to the engine, on this channel's event loop (``Forwarding``). NIO's `HTTPServerPipelineHandler`, before it in the pipeline, holds
/// the next request on a kept-alive connection until the response to this one has ended.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let engine: BalancerEngine
    private var side: ClientSide?
    private var head: HTTPRequestHead?
    private var body = NIOCore.ByteBuffer()
    private var refused = false

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
            if h.headers.first(name: "expect")?.lowercased() == "100-continue" {
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
            guard let head, let side else { return }
            self.head = nil
            let request = BufferedRequest(head: head, body: body)
            body = NIOCore.ByteBuffer()
            engine.serve(request, client: side)
        }
    }

    /// A body above the cap is not buffered: 413, and the connection closes (the rest of the
    /// body is not read).
    private func tooLarge(_ context: ChannelHandlerContext, version: HTTPVersion) {
        refused = true
        let answer = BalancerAnswer.errorBody(
            message:
                "The request body is larger than the balancer buffers (\(engine.maxBody) bytes); send a smaller request, or send it to one replica directly.",
            type: "invalid_request_error", code: 413)
        engine.answer(side, version: version, status: .payloadTooLarge, json: answer, keepAlive: false)
    }

    func channelInactive(context: ChannelHandlerContext) {
        side?.closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
