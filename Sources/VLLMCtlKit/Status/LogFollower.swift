import Foundation

/// Prints a job's output file: the last lines, then (with follow) what is appended, until
/// Slurm says the job has ended.
public struct LogFollower: Sendable {
    public let context: Context
    public var pollSeconds = 0.5
    public var schedulerSeconds = 3.0

    public init(context: Context) { self.context = context }

    public func run(path: String, jobID: String, lines: Int, follow: Bool, emit: @Sendable (String) -> Void)
        async throws
    {
        var offset = 0
        // Everything here only reads: a lost SSH connection is replaced and the read repeated.
        let host = context.host
        let terminal = context.terminal
        if let data = try await host.retryingReads(terminal: terminal, { try await host.readFile(path) }) {
            let text = String(decoding: data, as: UTF8.self)
            var tail = text.split(separator: "\n", omittingEmptySubsequences: false)
            if tail.last == "" { tail.removeLast() }
            let shown = tail.suffix(max(0, lines)).joined(separator: "\n")
            if !shown.isEmpty { emit(shown + "\n") }
            offset = data.count
        } else if !follow {
            throw VLLMCtlError.file(
                path: path, message: "does not exist yet; the job may not have started (see `vllmctl status`)"
            )
        }
        guard follow else { return }
        let watcher = JobWatcher(host: context.host)
        var nextCheck = Date.distantPast
        var ended = false
        while true {
            try Task.checkCancellation()
            let more = try await host.retryingReads(terminal: terminal) {
                try await host.readFile(path, from: offset)
            }
            if let more, !more.isEmpty {
                offset += more.count
                emit(String(decoding: more, as: UTF8.self))
            }
            if ended { return }
            if context.clock.now() >= nextCheck {
                let job = try await host.retryingReads(terminal: terminal) {
                    try await watcher.snapshot(jobID: jobID)
                }
                // One more read after the end, for the last lines.
                ended = job.map { $0.state.isFinal } ?? true
                nextCheck = context.clock.now().addingTimeInterval(schedulerSeconds)
            }
            try await context.clock.sleep(seconds: pollSeconds)
        }
    }
}
