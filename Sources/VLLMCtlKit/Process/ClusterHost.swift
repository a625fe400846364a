import Foundation

/// What a program printed and how it ended.
public struct CommandResult: Sendable, Equatable {
    /// The exit status.
    public var status: Int32
    /// Standard output, as UTF-8.
    public var stdout: String
    /// Standard error, as UTF-8.
    public var stderr: String

    /// A result; tests make them by hand.
    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// The machine where Slurm's commands run and where deployments keep their files: this machine
/// (a login node) or, in remote mode, the login node at the other end of an SSH session.
///
/// Programs are given as argv. A local host runs them without a shell; a remote one quotes the
/// argv exactly once for the remote shell. Secrets travel in `input` (stdin) or in files, never
/// in argv.
public protocol ClusterHost: Sendable {
    /// A short name for messages, e.g. "local" or "login.example.org".
    var displayName: String { get }

    /// Runs `argv` and returns its output. Throws only when the program could not run or
    /// timed out; a non-zero exit is reported in the result.
    func run(_ argv: [String], input: String?, timeout: Duration) async throws -> CommandResult

    /// The file's bytes, or nil when it does not exist.
    func readFile(_ path: String) async throws -> Data?

    /// Writes `data` to `path` so that readers see the old file or the whole new one, never a
    /// part; the file has `mode` from the moment it exists.
    func writeFileAtomically(_ data: Data, to path: String, mode: Int) async throws

    /// Creates `path` and its parents with `mode` (existing directories are left as they are).
    func makeDirectory(_ path: String, mode: Int) async throws

    /// Creates `path` itself with `mode` from the start (mkdir, never mkdir then chmod), its
    /// parents as needed; fails if `path` already exists, so that nobody else's directory (or a
    /// symlink planted there) is ever taken for a new deployment's.
    func makeNewDirectory(_ path: String, mode: Int) async throws

    /// Removes a file; a missing file is not an error.
    func removeFile(_ path: String) async throws

    /// The absolute path of the user's home directory on that host.
    func homeDirectory() async throws -> String

    /// The user name Slurm knows us by on that host.
    func userName() async throws -> String

    /// The file's bytes from `offset` on (empty when it has no more), or nil when it does
    /// not exist.
    func readFile(_ path: String, from offset: Int) async throws -> Data?

    /// When `error` means the connection to the host was lost, forgets that connection so
    /// that the next call connects anew, and says why and when; nil when the error stands
    /// (always, for this machine).
    func recover(from error: any Error) async -> ConnectionLoss?
}

/// A lost connection to the cluster host, and when the next attempt will be made.
public struct ConnectionLoss: Sendable, Equatable {
    /// What failed, in the SSH layer's words.
    public var reason: String
    /// Seconds until the next handshake may start (backoff, and at most one per 2 s).
    public var retryIn: Double
    /// It was a reconnect attempt that failed, not an established connection.
    public var reconnectFailed: Bool
}

extension ClusterHost {
    public func recover(from error: any Error) async -> ConnectionLoss? { nil }

    /// Runs `body`, which must only read (squeue, sacct, files: running it twice does no
    /// harm), and when the connection to the host was lost says so on `terminal` and runs it
    /// again on a new connection, paced by the host. Gives up, with the last error, once the
    /// connection has been gone for `giveUpAfter` seconds. Never use it for sbatch or scancel.
    public func retryingReads<T: Sendable>(
        terminal: any Terminal, giveUpAfter: Double = 300, _ body: () async throws -> T
    ) async throws -> T {
        var lostSince: Date?
        while true {
            do {
                let result = try await body()
                if lostSince != nil { terminal.note("Reconnected to \(displayName).") }
                return result
            } catch {
                guard let loss = await recover(from: error) else { throw error }
                let since = lostSince ?? Date()
                lostSince = since
                guard Date().timeIntervalSince(since) < giveUpAfter else { throw error }
                try Task.checkCancellation()
                let when = loss.retryIn < 0.05 ? "now" : "in \(Self.seconds(loss.retryIn)) s"
                terminal.note(
                    loss.reconnectFailed
                        ? "Reconnecting to \(displayName) failed (\(loss.reason)); trying again \(when)…"
                        : "Lost the SSH connection to \(displayName) (\(loss.reason)); reconnecting \(when)…")
            }
        }
    }

    private static func seconds(_ value: Double) -> String { String(format: "%.1f", value) }

    /// `id -un` on the host.
    public func userName() async throws -> String {
        try await output(["id", "-un"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The whole file read, then cut at `offset`; hosts that can seek do better.
    public func readFile(_ path: String, from offset: Int) async throws -> Data? {
        guard let data = try await readFile(path) else { return nil }
        return offset >= data.count ? Data() : data.subdata(in: offset..<data.count)
    }

    /// Runs `argv` with no standard input.
    public func run(_ argv: [String], timeout: Duration = .seconds(60)) async throws -> CommandResult {
        try await run(argv, input: nil, timeout: timeout)
    }

    /// Runs `argv` and returns stdout, throwing `commandFailed` on a non-zero exit.
    public func output(_ argv: [String], input: String? = nil, timeout: Duration = .seconds(60)) async throws
        -> String
    {
        let result = try await run(argv, input: input, timeout: timeout)
        guard result.status == 0 else {
            throw VLLMCtlError.commandFailed(argv: argv, status: result.status, stderr: result.stderr)
        }
        return result.stdout
    }
}
