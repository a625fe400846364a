import Foundation

/// The login node at the other end of one SSH session: Slurm's commands run over exec
/// channels, files move over SFTP. The session is opened on first use, so one invocation of
/// vllmctl makes at most one handshake, and commands that never touch the cluster make none.
///
/// A session that breaks is dropped by `recover(from:)`, and the next use connects anew: after
/// a backoff counted from the first attempt (0.5 s, doubling with each loss in a row up to
/// 30 s; a session that lived 60 s resets it), and never two handshakes within 2 s. Whoever
/// retries decides what is safe to run again (`retryingReads`: reads only).
public final class RemoteHost: ClusterHost, @unchecked Sendable {
    /// How the session connects: host, port, user, keys, known hosts.
    public let options: SSHConnectOptions
    /// Reconnect pacing; see the type's documentation.
    public var reconnect = ReconnectSettings()
    private let lock = NSLock()
    // Under lock: the connection of this generation (a task while it connects, then the
    // session, or the failure), and the reconnect bookkeeping.
    private var connecting: Task<SSHSession, any Error>?
    private var current: SSHSession?
    private var connectFailed = false
    private var generation = 0
    private var hadSession = false
    private var lossStreak = 0
    /// Monotonic nanoseconds: the last handshake's start, the current session's start, and the
    /// earliest start of the next handshake.
    private var lastHandshake: UInt64 = 0
    private var sessionSince: UInt64 = 0
    private var nextHandshake: UInt64 = 0
    /// When the last 16 handshakes started (monotonic nanoseconds), for tests.
    private(set) var handshakeStarts: [UInt64] = []
    /// Carries HTTP requests over the session (RemoteHost+HTTP); made on first use.
    private var forwarder: (session: SSHSession, forwarder: PortForwarder)?

    /// A host that connects with `options` on first use.
    public init(options: SSHConnectOptions) {
        self.options = options
    }

    /// A host for the ssh_config alias `alias`, read from `configPath`
    /// (``SSHConfig/defaultPath(environment:)`` is the one vllmctl uses). A missing file gives
    /// OpenSSH's defaults. `acceptNewHostKey` records an unknown host's key in known_hosts, as
    /// `StrictHostKeyChecking=accept-new` does; a changed key is always refused.
    /// `passphrase` answers for an encrypted key file, `keyboardInteractive` for a server that
    /// asks questions (a password, a one-time code).
    public convenience init(
        alias: String, configPath: String, environment: [String: String], acceptNewHostKey: Bool,
        passphrase: (@Sendable (String) -> String?)? = nil,
        keyboardInteractive: (@Sendable (String, [(String, Bool)]) -> [String]?)? = nil
    ) throws {
        let home = environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path
        let localUser = environment["USER"] ?? ProcessInfo.processInfo.userName
        var text = ""
        if FileManager.default.fileExists(atPath: configPath) {
            do {
                text = try String(contentsOfFile: configPath, encoding: .utf8)
            } catch {
                throw VLLMCtlError.file(
                    path: configPath, message: "cannot be read: \(error.localizedDescription)")
            }
        }
        var options = try SSHConnectOptions.resolve(
            alias: alias, configText: text, file: configPath, environment: environment, home: home,
            localUser: localUser, acceptNewHostKey: acceptNewHostKey)
        options.passphrase = passphrase
        options.keyboardInteractive = keyboardInteractive
        self.init(options: options)
    }

    public var displayName: String { options.displayName }

