import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

extension LocalCluster {
    /// The headline path: vllmctl on a laptop that reaches the cluster only through the login
    /// node's sshd. Every command here runs in the `vc-laptop` namespace.
    @Suite struct LaptopTests {
        /// If the cluster silently became one host, every laptop test below would pass for the
        /// wrong reason: this one fails instead.
        @Test func theLaptopReachesOnlyTheLoginNodesSSHD() async throws {
            #expect(try await TestHost.laptop.canConnect(TestHost.loginFromLaptop, 2222))
            // slurmd listens on every node; from the login host it answers, from the laptop not.
            for n in [1, 2] {
                #expect(try await TestHost.node(n).canConnect("127.0.0.1", 6818), "slurmd on node\(n)")
                #expect(
                    try await sh(["bash", "-c", "exec 3<>/dev/tcp/\(TestHost.nodeAddress(n))/6818"]).status
                        == 0)
                #expect(!(try await TestHost.laptop.canConnect(TestHost.nodeAddress(n), 6818)))
            }
            // Nor the login host's other services (slurmctld).
            #expect(!(try await TestHost.laptop.canConnect(TestHost.loginFromLaptop, 6817)))
        }

        @Test func deployStatusQueryMetricsLogsTunnelAndTeardownFromTheLaptop() async throws {
            let cli = try CLI.laptop()
            try await cli.withDeployment(["--cluster", "hpc", "--name", "lap-e2e"]) { deploy in
                let object = deploy.object
                let url = try #require(object["url"] as? String)
                let node = try #require(object["node"] as? String)
                // The URL carries the node's own address, which the laptop cannot reach itself.
                let n = try #require(Int(node.dropFirst("node".count)))
                let port = try #require(
                    url.firstMatch(of: /^http:\/\/10\.77\.0\.1[12]:(\d+)\/v1$/).flatMap { Int($0.1) },
                    "\(url)")
                #expect(url == "http://\(TestHost.nodeAddress(n)):\(port)/v1")
                #expect(!(try await TestHost.laptop.canConnect(TestHost.nodeAddress(n), port)))

                let status = try await cli.run(["status", "--cluster", "hpc", "--json"])
                #expect(status.status == 0, "stderr: \(status.stderr)")
                let report = try #require(
                    try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
                let row = try #require(
                    (report["deployments"] as? [[String: Any]])?.first { $0["name"] as? String == "lap-e2e" })
                #expect(row["health"] as? String == "healthy", "\(row)")

