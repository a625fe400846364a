import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The session's queue and its IO: where the session may be used, blocking and non-blocking
/// calls, waiting on its socket, and what long-lived users (a forwarder) need: receive stamps,
/// keepalives, a quick goodbye.
extension SSHSession {
    /// Runs `body` on the session's queue, the only place the session is used.
    public func perform<T: Sendable>(_ body: @escaping @Sendable (SSHSession) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(
                    with: Result {
                        try self.checkOpen()
                        return try body(self)
                    })
            }
        }
    }

    /// Throws once the session was closed. Only on the session's queue.
    func checkOpen() throws {
        if isClosed {
            throw SSHError(
                host: options.place, message: "the SSH session was closed",
                hint: "This is a bug in vllmctl if it was not interrupted", connectionLost: true)
        }
    }

    /// Runs `body` on the session's queue without waiting for it (a forwarder's loop that
    /// returns when its clients are done).
    func schedule(_ body: @escaping @Sendable (SSHSession) -> Void) {
        queue.async { body(self) }
    }

    // MARK: blocking and non-blocking use

    /// Whether libssh2's calls on this session (and its channels) block.
    var isBlocking: Bool { libssh2_session_get_blocking(raw) != 0 }

    func setBlocking(_ blocking: Bool) { libssh2_session_set_blocking(raw, blocking ? 1 : 0) }

    /// How long a blocking call waits for the server, in milliseconds (0: forever).
    func setTimeout(milliseconds: Int) { libssh2_session_set_timeout(raw, milliseconds) }

    /// The last libssh2 error code on this session (EAGAIN after a non-blocking call that
    /// must be repeated).
    var lastErrno: Int32 { libssh2_session_last_errno(raw) }

    /// After EAGAIN: libssh2 is blocked on sending, so a packet is half-sent and only the same
    /// call may finish it; it must be the next call made on the session.
    var isBlockedOnSending: Bool {
        libssh2_session_block_directions(raw) & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0
    }

    /// Waits (at most a second, and not past `deadline`) for the session's socket in the
    /// direction libssh2 is blocked on.
    func waitSocket(until deadline: Date) {
        let directions = libssh2_session_block_directions(raw)
        var events: Int16 = 0
        if directions & LIBSSH2_SESSION_BLOCK_INBOUND != 0 { events |= Int16(POLLIN) }
        if directions & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { events |= Int16(POLLOUT) }
        if events == 0 { events = Int16(POLLIN) }
        var pfd = pollfd(fd: socket, events: events, revents: 0)
        let ms = max(0, min(1000, Int32(deadline.timeIntervalSinceNow * 1000)))
        _ = poll(&pfd, 1, ms)
    }

    // MARK: for long-lived users (the forwarder)

    /// Monotonic nanoseconds when bytes last arrived from the server, once `trackReceives()`
    /// was called. Read only by whoever drives the session.
    var lastReceived: UInt64 { box.lastReceived }

    /// Stamps `lastReceived` from now on: libssh2 reads the socket through `stampingRecv`.
    func trackReceives() {
        box.lastReceived = MonotonicClock.now()
        _ = libssh2_session_callback_set(
            raw, LIBSSH2_CALLBACK_RECV, unsafeBitCast(stampingRecv, to: UnsafeMutableRawPointer.self))
    }

    /// Shuts the socket down so that the release of a dead session cannot wait on it.
    func shutdownSocket() {
        _ = Glibc.shutdown(socket, Int32(SHUT_RDWR))
    }

    /// Says goodbye without waiting for the server's answers (closing open channels one by
    /// one would take a round trip each), then shuts the socket.
    func closeQuickly() {
        markBroken()
        libssh2_session_set_blocking(raw, 0)
        _ = libssh2_session_disconnect_ex(raw, SSH_DISCONNECT_BY_APPLICATION, "bye", "")
        shutdownSocket()
    }

    /// Has libssh2 answer the server's keepalive requests and send its own every `interval`
    /// seconds when `sendKeepalive` is called.
    func configureKeepalive(interval: Int) {
        libssh2_keepalive_config(raw, 1, UInt32(interval))
    }

    /// Sends a keepalive if one is due: 0, or libssh2's error.
    func sendKeepalive() -> Int32 {
        var next: Int32 = 0
        return libssh2_keepalive_send(raw, &next)
    }
}

/// libssh2's socket reader (`recv`, errors as negative errno) that also notes when bytes arrived,
/// and acknowledges them at once (`TCP_QUICKACK`, which Linux clears again by itself, so it is
/// set after every read). OpenSSH's sshd sets `TCP_NODELAY` only on interactive sessions: on a
/// forwarding-only session it holds a small packet (a response body after its head) until the
/// packet before it is acknowledged, and a delayed ACK here made that a 40 ms stall on about
/// one request in seven through a tunnel (docs/REPLICAS.md, "Latency").
private let stampingRecv:
    @convention(c) (
        Int32, UnsafeMutableRawPointer?, Int, Int32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    )
        -> Int = { fd, buffer, length, flags, abstract in
            let n = recv(fd, buffer, length, flags)
            if n < 0 { return -Int(errno == ENOENT ? EAGAIN : errno) }
            if n > 0 {
                acknowledgeAtOnce(fd)
                if let abstract, let pointer = abstract.pointee {
                    Unmanaged<CallbackBox>.fromOpaque(pointer).takeUnretainedValue().lastReceived =
                        MonotonicClock.now()
                }
            }
            return n
        }
