import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// An SSH failure in plain words: what happened (with libssh2's own message where there is
/// one), then what to do.
public struct SSHError: Error, Equatable, Sendable, CustomStringConvertible, LocalizedError {
    /// Where: `alias (host:port)`.
    public var host: String
    public var message: String
    public var hint: String
    /// The connection to the server broke (or could not be made): a new session may work.
    /// False for refusals (host key, authentication) and for the server's own errors.
    public var connectionLost: Bool

    public init(host: String, message: String, hint: String, connectionLost: Bool = false) {
        self.host = host
        self.message = message
        self.hint = hint
        self.connectionLost = connectionLost
    }

    public var description: String { "ssh \(host): \(message). \(hint)" }
    public var errorDescription: String? { description }
}

/// libssh2's global state, set up once.
enum LibSSH2 {
    static let initResult: Int32 = {
        vc_openssl_no_atexit()
        return libssh2_init(0)
    }()
}

/// Everything needed to open one SSH session.
public struct SSHConnectOptions: Sendable {
    /// For messages: the alias the user wrote.
    public var displayName: String
    public var host: String
    public var port: Int
    public var user: String
    /// Private key files, tried in order after the agent. Empty: `~/.ssh/id_ed25519`,
    /// `id_ecdsa`, `id_rsa`.
    public var identityFiles: [String]
    /// With IdentitiesOnly, only agent keys that match an identity file's `.pub` are offered.
    public var identitiesOnly: Bool
    /// known_hosts files: all are read; new keys are appended to the first.
    public var knownHostsFiles: [String]
    /// System-wide known_hosts files: read after `knownHostsFiles`, never written.
    public var globalKnownHostsFiles: [String]
    public var hostKeyPolicy: HostKeyPolicy
    /// Seconds for the TCP connect and for each blocking step of the handshake.
    public var connectTimeout: Double
    /// ssh-agent's socket; nil for no agent.
    public var agentSocket: String?
    /// ServerAliveInterval (seconds; 0 for none) and ServerAliveCountMax. Keepalives are
    /// configured on the session; sending them and counting missed replies is up to whoever
    /// keeps a session open for long (the tunnel).
    public var serverAliveInterval = 0
    public var serverAliveCountMax = 3
    /// Asks for a key file's passphrase (path in, passphrase out; nil gives up on that key).
    public var passphrase: (@Sendable (String) -> String?)? {
        didSet { for i in jumpHosts.indices { jumpHosts[i].passphrase = passphrase } }
    }
    /// Answers keyboard-interactive prompts (instruction, [(prompt, echo)]) → answers, or nil.
    public var keyboardInteractive: (@Sendable (String, [(String, Bool)]) -> [String]?)? {
        didSet { for i in jumpHosts.indices { jumpHosts[i].keyboardInteractive = keyboardInteractive } }
    }
    /// ProxyJump: the session goes through a direct-tcpip channel of a session to this host.
    public var jumpHosts: [SSHConnectOptions] = []
    /// For tests: the TCP socket's send buffer (SO_SNDBUF) in bytes, small so that sends would
    /// block often (libssh2's EAGAIN on sending); nil leaves the system's.
    var sendBufferSize: Int32?
    /// Told what the server's host key is and whether known_hosts knows it, before the
    /// host-key decision (so also when connecting fails afterwards). For `vllmctl doctor`.
    public var onHostKey: (@Sendable (SSHHostKeyFinding) -> Void)?

    public init(
        displayName: String, host: String, port: Int = 22, user: String, identityFiles: [String] = [],
        identitiesOnly: Bool = false, knownHostsFiles: [String], globalKnownHostsFiles: [String] = [],
        hostKeyPolicy: HostKeyPolicy = .strict,
        connectTimeout: Double = 15, agentSocket: String? = nil,
        passphrase: (@Sendable (String) -> String?)? = nil,
        keyboardInteractive: (@Sendable (String, [(String, Bool)]) -> [String]?)? = nil
    ) {
        self.displayName = displayName
        self.host = host
        self.port = port
        self.user = user
        self.identityFiles = identityFiles
        self.identitiesOnly = identitiesOnly
        self.knownHostsFiles = knownHostsFiles
        self.globalKnownHostsFiles = globalKnownHostsFiles
        self.hostKeyPolicy = hostKeyPolicy
        self.connectTimeout = connectTimeout
        self.agentSocket = agentSocket
        self.passphrase = passphrase
        self.keyboardInteractive = keyboardInteractive
    }

