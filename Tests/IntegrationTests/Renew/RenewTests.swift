import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// The steady client (a request every 100 ms, every fourth a stream; `make bench` runs the
/// same one): `python3 steady.py URL_FILE KEY_FILE STOP`. The key is read from a 0600 file,
/// never given on a command line.
private let steadyClient = repoRoot + "/Tests/bench/steady.py"

/// Reads `file` every 10 ms until `stop` exists and checks each read is a whole connection
/// file with the key in the (0600) `key_file`. Prints one JSON object: reads, partial or malformed reads, and the URLs in
/// the order they appeared.
private let fileWatcher = #"""
    import json, os, re, sys, time
    path, key_file, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(key_file) as f: key = f.read().strip()
    pattern = re.compile(r"Server URL: (http://[0-9.]+:[0-9]+)\nAPI Key: (sk-[a-z0-9]{32})\n"
                         r"Example curl command:\ncurl -X POST \"\1/v1/completions\" \\\n.*\n  -d '.*'\n\Z", re.S)
    reads, bad, urls, samples = 0, 0, [], []
    while not os.path.exists(stop):
        try:
            with open(path) as f: text = f.read()
        except FileNotFoundError:
            text = None
        if text is not None:
            reads += 1
            m = pattern.match(text)
            if not m or m.group(2) != key:
                bad += 1
                if len(samples) < 3: samples.append(text)
            elif not urls or urls[-1] != m.group(1):
                urls.append(m.group(1))
        time.sleep(0.01)
    print(json.dumps({"reads": reads, "bad": bad, "urls": urls, "samples": samples}))
    """#

extension LocalCluster {
    /// Issue 15: a renewing deployment outlives its time limit. The job submits its successor
    /// (same script, directory, key file and name), which publishes its connection files once
    /// ready; the predecessor leaves the endpoints, drains and ends itself.
    @Suite struct RenewTests {
        /// The deployment's jobs in the queue (`JOBID STATE`), by job id.
        static func queued(_ name: String) async throws -> [(id: String, state: String)] {
            let out = try await sh(["squeue", "-h", "-n", JobName.of(name), "-o", "%i %T"]).stdout
            return out.split(separator: "\n").compactMap {
                let f = $0.split(separator: " ").map(String.init)
                return f.count == 2 ? (f[0], f[1]) : nil
            }.sorted { (Int($0.0) ?? 0) < (Int($1.0) ?? 0) }
        }

        /// A port away from the 8000s that other tests' servers take: the simulator binds
        /// only after its load, so a port taken meanwhile costs a whole load again.
        static var port: [String] { ["--port", String(Int.random(in: 20000...29000))] }

        /// Cancels every job named after this test's deployment (the name is drawn per run, so
        /// they are this test's own), pass or fail.
        static func cancelChain(_ name: String) async {
            for _ in 0..<3 {
                let ids = ((try? await queued(name)) ?? []).map(\.id)
                if ids.isEmpty { return }
                _ = try? await sh(Scancel(jobIDs: ids).argv)
                try? await Task.sleep(for: .seconds(1))
            }
        }

        /// Slurm's accounting of the deployment's jobs: `JOBID|STATE` lines, and split.
        static func accounting(_ name: String) async throws -> (text: String, rows: [[String]]) {
            let text = try await sh([
                "sacct", "-n", "-X", "-P", "--name", JobName.of(name), "-S", "now-1hours", "-o",
                "JobID,State",
            ]).stdout
            return (text, text.split(separator: "\n").map { $0.split(separator: "|").map(String.init) })
        }

        /// The job id in the deployment's JSON sidecar (nil while there is none).
        static func publishedJob(_ dir: String) -> String? {
            guard let data = FileManager.default.contents(atPath: dir + "/" + DeploymentFiles.infoJSON),
                let info = try? JSONDecoder().decode(ConnectionRecord.self, from: data)
            else { return nil }
            return info.endedAt == nil ? info.jobID : nil
        }

        /// Opens `vllmctl tunnel NAME --background` on the laptop (profile hpc); its base URL.
        static func backgroundTunnel(_ cli: CLI, to name: String) async throws -> String {
            let tunnel = try await cli.run([
                "tunnel", name, "--cluster", "hpc", "--background", "--local-port", "0",
            ])
            #expect(tunnel.status == 0, "stderr: \(tunnel.stderr)")
            return try #require(
                tunnel.stdout.firstMatch(of: /Tunnel open: (http:\/\/127\.0\.0\.1:\d+)/).map { String($0.1) },
                "\(tunnel.stdout)")
        }

        /// Runs the curl command of the connection file on the login host.
        static func curlFromFile(_ dir: String) async throws -> CommandResult {
            let text = try String(contentsOfFile: dir + "/" + DeploymentFiles.infoText, encoding: .utf8)
            let curl = try #require(text.range(of: "curl -X POST").map { String(text[$0.lowerBound...]) })
            let command = curl.trimmingCharacters(in: .whitespacesAndNewlines)
            return try await sh(["bash", "-c", command + " --silent --show-error --max-time 20"])
        }

        @Test func twoHandoversUnderSteadyTrafficFromTheLaptopFailNoRequest() async throws {
            var cli = try CLI.laptop()
            // A share directory, for the shared copy that follows the chain.
            let shareDir = try temporaryDirectory()
            let config = try String(contentsOfFile: cli.configPath, encoding: .utf8)
            let withShare = config.replacingOccurrences(
                of: "    partition: debug\n", with: "    partition: debug\n    share_dir: \(shareDir)\n")
            #expect(withShare != config)
            cli.configPath = try temporaryDirectory() + "/config.yaml"
            try withShare.write(toFile: cli.configPath, atomically: true, encoding: .utf8)
            let name = "renew-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
            let scratch = try temporaryDirectory()
            let stop = scratch + "/stop"
            try await running(
                {
                    let d = try await cli.deploy(
                        [
                            "--cluster", "hpc", "--name", name, "--gpus", "0", "--renew", "--time", "3",
                            "--timeout", "50", "--renew-margin", "60", "--drain-timeout", "20", "--setup",
                            "export VLLM_SIM_LOAD_SECONDS=20",
                        ] + Self.port)
                    let first = d.jobID
                    #expect(Self.publishedJob(d.deployDir) == first)
                    let before = try await Self.curlFromFile(d.deployDir)
                    #expect(before.stdout.contains("choices"), "\(before.stdout) \(before.stderr)")
                    let share = try await cli.run(["info", name, "--share", "--cluster", "hpc"])
                    let sharedPath = try #require(
                        share.stdout.firstMatch(of: /Shared (\S+) \(mode 0640\)/).map { String($0.1) },
                        "\(share.stdout) \(share.stderr)")

                    let base = try await Self.backgroundTunnel(cli, to: name)

                    // Traffic from the laptop, and a reader of the connection file on the cluster.
                    // The key in 0600 files, never on a command line: the laptop's copy for the
                    // client, the deployment's own for the reader.
                    let keyFile = try writtenKeyFile(d.apiKey)
                    try base.write(toFile: scratch + "/url", atomically: true, encoding: .utf8)
                    let trafficArgv =
                        TestHost.laptop.prefix + ["python3", steadyClient, scratch + "/url", keyFile, stop]
                    let readerArgv = [
                        "python3", "-c", fileWatcher, d.deployDir + "/" + DeploymentFiles.infoText,
                        d.deployDir + "/" + DeploymentFiles.apiKey, stop,
                    ]
                    let traffic = Task { try await sh(trafficArgv, timeout: .seconds(600)) }
                    let reads = Task { try await sh(readerArgv, timeout: .seconds(600)) }

                    // Two handovers: the third job has published its files and the first two ended.
                    var published: [String] = [first]
                    var queue: [(id: String, state: String)] = []
                    for _ in 0..<420 {
                        try await Task.sleep(for: .seconds(1))
                        if let now = Self.publishedJob(d.deployDir), now != published.last {
                            published.append(now)
                        }
                        queue = try await Self.queued(name)
                        if published.count >= 3,
                            queue.filter({ $0.state == "RUNNING" }).map(\.id) == [published[2]]
                        {
                            break
                        }
                    }
                    _ = FileManager.default.createFile(atPath: stop, contents: nil)
                    let client = try await traffic.value
                    let watcher = try await reads.value

                    #expect(published.count >= 3, "jobs that published: \(published); queue: \(queue)")
                    let result = try #require(
                        try JSONSerialization.jsonObject(with: Data(client.stdout.utf8)) as? [String: Any],
                        "\(client.stdout) \(client.stderr)")
                    print("renew: traffic \(client.stdout.trimmingCharacters(in: .whitespacesAndNewlines))")
                    #expect(result["failed"] as? Int == 0, "\(result)")
                    #expect((result["ok"] as? Int ?? 0) > 500, "\(result)")
                    let file = try #require(
                        try JSONSerialization.jsonObject(with: Data(watcher.stdout.utf8)) as? [String: Any],
                        "\(watcher.stdout) \(watcher.stderr)")
                    #expect(file["bad"] as? Int == 0, "\(file)")
                    #expect((file["urls"] as? [String])?.count ?? 0 >= 3, "\(file)")

                    let after = try await Self.curlFromFile(d.deployDir)
                    #expect(after.stdout.contains("choices"), "\(after.stdout) \(after.stderr)")
                    let current = try #require(Self.publishedJob(d.deployDir))
                    #expect(current != first)
                    // `info NAME` and `status` follow the chain from the first job's record.
                    let url = try #require((file["urls"] as? [String])?.last)
                    let info = try await cli.run(["info", name, "--cluster", "hpc"])
                    #expect(info.stdout.contains("Server URL: \(url)"), "\(info.stdout) \(info.stderr)")
                    // The successor's environment as Slurm keeps it (slurmctld's state: what the
                    // job record carries) has its renewal number and not the key; no log has it.
                    let state = repoRoot + "/.cluster/spool/slurmctld"
                    let hashes = try FileManager.default.contentsOfDirectory(atPath: state).filter {
                        $0.hasPrefix("hash.")
                    }
                    let environment = try #require(
                        hashes.lazy.compactMap {
                            FileManager.default.contents(atPath: "\(state)/\($0)/job.\(current)/environment")
                        }.first, "no environment of job \(current) in \(state)")
                    let variables = environment.split(separator: 0).map {
                        String(decoding: $0, as: UTF8.self)
                    }
                    #expect(
                        variables.contains("VLLMCTL_RENEWAL=2"),
                        "\(variables.filter { $0.hasPrefix("VLLMCTL") })")
                    #expect(!variables.contains { $0.contains(d.apiKey) })
                    for id in published {
                        for file in [DeploymentFiles.stdout(jobID: id), DeploymentFiles.stderr(jobID: id)] {
                            let text =
                                (try? String(contentsOfFile: d.deployDir + "/" + file, encoding: .utf8)) ?? ""
                            #expect(!text.isEmpty && !text.contains(d.apiKey), "\(file)")
                        }
                    }
                    // The shared copy follows the chain too (group-readable, as first shared).
                    let shared = try String(contentsOfFile: sharedPath, encoding: .utf8)
                    #expect(shared.hasPrefix("Server URL: \(url)\n"), "\(shared)")
                    let mode =
                        try FileManager.default.attributesOfItem(atPath: sharedPath)[.posixPermissions]
                        as? Int
                    #expect(mode == 0o640)
                    let status = try await cli.run(["status", "--cluster", "hpc"])
                    #expect(
                        status.stdout.contains("Renewal 2 of \(name) (job \(current), waiting)"),
                        "\(status.stdout)")

                    // Accounting: separate jobs with the tag; the predecessors ended by themselves.
                    let sacct = try await Self.accounting(name)
                    for id in published.prefix(2) {
                        #expect(sacct.rows.contains([id, "COMPLETED"]), "\(sacct.text)")
                    }

                    let down = try await cli.run(["teardown", name, "--cluster", "hpc"])
                    #expect(down.status == 0, "\(down.stdout) \(down.stderr)")
                    // The tunnel and the shared copy that followed the chain end with it.
                    #expect(down.stdout.contains("Closed the tunnel \(base)/v1"), "\(down.stdout)")
                    let notice = try String(contentsOfFile: sharedPath, encoding: .utf8)
                    #expect(notice.hasPrefix(SharedConnectionFile.stoppedPrefix), "\(notice)")
                    try await Task.sleep(for: .seconds(2))
                    #expect(try await Self.queued(name).isEmpty)
                    let stopped = try await Self.accounting(name).text
                    #expect(!stopped.contains("RUNNING") && !stopped.contains("PENDING"), "\(stopped)")
                },
                thenAwaiting: {
                    _ = FileManager.default.createFile(atPath: stop, contents: nil)
                    await Self.cancelChain(name)
                    await cli.cancelAll()
                })
        }
    }
}
