import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

extension LocalCluster {
    @Suite struct ProxyTests {
        /// Login nodes often export http_proxy for pip; health checks must not go through it.
        @Test func theEnvironmentsProxiesAreNotUsedForServers() async throws {
            var cli = try CLI()
            cli.extraEnvironment = [
                "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                "HTTP_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9",
                "all_proxy": "http://127.0.0.1:9",
            ]
            try await cli.withDeployment(["--name", "proxied"]) { _ in
                let status = try await cli.run(["status", "--json"])
                let report = try #require(
                    try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
                let row = try #require(
                    (report["deployments"] as? [[String: Any]])?.first { $0["name"] as? String == "proxied" })
                #expect(row["health"] as? String == "healthy", "\(row)")
                let stale = try await cli.run(["teardown", "--stale", "--dry-run"])
                #expect(stale.stdout.contains("healthy"), "\(stale.stdout)")
                #expect(!stale.stdout.contains("cancel"), "\(stale.stdout)")
                let down = try await cli.run(["teardown", "proxied", "--yes"])
                #expect(down.status == 0, "stderr: \(down.stderr)")
            }
        }
    }
}
