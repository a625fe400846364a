import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What a running forwarder tells its owner (on the forwarder's thread; keep handlers short).
public enum ForwarderEvent: Sendable, Equatable {
    /// The SSH server could not open a connection to the target for one client; `reason` is
    /// its words ("connect failed", "administratively prohibited", …).
    case channelOpenFailed(reason: String)
    /// The SSH session died; clients in flight were closed. Reconnecting follows.
    case sessionLost(reason: String)
    /// A new session is up; the local port stayed bound throughout.
    case reconnected
    /// A reconnect attempt failed; the next one follows after `retryIn` seconds.
    case reconnectFailed(reason: String, retryIn: Double)
}

/// Settings of a forwarder; the defaults suit an interactive tunnel.
public struct ForwarderSettings: Sendable {
    /// Seconds of silence from the server before a keepalive is sent.
    public var keepaliveInterval: Int = 15
    /// Unanswered keepalive intervals after which the session counts as dead.
    public var keepaliveCountMax: Int = 3
    /// Clients served at once; more wait in the listen backlog.
    public var maxConnections: Int = 1024
    /// Each direction's buffer per client, in bytes (64 KiB and 1 MiB were slower).
    public var bufferSize: Int = 256 * 1024
    /// The receive window each forwarded channel opens with and keeps, in bytes (libssh2's and
    /// OpenSSH's is 2 MiB). Larger windows did not help on loopback (docs/BENCHMARKS.md): libssh2
    /// queues all that arrives in memory before it is read, and the bytes fall out of the cache.
    public var receiveWindow: UInt32 = 4 * 1024 * 1024
    /// Seconds a channel may take to open before the session is presumed dead.
    public var channelOpenTimeout: Double = 20
    /// Reconnect backoff: first delay and ceiling, in seconds.
    public var reconnectDelay: Double = 0.25
    public var reconnectDelayMax: Double = 8

    public init() {}
}

/// `ssh -L` on one libssh2 session: a local listening socket whose every accepted connection
/// is carried by a direct-tcpip channel to `targetHost:targetPort` as the SSH server sees it.
///
/// One thread runs one `poll` loop over the listener, the clients and the session's socket;
/// the session is non-blocking. libssh2 rules this loop keeps:
/// - after a call returns EAGAIN with the session blocked on sending, that same call is the
///   next one made on the session (a half-sent packet must be finished by its own caller);
/// - one channel open at a time: the open is retried until it completes or fails.
/// Backpressure: a channel is read only while its client's buffer is empty, and a client only
/// while its channel's buffer is empty, so a slow side stops the other (through the SSH
/// window). Dead peers: keepalives after `keepaliveInterval` of silence, and the session is
/// dropped after `keepaliveInterval × keepaliveCountMax` without a byte from the server
/// (libssh2 does not count missed replies). A lost session is replaced with backoff while
/// the listener stays bound; clients accepted meanwhile wait for the new session.
public final class PortForwarder: @unchecked Sendable {
    public let targetHost: String
    public let targetPort: Int
    public let settings: ForwarderSettings
    /// The bound listening socket (non-blocking); the forwarder closes it when it stops.
    private let listener: Int32
    private let connect: @Sendable () throws -> SSHSession
    private let onEvent: @Sendable (ForwarderEvent) -> Void
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let stopLock = NSLock()
    private var stopRequested = false

    // Only the loop's thread touches what follows.
    private var session: SSHSession?
    /// A "session" channel nobody runs anything on: reading it makes libssh2 process what
    /// the server sends while no client is connected (keepalive replies, disconnects).
    private var control: OpaquePointer?
    private var waiting: [Forward] = []  // accepted, channel not yet open (FIFO)
    private var active: [Forward] = []
    private var closing: [OpaquePointer] = []  // channels being closed and freed
    private var pending: Pending?
    private var lastKeepalive: UInt64 = 0
    /// The direct-tcpip open's own data (RFC 4254 7.2): the target's host and port, then the
    /// originator's address and port.
    private let openMessage: [CChar]
    /// The largest packet each channel accepts (libssh2's default; it refuses more than 40000).
    static let packetSize: UInt32 = 32768

    /// Takes over `listener` (bound and listening) and `session` (connected; nothing else may
    /// use it from now on). `connect` opens replacement sessions after a loss.
    public init(
        listener: Int32, session: SSHSession, targetHost: String, targetPort: Int,
        settings: ForwarderSettings = ForwarderSettings(),
        connect: @escaping @Sendable () throws -> SSHSession,
        onEvent: @escaping @Sendable (ForwarderEvent) -> Void = { _ in }
    ) throws {
        self.listener = listener
        self.session = session
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.settings = settings
        self.connect = connect
        self.onEvent = onEvent
        func sshString(_ text: String) -> [UInt8] { bigEndian(UInt32(text.utf8.count)) + Array(text.utf8) }
        func bigEndian(_ n: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: n >> $0) } }
        let message =
            sshString(targetHost) + bigEndian(UInt32(targetPort)) + sshString("127.0.0.1") + bigEndian(0)
        openMessage = message.map { CChar(bitPattern: $0) }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw VLLMCtlError.invalidInput(
                "Cannot create a pipe: \(String(cString: strerror(errno)))", hint: "Try again.")
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
        }
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    /// Asks the loop to close everything and return; safe from any thread or signal source.
    public func stop() {
        stopLock.withLock { stopRequested = true }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private var isStopping: Bool { stopLock.withLock { stopRequested } }

    /// Runs until `stop()`. Closes the listener, every client and the session before it returns.
    public func run() {
        signal(SIGPIPE, SIG_IGN)
        if let session { adopt(session) }
        while !isStopping {
            guard session != nil else {
                reconnect()
                continue
            }
            if let reason = pass() {
                dropSession(reason: reason)
            }
        }
        shutdownAll()
    }

    // MARK: the loop

    /// One pass over everything, then a wait if nothing moved. Returns why the session died.
    private func pass() -> String? {
        guard let s = session else { return nil }
        var progressed = false

        // A half-sent packet goes first, and alone.
        if let op = pending {
            pending = nil
            switch attempt(op, s) {
            case .done: progressed = true
            case .blocked:
                // Sent, now waiting for an answer: the op goes back to its usual place.
                if pending == nil, case .free(let channel) = op { closing.append(channel) }
            case .sessionError(let reason): return reason
            }
        }
        if pending == nil {
            accept()
            if let outcome = openNext(s) {
                if case .sessionError(let reason) = outcome { return reason }
                if case .done = outcome { progressed = true }
            }
        }
        for f in active where !f.finished {
            pump(f, s, &progressed)
            if let reason = sessionFailure {
                sessionFailure = nil
                return reason
            }
            // Between clients, the open in progress goes on (its answer may have arrived with
            // the bytes just read), so that a busy pass does not hold new clients back.
            if !waiting.isEmpty && pending == nil, let outcome = openNext(s) {
                if case .sessionError(let reason) = outcome { return reason }
                if case .done = outcome { progressed = true }
            }
        }
        active.removeAll { $0.channel == nil }
        if pending == nil {
            if let reason = freeClosing(s, &progressed) { return reason }
            if case .sessionError(let reason) = attempt(.control, s) { return reason }
            if let reason = keepalive(s) { return reason }
        }
        if let reason = checkDeadPeer(s) { return reason }
        if !progressed { wait(s) }
        return nil
    }

    private var sessionFailure: String?

    /// Moves bytes for one client; a session failure is left in `sessionFailure`. Goes round
    /// while bytes move, at most `turnsPerPass` times, and writes packets until the client's
    /// bytes are sent or the window is full: one pass moves whole buffers, not one packet, so
    /// the per-pass calls (accept, the control channel, poll) cost less per byte.
    private func pump(_ f: Forward, _ s: SSHSession, _ progressed: inout Bool) {
        guard let channel = f.channel else { return }
        var moved = true
        var turn = 0
        while moved && turn < Self.turnsPerPass && pending == nil && !f.finished {
            moved = false
            turn += 1
            // client → channel
            if f.up.isEmpty && !f.clientEOF {
                switch f.up.fill(from: f.client) {
                case .data: moved = true
                case .eof:
                    f.clientEOF = true
                    moved = true
                case .wouldBlock: break
                case .error: f.finished = true
                }
            }
            while !f.up.isEmpty && pending == nil && !f.finished {
                guard step(.write(f), s, &moved) else { break }
            }
            if sessionFailure != nil { return }
            if f.clientEOF && f.up.isEmpty && !f.eofSent && pending == nil && !f.finished {
                _ = step(.eof(f), s, &moved)
                if sessionFailure != nil { return }
            }
            // channel → client
            if f.down.isEmpty && !f.channelEOF && pending == nil && !f.finished {
                _ = step(.read(f), s, &moved)
                if sessionFailure != nil { return }
            }
            if !f.down.isEmpty && !f.finished {
                switch f.down.drain(to: f.client) {
                case .data: moved = true
                case .wouldBlock, .eof: break
                case .error: f.finished = true
                }
            }
            if moved { progressed = true }
        }
        if f.channelEOF && f.down.isEmpty && !f.clientWriteShut && !f.finished {
            shutdown(f.client, Int32(SHUT_WR))
            f.clientWriteShut = true
        }
        if f.clientEOF && f.eofSent && f.channelEOF && f.down.isEmpty { f.finished = true }
        if f.finished {
            close(f.client)
            closing.append(channel)
            f.channel = nil
            progressed = true
        }
    }

    /// Rounds of `pump` per client and pass while bytes move (then the next client's turn).
    static let turnsPerPass = 8

    /// One call for `pump`: true when it completed; a session failure goes to `sessionFailure`.
    private func step(_ op: Pending, _ s: SSHSession, _ moved: inout Bool) -> Bool {
        switch attempt(op, s) {
        case .done:
            moved = true
            return true
        case .blocked: return false
        case .sessionError(let reason):
            sessionFailure = reason
            return false
        }
    }

    private enum Outcome {
        case done
        case blocked
        case sessionError(String)
    }

    /// A libssh2 call that may have to be repeated after EAGAIN.
    private enum Pending {
        case write(Forward)
        case eof(Forward)
        case read(Forward)
        case open(Forward)
        case free(OpaquePointer)
        case control
    }

    /// Makes one call; a call left half-sent becomes `pending`.
    private func attempt(_ op: Pending, _ s: SSHSession) -> Outcome {
        let raw = s.raw
        var rc: Int
        switch op {
        case .write(let f):
            guard let channel = f.channel else { return .done }
            rc = f.up.withReadable { libssh2_channel_write_ex(channel, 0, $0, $1) }
            if rc > 0 {
                f.up.consume(rc)
                return .done
            }
            if rc == 0 { rc = Int(LIBSSH2_ERROR_EAGAIN) }  // the window is full
        case .eof(let f):
            guard let channel = f.channel else { return .done }
            rc = Int(libssh2_channel_send_eof(channel))
            if rc == 0 {
                f.eofSent = true
                return .done
            }
        case .read(let f):
            guard let channel = f.channel else { return .done }
            rc = f.down.withWritable { libssh2_channel_read_ex(channel, 0, $0, $1) }
            if rc > 0 {
                f.down.produced(rc)
                return .done
            }
            if rc == 0 || rc == Int(LIBSSH2_ERROR_EAGAIN) {
                if libssh2_channel_eof(channel) != 0 {
                    f.channelEOF = true
                    return .done
                }
                if rc == 0 { rc = Int(LIBSSH2_ERROR_EAGAIN) }
            }
        case .open(let f):
            // libssh2_channel_direct_tcpip_ex with our window: libssh2 then keeps topping the
            // window up to this size (plus the read size) as the client drains it.
            let opened = openMessage.withUnsafeBufferPointer {
                libssh2_channel_open_ex(
                    raw, "direct-tcpip", 12, settings.receiveWindow, Self.packetSize, $0.baseAddress,
                    UInt32($0.count))
            }
            guard let channel = opened else {
                rc = Int(libssh2_session_last_errno(raw))
                if rc == Int(LIBSSH2_ERROR_EAGAIN) { break }
                if rc == Int(LIBSSH2_ERROR_CHANNEL_FAILURE) {
                    // The server said no for this one connection; the session is fine.
                    let message = s.lastError.message
                    let reason =
                        message.firstRange(of: "(").map {
                            String(message[$0.upperBound...].dropLast(message.hasSuffix(")") ? 1 : 0))
                        } ?? message
                    onEvent(.channelOpenFailed(reason: reason))
                    f.finished = true
                    return .done
                }
                return .sessionError(s.lastError.message)
            }
            f.channel = channel
            return .done
        case .free(let channel):
            rc = Int(libssh2_channel_free(channel))
            if rc == 0 { return .done }
            if rc != Int(LIBSSH2_ERROR_EAGAIN) { return .done }  // freed regardless
        case .control:
            guard let control else { return .done }
            var scratch = [CChar](repeating: 0, count: 256)
            rc = libssh2_channel_read_ex(control, 0, &scratch, scratch.count)
            if rc >= 0 && libssh2_channel_eof(control) != 0 {
                return .sessionError("the server closed the session")
            }
            if rc >= 0 { rc = Int(LIBSSH2_ERROR_EAGAIN) }
        }
        if rc == Int(LIBSSH2_ERROR_EAGAIN) {
            if libssh2_session_block_directions(raw) & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 {
                pending = op
            }
            return .blocked
        }
        // A channel-level failure ends that client; a socket-level one ends the session.
        switch Int32(rc) {
        case LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_DISCONNECT,
            LIBSSH2_ERROR_SOCKET_TIMEOUT, LIBSSH2_ERROR_TIMEOUT, LIBSSH2_ERROR_DECRYPT,
            LIBSSH2_ERROR_KEX_FAILURE, LIBSSH2_ERROR_BAD_USE:
            let message = s.lastError.message
            return .sessionError(message.isEmpty ? "libssh2 error \(rc)" : message)
        default:
            switch op {
            case .write(let f), .eof(let f), .read(let f), .open(let f): f.finished = true
            case .free, .control: break
            }
            return .done
        }
    }

    private func accept() {
        while active.count + waiting.count < settings.maxConnections {
            let fd = Glibc.accept(listener, nil, nil)
            if fd < 0 { return }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            waiting.append(Forward(client: fd, bufferSize: settings.bufferSize, now: Self.now()))
        }
    }

    /// Opens the channel of the first waiting client (one open at a time on a session).
    private func openNext(_ s: SSHSession) -> Outcome? {
        guard let f = waiting.first else { return nil }
        var outcome = Outcome.done
        if f.channel == nil && !f.finished { outcome = attempt(.open(f), s) }
        if f.channel != nil || f.finished {
            waiting.removeFirst()
            if f.channel != nil { active.append(f) } else { close(f.client) }
            return .done
        }
        if case .blocked = outcome,
            Double(Self.now() - f.acceptedAt) / 1e9 > settings.channelOpenTimeout
        {
            return .sessionError(
                "opening a channel took longer than \(Int(settings.channelOpenTimeout)) s")
        }
        return outcome
    }

    private func freeClosing(_ s: SSHSession, _ progressed: inout Bool) -> String? {
        var still: [OpaquePointer] = []
        for (i, channel) in closing.enumerated() {
            if pending != nil {
                still.append(contentsOf: closing[i...])
                break
            }
            switch attempt(.free(channel), s) {
            case .done: progressed = true
            case .blocked: if pending == nil { still.append(channel) }
            case .sessionError(let reason):
                closing = still + closing[(i + 1)...]
                return reason
            }
        }
        closing = still
        return nil
    }

    /// Sends a keepalive after `keepaliveInterval` of silence, but only while the socket has
    /// room: libssh2 drops a keepalive's half-sent packet on the floor, which would wedge the
    /// session.
    private func keepalive(_ s: SSHSession) -> String? {
        let now = Self.now()
        let interval = UInt64(settings.keepaliveInterval) * 1_000_000_000
        guard interval > 0, now - s.lastReceived >= interval, now - lastKeepalive >= interval else {
            return nil
        }
        var unsent: Int32 = 0
        var sendBuffer: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard withUnsafeMutablePointer(to: &unsent, { ioctl(s.socket, UInt(TIOCOUTQ), $0) }) == 0,
            getsockopt(s.socket, SOL_SOCKET, SO_SNDBUF, &sendBuffer, &length) == 0,
            unsent < sendBuffer / 4
        else { return nil }
        lastKeepalive = now
        var next: Int32 = 0
        if libssh2_keepalive_send(s.raw, &next) != 0 {
            return s.lastError.message.isEmpty ? "the keepalive could not be sent" : s.lastError.message
        }
        return nil
    }

    private func checkDeadPeer(_ s: SSHSession) -> String? {
        let interval = UInt64(settings.keepaliveInterval) * 1_000_000_000
        guard interval > 0 else { return nil }
        let silence = Self.now() - s.lastReceived
        guard silence > interval * UInt64(max(1, settings.keepaliveCountMax)),
            lastKeepalive > s.lastReceived || pending != nil
        else { return nil }
        return
            "no answer from the server for \(silence / 1_000_000_000) s (ServerAliveInterval \(settings.keepaliveInterval) × ServerAliveCountMax \(settings.keepaliveCountMax))"
    }

    /// Sleeps until a socket is ready, the next keepalive is due, or `stop()`.
    private func wait(_ s: SSHSession) {
        var fds: [pollfd] = [
            pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)
        ]
        // While a packet is half-sent only writability matters (nothing reads meanwhile); with
        // nothing to read the session through, its socket is left alone.
        var sessionEvents = Int16(POLLIN)
        if pending != nil {
            sessionEvents = Int16(POLLOUT)
        } else if control == nil && active.isEmpty && waiting.isEmpty && closing.isEmpty {
            sessionEvents = 0
        }
        fds.append(pollfd(fd: s.socket, events: sessionEvents, revents: 0))
        if active.count + waiting.count < settings.maxConnections {
            fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0))
        }
        for f in active {
            var events: Int16 = 0
            if f.up.isEmpty && !f.clientEOF { events |= Int16(POLLIN) }
            if !f.down.isEmpty { events |= Int16(POLLOUT) }
            if events != 0 { fds.append(pollfd(fd: f.client, events: events, revents: 0)) }
        }
        var timeout: Int32 = 1000
        if !waiting.isEmpty || !closing.isEmpty { timeout = 100 }
        _ = poll(&fds, nfds_t(fds.count), timeout)
        if fds[0].revents != 0 {
            var drain = [UInt8](repeating: 0, count: 64)
            _ = read(wakeRead, &drain, drain.count)
        }
    }

    // MARK: sessions

    private func adopt(_ s: SSHSession) {
        libssh2_session_set_blocking(s.raw, 1)
        libssh2_session_set_timeout(s.raw, Int(max(2, s.options.connectTimeout) * 1000))
        s.trackReceives()
        control = libssh2_channel_open_ex(s.raw, "session", 7, 64 * 1024, 32768, nil, 0)
        libssh2_session_set_blocking(s.raw, 0)
        if settings.keepaliveInterval > 0 {
            libssh2_keepalive_config(s.raw, 1, UInt32(settings.keepaliveInterval))
        }
        session = s
        lastKeepalive = 0
    }

    /// Forgets a dead session: its clients in flight are closed, waiting ones stay.
    private func dropSession(reason: String) {
        guard let s = session else { return }
        for f in active {
            close(f.client)
            f.channel = nil
        }
        active.removeAll()
        for f in waiting where f.channel != nil { f.channel = nil }
        closing.removeAll()
        pending = nil
        control = nil
        // Channels are freed with the session; its socket is shut first so that nothing waits.
        s.shutdownSocket()
        session = nil
        onEvent(.sessionLost(reason: reason))
    }

    private func reconnect() {
        var delay = settings.reconnectDelay
        while !isStopping {
            do {
                let s = try connect()
                adopt(s)
                onEvent(.reconnected)
                return
            } catch {
                onEvent(.reconnectFailed(reason: "\(error)", retryIn: delay))
                var fd = pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)
                _ = poll(&fd, 1, Int32(delay * 1000))
                delay = min(settings.reconnectDelayMax, delay * 2)
            }
        }
    }

    private func shutdownAll() {
        close(listener)
        for f in active + waiting { close(f.client) }
        active.removeAll()
        waiting.removeAll()
        closing.removeAll()
        control = nil
        session?.closeQuickly()
        session = nil
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// One accepted client and its channel.
final class Forward {
    let client: Int32
    let acceptedAt: UInt64
    var channel: OpaquePointer?
    /// client → server, and server → client.
    let up: ByteBuffer
    let down: ByteBuffer
    var clientEOF = false
    var eofSent = false
    var channelEOF = false
    var clientWriteShut = false
    var finished = false

    init(client: Int32, bufferSize: Int, now: UInt64) {
        self.client = client
        self.acceptedAt = now
        up = ByteBuffer(capacity: bufferSize)
        down = ByteBuffer(capacity: bufferSize)
    }
}

/// A fixed buffer filled at the end and drained from the front; refilled only when empty.
final class ByteBuffer {
    private let storage: UnsafeMutableRawPointer
    let capacity: Int
    private var start = 0
    private var end = 0

    init(capacity: Int) {
        self.capacity = capacity
        storage = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit { storage.deallocate() }

    var isEmpty: Bool { start == end }

    enum IO { case data, eof, wouldBlock, error }

    func withReadable(_ body: (UnsafePointer<CChar>, Int) -> Int) -> Int {
        body(UnsafePointer(storage.advanced(by: start).assumingMemoryBound(to: CChar.self)), end - start)
    }

    func consume(_ n: Int) {
        start += n
        if start == end { start = 0; end = 0 }
    }

    func withWritable(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int) -> Int {
        body(storage.advanced(by: end).assumingMemoryBound(to: CChar.self), capacity - end)
    }

    func produced(_ n: Int) { end += n }

    /// Reads from a socket into the empty buffer.
    func fill(from fd: Int32) -> IO {
        let n = recv(fd, storage.advanced(by: end), capacity - end, 0)
        if n > 0 {
            end += n
            return .data
        }
        if n == 0 { return .eof }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? .wouldBlock : .error
    }

    /// Writes the buffer's bytes to a socket.
    func drain(to fd: Int32) -> IO {
        let n = send(fd, storage.advanced(by: start), end - start, Int32(MSG_NOSIGNAL))
        if n > 0 {
            consume(n)
            return .data
        }
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? .wouldBlock : .error
    }
}
