import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

extension LocalCluster {
    /// HTTP over the invocation's SSH session (a profile with `ssh_host`), at the library level.
    @Suite struct RoutedHTTPTests {
        @Test func requestsGoThroughTheSessionAndItStillRunsCommands() async throws {
            let sim = try SimulatorProcess(bindHost: "10.77.0.1")
            defer { sim.stop() }
            let remote = RemoteHost(options: LocalSSH.options())
            let http = CurlHTTPClient(route: remote)
            try await sim.waitHealthy(http: CurlHTTPClient())
            // Many at once: each gets its own channel; libssh2 opens them one after another.
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<40 {
                    group.addTask {
                        try await http.send(
                            HTTPRequest(url: sim.url + "/health", connectTimeout: 10, timeout: 20)
                        )
                        .status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 40))
            // A streamed answer, then a command and a file on the same session.
            let key = try APIKey(sim.key)
            let chunks = Collector()
            let streamed = try await http.stream(
                HTTPRequest.postJSON(
                    url: sim.url + "/v1/completions",
                    json: Data(#"{"model":"sim-model","prompt":"hi","max_tokens":5,"stream":true}"#.utf8)
                ).authorized(key)
            ) { chunks.add($0) }
            #expect(streamed.status == 200)
            #expect(chunks.text.contains("data: [DONE]"))
            #expect(try await remote.output(["echo", "still here"]).contains("still here"))
            #expect(try await remote.readFile("/etc/hostname") != nil)
            // Nothing listens: the login node says so, as an "unknown" (not a server's answer).
            let port = try freePort()
            do {
                _ = try await http.send(HTTPRequest(url: "http://10.77.0.1:\(port)/health", timeout: 5))
                Issue.record("a request to a closed port succeeded")
            } catch {
                #expect(DeploymentStatus.health(after: error) == .unknown, "\(error)")
                #expect("\(error)".contains("the login node test-2222 could not connect"), "\(error)")
            }
            // Loopback goes straight to this machine (where tunnels listen), not through SSH.
            let local = try SimulatorProcess()
            defer { local.stop() }
            try await local.waitHealthy(http: http)
        }
    }
}
