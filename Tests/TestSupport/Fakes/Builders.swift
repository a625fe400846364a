import Foundation

@testable import VLLMCtlKit

/// The user the scripted cluster runs as.
package let me = "alice"
/// The moment scripted deployments were created.
package let t0 = Date(timeIntervalSince1970: 1_800_000_000)

/// A job as squeue would list it.
package func job(
    _ id: String, _ name: String, user: String = me, _ state: JobState = .running, elapsed: String = "0:10",
    reason: String = "None"
) -> JobSnapshot {
    JobSnapshot(
        jobID: id, name: name, user: user, state: state, reason: reason, nodes: "n1", elapsed: elapsed)
}

/// A local record of a deployment on the cluster `local`.
package func record(
    _ id: String, _ name: String, phase: DeploymentRecord.Phase = .ready, created: Date = t0,
    dir: String = "/nowhere"
) -> DeploymentRecord {
    DeploymentRecord(
        name: name, cluster: "local", jobID: id, model: "m", servedModelName: "m",
        deployDir: dir + "/" + name,
        phase: phase, createdAt: created, url: phase == .ready ? "http://127.0.0.1:1" : nil, apiKey: "sk-x")
}

/// A teardown of profile `local` for user `me` over `host`, with empty records of its own and
/// every server healthy.
package func scriptedTeardown(_ host: any ClusterHost) throws -> Teardown {
    let context = Context(
        host: host, http: FixedHTTP(status: 200), clock: SteppingClock(t0), terminal: QuietTerminal(),
        records: DeploymentStore(directory: try temporaryDirectory()), environment: [:])
    return Teardown(context: context, profile: ClusterProfile(name: "local"), user: me)
}