    /// The session, connecting on first use (concurrent first callers share one handshake).
    /// After `recover(from:)` dropped a session, the next call connects anew, no earlier than
    /// the backoff allows.
    public func session() async throws -> SSHSession {
        let (task, gen, startsAt) = lock.withLock { () -> (Task<SSHSession, any Error>, Int, UInt64) in
            if let connecting { return (connecting, generation, lastHandshake) }
            let options = self.options
            let now = MonotonicClock.now()
            let start = max(now, nextHandshake)
            lastHandshake = start
            handshakeStarts = handshakeStarts.suffix(15) + [start]
            let wait = start - now
            let t = Task {
                if wait > 0 { try await Task.sleep(for: .nanoseconds(Int(wait))) }
                return try await SSHSession.connect(options)
            }
            connecting = t
            return (t, generation, start)
        }
        // The wait for a paced handshake is the caller's too, so that it can be cancelled (Ctrl-C).
        let now = MonotonicClock.now()
        if startsAt > now { try await Task.sleep(for: .nanoseconds(Int(startsAt - now))) }
        do {
            let session = try await task.value
            lock.withLock {
                if generation == gen && current == nil {
                    current = session
                    hadSession = true
                    sessionSince = MonotonicClock.now()
                }
            }
            return session
        } catch {
            lock.withLock { if generation == gen { connectFailed = true } }
            throw error
        }
    }

    /// If `error` says the connection to the login node was lost (or a reconnect failed), drops
    /// that connection so that the next use connects anew, and says when that will be. Nil when
    /// the error stands: anything else, or a first connection that never worked (a wrong host
    /// or key is not a blip). Several callers failing on the same session drop it once.
    public func recover(from error: any Error) async -> ConnectionLoss? {
        guard let failure = error as? SSHError, failure.connectionLost else { return nil }
        let outcome = lock.withLock { () -> (SSHSession?, ConnectionLoss)? in
            guard hadSession else { return nil }
            let now = MonotonicClock.now()
            let retryIn = { Double(self.nextHandshake > now ? self.nextHandshake - now : 0) / 1e9 }
            let loss = { ConnectionLoss(reason: failure.message, retryIn: retryIn(), reconnectFailed: $0) }
            // Already dropped by another caller, or a new connection is under way or up.
            guard connecting != nil else { return (nil, loss(false)) }
            if let current, !current.isBroken { return (nil, loss(false)) }
            if current == nil && !connectFailed { return (nil, loss(false)) }
            let dropped = current
            let lived = dropped == nil ? 0 : Double(now - sessionSince) / 1e9
            lossStreak = lived >= reconnect.stableSeconds ? 1 : lossStreak + 1
            let backoff = min(reconnect.delayMax, reconnect.delay * pow(2, Double(lossStreak - 1)))
            nextHandshake = max(
                now + UInt64(backoff * 1e9), lastHandshake + UInt64(reconnect.minHandshakeInterval * 1e9))
            generation += 1
            connecting = nil
            current = nil
            connectFailed = false
            forwarder = nil
            return (dropped, loss(dropped == nil))
        }
        guard let (dropped, loss) = outcome else { return nil }
        if let dropped {
            // Freed on its own queue once whatever still runs there has failed; nobody waits.
            Task { await dropped.close() }
        }
        return loss
    }

    /// The forwarder for HTTP requests over the current session.
    /// The HTTP forwarder, if one was made for the current session (no connection is made).
    var currentHTTPForwarder: PortForwarder? { lock.withLock { forwarder?.forwarder } }

    func httpForwarder() async throws -> PortForwarder {
        let session = try await session()
        return try lock.withLock {
            if let forwarder, forwarder.session === session { return forwarder.forwarder }
            let made = try PortForwarder(
                listener: nil, session: session, exitWhenIdle: true, connect: nil,
                onEvent: { event in
                    if case .sessionLost = event { session.markBroken() }
                })
            forwarder = (session, made)
            return made
        }
    }

    /// Hands the session over to a long-lived user (a tunnel), which drives it from its own
    /// thread. This host forgets it: should it be used again, it connects anew. Returns once
    /// the work queued on the session (the HTTP forwarder finishing its last request) is done,
    /// so that the new owner is the only thread using it.
    public func detachSession() async throws -> SSHSession {
        let session = try await session()
        lock.withLock {
            generation += 1
            connecting = nil
            current = nil
            forwarder = nil
        }
        try await session.perform { _ in }
        return session
    }

