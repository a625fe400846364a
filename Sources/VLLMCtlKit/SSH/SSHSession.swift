import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// libssh2, loaded (dlopen, on first use: CLibSSH2/loader.c) and initialised once.
enum LibSSH2 {
    /// nil when libssh2 is ready; else what went wrong and what to do, in words.
    static let problem: String? = {
        if let failed = vc_ssh2_load() {
            return String(cString: failed)
                + "; vllmctl needs libssh2 for profiles with ssh_host: install it (Debian/Ubuntu: apt install libssh2-1; RHEL: dnf install libssh2)"
        }
        let rc = libssh2_init(0)
        return rc == 0 ? nil : "libssh2 could not initialize (error \(rc))"
    }()
}

/// One authenticated SSH session: a TCP socket, libssh2's session handle on it, and the
/// channels and SFTP opened over it.
///
/// libssh2 lets one thread at a time use a session and everything opened on it, so a session
/// is used only through `perform`, which runs its body on the session's own serial queue, or
/// by the one thread a long-lived user drives it from (a forwarder's loop, a ProxyJump pump).
///
/// The session is the one owner of libssh2's session handle, its SFTP subsystem and the
/// socket (and of the ProxyJump hop the socket runs through). Each channel is owned by its
/// `SSHChannel`, which holds the session, as `SFTP` does; the session holds none of them, so
/// there is no cycle and dropping the last reference frees everything, children first.
/// `close()` (or `withSession`) frees it at a known moment; `deinit` is the safety net.
///
/// This file holds the handles' lifetime; the other concerns live beside it: the TCP connect
/// (SSHSession+Connect), handshake and host keys (SSHSession+HostKey), authentication
/// (SSHSession+Authentication), the queue and IO (SSHSession+IO), errors (SSHError).
public final class SSHSession: @unchecked Sendable {
    public let options: SSHConnectOptions
    let raw: OpaquePointer
    let socket: Int32
    let queue: DispatchQueue
    /// What libssh2's callbacks reach through the session's abstract pointer.
    let box: CallbackBox
    /// libssh2's SFTP subsystem, started on first use and shut down with the session (it runs
    /// on a channel libssh2 keeps inside it). `SFTP` objects borrow it while the session is open.
    private var sftpRaw: OpaquePointer?
    /// Set by `close()` (on the queue): the handles are freed, every later use throws.
    private(set) var isClosed = false
    /// Whether the connection failed (or the session was closed); safe from any thread.
    var isBroken: Bool { brokenLock.withLock { broken } }
    private let brokenLock = NSLock()
    private var broken = false

    /// Notes that the connection failed: `RemoteHost` then replaces the session.
    func markBroken() { brokenLock.withLock { broken = true } }
    /// The ProxyJump hop this session runs through, if any.
    private(set) var proxy: ProxyJumpPump?
    /// The server's identification string (`SSH-2.0-OpenSSH_9.2p1 …`).
    public private(set) var serverBanner: String?
    /// What the login succeeded with: `ssh-agent key COMMENT`, a key file's path, or
    /// `keyboard-interactive`.
    public internal(set) var authenticatedWith: String?
    /// The host key was unknown and accepted for this session only (`HostKeyPolicy.acceptOnce`).
    var unknownHostAccepted = false

