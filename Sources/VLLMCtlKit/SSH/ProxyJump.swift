import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One ProxyJump hop: a session to the jump host, a direct-tcpip channel from it to the
/// target, and a thread that pumps bytes between that channel and one end of a socket pair.
/// The target's session runs over the other end as if it were a TCP socket.
///
/// The pump owns the channel, which holds the jump session; the target session owns the pump.
/// The pump thread is the only user of the jump session after setup (libssh2 allows one
/// thread per session). It ends, freeing the channel, when the target side closes its end,
/// the channel ends, or `stop()` is called; the jump session goes with the pump.
final class ProxyJumpPump: @unchecked Sendable {
    private let channel: SSHChannel
    var jump: SSHSession { channel.session }
    /// The pump's end of the socket pair (the target session has the other).
    let fd: Int32
    private let stopLock = NSLock()
    private var stopped = false

    /// Connects to the jump host and opens the channel to `host:port`; returns the pump and
    /// the socket for the target session.
    static func open(jump options: SSHConnectOptions, to host: String, port: Int, for target: String) throws
        -> (ProxyJumpPump, Int32)
    {
        let jump = try SSHSession(connecting: options, queue: DispatchQueue(label: "vllmctl.ssh.jump"))
        jump.setBlocking(true)
        jump.setTimeout(milliseconds: Int(options.connectTimeout * 1000))
        guard let channel = SSHChannel.directTCPIP(on: jump, host: host, port: port) else {
            throw jump.error(
                "the jump host could not open a connection to \(host):\(port) for \(target)",
                hint:
                    "Check the target's HostName/Port as seen from the jump host, and that the jump host allows TCP forwarding (AllowTcpForwarding)"
            )
        }
        jump.setTimeout(milliseconds: 0)
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, SocketType.stream | SocketType.closeOnExec, 0, &fds) == 0
        else {
            channel.free()
            throw SSHError(
                host: target, message: "cannot create a socket pair: \(String(cString: strerror(errno)))",
                hint: "Try again")
        }
        let pump = ProxyJumpPump(channel: channel, fd: fds[1])
        let thread = Thread { pump.run() }
        thread.name = "vllmctl.ssh.proxyjump"
        thread.start()
        return (pump, fds[0])
    }

    private init(channel: SSHChannel, fd: Int32) {
        self.channel = channel
        self.fd = fd
    }

    func stop() { stopLock.withLock { stopped = true } }
    private var isStopped: Bool { stopLock.withLock { stopped } }

    /// A libssh2 call on the jump session that returned EAGAIN while blocked on sending: its
    /// packet is half-sent and only the same call may finish it, so it is the next call made.
    private enum Call { case write, read }

    private func run() {
        let jump = self.jump
        jump.setBlocking(false)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var up = [UInt8](), down = [UInt8]()  // up: target → jump host; down: jump host → target
        var buffer = [UInt8](repeating: 0, count: 65536)
        var targetClosed = false
        var pending: Call?
        /// Whether a call that just returned EAGAIN left a packet half-sent.
        func halfSent() -> Bool { jump.isBlockedOnSending }
        loop: while !isStopped {
            var progressed = false
            if up.isEmpty && !targetClosed {
                let n = read(fd, &buffer, buffer.count)
                if n > 0 {
                    up.append(contentsOf: buffer[0..<n])
                    progressed = true
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    targetClosed = true
                }
            }
            // `up` is left as it is while its write is pending: the same call, the same bytes.
            if !up.isEmpty && (pending == nil || pending == .write) {
                let n = up.withUnsafeBytes {
                    channel.write($0.baseAddress!.assumingMemoryBound(to: CChar.self), count: $0.count)
                }
                if n > 0 {
                    up.removeFirst(n)
                    pending = nil
                    progressed = true
                } else if n == 0 || n == Int(LIBSSH2_ERROR_EAGAIN) {
                    // 0: the window is full; reading below takes in the server's window adjust.
                    pending = n != 0 && halfSent() ? .write : nil
                } else {
                    break loop
                }
            }
            if targetClosed && up.isEmpty && pending == nil { break loop }
            if down.isEmpty && (pending == nil || pending == .read) {
                let n = buffer.withUnsafeMutableBytes {
                    channel.read(into: $0.baseAddress!.assumingMemoryBound(to: CChar.self), count: $0.count)
                }
                if n > 0 {
                    down.append(contentsOf: buffer[0..<n])
                    pending = nil
                    progressed = true
                } else if n < 0 && n != Int(LIBSSH2_ERROR_EAGAIN) {
                    break loop
                } else {
                    // A read sends window adjusts: it too may leave a packet half-sent.
                    pending = n != 0 && halfSent() ? .read : nil
                    if pending == nil && channel.receivedEOF { break loop }
                }
            }
            if !down.isEmpty {
                let n = write(fd, down, down.count)
                if n > 0 {
                    down.removeFirst(n)
                    progressed = true
                } else if n < 0 && errno != EAGAIN && errno != EINTR {
                    break loop
                }
            }
            if progressed { continue }
            var events: Int16 = 0
            if up.isEmpty && !targetClosed { events |= Int16(POLLIN) }
            if !down.isEmpty { events |= Int16(POLLOUT) }
            // While a packet is half-sent only writability matters.
            var sessionEvents = Int16(POLLIN)
            if pending != nil {
                sessionEvents = Int16(POLLOUT)
            } else if halfSent() {
                sessionEvents |= Int16(POLLOUT)
            }
            var pfds = [
                pollfd(fd: fd, events: events, revents: 0),
                pollfd(fd: jump.socket, events: sessionEvents, revents: 0),
            ]
            _ = poll(&pfds, 2, 200)
        }
        close(fd)
        jump.setBlocking(true)
        jump.setTimeout(milliseconds: 2000)
        channel.free()
        // The jump session is released with the pump (its channel holds it).
    }
}
