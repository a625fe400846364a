import CLibSSH2
import Foundation

/// One libssh2 channel (`LIBSSH2_CHANNEL*`), the only owner of that handle: an exec channel
/// (`execute`, SSHExec.swift), a ProxyJump hop's direct-tcpip channel, a forwarded client's
/// channel or a forwarder's control channel.
///
/// It holds its session, so the session (and its socket) outlives every channel opened on it;
/// the session holds no channel. Like its session it is used by one thread at a time: inside
/// `SSHSession.perform`, or by the one thread that drives the session (a forwarder's loop, a
/// ProxyJump pump). The calls follow the session's blocking mode; after EAGAIN on a write the
/// caller repeats the same call with the same bytes.
///
/// `free()` frees the handle at a moment its user picks (non-blocking users repeat it after
/// EAGAIN). `deinit` is the safety net: it frees a channel still open, briefly, unless the
/// session is closed or broken, whose release frees its channels with it.
public final class SSHChannel {
    let session: SSHSession
    private let raw: OpaquePointer
    /// The handle is gone: freed here, or with its closed session.
    private(set) var isFreed = false
    /// The remote side closed the channel: freeing it cannot wait for a running command.
    var isClosedByPeer = false

    private init(session: SSHSession, raw: OpaquePointer) {
        self.session = session
        self.raw = raw
    }

    /// Opens a channel of `type` ("session", "direct-tcpip" with its own data in `message`) in
    /// the session's current mode. Nil when it did not open; `session.lastErrno` says why
    /// (EAGAIN: a non-blocking open to repeat).
    static func open(
        _ type: String, on session: SSHSession, window: UInt32, packetSize: UInt32, message: [CChar]? = nil
    ) -> SSHChannel? {
        let opened: OpaquePointer?
        if let message {
            opened = message.withUnsafeBufferPointer {
                libssh2_channel_open_ex(
                    session.raw, type, UInt32(type.utf8.count), window, packetSize, $0.baseAddress,
                    UInt32($0.count))
            }
        } else {
            opened = libssh2_channel_open_ex(
                session.raw, type, UInt32(type.utf8.count), window, packetSize, nil, 0)
        }
        return opened.map { SSHChannel(session: session, raw: $0) }
    }

    /// A direct-tcpip channel to `host:port` as the server sees it (blocking sessions).
    static func directTCPIP(on session: SSHSession, host: String, port: Int) -> SSHChannel? {
        libssh2_channel_direct_tcpip_ex(session.raw, host, Int32(port), "127.0.0.1", 0).map {
            SSHChannel(session: session, raw: $0)
        }
    }

    deinit {
        if isFreed || session.isClosed || session.isBroken { return }
        // Freeing a channel whose command still runs (after a timeout) would block until the
        // command ends: give it half a second, then leave the rest to the session's cleanup.
        // (libssh2 1.10 cannot send a signal; the remote command runs on without its output.)
        let blocking = session.isBlocking
        session.setBlocking(false)
        let deadline = Date().addingTimeInterval(isClosedByPeer ? 5 : 0.5)
        while libssh2_channel_free(raw) == LIBSSH2_ERROR_EAGAIN && Date() < deadline {
            session.waitSocket(until: deadline)
        }
        session.setBlocking(blocking)
    }

    /// Frees the handle: 0 once done, EAGAIN (non-blocking) to be repeated. Any other result
    /// also leaves the handle freed (libssh2 frees it regardless).
    @discardableResult
    func free() -> Int32 {
        if session.isClosed { isFreed = true }
        if isFreed { return 0 }
        let rc = libssh2_channel_free(raw)
        if rc != LIBSSH2_ERROR_EAGAIN { isFreed = true }
        return rc
    }

    /// Starts a request ("exec" with the command line) on a "session" channel.
    func start(_ request: String, _ message: String) -> Int32 {
        libssh2_channel_process_startup(
            raw, request, UInt32(request.utf8.count), message, UInt32(message.utf8.count))
    }

    /// Sends up to `count` bytes on `stream`: how many were taken, 0 when the window is full,
    /// or a libssh2 error (EAGAIN: repeat this call with the same bytes).
    func write(_ bytes: UnsafePointer<CChar>, count: Int, stream: Int32 = 0) -> Int {
        libssh2_channel_write_ex(raw, stream, bytes, count)
    }

    /// Reads up to `count` bytes of `stream`: how many, 0 or EAGAIN for none yet, or an error.
    func read(into buffer: UnsafeMutablePointer<CChar>, count: Int, stream: Int32 = 0) -> Int {
        libssh2_channel_read_ex(raw, stream, buffer, count)
    }

    func sendEOF() -> Int32 { libssh2_channel_send_eof(raw) }

    /// The remote side sent EOF.
    var receivedEOF: Bool { libssh2_channel_eof(raw) != 0 }

    func close() -> Int32 { libssh2_channel_close(raw) }

    func waitClosed() -> Int32 { libssh2_channel_wait_closed(raw) }

    /// The command's exit status (0 when none arrived: see `execute`).
    var exitStatus: Int32 { libssh2_channel_get_exit_status(raw) }

    /// The signal that ended the command (`TERM`, `KILL`), if one did.
    var exitSignal: String? {
        var name: UnsafeMutablePointer<CChar>?
        var length = 0
        guard libssh2_channel_get_exit_signal(raw, &name, &length, nil, nil, nil, nil) == 0, let name else {
            return nil
        }
        defer { libssh2_free(session.raw, name) }
        return length > 0 ? String(cString: name) : nil
    }
}