    /// Connects, checks the host key and authenticates. Blocks: call it off the cooperative
    /// pool (`SSHSession.connect` does).
    init(connecting options: SSHConnectOptions, queue: DispatchQueue) throws {
        self.options = options
        self.queue = queue
        if let problem = LibSSH2.problem {
            throw SSHError(
                host: options.place, message: problem,
                hint: "Or run vllmctl on the login node with a profile without ssh_host")
        }
        if let jump = options.jumpHosts.first {
            let (pump, fd) = try ProxyJumpPump.open(
                jump: jump, to: options.host, port: options.port, for: options.place)
            proxy = pump
            socket = fd
        } else {
            socket = try Self.connectSocket(options)
        }
        box = CallbackBox(keyboardInteractive: options.keyboardInteractive)
        let abstract = Unmanaged.passUnretained(box).toOpaque()
        guard let session = libssh2_session_init_ex(nil, nil, nil, abstract) else {
            Glibc.close(socket)
            proxy?.stop()
            throw SSHError(
                host: options.place, message: "libssh2 could not create a session", hint: "Try again")
        }
        raw = session
        // From here on deinit frees the session and closes the socket.
        libssh2_session_set_blocking(raw, 1)
        libssh2_session_set_timeout(raw, Int(options.connectTimeout * 1000))
        try handshake()
        serverBanner = libssh2_session_banner_get(raw).map { String(cString: $0) }
        try checkHostKey()
        try authenticate()
        if options.serverAliveInterval > 0 {
            libssh2_keepalive_config(raw, 1, UInt32(options.serverAliveInterval))
        }
        // Blocking steps after this (channel open, SFTP packets) give up after 2 minutes of
        // silence; command output is read without blocking, under the command's own timeout.
        libssh2_session_set_timeout(raw, 120_000)
    }

    deinit {
        release()
    }

    /// Says goodbye, frees the SFTP subsystem, the session (and with it any channel still
    /// open) and closes the socket. On the session's queue, or from `deinit`.
    private func release() {
        if isClosed { return }
        isClosed = true
        markBroken()
        libssh2_session_set_blocking(raw, 1)
        libssh2_session_set_timeout(raw, 2000)
        if let sftpRaw {
            libssh2_sftp_shutdown(sftpRaw)
            self.sftpRaw = nil
        }
        _ = libssh2_session_disconnect_ex(raw, SSH_DISCONNECT_BY_APPLICATION, "bye", "")
        libssh2_session_free(raw)
        Glibc.close(socket)
        proxy?.stop()
    }

    /// Closes the session now: waits for the work queued before it (a forwarder's loop
    /// included), then disconnects and frees everything. Later uses throw. Idempotent.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                self.release()
                continuation.resume()
            }
        }
    }

    /// Connects, runs `body` with the session, and closes it, also when `body` throws.
    public static func withSession<T: Sendable>(
        _ options: SSHConnectOptions, _ body: (SSHSession) async throws -> T
    ) async throws -> T {
        let session = try await connect(options)
        do {
            let result = try await body(session)
            await session.close()
            return result
        } catch {
            await session.close()
            throw error
        }
    }

    /// Opens a session on its own serial queue.
    public static func connect(_ options: SSHConnectOptions) async throws -> SSHSession {
        let queue = DispatchQueue(label: "vllmctl.ssh.\(options.displayName)")
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try SSHSession(connecting: options, queue: queue) })
            }
        }
    }

    /// The session's SFTP subsystem, started on first use. Only inside `perform`.
    public func sftp() throws -> SFTP {
        try checkOpen()
        if let sftpRaw { return SFTP(session: self, raw: sftpRaw) }
        libssh2_session_set_blocking(raw, 1)
        guard let started = libssh2_sftp_init(raw) else {
            throw error(
                "cannot start SFTP",
                hint:
                    "The server must allow the sftp subsystem (Subsystem sftp in sshd_config); ask the cluster admins"
            )
        }
        sftpRaw = started
        return SFTP(session: self, raw: started)
    }
}

/// What libssh2's C callbacks need, reached through the session's abstract pointer.
final class CallbackBox: @unchecked Sendable {
    let keyboardInteractive: (@Sendable (String, [(String, Bool)]) -> [String]?)?
    /// See `SSHSession.lastReceived`.
    var lastReceived: UInt64 = 0
    init(keyboardInteractive: (@Sendable (String, [(String, Bool)]) -> [String]?)?) {
        self.keyboardInteractive = keyboardInteractive
    }
}
