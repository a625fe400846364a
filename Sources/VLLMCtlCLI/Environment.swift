import Foundation
import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

/// Prints results to stdout and messages to stderr; draws one live progress line on a TTY.
final class StandardTerminal: Terminal, @unchecked Sendable {
    let isInteractive = isatty(STDERR_FILENO) == 1
    private let lock = NSLock()
    private var progressShown = false
    private var lastProgress: String?

    func print(_ text: String) {
        lock.withLock {
            clearProgress()
            FileHandle.standardOutput.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
        }
    }

    func note(_ text: String) {
        lock.withLock {
            clearProgress()
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }

    func progress(_ text: String?) {
        guard isInteractive else { return }
        lock.withLock {
            if let text {
                guard text != lastProgress || !progressShown else { return }
                FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8))
                progressShown = true
                lastProgress = text
            } else {
                clearProgress()
            }
        }
    }

    private func clearProgress() {
        if progressShown {
            FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
            progressShown = false
        }
    }
}

/// Builds the real context for a command.
struct CLIEnvironment {
    let config: Config
    let profile: ClusterProfile
    let context: Context
    let environment: [String: String]

    init(options: ClusterOptions) throws {
        let environment = ProcessInfo.processInfo.environment
        self.environment = environment
        config = try ConfigLocation.load(explicit: options.config, environment: environment)
        profile = try config.cluster(named: options.cluster)
        let host: any ClusterHost
        var route: (any HTTPRoute)? = nil
        if let sshHost = profile.sshHost {
            let sshConfig = SSHConfig.defaultPath(environment: environment)
            let prompts = SSHTerminalPrompts.available
            let remote = try RemoteHost(
                alias: sshHost, configPath: sshConfig, environment: environment,
                acceptNewHostKey: options.acceptNewHostKey,
                passphrase: prompts ? SSHTerminalPrompts.passphrase : nil,
                keyboardInteractive: prompts ? SSHTerminalPrompts.keyboardInteractive : nil)
            host = remote
            // Cluster addresses are reached through the login node, over the same session.
            route = remote
        } else {
            host = LocalHost()
        }
        context = Context(
            host: host, http: CurlHTTPClient(route: route, proxy: profile.httpProxy), clock: SystemClock(),
            terminal: StandardTerminal(),
            records: DeploymentStore(directory: DeploymentStore.defaultDirectory(environment: environment)),
            environment: environment)
    }

    var templates: ScriptTemplates {
        Self.templates(environment: environment)
    }

    static func templates(environment: [String: String]) -> ScriptTemplates {
        var dirs: [String] = []
        if let builtIn = ScriptTemplates.builtInDirectory(environment: environment) { dirs.append(builtIn) }
        dirs.append(ConfigLocation.configDirectory(environment: environment) + "/templates")
        return ScriptTemplates(directories: dirs)
    }
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
