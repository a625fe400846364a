import Foundation

/// Asks the scheduler about jobs with as few calls as it can: squeue while a job is queued or
/// running, then sacct once it has left the queue.
public struct JobWatcher: Sendable {
    public let host: any ClusterHost
    public let timeout: Duration

    public init(host: any ClusterHost, timeout: Duration = .seconds(30)) {
        self.host = host
        self.timeout = timeout
    }

    /// The job's state now. A job squeue no longer knows is looked up in sacct; one neither
    /// knows is reported as nil. With `detail`, squeue also reports what the job asked for
    /// (``JobSnapshot/resources``), in the same call.
    public func snapshot(jobID: String, detail: Bool = false) async throws -> JobSnapshot? {
        let squeue = Squeue(jobIDs: [jobID], detail: detail)
        let result = try await host.run(squeue.argv, input: nil, timeout: timeout)
        if result.status == 0, let job = squeue.parse(result.stdout).first(where: { $0.jobID == jobID }) {
            return job
        }
        if result.status != 0 && !Squeue.isInvalidJobError(result.stderr) {
            throw VLLMCtlError.commandFailed(argv: squeue.argv, status: result.status, stderr: result.stderr)
        }
        // slurmdbd learns of a job's end asynchronously: a job that has left squeue can still
        // read PENDING or RUNNING in sacct for a moment. Ask again briefly before answering.
        let sacct = Sacct(jobIDs: [jobID])
        var job: JobSnapshot?
        for attempt in 0..<5 {
            if attempt > 0 { try await Task.sleep(for: .seconds(1)) }
            let accounting = try await host.run(sacct.argv, input: nil, timeout: timeout)
            guard accounting.status == 0 else { return nil }
            job = sacct.parse(accounting.stdout).first { $0.jobID == jobID }
            if let job, job.state.isFinal { return job }
        }
        return job
    }
}