    /// Options from a resolved ssh_config entry without ProxyJump (see `resolve` for that).
    /// `acceptNewHostKey` overrides StrictHostKeyChecking for unknown hosts (a changed key is
    /// refused regardless).
    public init(
        config: SSHHostConfig, environment: [String: String], home: String, localUser: String,
        acceptNewHostKey: Bool = false
    ) throws {
        if let jump = config.proxyJump {
            throw SSHError(
                host: config.alias,
                message:
                    "the ssh_config entry uses `ProxyJump \(jump)`, which must be resolved through the ssh_config file",
                hint: "This is a bug in vllmctl")
        }
        self.init(
            displayName: config.alias, host: config.hostName, port: config.port,
            user: config.user ?? localUser,
            identityFiles: config.identityFiles.isEmpty
                ? ["id_ed25519", "id_ecdsa", "id_rsa"].map { home + "/.ssh/" + $0 } : config.identityFiles,
            identitiesOnly: config.identitiesOnly, knownHostsFiles: config.userKnownHostsFiles,
            globalKnownHostsFiles: config.globalKnownHostsFiles,
            hostKeyPolicy: acceptNewHostKey ? .acceptNew : (config.strictHostKeyChecking ?? .strict),
            connectTimeout: Double(config.connectTimeout ?? 15),
            agentSocket: environment["SSH_AUTH_SOCK"].flatMap { $0.isEmpty ? nil : $0 })
        serverAliveInterval = config.serverAliveInterval ?? 0
        serverAliveCountMax = config.serverAliveCountMax ?? 3
    }

    /// Options for `alias` from ssh_config text, with its ProxyJump hop (one hop; the jump
    /// host's own settings come from the same file, `user@host:port` in ProxyJump win).
    public static func resolve(
        alias: String, configText: String, file: String, environment: [String: String], home: String,
        localUser: String, acceptNewHostKey: Bool = false
    ) throws -> SSHConnectOptions {
        var config = try SSHConfig.resolve(
            alias: alias, text: configText, file: file, home: home, localUser: localUser)
        guard let proxyJump = config.proxyJump else {
            return try SSHConnectOptions(
                config: config, environment: environment, home: home, localUser: localUser,
                acceptNewHostKey: acceptNewHostKey)
        }
        let hops = SSHJumpHost.parse(proxyJump)
        guard hops.count == 1, let hop = hops.first else {
            throw SSHError(
                host: alias,
                message: "`ProxyJump \(proxyJump)` has \(hops.count) hops; vllmctl supports one hop so far",
                hint: "Use a single jump host, or run vllmctl on a machine closer to the cluster")
        }
        var jumpConfig = try SSHConfig.resolve(
            alias: hop.host, text: configText, file: file, home: home, localUser: localUser)
        if let user = hop.user { jumpConfig.user = user }
        if let port = hop.port { jumpConfig.port = port }
        if jumpConfig.proxyJump != nil {
            throw SSHError(
                host: alias,
                message:
                    "the jump host `\(hop.host)` has a ProxyJump of its own; vllmctl supports one hop so far",
                hint: "Use a single jump host")
        }
        config.proxyJump = nil
        var options = try SSHConnectOptions(
            config: config, environment: environment, home: home, localUser: localUser,
            acceptNewHostKey: acceptNewHostKey)
        options.jumpHosts = [
            try SSHConnectOptions(
                config: jumpConfig, environment: environment, home: home, localUser: localUser,
                acceptNewHostKey: acceptNewHostKey)
        ]
        return options
    }

    var place: String { "\(displayName) (\(user)@\(host):\(port))" }
}

