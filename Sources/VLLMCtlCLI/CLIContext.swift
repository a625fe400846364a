import Foundation
import Synchronization
import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

/// Prints results to stdout and messages to stderr; draws one live progress line on a TTY.
final class StandardTerminal: Terminal {
    let isInteractive = isatty(STDERR_FILENO) == 1
    /// The progress line on screen, if any.
    private let shown = Mutex<String?>(nil)

    func print(_ text: String) {
        shown.withLock { shown in
            Self.clear(&shown)
            Self.emit(text, to: STDOUT_FILENO)
            if !text.hasSuffix("\n") { Self.emit("\n", to: STDOUT_FILENO) }
        }
    }

    func note(_ text: String) {
        shown.withLock { shown in
            Self.clear(&shown)
            Self.emit(text + "\n", to: STDERR_FILENO)
        }
    }

    func progress(_ text: String?) {
        guard isInteractive else { return }
        shown.withLock { shown in
            guard let text else { return Self.clear(&shown) }
            guard text != shown else { return }
            Self.emit("\r\u{1B}[K\(text)", to: STDERR_FILENO)
            shown = text
        }
    }

    private static func clear(_ shown: inout String?) {
        if shown != nil {
            emit("\r\u{1B}[K", to: STDERR_FILENO)
            shown = nil
        }
    }

    /// Writes all of `text` to `fd`, straight from the string's bytes (a status table of
    /// thousands of jobs is not copied on its way out).
    private static func emit(_ text: String, to fd: Int32) {
        var text = text
        text.withUTF8 { bytes in
            guard var next = bytes.baseAddress else { return }
            var left = bytes.count
            while left > 0 {
                let n = write(fd, next, left)
                if n < 0 && errno == EINTR { continue }
                // A closed stream: nothing more can be shown (a closed pipe has sent SIGPIPE).
                guard n > 0 else { return }
                next += n
                left -= n
            }
        }
    }
}

/// Standard input, as commands read it (a prompt, a confirmation).
protocol CommandInput: Sendable {
    /// Whether stdin is a terminal (then nothing is read from it unasked).
    var isTerminal: Bool { get }
    /// All of stdin.
    func readAll() -> String
    /// Asks `question` on stderr and reads one line (a confirmation); nil at end of input.
    func ask(_ question: String) -> String?
}

/// The process's stdin.
struct StandardInput: CommandInput {
    var isTerminal: Bool { isatty(STDIN_FILENO) == 1 }
    func readAll() -> String {
        String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
    }
    func ask(_ question: String) -> String? {
        FileHandle.standardError.write(Data(question.utf8))
        return Swift.readLine()
    }
}

/// Everything a command touches outside its arguments. Each command's `run()` builds the real
/// one (``live``) and calls `run(_ ctx:)`; tests call `run(_ ctx:)` with their own, starting
/// from ``unset``, whose parts fail loudly when a test uses one it did not set.
struct CLIContext: Sendable {
    /// The environment the command started with.
    var environment: [String: String]
    /// Results (stdout), notes (stderr), progress.
    var terminal: any Terminal
    /// Text written to stdout as it comes (a streamed answer, log lines), without a newline added.
    var write: @Sendable (String) -> Void
    /// Standard input.
    var input: any CommandInput
    /// Opens the cluster that the options name: its config, profile and the library context
    /// (an SSH session when the profile has `ssh_host`).
    var openCluster: @Sendable (ClusterChoice, CLIContext) throws -> ClusterContext
    /// HTTP straight from this machine (`query --url`).
    var directHTTP: any HTTPClient
    /// vllmctl's own executable (a background tunnel runs a copy).
    var executable: @Sendable () throws -> String

    /// The real world: this process's environment, terminal and streams.
    static var live: CLIContext {
        CLIContext(
            environment: ProcessInfo.processInfo.environment, terminal: StandardTerminal(),
            write: { FileHandle.standardOutput.write(Data($0.utf8)) }, input: StandardInput(),
            openCluster: { options, ctx in try ClusterContext.live(options: options, cli: ctx) },
            directHTTP: CurlHTTPClient(), executable: { Detached.ownExecutable() })
    }

    /// A context whose every part fails when used: tests set the parts they mean to use.
    static var unset: CLIContext {
        CLIContext(
            environment: [:], terminal: UnsetTerminal(),
            write: { _ in unsetPart("write") }, input: UnsetInput(),
            openCluster: { _, _ in throw UnsetPart(name: "openCluster") },
            directHTTP: UnsetHTTP(), executable: { throw UnsetPart(name: "executable") })
    }

    /// The cluster named by `options`.
    func cluster(_ options: ClusterOptions) throws -> ClusterContext { try openCluster(options.choice, self) }

    /// The cluster named by `choice`.
    func cluster(_ choice: ClusterChoice) throws -> ClusterContext { try openCluster(choice, self) }