    /// Closes the session (and stops the HTTP forwarder first, so that it no longer runs on
    /// the session's queue). A later use connects anew. Dropping the host frees the session
    /// too; `close()` does it now and says goodbye to the server.
    public func close() async {
        let (task, carrier) = lock.withLock { () -> (Task<SSHSession, any Error>?, PortForwarder?) in
            defer {
                generation += 1
                connecting = nil
                current = nil
                forwarder = nil
            }
            return (connecting, forwarder?.forwarder)
        }
        carrier?.stop()
        if let session = try? await task?.value { await session.close() }
    }

    /// Runs `body` with this host and closes it afterwards, also when `body` throws.
    public func closing<T: Sendable>(_ body: (RemoteHost) async throws -> T) async throws -> T {
        do {
            let result = try await body(self)
            await close()
            return result
        } catch {
            await close()
            throw error
        }
    }

    public func run(_ argv: [String], input: String?, timeout: Duration) async throws -> CommandResult {
        guard !argv.isEmpty else {
            throw VLLMCtlError.invalidInput("An empty command was given", hint: "This is a bug in vllmctl.")
        }
        // Quoted once, here: the remote user's shell reads it back as exactly `argv`.
        let command = Shell.join(argv)
        let data = input.map { Data($0.utf8) }
        let result = try await session().perform { session in
            try SSHChannel.execute(command, input: data, on: session, timeout: timeout, argv: argv)
        }
        if result.status == 127 && result.stderr.contains("not found") {
            throw VLLMCtlError.commandNotFound(
                argv[0],
                hint:
                    "It is not on PATH for non-interactive SSH sessions on \(displayName); set PATH in the remote ~/.bashrc (before any `return` for non-interactive shells) or ask the cluster admins"
            )
        }
        return result
    }

    public func readFile(_ path: String) async throws -> Data? {
        try await session().perform { try $0.sftp().read(path) }
    }

    public func readFile(_ path: String, from offset: Int) async throws -> Data? {
        try await session().perform { try $0.sftp().read(path, from: offset) }
    }

    public func writeFileAtomically(_ data: Data, to path: String, mode: Int) async throws {
        try await session().perform { session in
            try session.sftp().writeAtomically(data, to: path, mode: mode) { temp, target in
                // SFTP v3's rename will not replace an existing file; mv's rename(2) does.
                let argv = ["mv", "-f", "--", temp, target]
                let r = try SSHChannel.execute(
                    Shell.join(argv), input: nil, on: session, timeout: .seconds(60), argv: argv)
                guard r.status == 0 else {
                    throw VLLMCtlError.commandFailed(argv: argv, status: r.status, stderr: r.stderr)
                }
            }
        }
    }

    public func makeDirectory(_ path: String, mode: Int) async throws {
        try await session().perform { try $0.sftp().makeDirectory(path, mode: mode) }
    }

    public func makeNewDirectory(_ path: String, mode: Int) async throws {
        try await session().perform { try $0.sftp().makeNewDirectory(path, mode: mode) }
    }

    public func removeFile(_ path: String) async throws {
        try await session().perform { try $0.sftp().unlink(path) }
    }

    public func homeDirectory() async throws -> String {
        try await session().perform { try $0.sftp().realpath(".") }
    }

    public func userName() async throws -> String {
        try await output(["id", "-un"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The file's permission bits, or nil when it does not exist (for tests and checks).
    public func fileMode(_ path: String) async throws -> Int? {
        try await session().perform { try $0.sftp().mode(path) }
    }
}

/// How `RemoteHost` paces reconnects after a lost session.
public struct ReconnectSettings: Sendable {
    /// The first delay after a loss, doubled for each loss in a row up to `delayMax` (seconds).
    public var delay: Double = 0.5
    public var delayMax: Double = 30
    /// Handshakes never start closer together than this (seconds).
    public var minHandshakeInterval: Double = 2
    /// A session that lived this long resets the backoff (seconds).
    public var stableSeconds: Double = 60

    public init() {}
}
