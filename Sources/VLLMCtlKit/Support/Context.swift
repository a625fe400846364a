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

public struct SystemClock: Clock {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(seconds: Double) async throws {
        try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
    }
}

/// The side effects one command may have, carried together: the cluster it talks to, HTTP,
/// time, output, the local deployment records, and the environment it was started with.
public struct Context: Sendable {
    public var host: any ClusterHost
    public var http: any HTTPClient
    public var clock: any Clock
    public var terminal: any Terminal
    public var records: DeploymentStore
    public var environment: [String: String]
    public var logger: Logger

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