/// One authenticated SSH session: a TCP socket, libssh2's session handle on it, and the
/// channels and SFTP opened over it.
///
/// libssh2 lets one thread at a time use a session and everything opened on it, so a session
/// is used only through `perform`, which runs its body on the session's own serial queue.
///
/// The session is the one owner of its C handles: libssh2's session, its SFTP subsystem and
/// the socket. Children (`SSHChannel`, `SFTP`) hold the session; the session holds none of
/// them, so dropping the last reference frees everything. `close()` (or `withSession`) frees
/// it at a known moment; `deinit` is the safety net.
public final class SSHSession: @unchecked Sendable {
    public let options: SSHConnectOptions
    let raw: OpaquePointer
    let socket: Int32
    private let queue: DispatchQueue
    /// Holds the keyboard-interactive responder for libssh2's callback (the session's abstract).
    private let box: CallbackBox
    /// libssh2's SFTP subsystem, started on first use and shut down with the session. `SFTP`
    /// objects borrow it.
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
    private var proxy: ProxyJumpPump?
    /// The server's identification string (`SSH-2.0-OpenSSH_9.2p1 …`).
    public private(set) var serverBanner: String?
    /// What the login succeeded with: `ssh-agent key COMMENT`, a key file's path, or
    /// `keyboard-interactive`.
    public private(set) var authenticatedWith: String?
    /// The host key was unknown and accepted for this session only (`HostKeyPolicy.acceptOnce`).
    private var unknownHostAccepted = false

