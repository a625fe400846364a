import Foundation
import Synchronization

@testable import VLLMCtlKit

/// Job ids a test submitted by hand, for its clean-up.
package final class JobList: Sendable {
    private let list = Mutex<[String]>([])
    package init() {}
    package func add(_ id: String) { list.withLock { $0.append(id) } }
    package var ids: [String] { list.withLock { $0 } }
}

/// Runs `body`, then cancels every job `records` know on `cluster` and every job `body` added
/// to its `JobList`, pass or fail (awaited, so that no job outlives its test).
package func cancellingJobs<T>(
    recordedIn records: DeploymentStore? = nil, cluster: String = "local",
    _ body: (JobList) async throws -> T
) async throws -> T {
    let extra = JobList()
    func cancel() async {
        let ids = (records?.all(cluster: cluster).map(\.jobID) ?? []) + extra.ids
        if !ids.isEmpty { _ = try? await sh(Scancel(jobIDs: ids).argv) }
    }
    return try await running({ try await body(extra) }, thenAwaiting: cancel)
}

/// Runs `body`, then `cleanup`, awaited, pass or fail (never a `defer { Task { … } }` that the
/// test does not wait for).
package func running<T>(_ body: () async throws -> T, thenAwaiting cleanup: () async -> Void) async throws
    -> T
{
    do {
        let result = try await body()
        await cleanup()
        return result
    } catch {
        await cleanup()
        throw error
    }
}

extension Deployer {
    /// Deploys `request` in-process, hands `body` the outcome, and cancels every job this
    /// deployer's records know on its cluster afterwards (also those `body` deployed), awaited,
    /// pass or fail.
    package func withDeployment<T>(
        _ request: DeployRequest, _ body: (DeployOutcome) async throws -> T
    ) async throws -> T {
        try await cancellingJobs(recordedIn: context.records, cluster: profile.name) { _ in
            try await body(try await deploy(request))
        }
    }
}
