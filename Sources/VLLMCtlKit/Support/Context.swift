import Foundation
import Logging

/// Where user-facing text goes. The CLI prints; tests collect.
public protocol Terminal: Sendable {
    /// Whether stderr is a terminal (live progress lines are drawn only then).
    var isInteractive: Bool { get }
    /// A result, on stdout.
    func print(_ text: String)
    /// A message, on stderr.
    func note(_ text: String)
    /// Replaces the live progress line (TTY only); nil clears it.
    func progress(_ text: String?)
}

/// A clock that tests can read; sleeping goes through it too.
public protocol Clock: Sendable {
    func now() -> Date
    func sleep(seconds: Double) async throws
}

/// The real time, and `Task.sleep`.
public struct SystemClock: Clock {
    /// The system clock.
    public init() {}
    /// The current date.
    public func now() -> Date { Date() }
    /// Sleeps for `seconds`; throws `CancellationError` when the task is cancelled.
    public func sleep(seconds: Double) async throws {
        try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
    }
}

/// The side effects one command may have, carried together: the cluster it talks to, HTTP,
/// time, output, the local deployment records, and the environment it was started with.
public struct Context: Sendable {
    /// Where Slurm's commands run and deployment files live: ``LocalHost`` on the login node,
    /// ``RemoteHost`` through SSH.
    public var host: any ClusterHost
    /// HTTP to the servers (readiness, health, queries): a ``CurlHTTPClient``, routed through
    /// the ``RemoteHost`` when the profile has `ssh_host`.
    public var http: any HTTPClient
    /// Time and sleeping.
    public var clock: any Clock
    /// Where results, notes and progress go.
    public var terminal: any Terminal
    /// The local deployment records.
    public var records: DeploymentStore
    /// The environment the command started with (config and state locations, `HOME`).
    public var environment: [String: String]
    /// Diagnostics for developers (swift-log).
    public var logger: Logger

    /// A context from its parts.
    public init(
        host: any ClusterHost, http: any HTTPClient, clock: any Clock, terminal: any Terminal,
        records: DeploymentStore, environment: [String: String], logger: Logger = Logger(label: "vllmctl")
    ) {
        self.host = host
        self.http = http
        self.clock = clock
        self.terminal = terminal
        self.records = records
        self.environment = environment
        self.logger = logger
    }
}
