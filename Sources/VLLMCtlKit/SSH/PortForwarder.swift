import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What a running forwarder tells its owner (on the forwarder's thread; keep handlers short).
public enum ForwarderEvent: Sendable, Equatable {
    /// The SSH server could not open a connection to `target` for a client, or did not within
    /// the open timeout; `reason` is its words ("connect failed", "administratively
    /// prohibited", …) or ours. Only that client is closed. Said at most once per
    /// `ForwarderSettings.eventInterval`; `alsoSince` counts the failures not said meanwhile.
    case channelOpenFailed(target: String, reason: String, alsoSince: Int)
    /// The SSH session died; clients in flight were closed. Reconnecting follows.
    case sessionLost(reason: String)
    /// A new session is up; the local port stayed bound throughout.
    case reconnected
    /// A reconnect attempt failed; the next one follows after `retryIn` seconds.
    case reconnectFailed(reason: String, retryIn: Double)
    /// New connections could not be accepted (out of file descriptors); they wait in the
    /// backlog and accepting resumes after a pause. Said at most once a minute.
    case acceptFailed(reason: String)
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
    /// Seconds a channel may take to open, counted from when its open started. A slower one
    /// fails its client only (the target is down, firewalled or its backlog is full), never
    /// the session: reconnecting would not help, and storms of handshakes lock users out.
    public var channelOpenTimeout: Double = 5
    /// Reconnect backoff after a lost session: the first delay, doubled for each loss in a row
    /// (a session that lived `stableSeconds` resets it), up to the ceiling, in seconds.
    public var reconnectDelay: Double = 0.5
    public var reconnectDelayMax: Double = 30
    /// Handshakes never start closer together than this, in seconds.
    public var minHandshakeInterval: Double = 2
    /// A session that lived this long resets the backoff, in seconds.
    public var stableSeconds: Double = 60
    /// Repeated channel-open failures are said at most once per this many seconds.
    public var eventInterval: Double = 5

    public init() {}
}

/// `ssh -L` on one libssh2 session: a local listening socket whose every accepted connection
/// is carried by a direct-tcpip channel to `targetHost:targetPort` as the SSH server sees it.
/// Without a listener it carries sockets handed to it with `inject` (the other ends of
/// socketpairs libcurl talks HTTP over), each to its own target, and, built with
/// `exitWhenIdle`, runs only while it has clients, on a session shared with exec and SFTP.
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
///
/// Handles: each client's channel is an `SSHChannel` (holding the session), owned by its
/// `Forward`; the loop frees it in its own time (`closing`, `free()` repeated after EAGAIN),
/// so no libssh2 call happens behind the loop's back. A dead or closed session is marked
/// broken before its channels are dropped, which leaves their handles to the session's release.
/// The loop runs on one thread at a time: the tunnel's own thread, or the session's queue.
///
/// libssh2 1.10 opens one channel at a time. An open that outlives `channelOpenTimeout`
/// fails its client; libssh2 must still finish it, so it goes on in the background and
/// clients for the same target fail at once meanwhile (clients for other targets wait up to
/// their own timeout).
public final class PortForwarder: @unchecked Sendable {
    public let targetHost: String
    public let targetPort: Int
    public let settings: ForwarderSettings
    /// The bound listening socket (non-blocking); the forwarder closes it when it stops.
    private let listener: Int32?
    private let connect: (@Sendable () throws -> SSHSession)?
    private let onEvent: @Sendable (ForwarderEvent) -> Void
    private let exitWhenIdle: Bool
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let stopLock = NSLock()
    private var stopRequested = false
    // Under stopLock: clients handed over by `inject`, whether `run` is going, and why the
    // session was lost (after which injected clients fail at once).
    private var inbox: [Forward] = []
    private var running = false
    private var lostReason: String?
    private var failedAccepts = 0
    /// When the channel open now pending began (nil: none is), and its target.
    private var openingSince: UInt64?
    private var openingTarget: String?
    /// Seconds a channel open typically takes on this session (a moving average of those
    /// answered in time); nil before the first.
    private var typicalOpen: Double?

    // Only the loop's thread touches what follows.
    private var session: SSHSession?
    /// A "session" channel nobody runs anything on: reading it makes libssh2 process what
    /// the server sends while no client is connected (keepalive replies, disconnects).
    private var control: SSHChannel?
    private var waiting: [Forward] = []  // accepted, channel not yet open (FIFO)
    /// The one client whose channel libssh2 is opening; once `abandoned`, its client has gone.
    private var opening: Forward? {
        didSet {
            let target = opening?.target
            stopLock.withLock {
                openingSince = target != nil ? (openingSince ?? MonotonicClock.now()) : nil
                openingTarget = target
            }
        }
    }
    private var active: [Forward] = []
    private var closing: [SSHChannel] = []  // channels being closed and freed
    private var pending: Pending?
    private var lastKeepalive: UInt64 = 0
    /// Reconnects: the last handshake's start, losses in a row, and the session's start.
    private var lastHandshake: UInt64 = 0
    private var lossStreak = 0
    private var sessionSince: UInt64 = 0
    /// After an accept failed for want of descriptors: no accepting (nor polling the listener,
    /// which stays readable) until then; and whether that was said.
    private var acceptPausedUntil: UInt64 = 0
    private var acceptFailureSaidAt: UInt64 = 0
    /// Rate limit of `channelOpenFailed`: when it was last said, and failures since.
    private var lastOpenFailureEvent: UInt64 = 0
    private var openFailuresUnsaid = 0
    /// The direct-tcpip open's own data for the listener's target, and that target for messages.
    private let openMessage: [CChar]
    private let listenerTarget: String
    /// The largest packet each channel accepts (libssh2's default; it refuses more than 40000).
    static let packetSize: UInt32 = 32768

    /// Takes over `listener` (bound and listening; nil: clients come from `inject` only) and
    /// `session` (connected). `connect` opens replacement sessions after a loss; without it a
    /// lost session fails every client, and later ones at once. With `exitWhenIdle`, `run`
    /// returns whenever no client is left and `inject` starts it again on the session's own
    /// queue, so that exec and SFTP may use the session in between.
    public init(
        listener: Int32?, session: SSHSession, targetHost: String = "", targetPort: Int = 0,
        settings: ForwarderSettings = ForwarderSettings(), exitWhenIdle: Bool = false,
        connect: (@Sendable () throws -> SSHSession)?,
        onEvent: @escaping @Sendable (ForwarderEvent) -> Void = { _ in }
    ) throws {
        self.listener = listener
        self.session = session
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.settings = settings
        self.exitWhenIdle = exitWhenIdle
        self.connect = connect
        self.onEvent = onEvent
        openMessage = Self.openMessage(host: targetHost, port: targetPort)
        listenerTarget = URLTarget.hostPort(targetHost, targetPort)
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
        if let listener { _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK) }
    }

    /// The direct-tcpip open's own data (RFC 4254 7.2): the target's host and port, then the
    /// originator's address and port.
    static func openMessage(host: String, port: Int) -> [CChar] {
        func sshString(_ text: String) -> [UInt8] { bigEndian(UInt32(text.utf8.count)) + Array(text.utf8) }
        func bigEndian(_ n: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: n >> $0) } }
        let message = sshString(host) + bigEndian(UInt32(port)) + sshString("127.0.0.1") + bigEndian(0)
        return message.map { CChar(bitPattern: $0) }
    }

    /// How an injected client's channel open ended: nil when it is open, else why not.
    public typealias OpenResult = @Sendable (_ failure: ChannelOpenFailure?) -> Void

    /// Carries `client` (a connected socket the forwarder now owns) over a new channel to
    /// `host:port`. `opened` is called once, on the forwarder's thread: with nil when the
    /// channel is open, or with the reason it is not (the client is then closed). The open may
    /// take `timeout` seconds. With `heldUpAfter`, a client still queued once the open ahead of
    /// it (to another target) has been pending that long fails as held up
    /// (``ChannelOpenFailure/heldUp``), for its caller to carry it by another session. Safe
    /// from any thread.
    public func inject(
        client: Int32, host: String, port: Int, timeout: Double, heldUpAfter: Double? = nil,
        opened: @escaping OpenResult
    ) {
        _ = fcntl(client, F_SETFD, FD_CLOEXEC)
        _ = fcntl(client, F_SETFL, O_NONBLOCK)
        let f = Forward(client: client, bufferSize: settings.bufferSize, now: MonotonicClock.now())
        f.openMessage = Self.openMessage(host: host, port: port)
        f.target = URLTarget.hostPort(host, port)
        f.openTimeout = timeout
        f.heldUpAfter = heldUpAfter
        f.opened = opened
        f.closeOnClientEOF = true
        let (start, lost) = stopLock.withLock { () -> (Bool, String?) in
            if let lostReason { return (false, lostReason) }
            inbox.append(f)
            defer { running = true }
            return (!running, nil)
        }
        if let lost {
            close(client)
            opened(ChannelOpenFailure(.ourSide, "the SSH session was lost (\(lost))"))
            return
        }
        if start, let session {
            session.schedule { _ in self.run() }
        } else {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
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

    /// Seconds the channel open now in progress has been waiting for the SSH server's answer;
    /// nil when none is. While one waits, no other channel opens on this session (libssh2
    /// opens one at a time): an open to a host that is gone (sshd's connect retrying) holds up
    /// the rest. Safe from any thread.
    public var openPendingSeconds: Double? {
        stopLock.withLock { openingSince.map { Double(MonotonicClock.now() - $0) / 1e9 } }
    }

    /// The target (`host:port`) of the channel open now in progress; nil when none is. Safe
    /// from any thread.
    public var openPendingTarget: String? { stopLock.withLock { openingTarget } }

    /// Seconds a channel open has typically taken on this session (a moving average of the
    /// opens answered within their timeout: the round trip to the SSH server and its connect
    /// to the target); nil before the first. Safe from any thread.
    public var typicalOpenSeconds: Double? { stopLock.withLock { typicalOpen } }

    /// `accept` calls that failed for want of descriptors or memory, so far: with the pause
    /// after each, at most one a second (tests count them to see that the loop does not spin).
    var acceptFailures: Int { stopLock.withLock { failedAccepts } }

    /// Runs until `stop()`. Closes the listener, every client and the session before it returns.
    /// With `exitWhenIdle` it returns as soon as no client is left, and leaves the session
    /// blocking and open for its other users.
    public func run() {
        signal(SIGPIPE, SIG_IGN)
        if let session { adopt(session) }
        while !isStopping {
            guard session != nil else {
                if connect == nil {
                    if exitWhenIdle { return }
                    break
                }
                reconnect()
                continue
            }
            if let reason = pass() {
                dropSession(reason: reason)
            } else if exitWhenIdle && isIdle {
                let done = stopLock.withLock { () -> Bool in
                    guard inbox.isEmpty else { return false }
                    running = false
                    return true
                }
                if done {
                    if let s = session { release(s) }
                    return
                }
            }
        }
        shutdownAll()
    }

    /// Nothing left to do on the session: no client, no open, no channel being freed.
    private var isIdle: Bool {
        waiting.isEmpty && active.isEmpty && closing.isEmpty && opening == nil && pending == nil
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
            takeInjected()
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
            if (!waiting.isEmpty || opening != nil) && pending == nil, let outcome = openNext(s) {
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
                    // libcurl closes its end when the exchange is over: nothing more to carry.
                    if f.closeOnClientEOF { f.finished = true }
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
        case free(SSHChannel)
        case control
    }

    /// Makes one call; a call left half-sent becomes `pending`.
    private func attempt(_ op: Pending, _ s: SSHSession) -> Outcome {
        var rc: Int
        switch op {
        case .write(let f):
            guard let channel = f.channel else { return .done }
            rc = f.up.withReadable { channel.write($0, count: $1) }
            if rc > 0 {
                f.up.consume(rc)
                return .done
            }
            if rc == 0 { rc = Int(LIBSSH2_ERROR_EAGAIN) }  // the window is full
        case .eof(let f):
            guard let channel = f.channel else { return .done }
            rc = Int(channel.sendEOF())
            if rc == 0 {
                f.eofSent = true
                return .done
            }
        case .read(let f):
            guard let channel = f.channel else { return .done }
            rc = f.down.withWritable { channel.read(into: $0, count: $1) }
            if rc > 0 {
                f.down.produced(rc)
                return .done
            }
            if rc == 0 || rc == Int(LIBSSH2_ERROR_EAGAIN) {
                if channel.receivedEOF {
                    f.channelEOF = true
                    return .done
                }
                if rc == 0 { rc = Int(LIBSSH2_ERROR_EAGAIN) }
            }
        case .open(let f):
            // libssh2_channel_direct_tcpip_ex with our window: libssh2 then keeps topping the
            // window up to this size (plus the read size) as the client drains it.
            let opened = SSHChannel.open(
                "direct-tcpip", on: s, window: settings.receiveWindow, packetSize: Self.packetSize,
                message: f.openMessage ?? openMessage)
            guard let channel = opened else {
                rc = Int(s.lastErrno)
                if rc == Int(LIBSSH2_ERROR_EAGAIN) { break }
                if rc == Int(LIBSSH2_ERROR_CHANNEL_FAILURE) {
                    // The server said no for this one connection; the session is fine.
                    let message = s.lastError.message
                    let reason =
                        message.firstRange(of: "(").map {
                            String(message[$0.upperBound...].dropLast(message.hasSuffix(")") ? 1 : 0))
                        } ?? message
                    fail(f, ChannelOpenFailure(serverSaid: reason))
                    return .done
                }
                if rc == Int(LIBSSH2_ERROR_TIMEOUT) { break }  // handled below
                return .sessionError(s.lastError.message)
            }
            f.channel = channel
            return .done
        case .free(let channel):
            rc = Int(channel.free())
            if rc == 0 { return .done }
            if rc != Int(LIBSSH2_ERROR_EAGAIN) { return .done }  // freed regardless
        case .control:
            guard let control else { return .done }
            var scratch = [CChar](repeating: 0, count: 256)
            rc = control.read(into: &scratch, count: scratch.count)
            if rc >= 0 && control.receivedEOF {
                return .sessionError("the server closed the session")
            }
            if rc >= 0 { rc = Int(LIBSSH2_ERROR_EAGAIN) }
        }
        if rc == Int(LIBSSH2_ERROR_EAGAIN) {
            if s.isBlockedOnSending {
                pending = op
            }
            return .blocked
        }
        // libssh2 waits 60 s (LIBSSH2_READ_TIMEOUT) for an open's answer, then gives the open
        // up and forgets it: that open's client fails, the session is fine.
        if case .open(let f) = op, rc == Int(LIBSSH2_ERROR_TIMEOUT) {
            fail(
                f,
                ChannelOpenFailure(
                    .unanswered,
                    "no answer from \(f.target): libssh2 gave up waiting for the SSH server"))
            return .done
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
            case .write(let f), .eof(let f), .read(let f): f.finished = true
            case .open(let f):
                let message = s.lastError.message
                fail(f, ChannelOpenFailure(.ourSide, message.isEmpty ? "libssh2 error \(rc)" : message))
            case .free, .control: break
            }
            return .done
        }
    }

    private func accept() {
        guard let listener, MonotonicClock.now() >= acceptPausedUntil else { return }
        while active.count + waiting.count < settings.maxConnections {
            let fd = Glibc.accept(listener, nil, nil)
            if fd < 0 {
                let code = errno
                if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM {
                    stopLock.withLock { failedAccepts += 1 }
                    // The listener stays readable: polling it now would spin.
                    let now = MonotonicClock.now()
                    acceptPausedUntil = now + 1_000_000_000
                    // Said at most once a minute.
                    if acceptFailureSaidAt == 0 || now - acceptFailureSaidAt > 60_000_000_000 {
                        acceptFailureSaidAt = now
                        onEvent(
                            .acceptFailed(
                                reason:
                                    "\(String(cString: strerror(code))) (\(active.count + waiting.count) connections open)"
                            ))
                    }
                }
                return
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let f = Forward(client: fd, bufferSize: settings.bufferSize, now: MonotonicClock.now())
            f.target = listenerTarget
            f.openTimeout = settings.channelOpenTimeout
            waiting.append(f)
        }
    }

    /// Moves clients handed over by `inject` into the queue.
    private func takeInjected() {
        let new = stopLock.withLock { () -> [Forward] in
            defer { inbox.removeAll() }
            return inbox
        }
        waiting.append(contentsOf: new)
    }

    /// Ends a client whose channel could not be opened, and says so (rate-limited). The event
    /// goes out before the client's connection closes: whoever sees the close (a health check
    /// through the tunnel) can then read the refusal's words.
    private func fail(_ f: Forward, _ failure: ChannelOpenFailure) {
        let reason = failure.reason
        let now = MonotonicClock.now()
        if Double(now - lastOpenFailureEvent) / 1e9 >= settings.eventInterval || lastOpenFailureEvent == 0 {
            onEvent(.channelOpenFailed(target: f.target, reason: reason, alsoSince: openFailuresUnsaid))
            lastOpenFailureEvent = now
            openFailuresUnsaid = 0
        } else {
            openFailuresUnsaid += 1
        }
        if !f.abandoned {
            close(f.client)
            f.opened?(failure)
            f.opened = nil
        }
        f.finished = true
    }

    /// Opens the channel of the first waiting client (one open at a time on a session). An
    /// open past its client's timeout fails that client and goes on without it; clients queued
    /// behind it for the same target fail once it has waited longer than they would (at once
    /// when it is past its own timeout), others when their own wait runs out.
    private func openNext(_ s: SSHSession) -> Outcome? {
        let now = MonotonicClock.now()
        if opening == nil {
            waiting.removeAll { $0.finished }
            guard let f = waiting.first else { return nil }
            waiting.removeFirst()
            f.openStartedAt = now
            opening = f
        }
        guard let f = opening else { return nil }
        var outcome = Outcome.done
        if f.channel == nil && !f.finished { outcome = attempt(.open(f), s) }
        if let channel = f.channel {
            opening = nil
            if f.abandoned {
                closing.append(channel)
                f.channel = nil
            } else {
                let took = Double(now - f.openStartedAt) / 1e9
                stopLock.withLock { typicalOpen = typicalOpen.map { 0.8 * $0 + 0.2 * took } ?? took }
                f.opened?(nil)
                f.opened = nil
                active.append(f)
            }
            return .done
        }
        if f.finished {
            opening = nil
            return .done
        }
        guard case .blocked = outcome else { return outcome }
        let waited = Double(now - f.openStartedAt) / 1e9
        if !f.abandoned && waited > f.openTimeout {
            fail(
                f,
                ChannelOpenFailure(
                    .unanswered, "no answer from \(f.target) within \(Self.seconds(f.openTimeout)) s"))
            f.abandoned = true
            f.finished = false  // libssh2 still has to finish this open
        }
        // Each waiting client's own timeout holds, also while the open it waits behind is
        // within its own. One for the same target fails as soon as that open has waited longer
        // than this client would: its target has not answered for that long.
        for w in waiting where !w.finished {
            let queued = Double(now - w.acceptedAt) / 1e9
            if w.target == f.target && (f.abandoned || waited > w.openTimeout) {
                fail(
                    w,
                    ChannelOpenFailure(
                        .unanswered,
                        "no answer from \(w.target): a connection to it has been pending for \(Self.seconds((waited * 10).rounded() / 10)) s"
                    ))
            } else if w.target != f.target, let after = w.heldUpAfter, waited >= after {
                var failure = ChannelOpenFailure(
                    .ourSide,
                    "held up behind a connection to \(f.target) pending for \(Self.seconds((waited * 10).rounded() / 10)) s (libssh2 opens one channel at a time)"
                )
                failure.heldUp = true
                fail(w, failure)
            } else if queued > w.openTimeout {
                // Nothing is known of this client's own target.
                fail(
                    w,
                    ChannelOpenFailure(
                        .ourSide,
                        "waited \(Self.seconds(w.openTimeout)) s behind a connection to \(f.target) that has not completed (libssh2 opens one channel at a time)"
                    ))
            }
        }
        return outcome
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.1f", value)
    }

    private func freeClosing(_ s: SSHSession, _ progressed: inout Bool) -> String? {
        var still: [SSHChannel] = []
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
        let now = MonotonicClock.now()
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
        if s.sendKeepalive() != 0 {
            return s.lastError.message.isEmpty ? "the keepalive could not be sent" : s.lastError.message
        }
        return nil
    }

    private func checkDeadPeer(_ s: SSHSession) -> String? {
        let interval = UInt64(settings.keepaliveInterval) * 1_000_000_000
        guard interval > 0 else { return nil }
        let silence = MonotonicClock.now() - s.lastReceived
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
        } else if control == nil && active.isEmpty && waiting.isEmpty && closing.isEmpty && opening == nil {
            sessionEvents = 0
        }
        fds.append(pollfd(fd: s.socket, events: sessionEvents, revents: 0))
        let now = MonotonicClock.now()
        if let listener, active.count + waiting.count < settings.maxConnections, now >= acceptPausedUntil {
            fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0))
        }
        for f in active {
            var events: Int16 = 0
            if f.up.isEmpty && !f.clientEOF { events |= Int16(POLLIN) }
            if !f.down.isEmpty { events |= Int16(POLLOUT) }
            if events != 0 { fds.append(pollfd(fd: f.client, events: events, revents: 0)) }
        }
        var timeout: Int32 = 1000
        if !waiting.isEmpty || !closing.isEmpty || opening != nil { timeout = 100 }
        if now < acceptPausedUntil {
            timeout = min(timeout, Int32((acceptPausedUntil - now) / 1_000_000) + 1)
        }
        _ = poll(&fds, nfds_t(fds.count), timeout)
        if fds[0].revents != 0 {
            var drain = [UInt8](repeating: 0, count: 64)
            _ = read(wakeRead, &drain, drain.count)
        }
    }

    // MARK: sessions

    private func adopt(_ s: SSHSession) {
        s.setBlocking(true)
        s.setTimeout(milliseconds: Int(max(2, s.options.connectTimeout) * 1000))
        s.trackReceives()
        if !exitWhenIdle {
            control = SSHChannel.open("session", on: s, window: 64 * 1024, packetSize: 32768)
        }
        s.setBlocking(false)
        if settings.keepaliveInterval > 0 {
            s.configureKeepalive(interval: settings.keepaliveInterval)
        }
        session = s
        lastKeepalive = 0
        sessionSince = MonotonicClock.now()
    }

    /// Hands a shared session back to its other users (exec, SFTP): blocking again, with
    /// the timeout `SSHSession` uses after authentication.
    private func release(_ s: SSHSession) {
        s.setBlocking(true)
        s.setTimeout(milliseconds: 120_000)
    }

    /// Forgets a dead session: its clients in flight are closed, waiting ones stay.
    private func dropSession(reason: String) {
        guard let s = session else { return }
        // The session's channels are freed with it (each would take a round trip); its socket
        // is shut first so that nothing waits. Marked broken, the channels dropped below leave
        // their handles to it.
        s.markBroken()
        s.shutdownSocket()
        for f in active {
            close(f.client)
            f.channel = nil
        }
        active.removeAll()
        if let f = opening {
            opening = nil
            f.channel = nil
            if !f.abandoned {
                f.openStartedAt = 0
                waiting.insert(f, at: 0)
            }
        }
        if connect == nil {
            // Nobody will reconnect: every client fails now, and later ones at once.
            stopLock.withLock { lostReason = reason }
            takeInjected()
            for f in waiting where !f.finished {
                close(f.client)
                f.opened?(ChannelOpenFailure(.ourSide, "the SSH session was lost (\(reason))"))
                f.opened = nil
            }
            waiting.removeAll()
        }
        closing.removeAll()
        pending = nil
        control = nil
        let lived = Double(MonotonicClock.now() - sessionSince) / 1e9
        lossStreak = lived >= settings.stableSeconds ? 1 : lossStreak + 1
        session = nil
        onEvent(.sessionLost(reason: reason))
    }

    /// Replaces a lost session. Backs off from the first attempt (the delay doubles with each
    /// loss in a row, up to `reconnectDelayMax`) and never starts two handshakes closer than
    /// `minHandshakeInterval`, so that a session that dies at once cannot turn into a storm of
    /// handshakes (which trips sshd's MaxStartups or fail2ban on a real login node).
    private func reconnect() {
        guard let connect else { return }
        while !isStopping {
            let backoff = min(
                settings.reconnectDelayMax,
                settings.reconnectDelay * pow(2, Double(max(0, lossStreak - 1))))
            let sinceLast =
                lastHandshake == 0 ? .infinity : Double(MonotonicClock.now() - lastHandshake) / 1e9
            let delay = max(backoff, settings.minHandshakeInterval - sinceLast)
            var fd = pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)
            _ = poll(&fd, 1, Int32(delay * 1000))
            if isStopping { return }
            lastHandshake = MonotonicClock.now()
            do {
                let s = try connect()
                adopt(s)
                onEvent(.reconnected)
                return
            } catch {
                lossStreak += 1
                let next = min(
                    settings.reconnectDelayMax,
                    settings.reconnectDelay * pow(2, Double(max(0, lossStreak - 1))))
                onEvent(
                    .reconnectFailed(reason: "\(error)", retryIn: max(next, settings.minHandshakeInterval)))
            }
        }
    }

    private func shutdownAll() {
        // Goodbye first: the session is then closed (and broken), so the channels dropped
        // below leave their handles to its release instead of freeing them one by one.
        session?.closeQuickly()
        if let listener { close(listener) }
        takeInjected()
        for f in active + waiting {
            close(f.client)
            f.opened?(ChannelOpenFailure(.ourSide, "the forwarder stopped"))
            f.opened = nil
        }
        if let f = opening, !f.abandoned { close(f.client) }
        opening = nil
        active.removeAll()
        waiting.removeAll()
        closing.removeAll()
        pending = nil
        control = nil
        session = nil
    }
}