                for extra in [[], ["--chat"], ["--stream"], ["--chat", "--stream"]] {
                    let q = try await cli.run(
                        ["query", "lap-e2e", "--cluster", "hpc", "--prompt", "hello", "--max-tokens", "4"]
                            + extra)
                    #expect(q.status == 0, "\(extra) stderr: \(q.stderr)")
                    #expect(!q.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(extra)")
                }
                let info = try await cli.run(["query", "lap-e2e", "--cluster", "hpc", "--info"])
                #expect(info.status == 0 && info.stdout.contains("sim"), "stderr: \(info.stderr)")
                let metrics = try await cli.run(["metrics", "lap-e2e", "--cluster", "hpc"])
                #expect(
                    metrics.status == 0 && metrics.stdout.contains("kv-cache"), "stderr: \(metrics.stderr)")
                let logs = try await cli.run(["logs", "lap-e2e", "--cluster", "hpc", "--stderr"])
                #expect(
                    logs.status == 0 && logs.stdout.contains("vllmctl: ready"),
                    "\(logs.stdout) stderr: \(logs.stderr)")

                // A healthy server seen from the laptop is kept, never counted as stale.
                let stale = try await cli.run(["teardown", "--stale", "--dry-run", "--cluster", "hpc"])
                #expect(stale.status == 0, "stderr: \(stale.stderr)")
                #expect(stale.stdout.contains("keep") && stale.stdout.contains("healthy"), "\(stale.stdout)")
                #expect(!stale.stdout.contains("cancel"), "\(stale.stdout)")

                let down = try await cli.run(["teardown", "lap-e2e", "--cluster", "hpc", "--yes"])
                #expect(down.status == 0, "stderr: \(down.stderr)")
            }
        }

        /// "Can't tell" is never "unhealthy": with the job's node cut off, the login node cannot
        /// reach the server; status says unknown with the reason, and teardown --stale keeps the
        /// job even with no grace at all. Once the node is back, it is healthy again.
        @Test func aServerThatCannotBeCheckedIsUnknownAndNeverStale() async throws {
            let cli = try CLI.laptop()
            let link = "vc-node2-h"
            let args = ["--cluster", "hpc", "--name", "lap-unknown", "--nodelist", "node2"]
            try await cli.withDeployment(args) { _ in
                do {
                    let handshakesBefore = await sshdHandshakes(from: TestHost.laptopAddress)
                    let healthy = try await cli.run(["status", "--cluster", "hpc", "--json"])
                    #expect(healthy.stdout.contains("\"healthy\""), "\(healthy.stdout)")
                    // One invocation, one SSH handshake: squeue, the connection file and /health all
                    // went over the same session.
                    let handshakes = await sshdHandshakes(from: TestHost.laptopAddress) - handshakesBefore
                    #expect(handshakes == 1, "\(handshakes) handshakes")

                    #expect(try await sh(["ip", "link", "set", link, "down"]).status == 0)
                    let status = try await cli.run(["status", "--cluster", "hpc", "--json"])
                    let stale = try await cli.run([
                        "teardown", "--stale", "--grace", "1s", "--dry-run", "--cluster", "hpc",
                    ])
                    let table = try await cli.run(["status", "--cluster", "hpc"])
                    _ = try await sh(["ip", "link", "set", link, "up"])
                    let report = try #require(
                        try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
                    let row = try #require(
                        (report["deployments"] as? [[String: Any]])?.first {
                            $0["name"] as? String == "lap-unknown"
                        })
                    #expect(row["health"] as? String == "unknown", "\(row)")
                    #expect((row["health_detail"] as? String)?.contains("10.77.0.12") == true, "\(row)")
                    #expect(table.stdout.contains("unknown"), "\(table.stdout)")
                    #expect(stale.status == 0, "stderr: \(stale.stderr)")
                    #expect(
                        stale.stdout.contains("keep") && stale.stdout.contains("health unknown"),
                        "\(stale.stdout)")
                    #expect(!stale.stdout.contains("cancel"), "\(stale.stdout)")

                    var back = false
                    let deadline = Date().addingTimeInterval(60)
                    while !back && Date() < deadline {
                        let again = try await cli.run(["status", "--cluster", "hpc", "--json"])
                        back = again.stdout.contains("\"healthy\"")
                        if !back { try await Task.sleep(for: .seconds(1)) }
                    }
                    #expect(back, "the server did not read healthy again once its node was back")
                    let down = try await cli.run(["teardown", "lap-unknown", "--cluster", "hpc", "--yes"])
                    #expect(down.status == 0, "stderr: \(down.stderr)")
                } catch {
                    _ = try? await sh(["ip", "link", "set", link, "up"])
                    throw error
                }
            }
        }

        @Test func deployWithTunnelGivesAWorkingLocalhostEndpointOnTheLaptop() async throws {
            let cli = try CLI.laptop()
            try await cli.withDeployment([
                "--cluster", "hpc", "--name", "lap-tun", "--tunnel", "--tunnel-port", "0",
            ]) { deploy in
                let object = deploy.object
                let tunnelURL = try #require(object["tunnel_url"] as? String)
                let key = try #require(object["api_key"] as? String)
                #expect(tunnelURL.hasPrefix("http://127.0.0.1:"))
                // An OpenAI-style request from the laptop, as a colleague's client would send it.
                let body = #"{"model":"sim","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#
                let chat = try await sh(
                    TestHost.laptop.prefix + [
                        "curl", "-sS", "--max-time", "20", "-H", "Content-Type: application/json",
                        "-H", try bearerHeaderFile(key), "-d", body, tunnelURL + "/chat/completions",
                    ])
                #expect(chat.status == 0, "stderr: \(chat.stderr)")
                #expect(chat.stdout.contains("chat.completion"), "\(chat.stdout)")
                let down = try await cli.run(["teardown", "lap-tun", "--cluster", "hpc", "--yes"])
                #expect(down.status == 0, "stderr: \(down.stderr)")
                #expect(down.stdout.contains("closed the tunnel"))
            }
        }
    }
}
