import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

extension LocalCluster {
    /// Issue 15's last failure case: the successor stays pending past its predecessor's end.
    /// The test holds the successor (our own job, `scontrol uhold`) as soon as it is in the queue, as a busy
    /// partition would; once the predecessor has ended, `status` must say the deployment is
    /// down until that job starts, with Slurm's reason; released, the successor takes over with
    /// the same key.
    @Suite struct RenewPendingTests {
        /// Polls `check` every second, at most `seconds` times; the last value it returned.
        static func poll<T>(_ seconds: Int, _ check: () async throws -> T?) async throws -> T? {
            for _ in 0..<seconds {
                if let value = try await check() { return value }
                try await Task.sleep(for: .seconds(1))
            }
            return nil
        }

        @Test func aSuccessorPendingPastThePredecessorsEndIsReportedAndTakesOverOnceItStarts() async throws {
            let cli = try CLI.laptop()
            let name = "renewpend-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
            try await running(
                {
                    let d = try await cli.deploy(
                        ["--cluster", "hpc", "--name", name] + RenewFailureTests.shortChain + RenewTests.port
                            + ["--setup", "export VLLM_SIM_LOAD_SECONDS=3"])
                    // The successor is submitted right after the first job is ready, due about a
                    // minute later: hold it before then.
                    let successor = try #require(
                        try await Self.poll(60) {
                            try await RenewTests.queued(name).map(\.id).first { $0 != d.jobID }
                        }, "no successor was submitted")
                    // A user hold (`hold` by root, as tests may run, is an administrator's).
                    let hold = try await sh(["scontrol", "uhold", successor])
                    try #require(hold.status == 0, "\(hold.stderr)")
                    // The first job reaches its 3-minute limit; the successor stays held.
                    let left = try await Self.poll(300) {
                        let queue = try await RenewTests.queued(name)
                        return queue.map(\.id) == [successor] ? queue : nil
                    }
                    #expect(left?.first?.state == "PENDING", "\(String(describing: left))")
                    #expect(
                        RenewTests.publishedJob(d.deployDir) == nil,
                        "the first job's file should say it ended")

                    let down = "down until successor job \(successor) starts: it is pending (JobHeldUser"
                    let table = try await cli.run(["status", "--cluster", "hpc"])
                    #expect(table.stdout.contains("\n\(name) is \(down)"), "\(table.stdout) \(table.stderr)")
                    let json = try await cli.run(["status", "--cluster", "hpc", "--json"])
                    let decoder = JSONDecoder()
                    decoder.dateDecodingStrategy = .iso8601
                    let report = try decoder.decode(StatusReport.self, from: Data(json.stdout.utf8))
                    let row = report.deployments.first { $0.jobID == successor }
                    #expect(row?.reason == "JobHeldUser", "\(json.stdout)")
                    #expect(
                        row?.down?.predecessor == d.jobID && row?.down?.successor == successor,
                        "\(json.stdout)")
                    #expect(row?.down?.message.hasPrefix(down) == true, "\(json.stdout)")
                    let detail = try await cli.run(["status", name, "--cluster", "hpc"])
                    #expect(detail.stdout.contains(down), "\(detail.stdout) \(detail.stderr)")
                    #expect(detail.stdout.contains(successor), "\(detail.stdout)")

                    // Released, it starts, becomes ready and publishes its URL under the same key.
                    let release = try await sh(["scontrol", "release", successor])
                    try #require(release.status == 0, "\(release.stderr)")
                    let took = try await Self.poll(180) {
                        RenewTests.publishedJob(d.deployDir) == successor ? true : nil
                    }
                    #expect(took == true, "the successor did not publish its connection file")
                    let data = try #require(
                        FileManager.default.contents(atPath: d.deployDir + "/" + DeploymentFiles.infoJSON))
                    let info = try JSONDecoder().decode(ConnectionRecord.self, from: data)
                    #expect(info.apiKey == d.apiKey)
                    let curl = try await RenewTests.curlFromFile(d.deployDir)
                    #expect(curl.stdout.contains("choices"), "\(curl.stdout) \(curl.stderr)")
                    let after = try await cli.run(["status", "--cluster", "hpc", "--json"])
                    #expect(!after.stdout.contains(#""down""#), "\(after.stdout)")

                    let teardown = try await cli.run(["teardown", name, "--cluster", "hpc"])
                    #expect(teardown.status == 0, "\(teardown.stdout) \(teardown.stderr)")
                    #expect(try await RenewTests.queued(name).isEmpty)
                },
                thenAwaiting: {
                    await RenewTests.cancelChain(name)
                    await cli.cancelAll()
                })
        }
    }
}