/// One accepted client and its channel.
final class Forward {
    let client: Int32
    let acceptedAt: UInt64
    var channel: SSHChannel?
    /// The direct-tcpip data for this client's own target (nil: the listener's), and the target
    /// for messages.
    var openMessage: [CChar]?
    var target = ""
    /// Seconds the channel may take to open, from `openStartedAt`.
    var openTimeout: Double = 5
    var openStartedAt: UInt64 = 0
    /// Seconds the open ahead (to another target) may be pending before this client fails as
    /// held up; nil: it waits out `openTimeout`.
    var heldUpAfter: Double?
    /// Told once how the open ended (injected clients).
    var opened: PortForwarder.OpenResult?
    /// The client went away while its open went on (timed out); libssh2 must still finish it.
    var abandoned = false
    /// An injected HTTP client: its EOF ends the exchange.
    var closeOnClientEOF = false
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

/// Why a channel to a target could not be opened, and whose fault that is: the one place
/// where what the SSH server said (in words: libssh2 keeps no reason code) becomes a kind.
public struct ChannelOpenFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Whose fault it is: `.refused` when the SSH server tried the target and could not connect
    /// (sshd's `connect failed`: nothing listens there, or the host is down); `.unanswered`
    /// when no answer came in time; `.ourSide` for the session, the forwarder, the server's
    /// policy or an open that waited behind another target's (nothing known of the target).
    public var kind: ConnectFault
    /// What happened, in words.
    public var reason: String
    /// The client was given up while it waited behind another target's pending open (it asked
    /// for that with `heldUpAfter`); the kind is ``ConnectFault/ourSide``.
    public var heldUp = false

    /// A failure of `kind`.
    public init(_ kind: ConnectFault, _ reason: String) {
        self.kind = kind
        self.reason = reason
    }

    /// The SSH server's refusal of an open (RFC 4254 5.1's reason, as libssh2 words it):
    /// `connect failed` is the target's; anything else (administratively prohibited,
    /// resource shortage, unknown channel type) is the server's policy or state.
    init(serverSaid reason: String) {
        self.init(reason.lowercased().contains("connect failed") ? .refused : .ourSide, reason)
    }

    public var description: String { reason }
}