    /// Connects, checks the host key and authenticates. Blocks: call it off the cooperative
    /// pool (`SSHSession.connect` does).
    init(connecting options: SSHConnectOptions, queue: DispatchQueue) throws {
        self.options = options
        self.queue = queue
        if LibSSH2.initResult != 0 {
            throw SSHError(
                host: options.place, message: "libssh2 could not initialize (\(LibSSH2.initResult))",
                hint: "Check that libssh2 and OpenSSL are installed correctly")
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

    // MARK: errors

    // MARK: for long-lived users (the tunnel)

    /// Monotonic nanoseconds when bytes last arrived from the server, once `trackReceives()`
    /// was called. Read only by whoever drives the session.
    var lastReceived: UInt64 { box.lastReceived }

    /// Stamps `lastReceived` from now on: libssh2 reads the socket through `stampingRecv`.
    func trackReceives() {
        box.lastReceived = PortForwarder.now()
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
        libssh2_session_set_blocking(raw, 0)
        _ = libssh2_session_disconnect_ex(raw, SSH_DISCONNECT_BY_APPLICATION, "bye", "")
        shutdownSocket()
    }

    /// libssh2's last error message for this session.
    var lastError: (code: Int32, message: String) {
        var message: UnsafeMutablePointer<CChar>?
        var length: Int32 = 0
        let code = libssh2_session_last_error(raw, &message, &length, 0)
        return (code, message.map { String(cString: $0) } ?? "")
    }

    func error(_ what: String, hint: String) -> SSHError {
        let last = lastError
        let said = last.message.isEmpty ? "" : " (libssh2: \(last.message))"
        let lost = Self.connectionErrors.contains(last.code)
        if lost { markBroken() }
        return SSHError(host: options.place, message: what + said, hint: hint, connectionLost: lost)
    }

    /// A libssh2 error code in words, for when libssh2's last message belongs to another call.
    static func describe(_ code: Int32) -> String {
        switch code {
        case LIBSSH2_ERROR_SOCKET_RECV: return "reading from the connection failed"
        case LIBSSH2_ERROR_SOCKET_SEND: return "writing to the connection failed"
        case LIBSSH2_ERROR_SOCKET_DISCONNECT: return "the server disconnected"
        case LIBSSH2_ERROR_SOCKET_TIMEOUT, LIBSSH2_ERROR_TIMEOUT: return "the server stopped answering"
        default: return "libssh2 error \(code)"
        }
    }

    /// libssh2's errors that mean the connection itself failed (not a refusal by the server).
    static let connectionErrors: Set<Int32> = [
        LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_DISCONNECT,
        LIBSSH2_ERROR_SOCKET_TIMEOUT, LIBSSH2_ERROR_TIMEOUT, LIBSSH2_ERROR_BANNER_RECV,
        LIBSSH2_ERROR_DECRYPT,
    ]

    // MARK: connect

    private static func connectSocket(_ options: SSHConnectOptions) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(options.host, String(options.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw SSHError(
                host: options.place,
                message: "cannot resolve `\(options.host)`: \(String(cString: gai_strerror(rc)))",
                hint: "Check HostName in your ssh_config and your network")
        }
        defer { freeaddrinfo(list) }
        var lastProblem = "no address"
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let ai = node {
            node = ai.pointee.ai_next
            let fd = Glibc.socket(
                ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue),
                ai.pointee.ai_protocol)
            if fd < 0 {
                lastProblem = String(cString: strerror(errno))
                continue
            }
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            var ok = Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0
            if !ok && errno == EINPROGRESS {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let n = poll(&pfd, 1, Int32(options.connectTimeout * 1000))
                if n == 1 {
                    var soError: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                    ok = soError == 0
                    if !ok { lastProblem = String(cString: strerror(soError)) }
                } else {
                    lastProblem = "no answer within \(Int(options.connectTimeout)) s (ConnectTimeout)"
                }
            } else if !ok {
                lastProblem = String(cString: strerror(errno))
            }
            if ok {
                _ = fcntl(fd, F_SETFL, flags)
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                if var size = options.sendBufferSize {
                    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
                }
                return fd
            }
            Glibc.close(fd)
        }
        throw SSHError(
            host: options.place, message: "cannot connect: \(lastProblem)",
            hint:
                "Check that the host is up and reachable from here (VPN?), and HostName/Port in your ssh_config",
            connectionLost: true)
    }

    private func handshake() throws {
        // Prefer the host key types known_hosts has for this host, so that a known_hosts with
        // only an ed25519 key matches what the server shows.
        let known = KnownHosts(session: self, files: options.knownHostsFiles + options.globalKnownHostsFiles)
        let types = known.keyTypes(host: options.host, port: options.port)
        if !types.isEmpty {
            let supported = supportedAlgorithms(LIBSSH2_METHOD_HOSTKEY)
            var names: [String] = []
            for type in types {
                for name in KnownHosts.methodNames(forKeyType: type)
                where supported.contains(name) && !names.contains(name) {
                    names.append(name)
                }
            }
            if !names.isEmpty {
                _ = libssh2_session_method_pref(raw, LIBSSH2_METHOD_HOSTKEY, names.joined(separator: ","))
            }
        }
        if libssh2_session_handshake(raw, socket) != 0 {
            throw error(
                "the SSH handshake failed",
                hint:
                    "Is an SSH server listening on port \(options.port)? If the server only offers algorithms libssh2 1.10 lacks, ask the admins or use another login node"
            )
        }
    }

    /// `SHA256:…` as OpenSSH prints it.
    private func hostKeyFingerprint() -> String {
        guard let hash = libssh2_hostkey_hash(raw, LIBSSH2_HOSTKEY_HASH_SHA256) else { return "unknown" }
        let bytes = Data(bytes: hash, count: 32).base64EncodedString()
        return "SHA256:" + bytes.replacingOccurrences(of: "=", with: "")
    }

    private func supportedAlgorithms(_ method: Int32) -> Set<String> {
        var algs: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        let n = libssh2_session_supported_algs(raw, method, &algs)
        guard n > 0, let algs else { return [] }
        defer { libssh2_free(raw, algs) }
        var out: Set<String> = []
        for i in 0..<Int(n) { if let p = algs[i] { out.insert(String(cString: p)) } }
        return out
    }

    private func checkHostKey() throws {
        var length = 0
        var type: Int32 = 0
        guard let keyPtr = libssh2_session_hostkey(raw, &length, &type) else {
            throw error(
                "the server sent no host key", hint: "Try again; if it persists, ask the cluster admins")
        }
        let key = Data(bytes: keyPtr, count: length)
        let known = KnownHosts(session: self, files: options.knownHostsFiles + options.globalKnownHostsFiles)
        let keyType = KnownHosts.keyType(forHostKeyType: type)
        let typeName = KnownHosts.typeName(keyType)
        let result = known.check(host: options.host, port: options.port, key: key, keyType: keyType)
        if let observe = options.onHostKey {
            let status: SSHHostKeyFinding.Status
            switch result {
            case .match: status = .known
            case .unknown: status = .unknown
            case .changed(let file, let line): status = .changed(file: file, line: line)
            case .revoked(let file, let line): status = .revoked(file: file, line: line)
            }
            observe(
                SSHHostKeyFinding(
                    typeName: typeName, fingerprint: hostKeyFingerprint(), status: status,
                    serverBanner: serverBanner,
                    hostPattern: KnownHosts.hostPattern(options.host, options.port)))
        }
        switch result {
        case .match:
            return
        case .revoked(let file, let line):
            throw SSHError(
                host: options.place,
                message:
                    "the server's \(typeName) host key is marked @revoked at \(file):\(line), so vllmctl refuses it (as OpenSSH does)",
                hint:
                    "Ask the cluster admins for the host's current key and its fingerprint; do not remove the @revoked line unless they confirm the key is safe again"
            )
        case .changed(let file, let line):
            throw SSHError(
                host: options.place,
                message:
                    "the host key has CHANGED: the server shows a different \(typeName) key than the one recorded at \(file):\(line). Someone may be intercepting the connection, or the host was reinstalled",
                hint:
                    "Ask the cluster admins for the new key's fingerprint; once confirmed, remove the old line with `ssh-keygen -R '\(KnownHosts.hostPattern(options.host, options.port))' -f \(file)` and connect again"
            )
        case .unknown:
            let fingerprint = hostKeyFingerprint()
            if options.hostKeyPolicy == .acceptOnce {
                unknownHostAccepted = true
                return
            }
            guard options.hostKeyPolicy == .acceptNew else {
                let files =
                    options.knownHostsFiles.isEmpty
                    ? "known_hosts" : options.knownHostsFiles.joined(separator: ", ")
                throw SSHError(
                    host: options.place,
                    message: "the host is not in \(files) (its \(typeName) key is \(fingerprint))",
                    hint:
                        "Check the fingerprint with the cluster admins, then run again with `--accept-new-host-key` to record it (or `ssh` to it once)"
                )
            }
            guard let file = options.knownHostsFiles.first else {
                throw SSHError(
                    host: options.place,
                    message: "the host is unknown and there is no known_hosts file to record it in",
                    hint: "Set UserKnownHostsFile in your ssh_config")
            }
            try KnownHosts.append(
                host: options.host, port: options.port, typeName: typeName, key: key, to: file,
                place: options.place)
        }
    }

    // MARK: authentication

    private func authenticate() throws {
        let user = options.user
        var methodsPtr = libssh2_userauth_list(raw, user, UInt32(user.utf8.count))
        if methodsPtr == nil && libssh2_userauth_authenticated(raw) != 0 { return }
        guard let listed = methodsPtr else {
            throw error("the server did not list its authentication methods", hint: "Try again")
        }
        let methods = Set(String(cString: listed).split(separator: ",").map(String.init))
        methodsPtr = nil
        var tried: [String] = []
        var rsaFailed = false

        if methods.contains("publickey") {
            if let socketPath = options.agentSocket, try authenticateWithAgent(socketPath, tried: &tried) {
                return
            }
            for file in options.identityFiles where FileManager.default.fileExists(atPath: file) {
                let info = PrivateKeyInfo(path: file)
                var passphrase: String?
                var rc = libssh2_userauth_publickey_fromfile_ex(
                    raw, user, UInt32(user.utf8.count), nil, file, nil)
                if rc == LIBSSH2_ERROR_FILE && info.encrypted {
                    passphrase = options.passphrase?(file)
                    guard let passphrase else {
                        tried.append("\(file) (encrypted, no passphrase given)")
                        continue
                    }
                    rc = libssh2_userauth_publickey_fromfile_ex(
                        raw, user, UInt32(user.utf8.count), nil, file, passphrase)
                }
                if rc == 0 {
                    authenticatedWith = file
                    return
                }
                let last = lastError.message
                if rc == LIBSSH2_ERROR_FILE {
                    tried.append(
                        "\(file) (cannot be read\(passphrase != nil ? "; wrong passphrase?" : ""): \(last))")
                } else {
                    tried.append("\(file) (refused)")
                    if info.type == "ssh-rsa" { rsaFailed = true }
                }
                if libssh2_session_last_errno(raw) == LIBSSH2_ERROR_SOCKET_RECV
                    || libssh2_session_last_errno(raw) == LIBSSH2_ERROR_SOCKET_DISCONNECT
                {
                    throw error("the connection dropped during authentication", hint: "Try again")
                }
            }
        }

        if methods.contains("keyboard-interactive") {
            if unknownHostAccepted {
                tried.append("keyboard-interactive (not offered to a host whose key is unknown)")
            } else if box.keyboardInteractive == nil {
                tried.append("keyboard-interactive (no terminal to answer its prompts)")
            } else {
                let rc = libssh2_userauth_keyboard_interactive_ex(
                    raw, user, UInt32(user.utf8.count), keyboardInteractiveCallback)
                if rc == 0 {
                    authenticatedWith = "keyboard-interactive"
                    return
                }
                tried.append("keyboard-interactive (refused)")
            }
        }

        if rsaFailed {
            throw SSHError(
                host: options.place,
                message:
                    "the server refused the RSA key. libssh2 1.10 signs RSA keys only with ssh-rsa (SHA-1), which OpenSSH 8.8+ refuses",
                hint:
                    "Use an ed25519 or ECDSA key: `ssh-keygen -t ed25519`, add the .pub to ~/.ssh/authorized_keys on the cluster, and name it with IdentityFile"
            )
        }
        let triedText =
            tried.isEmpty
            ? "no key or agent identity was available" : "tried " + tried.joined(separator: ", ")
        throw SSHError(
            host: options.place,
            message:
                "authentication as `\(user)` failed (\(triedText); the server accepts: \(methods.sorted().joined(separator: ", ")))",
            hint: methods.contains("publickey") || !methods.contains("keyboard-interactive")
                ? "Check User and IdentityFile in your ssh_config and that the public key is in ~/.ssh/authorized_keys on the cluster; an ssh-agent (SSH_AUTH_SOCK) is tried first"
                : "This server asks questions (password, one-time code) instead of taking keys: run vllmctl on a terminal and answer them correctly, and check User in your ssh_config"
        )
    }

    /// Offers the agent's identities; true once one is accepted.
    private func authenticateWithAgent(_ socketPath: String, tried: inout [String]) throws -> Bool {
        guard let agent = libssh2_agent_init(raw) else { return false }
        defer { libssh2_agent_free(agent) }
        libssh2_agent_set_identity_path(agent, socketPath)
        guard libssh2_agent_connect(agent) == 0 else {
            tried.append("ssh-agent at \(socketPath) (cannot connect)")
            return false
        }
        defer { libssh2_agent_disconnect(agent) }
        guard libssh2_agent_list_identities(agent) == 0 else { return false }
        let allowed: Set<Data>? =
            options.identitiesOnly
            ? Set(options.identityFiles.compactMap { PrivateKeyInfo.publicBlob(path: $0 + ".pub") }) : nil
        var prev: UnsafeMutablePointer<libssh2_agent_publickey>?
        var identity: UnsafeMutablePointer<libssh2_agent_publickey>?
        while libssh2_agent_get_identity(agent, &identity, prev) == 0, let id = identity {
            prev = id
            let blob = Data(bytes: id.pointee.blob, count: Int(id.pointee.blob_len))
            if let allowed, !allowed.contains(blob) { continue }
            if libssh2_agent_userauth(agent, options.user, id) == 0 {
                authenticatedWith = "ssh-agent key \(id.pointee.comment.map { String(cString: $0) } ?? "")"
                return true
            }
            tried.append("ssh-agent key \(id.pointee.comment.map { String(cString: $0) } ?? "") (refused)")
        }
        return false
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

private let keyboardInteractiveCallback:
    @convention(c) (
        UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, Int32, Int32,
        UnsafePointer<LIBSSH2_USERAUTH_KBDINT_PROMPT>?,
        UnsafeMutablePointer<LIBSSH2_USERAUTH_KBDINT_RESPONSE>?,
        UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) -> Void = { _, _, instruction, instructionLength, count, prompts, responses, abstract in
        guard let abstract, let pointer = abstract.pointee, let prompts, let responses else { return }
        let box = Unmanaged<CallbackBox>.fromOpaque(pointer).takeUnretainedValue()
        let text =
            instruction.map {
                String(
                    decoding: UnsafeRawBufferPointer(start: $0, count: Int(instructionLength)), as: UTF8.self)
            } ?? ""
        var asked: [(String, Bool)] = []
        for i in 0..<Int(count) {
            let p = prompts[i]
            let prompt =
                p.text.map {
                    String(decoding: UnsafeRawBufferPointer(start: $0, count: Int(p.length)), as: UTF8.self)
                } ?? ""
            asked.append((prompt, p.echo != 0))
        }
        guard let answers = box.keyboardInteractive?(text, asked) else { return }
        for i in 0..<min(Int(count), answers.count) {
            // libssh2 frees the answers with its free function (the default: free).
            responses[i].text = strdup(answers[i])
            responses[i].length = UInt32(answers[i].utf8.count)
        }
    }

/// libssh2's socket reader (`recv`, errors as negative errno) that also notes when bytes arrived.
private let stampingRecv:
    @convention(c) (
        Int32, UnsafeMutableRawPointer?, Int, Int32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    )
        -> Int = { fd, buffer, length, flags, abstract in
            let n = recv(fd, buffer, length, flags)
            if n < 0 { return -Int(errno == ENOENT ? EAGAIN : errno) }
            if n > 0, let abstract, let pointer = abstract.pointee {
                Unmanaged<CallbackBox>.fromOpaque(pointer).takeUnretainedValue().lastReceived =
                    PortForwarder.now()
            }
            return n
        }

/// The public parts of an OpenSSH private key file: its type and whether it is encrypted.
struct PrivateKeyInfo {
    var type: String?
    var encrypted = false

    init(path: String) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        if text.contains("BEGIN RSA PRIVATE KEY") {
            type = "ssh-rsa"
            encrypted = text.contains("ENCRYPTED")
            return
        }
        if text.contains("BEGIN EC PRIVATE KEY") {
            type = "ecdsa"
            encrypted = text.contains("ENCRYPTED")
            return
        }
        let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        guard let data = Data(base64Encoded: body) else { return }
        // "openssh-key-v1\0", string ciphername, string kdfname, string kdfoptions, uint32 n,
        // string publickey (whose first field is the key type).
        var reader = SSHWireReader(data: data.dropFirst(15))
        guard data.starts(with: Data("openssh-key-v1\0".utf8)), let cipher = reader.string(),
            reader.string() != nil,
            reader.string() != nil, reader.uint32() != nil, let publicKey = reader.bytes()
        else { return }
        encrypted = String(decoding: cipher, as: UTF8.self) != "none"
        var inner = SSHWireReader(data: publicKey)
        type = inner.string().map { String(decoding: $0, as: UTF8.self) }
    }

    /// The key blob of a `.pub` file (`type base64 comment`).
    static func publicBlob(path: String) -> Data? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count >= 2 else { return nil }
        return Data(base64Encoded: String(fields[1]))
    }
}

/// Reads SSH wire-format fields (uint32 lengths, big-endian).
struct SSHWireReader {
    var data: Data

    init(data: Data) { self.data = Data(data) }

    mutating func uint32() -> UInt32? {
        guard data.count >= 4 else { return nil }
        let v = data.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        data = data.dropFirst(4)
        return v
    }

    mutating func bytes() -> Data? {
        guard let n = uint32(), data.count >= Int(n) else { return nil }
        let v = Data(data.prefix(Int(n)))
        data = data.dropFirst(Int(n))
        return v
    }

    mutating func string() -> Data? { bytes() }
}
