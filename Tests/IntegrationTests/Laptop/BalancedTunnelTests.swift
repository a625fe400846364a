import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// Sends `count` chat requests (every third streamed) to `base` with the key in `key_file` (0600:
/// no key on a command line), `concurrency` at a time; prints `ok failed`, then the endpoint's
/// replica page.
private let client = #"""
    import json, sys, urllib.request, concurrent.futures
    base, count, conc = sys.argv[1], int(sys.argv[3]), int(sys.argv[4])
    key = open(sys.argv[2]).read().strip()
    def one(i):
        body = {"model": "sim", "messages": [{"role": "user", "content": "hi %d" % i}], "max_tokens": 8,
                "stream": i % 3 == 0}
        req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(),
              headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                text = r.read().decode()
                return r.status == 200 and ("[DONE]" in text if i % 3 == 0 else "choices" in text)
        except Exception:
            return False
    with concurrent.futures.ThreadPoolExecutor(conc) as pool:
        results = list(pool.map(one, range(count)))
    print(sum(results), len(results) - sum(results))
    print(urllib.request.urlopen(base + "/vllmctl/replicas", timeout=10).read().decode())
    """#

extension LocalCluster {
    /// Issue 14: one endpoint in front of replicas, from the laptop (over SSH) and on the
    /// login node (`gateway`).
    @Suite struct BalancedEndpointTests {
        /// The replicas served `[requests]` per replica, from the endpoint's page.
        func served(_ page: String) throws -> [Int] {
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(page.utf8)) as? [String: Any])
            let replicas = try #require(object["replicas"] as? [[String: Any]], "\(page)")
            return replicas.compactMap { $0["requests"] as? Int }
        }

        @Test func aTunnelFromTheLaptopBalancesOverTwoReplicasAndTheGatewayToo() async throws {
            let cli = try CLI.laptop()
            try await cli.withDeployment([
                "--cluster", "hpc", "--name", "bal", "--replicas", "2", "--gpus", "2", "--wait-all",
            ]) {
                d in
                let keyFile = try writtenKeyFile(d.apiKey)
                let tunnel = try await cli.run([
                    "tunnel", "bal", "--cluster", "hpc", "--background", "--local-port", "0",
                ])
                #expect(tunnel.status == 0, "stderr: \(tunnel.stderr)")
                let base = try #require(
                    tunnel.stdout.firstMatch(of: /Tunnel open: (http:\/\/127\.0\.0\.1:\d+)/).map {
                        String($0.1)
                    },
                    "\(tunnel.stdout)")
                #expect(tunnel.stdout.contains("2 replicas"), "\(tunnel.stdout)")
                let run = try await sh(
                    TestHost.laptop.prefix + ["python3", "-c", client, base, keyFile, "60", "8"],
                    timeout: .seconds(180))
                let lines = run.stdout.split(separator: "\n", maxSplits: 1).map(String.init)
                #expect(lines.first == "60 0", "\(run.stdout) \(run.stderr)")
                let counts = try served(lines.count > 1 ? lines[1] : "")
                #expect(counts.count == 2 && counts.allSatisfy { $0 >= 10 }, "\(counts)")
                let closed = try await cli.run(["tunnel", "--close", "bal", "--cluster", "hpc"])
                #expect(closed.stdout.contains("Closed the tunnel"), "\(closed.stdout)")

                // The same replicas through the gateway on the login host.
                let login = try CLI()
                let port = try freePort()
                let gateway = Process()
                gateway.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                gateway.arguments =
                    login.environment.map { "\($0)=\($1)" } + [
                        vllmctlBinary, "gateway", "bal", "--port", String(port), "--bind", "127.0.0.1",
                        "--host",
                        "127.0.0.1",
                    ]
                let out = Pipe()
                gateway.standardOutput = out
                gateway.standardError = FileHandle.nullDevice
                try gateway.run()
                defer { if gateway.isRunning { kill(gateway.processIdentifier, SIGKILL) } }
                var answered = false
                for _ in 0..<100 where !answered {
                    try await Task.sleep(for: .milliseconds(100))
                    answered =
                        (try? await sh(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/\(port)"]).status) == 0
                }
                #expect(answered, "the gateway did not listen")
                let viaGateway = try await sh(
                    ["python3", "-c", client, "http://127.0.0.1:\(port)", keyFile, "30", "8"],
                    timeout: .seconds(180))
                #expect(viaGateway.stdout.hasPrefix("30 0"), "\(viaGateway.stdout) \(viaGateway.stderr)")
                kill(gateway.processIdentifier, SIGINT)
                for _ in 0..<50 where gateway.isRunning { try await Task.sleep(for: .milliseconds(100)) }
                #expect(!gateway.isRunning)
                let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                #expect(printed.contains("Gateway: http://127.0.0.1:\(port)/v1"), "\(printed)")
                let file = try #require(printed.firstMatch(of: /Connection info: (\S+)/).map { String($0.1) })
                #expect(!FileManager.default.fileExists(atPath: file), "the gateway's file outlived it")
            }
        }
    }
}