    /// The built-in templates and the user's, in that order.
    var templates: ScriptTemplates {
        var dirs: [String] = []
        if let builtIn = ScriptTemplates.builtInDirectory(environment: environment) { dirs.append(builtIn) }
        dirs.append(ConfigLocation.configDirectory(environment: environment) + "/templates")
        return ScriptTemplates(directories: dirs)
    }
}

/// A cluster a command works on: the configuration, the chosen profile, and the library's
/// context (host, HTTP, records) for it.
struct ClusterContext: Sendable {
    let config: Config
    let profile: ClusterProfile
    let context: Context

    /// Loads the configuration and connects to the profile's cluster (SSH when it has
    /// `ssh_host`; HTTP to cluster addresses then goes over the same session).
    static func live(options: ClusterChoice, cli: CLIContext) throws -> ClusterContext {
        let environment = cli.environment
        let config = try ConfigLocation.load(explicit: options.config, environment: environment)
        let profile = try config.cluster(named: options.cluster)
        let host: any ClusterHost
        var route: (any HTTPRoute)? = nil
        if let sshHost = profile.sshHost {
            let prompts = SSHTerminalPrompts.available
            let remote = try RemoteHost(
                alias: sshHost, configPath: SSHConfig.defaultPath(environment: environment),
                environment: environment, acceptNewHostKey: options.acceptNewHostKey,
                passphrase: prompts ? SSHTerminalPrompts.passphrase : nil,
                keyboardInteractive: prompts ? SSHTerminalPrompts.keyboardInteractive : nil)
            host = remote
            // Cluster addresses are reached through the login node, over the same session.
            route = remote
        } else {
            host = LocalHost()
        }
        return ClusterContext(
            config: config, profile: profile,
            context: Context(
                host: host, http: CurlHTTPClient(route: route, proxy: profile.httpProxy),
                clock: SystemClock(),
                terminal: cli.terminal,
                records: DeploymentStore(
                    directory: DeploymentStore.defaultDirectory(environment: environment)),
                environment: environment))
    }
}

/// A part of ``CLIContext`` that a test did not set.
struct UnsetPart: Error, CustomStringConvertible {
    let name: String
    var description: String { "CLIContext.\(name) was used but the test did not set it" }
}

private func unsetPart(_ name: String) -> Never {
    fatalError(UnsetPart(name: name).description)
}

private struct UnsetTerminal: Terminal {
    var isInteractive: Bool { unsetPart("terminal") }
    func print(_ text: String) { unsetPart("terminal") }
    func note(_ text: String) { unsetPart("terminal") }
    func progress(_ text: String?) { unsetPart("terminal") }
}

private struct UnsetInput: CommandInput {
    var isTerminal: Bool { unsetPart("input") }
    func readAll() -> String { unsetPart("input") }
    func ask(_ question: String) -> String? { unsetPart("input") }
}

private struct UnsetHTTP: HTTPClient {
    func send(_ request: HTTPRequest) async throws -> HTTPResponse { throw UnsetPart(name: "directHTTP") }
    func stream(_ request: HTTPRequest, onChunk: @escaping @Sendable (Data) -> Void) async throws
        -> HTTPResponse
    { throw UnsetPart(name: "directHTTP") }
}

/// Runs `body`, cancelling it on the first SIGINT or SIGTERM.
func cancellingOnSignal<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let task = Task { try await body() }
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let sources = [SIGINT, SIGTERM].map { sig -> any DispatchSourceSignal in
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { task.cancel() }
        source.resume()
        return source
    }
    defer {
        sources.forEach { $0.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
    return try await task.value
}

/// Returns on the first SIGINT, SIGTERM or SIGHUP (which no longer end the process meanwhile).
func waitForSignal() async {
    let signals = [SIGINT, SIGTERM, SIGHUP]
    for sig in signals { signal(sig, SIG_IGN) }
    let (stream, continuation) = AsyncStream<Int32>.makeStream()
    let sources = signals.map { sig -> any DispatchSourceSignal in
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { continuation.yield(sig) }
        source.resume()
        return source
    }
    for await _ in stream { break }
    sources.forEach { $0.cancel() }
}

/// Keeps `tunnel` open until SIGINT, SIGTERM or SIGHUP, then closes it (within 2 s).
func holdUntilSignal(_ tunnel: Tunnel, onExit: @escaping @Sendable () -> Void) async {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    signal(SIGHUP, SIG_IGN)
    let sources = [SIGINT, SIGTERM, SIGHUP].map { (sig: Int32) -> any DispatchSourceSignal in
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            tunnel.requestStop()
            // Everything closes well within 2 s; should a reconnect attempt hold the loop,
            // leaving the process closes the sockets all the same.
            DispatchQueue.global().asyncAfter(deadline: .now() + 1.5) {
                onExit()
                Glibc.exit(0)
            }
        }
        source.resume()
        return source
    }
    await tunnel.waitUntilClosed()
    sources.forEach { $0.cancel() }
}
