import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

extension LocalCluster {
    /// Issue 15: the chain ends at `--renewals N` (the renewal number travels from job to job).
    @Suite struct RenewLimitTests {
        @Test func theChainEndsAfterTheRenewalsAskedFor() async throws {
            let cli = try CLI.laptop()
            let name = "renewlim-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
            try await running(
                {
                    let d = try await cli.deploy(
                        ["--cluster", "hpc", "--name", name, "--renewals", "1"] + RenewFailureTests.shortChain
                            + RenewTests.port + ["--setup", "export VLLM_SIM_LOAD_SECONDS=3"])
                    // The successor (renewal 1 of 1) takes over and submits no successor of its own.
                    var second: String?
                    var state: RenewalStatus?
                    for _ in 0..<150 {
                        try await Task.sleep(for: .seconds(1))
                        if let now = RenewTests.publishedJob(d.deployDir), now != d.jobID { second = now }
                        if let second { state = RenewFailureTests.chain(d.deployDir, second) }
                        if state != nil { break }
                    }
                    let successor = try #require(second, "no successor took over")
                    #expect(state?.renewal == 1 && state?.state == "ended", "\(String(describing: state))")
                    #expect(state?.message.contains("--renewals") == true, "\(String(describing: state))")
                    #expect(state?.successor == nil)
                    #expect(RenewFailureTests.chain(d.deployDir, d.jobID)?.successor == successor)
                    // Only the successor is left (its predecessor drains and ends by itself).
                    var queue: [(id: String, state: String)] = []
                    for _ in 0..<60 {
                        queue = try await RenewTests.queued(name)
                        if queue.map(\.id) == [successor] { break }
                        try await Task.sleep(for: .seconds(1))
                    }
                    #expect(queue.map(\.id) == [successor], "\(queue)")
                    let down = try await cli.run(["teardown", name, "--cluster", "hpc"])
                    #expect(down.status == 0, "\(down.stdout) \(down.stderr)")
                },
                thenAwaiting: {
                    await RenewTests.cancelChain(name)
                    await cli.cancelAll()
                })
        }
    }
}
