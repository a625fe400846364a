import Foundation

/// The one error type of the library. Every case reads as a sentence a user can act on:
/// what happened, then what to do next.
public enum VLLMCtlError: Error, Equatable, Sendable {
    /// A configuration file is malformed. `line` is 1-based when known.
    case config(file: String, line: Int?, key: String?, problem: String)
    /// The user asked for something that cannot work; `hint` says what would.
    case invalidInput(String, hint: String)
    /// A program could not be started at all.
    case commandNotFound(String, hint: String)
    /// A program ran and failed.
    case commandFailed(argv: [String], status: Int32, stderr: String)
    /// A program did not answer in time.
    case commandTimedOut(argv: [String], seconds: Double)
    /// Slurm refused or reported something in its own words; `explanation` says it plainly.
    case slurm(message: String, explanation: String)
    /// The job ended before the server became ready.
    case jobEnded(jobID: String, state: String, reason: String?, logTail: String)
    /// The server did not become ready in time.
    case notReady(jobID: String, waited: Double, detail: String)
    /// An HTTP exchange failed below HTTP, and the server was seen doing it: the connection
    /// was refused (nothing listens there) or broke.
    case http(url: String, message: String, hint: String)
    /// A request could not reach the server for a reason on vllmctl's own side of the network
    /// (no route, a timeout on the way, DNS, TLS set-up, a proxy, the SSH session or the login
    /// node's connection to the node): the server's own state is unknown.
    case unreachable(url: String, message: String, hint: String)
    /// A file could not be read or written.
    case file(path: String, message: String)
    /// A deployment or template could not be found.
    case notFound(what: String, name: String, hint: String)
    /// The user interrupted a wait.
    case interrupted(String)
}

extension VLLMCtlError: CustomStringConvertible, LocalizedError {
    /// The Slurm client commands vllmctl runs: one that does not answer points at the
    /// controller (or slurmdbd); any other command that hangs does not.
    static let slurmCommands: Set<String> = [
        "sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo", "srun", "salloc",
    ]

    /// The same text as ``description``.
    public var errorDescription: String? { description }

    /// The error as a sentence a user can act on, ending with what to do next.
    public var description: String {
        switch self {
        case .config(let file, let line, let key, let problem):
            var place = file
            if let line { place += ":\(line)" }
            let keyPart = key.map { " (key `\($0)`)" } ?? ""
            return
                "\(place): \(problem)\(keyPart). Fix the file, or run `vllmctl config init --force` to start from a commented example."
        case .invalidInput(let message, let hint):
            return "\(message). \(hint)"
        case .commandNotFound(let program, let hint):
            return "`\(program)` was not found. \(hint)"
        case .commandFailed(let argv, let status, let stderr):
            let err = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            return "`\(argv.joined(separator: " "))` failed with exit status \(status)"
                + (err.isEmpty ? "." : ": \(err)")
        case .commandTimedOut(let argv, let seconds):
            let program = argv.first ?? ""
            let why =
                Self.slurmCommands.contains(String(program.split(separator: "/").last ?? ""))
                ? "The Slurm controller may be overloaded or down; try again, or ask your cluster admins."
                : "It may be stuck (a hung filesystem, a full disk); try it by hand on the same machine."
            return "`\(program)` did not answer within \(Int(seconds)) s. \(why)"
        case .slurm(let message, let explanation):
            return "Slurm said: \(message.trimmingCharacters(in: .whitespacesAndNewlines))\n\(explanation)"
        case .jobEnded(let jobID, let state, let reason, let logTail):
            var text = "Job \(jobID) ended as \(state)"
            if let reason, !reason.isEmpty, reason != "None" { text += " (\(reason))" }
            text += " before the server was ready."
            if !logTail.isEmpty {
                text += "\nLast lines of its log:\n" + logTail
            }
            text += "\nFix the cause above and deploy again; `vllmctl logs \(jobID)` shows the whole log."
            return text
        case .notReady(let jobID, let waited, let detail):
            return
                "The server of job \(jobID) was not ready after \(Int(waited)) s: \(detail). The job is still running: watch it with `vllmctl logs \(jobID) --follow`, or cancel it with `vllmctl teardown \(jobID)`. Raise the wait with `--timeout`."
        case .http(let url, let message, let hint), .unreachable(let url, let message, let hint):
            return "\(url): \(message). \(hint)"
        case .file(let path, let message):
            return "\(path): \(message)"
        case .notFound(let what, let name, let hint):
            return "No \(what) named `\(name)`. \(hint)"
        case .interrupted(let message):
            return message
        }
    }
}
