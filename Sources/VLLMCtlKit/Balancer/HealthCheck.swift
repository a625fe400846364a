import NIOCore
import NIOHTTP1

/// `GET /health` on one replica through the balancer's connector, on a connection of its own.
enum HealthCheck {
    /// The check takes `timeout` seconds in all; its connection must be made within
    /// `connectTimeout` of them (a host that accepts no connection in that time, while the
    /// route to it works, is gone or unreachable; a slow server still accepts at once).
    ///
    /// While the check waits for its answer, `stalled` says whether the replica's requests
    /// have stalled (``ReplicaTable/isStalled(_:for:now:)``). Once they have and the check
    /// has waited `stalledAfter` seconds too, one more connection is tried (a host whose link
    /// went down after this check connected accepts none): if it is not made within
    /// `connectTimeout` the check fails at once; if it is, the server is only slow, and the
    /// check goes on waiting for its answer.
    static func run(
        _ replica: Replica, connector: any UpstreamConnector, on loop: any EventLoop, timeout: Double,
        connectTimeout: Double? = nil, stalledAfter: Double = 0.5,
        stalled: (@Sendable () -> Bool)? = nil
    )
        async -> HealthOutcome
    {
        let channel: any Channel
        do {
            channel = try await connector.connect(
                host: replica.host, port: replica.port, timeout: min(connectTimeout ?? timeout, timeout),
                on: loop)
        } catch {
            let e = RouteConnector.classify(error)
            return e.kind == .ourSide ? .unknown(e.message) : .unhealthy(e.message)
        }
        defer { channel.close(promise: nil) }
        let promise = channel.eventLoop.makePromise(of: Int.self)
        do {
            try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(ProbeHandler(promise: promise))
            }.get()
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: replica.description)
            headers.add(name: "Connection", value: "close")
            channel.write(
                HTTPClientRequestPart.head(
                    HTTPRequestHead(version: .http1_1, method: .GET, uri: "/health", headers: headers)),
                promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        } catch {
            promise.fail(error)
        }
        let timer = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) {
            promise.fail(ChannelError.connectTimeout(.milliseconds(Int64(timeout * 1000))))
        }
        defer { timer.cancel() }
        let watcher = stalled.map { stalled in
            Task {
                await probeWhileStalled(
                    replica, connector: connector, on: loop,
                    connectTimeout: min(connectTimeout ?? timeout, timeout),
                    after: stalledAfter, stalled: stalled, promise: promise)
            }
        }
        defer { watcher?.cancel() }
        do {
            let status = try await promise.futureResult.get()
            return status == 200 ? .healthy : .unhealthy("GET /health answered \(status)")
        } catch ChannelError.connectTimeout {
            return .unhealthy("no answer to GET /health within \(timeout) s")
        } catch let gone as UpstreamConnectError {
            return .unhealthy("no answer to GET /health, and no new connection: \(gone.message)")
        } catch {
            return .unhealthy("GET /health failed: \(error)")
        }
    }

    /// See ``run(_:connector:on:timeout:connectTimeout:stalledAfter:stalled:)``: fails
    /// `promise` with the probe's ``UpstreamConnectError`` when the replica's requests and the
    /// check have stalled and a new connection is not made (or is refused). One probe at most.
    private static func probeWhileStalled(
        _ replica: Replica, connector: any UpstreamConnector, on loop: any EventLoop, connectTimeout: Double,
        after: Double, stalled: @Sendable () -> Bool, promise: EventLoopPromise<Int>
    ) async {
        let start = MonotonicClock.now()
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
            guard !Task.isCancelled else { return }
            guard Double(MonotonicClock.now() - start) / 1e9 >= after, stalled() else { continue }
            do {
                let probe = try await connector.connect(
                    host: replica.host, port: replica.port, timeout: connectTimeout, on: loop)
                probe.close(promise: nil)
            } catch {
                let e = RouteConnector.classify(error)
                if e.kind != .ourSide { promise.fail(e) }
            }
            return
        }
    }

    /// Completes `promise` with the status of the first final response head.
    final class ProbeHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<Int>
        init(promise: EventLoopPromise<Int>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .head(let head) = unwrapInboundIn(data), head.status.code >= 200 {
                promise.succeed(Int(head.status.code))
            }
        }
        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.eof)
            context.fireChannelInactive()
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
    }
}
