import Foundation

/// The login node at the other end of one SSH session: Slurm's commands run over exec
/// channels, files move over SFTP. The session is opened on first use, so one invocation of
/// vllmctl makes at most one handshake, and commands that never touch the cluster make none.
public final class RemoteHost: ClusterHost, @unchecked Sendable {
    public let options: SSHConnectOptions
    private let lock = NSLock()
    private var connecting: Task<SSHSession, any Error>?
    /// Carries HTTP requests over the session (RemoteHost+HTTP); made on first use.
    private var forwarder: (session: SSHSession, forwarder: PortForwarder)?

    public init(options: SSHConnectOptions) {
        self.options = options
    }

    /// A host for the ssh_config alias `alias`, read from `configPath`.
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
    public func session() async throws -> SSHSession {
        let task = lock.withLock { () -> Task<SSHSession, any Error> in
            if let connecting { return connecting }
            let options = self.options
            let t = Task { try await SSHSession.connect(options) }
            connecting = t
            return t
        }
        return try await task.value
    }

    /// The forwarder for HTTP requests over the current session.
    func httpForwarder() async throws -> PortForwarder {
        let session = try await session()
        return try lock.withLock {
            if let forwarder, forwarder.session === session { return forwarder.forwarder }
            let made = try PortForwarder(
                listener: nil, session: session, exitWhenIdle: true, connect: nil)
            forwarder = (session, made)
            return made
        }
    }

    /// Hands the session over to a long-lived user (a tunnel), which drives it from its own
    /// thread. This host forgets it: should it be used again, it connects anew.
    public func detachSession() async throws -> SSHSession {
        let session = try await session()
        lock.withLock {
            connecting = nil
            forwarder = nil
        }
        return session
    }

    /// Closes the session (and stops the HTTP forwarder first, so that it no longer runs on
    /// the session's queue). A later use connects anew. Dropping the host frees the session
    /// too; `close()` does it now and says goodbye to the server.
    public func close() async {
        let (task, carrier) = lock.withLock { () -> (Task<SSHSession, any Error>?, PortForwarder?) in
            defer {
                connecting = nil
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
