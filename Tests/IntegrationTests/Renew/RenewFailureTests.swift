import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

extension LocalCluster {
    /// Issue 15's failure cases: a successor that cannot start, and teardown in the middle of a
    /// handover. A large margin makes the successor due about a minute after the first job is
    /// ready (3-minute limit, 30 s ready timeout, 110 s margin: 2 × 30 + 110 ≤ 180).
    @Suite struct RenewFailureTests {
        /// No GPU: the chain does not need one, and the test cluster's 4 GPUs are often taken
        /// (a pending job that wants them all would hold the successor back).
        static let shortChain = [
            "--gpus", "0", "--renew", "--time", "3", "--timeout", "30", "--renew-margin", "110",
        ]

        /// A job's chain file, parsed (nil until written).
        static func chain(_ dir: String, _ jobID: String) -> RenewalStatus? {
            FileManager.default.contents(atPath: dir + "/" + RenewalStatus.fileName(jobID: jobID)).flatMap(
                RenewalStatus.parse)
        }

        @Test func aSuccessorThatFailsTwiceStopsTheChainAndThePredecessorKeepsServing() async throws {
            let cli = try CLI.laptop()
            let name = "renewfail-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
            try await running(
                {
                    // Every successor fails in its setup, before its server starts.
                    let d = try await cli.deploy(
                        ["--cluster", "hpc", "--name", name] + Self.shortChain + RenewTests.port + [
                            "--setup", "export VLLM_SIM_LOAD_SECONDS=3",
                            "--setup", #"[[ "${VLLMCTL_RENEWAL:-0}" == 0 ]] || exit 3"#,
                        ])
                    var state: RenewalStatus?
                    for _ in 0..<150 {
                        try await Task.sleep(for: .seconds(1))
                        state = Self.chain(d.deployDir, d.jobID)
                        if state?.state == "stopped" { break }
                    }
                    #expect(state?.state == "stopped", "\(String(describing: state))")
                    #expect(state?.message.contains("second failure") == true, "\(String(describing: state))")
                    // Two successors were tried, both failed; the first job still serves.
                    let (text, rows) = try await RenewTests.accounting(name)
                    #expect(rows.filter { $0.count == 2 && $0[1] == "FAILED" }.count == 2, "\(text)")
                    #expect(rows.contains([d.jobID, "RUNNING"]), "\(text)")
                    #expect(RenewTests.publishedJob(d.deployDir) == d.jobID)
                    let curl = try await RenewTests.curlFromFile(d.deployDir)
                    #expect(curl.stdout.contains("choices"), "\(curl.stdout) \(curl.stderr)")
                    // The user is told.
                    let status = try await cli.run(["status", "--cluster", "hpc"])
                    #expect(
                        status.stdout.contains("Renewal 0 of \(name) (job \(d.jobID), stopped)"),
                        "\(status.stdout)")
                    let down = try await cli.run(["teardown", name, "--cluster", "hpc"])
                    #expect(down.status == 0, "\(down.stdout) \(down.stderr)")
                    #expect(try await RenewTests.queued(name).isEmpty)
                },
                thenAwaiting: {
                    await RenewTests.cancelChain(name)
                    await cli.cancelAll()
                })
        }

        @Test func teardownDuringAHandoverLeavesNothingBehind() async throws {
            let cli = try CLI.laptop()
            let name = "renewdown-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
            try await running(
                {
                    // The first job loads in 3 s, its successors in 25 s: teardown comes while the
                    // successor loads.
                    let d = try await cli.deploy(
                        ["--cluster", "hpc", "--name", name] + Self.shortChain + RenewTests.port + [
                            "--setup",
                            #"export VLLM_SIM_LOAD_SECONDS=$(( ${VLLMCTL_RENEWAL:-0} == 0 ? 3 : 25 ))"#,
                        ])
                    var queue: [(id: String, state: String)] = []
                    for _ in 0..<150 {
                        try await Task.sleep(for: .seconds(1))
                        queue = try await RenewTests.queued(name)
                        if queue.filter({ $0.state == "RUNNING" }).count == 2 { break }
                    }
                    #expect(queue.filter { $0.state == "RUNNING" }.count == 2, "\(queue)")
                    let down = try await cli.run(["teardown", name, "--cluster", "hpc"])
                    #expect(down.status == 0, "\(down.stdout) \(down.stderr)")
                    #expect(
                        down.stdout.components(separatedBy: "Cancelled job").count - 1 == 2, "\(down.stdout)")
                    // Nothing left, also a little later (no successor submitted by a dying job).
                    #expect(try await RenewTests.queued(name).isEmpty)
                    try await Task.sleep(for: .seconds(8))
                    #expect(try await RenewTests.queued(name).isEmpty)
                    let files = try FileManager.default.contentsOfDirectory(atPath: d.deployDir)
                    #expect(files.contains(Teardown.stopMark), "\(files)")
                    #expect(!files.contains(DeploymentFiles.infoText), "\(files)")
                    let ended = try await RenewTests.accounting(name).text
                    #expect(!ended.contains("RUNNING") && !ended.contains("PENDING"), "\(ended)")
                },
                thenAwaiting: {
                    await RenewTests.cancelChain(name)
                    await cli.cancelAll()
                })
        }
    }
}
