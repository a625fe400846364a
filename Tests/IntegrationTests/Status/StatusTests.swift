import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

extension LocalCluster {
    /// status, info, logs and metrics through the CLI, against the local cluster.
    @Suite struct StatusTests {
        func statusReport(_ cli: CLI, _ args: [String] = []) async throws -> StatusReport {
            let r = try await cli.run(["status", "--json"] + args)
            #expect(r.status == 0, "status failed: \(r.stderr)")
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            return try decoder.decode(StatusReport.self, from: Data(r.stdout.utf8))
        }

        @Test func aPendingJobShowsItsReasonAndTheRunningOneIsHealthy() async throws {
            let cli = try CLI()
            try await cli.cleaningUp {
                // node2 has 2 GPUs: the first takes them both, the second must wait.
                _ = try await cli.deploy(
                    ["--name", "big", "--gpus", "2", "--nodelist", "node2", "--time", "00:09:00"])
                _ = try await cli.deploy(
                    ["--name", "waits", "--gpus", "2", "--nodelist", "node2", "--no-wait"])
                try await Task.sleep(for: .seconds(2))
                let report = try await statusReport(cli)
                let table = try await cli.run(["status"])
                let detail = try await cli.run(["status", "big"])
                await cli.cancelAll()
                #expect(table.stdout.contains("less than 10 minutes of walltime left"))
                #expect(detail.stdout.contains("Resources:"))
                #expect(detail.stdout.contains("TresPerNode=gres:gpu:2"), "\(detail.stdout)")
                #expect(detail.stdout.contains("Models:      sim"))
                #expect(detail.stdout.contains("vllm-sim, a simulator"))
                #expect(report.schema == 2)
                #expect(report.cluster == "local")
                let big = try #require(report.deployments.first { $0.name == "big" })
                let waits = try #require(report.deployments.first { $0.name == "waits" })
                #expect(big.state == "RUNNING")
                #expect(big.health == .healthy)
                // The node's own address, as on a real cluster.
                #expect(big.url?.hasPrefix("http://10.77.0.12:") == true, "\(big.url ?? "")")
                #expect(big.node == "node2")
                // 9 minutes of walltime: flagged.
                #expect(big.walltimeLow)
                #expect(waits.walltimeLow == false)
                #expect(big.recorded)
                #expect(waits.state == "PENDING")
                #expect(waits.reason == "Resources" || waits.reason == "Priority")
                #expect(table.stdout.contains("PENDING (\(waits.reason ?? ""))"))
            }
        }

        @Test func plainJobsOfTheUserAreNotShown() async throws {
            let cli = try CLI()
            let plain = try await sh([
                "sbatch", "--parsable", "--job-name=not-vllmctl", "--output=/dev/null", "--wrap", "sleep 60",
            ])
            let id = plain.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            // The job must exist for the check to mean anything.
            try #require(plain.status == 0 && isJobID(id), "sbatch failed: \(plain.stderr)")
            let squeue = Squeue(jobIDs: [id])
            #expect(squeue.parse(try await sh(squeue.argv).stdout).first?.name == "not-vllmctl")
            let report = try await cancellingJobs { submitted in
                submitted.add(id)
                return try await statusReport(cli)
            }
            #expect(!report.deployments.contains { $0.jobID == id })
        }

        @Test func anEndedJobIsFoundThroughSacctWithoutARecord() async throws {
            let cli = try CLI()
            try await cli.withDeployment(["--name", "ends", "--no-wait"]) { deployed in
                let id = try #require(deployed.object["job_id"] as? String)
                _ = try await sh(["scancel", id])
                // Wait until it has left squeue and slurmdbd has its final state.
                var ended = false
                for _ in 0..<90 where !ended {
                    try await Task.sleep(for: .seconds(1))
                    let squeue = Squeue(jobIDs: [id])
                    let sacct = Sacct(jobIDs: [id])
                    let live = squeue.parse(try await sh(squeue.argv).stdout)
                    let accounted = sacct.parse(try await sh(sacct.argv).stdout)
                    ended = live.isEmpty && accounted.first?.state == .cancelled
                }
                #expect(ended)
                // Another machine's view: no local record at all.
                let elsewhere = try CLI()
                let live = try await statusReport(elsewhere)
                #expect(!live.deployments.contains { $0.jobID == id })
                // slurmdbd answers per-user queries a moment after per-job ones: poll briefly.
                var found: DeploymentStatus?
                for _ in 0..<20 where found == nil {
                    found = try await statusReport(elsewhere, ["--all"]).deployments.first { $0.jobID == id }
                    if found == nil { try await Task.sleep(for: .seconds(1)) }
                }
                let row = try #require(found)
                #expect(row.state == "CANCELLED")
                #expect(row.name == "ends")
                #expect(!row.recorded)
                #expect(row.deployDir?.contains("/ends-") == true)
            }
        }

        @Test func infoEnvEvaluatesAndCurlGetsAnAnswer() async throws {
            let cli = try CLI()
            try await cli.withDeployment(["--name", "envcheck"]) { deployed in
                let env = try await cli.run(["info", "envcheck", "--env"])
                #expect(env.status == 0, "\(env.stderr)")
                let script =
                    env.stdout + """
                        curl -sS -H "Authorization: Bearer $OPENAI_API_KEY" -H 'Content-Type: application/json' \
                          -d '{"model":"sim","messages":[{"role":"user","content":"hi"}],"max_tokens":5}' \
                          "$OPENAI_BASE_URL/chat/completions"
                        """
                let answer = try await sh(["bash", "-c", script])
                await cli.cancelAll()
                #expect(answer.status == 0)
                let json = try JSONSerialization.jsonObject(with: Data(answer.stdout.utf8)) as? [String: Any]
                #expect((json?["choices"] as? [[String: Any]])?.isEmpty == false)
                // The default output is the job's file, byte for byte.
                let infoFile = try #require(deployed.object["info_file"] as? String)
                let text = try await cli.run(["info", "envcheck"])
                #expect(text.stdout == (try String(contentsOfFile: infoFile, encoding: .utf8)))
            }
        }

        @Test func logsFollowEndsWhenTheJobEnds() async throws {
            let cli = try CLI()
            try await cli.withDeployment(["--name", "follow"]) { deployed in
                let id = try #require(deployed.object["job_id"] as? String)
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                process.arguments =
                    cli.environment.map { "\($0)=\($1)" } + [
                        vllmctlBinary, "logs", "follow", "--follow", "--stderr",
                    ]
                let outPath = try temporaryDirectory() + "/out"
                _ = FileManager.default.createFile(atPath: outPath, contents: nil)
                process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
                process.standardError = FileHandle.nullDevice
                try process.run()
                try await Task.sleep(for: .seconds(2))
                #expect(process.isRunning, "logs --follow returned while the job runs")
                _ = try await sh(["scancel", id])
                for _ in 0..<150 where process.isRunning { try await Task.sleep(for: .milliseconds(100)) }
                #expect(!process.isRunning, "logs --follow did not end with the job")
                if process.isRunning { process.terminate() }
                let out = try String(contentsOfFile: outPath, encoding: .utf8)
                #expect(out.contains("vllmctl: ready"))
                #expect(
                    out.contains("vllmctl: stopped"),
                    "the lines written as the job ended are missing:\n\(out)")
            }
        }

        @Test func metricsShowTheSimulatorsNumbers() async throws {
            let cli = try CLI()
            try await cli.withDeployment(["--name", "load"]) { deployed in
                let url = try #require(deployed.object["url"] as? String)
                let key = try APIKey(try #require(deployed.object["api_key"] as? String))
                // Load while metrics samples: completions of 20 tokens each.
                let load = Task {
                    let http = CurlHTTPClient()
                    for _ in 0..<30 {
                        let body = Data(#"{"model":"sim","prompt":"count","max_tokens":20}"#.utf8)
                        _ = try? await http.send(
                            HTTPRequest.postJSON(url: url + "/completions", json: body).authorized(key))
                    }
                }
                let metrics = try await cli.run(["metrics", "load", "--interval", "2"])
                load.cancel()
                await cli.cancelAll()
                #expect(metrics.status == 0, "\(metrics.stderr)")
                let line = metrics.stdout
                #expect(line.contains("running"))
                #expect(line.contains("kv-cache"))
                let generation = line.components(separatedBy: "generation ").last?.split(separator: " ").first
                    .flatMap { Double($0) }
                #expect((generation ?? 0) > 0, "no generation throughput in: \(line)")
            }
        }

        @Test func shareMakesAGroupReadableCopyAndSaysSo() async throws {
            var cli = try CLI()
            let shareDir = try temporaryDirectory()
            let config = try String(contentsOfFile: repoRoot + "/.cluster/vllmctl.yaml", encoding: .utf8)
                .replacingOccurrences(
                    of: "    partition: debug\n", with: "    partition: debug\n    share_dir: \(shareDir)\n")
            cli.configPath = try temporaryDirectory() + "/config.yaml"
            try config.write(toFile: cli.configPath, atomically: true, encoding: .utf8)
            try await cli.withDeployment(["--name", "shared"]) { deployed in
                let jobID = try #require(deployed.object["job_id"] as? String)
                let shared = try await cli.run(["info", "shared", "--share"])
                #expect(shared.status == 0, "\(shared.stderr)")
                #expect(shared.stderr.contains("Everyone in that file's group"))
                #expect(shared.stderr.contains("`root`"), "\(shared.stderr)")
                // Named by user and job: two users' `sim` never collide (issue 12 item 11).
                let path = shareDir + "/\(LocalSSH.user)-shared-\(jobID)-server_connection_info.txt"
                let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
                #expect(mode == 0o640)
                let original = try String(
                    contentsOfFile: try #require(deployed.object["info_file"] as? String), encoding: .utf8)
                #expect(try String(contentsOfFile: path, encoding: .utf8) == original)
                // The deployment's own file stays private.
                let own =
                    try FileManager.default.attributesOfItem(
                        atPath: try #require(deployed.object["info_file"] as? String))[.posixPermissions]
                    as? Int
                #expect(own == 0o600)
                // Someone else's file where ours would go is refused and never replaced.
                let second = try await cli.deploy(["--name", "shared2"])
                let secondID = try #require(second.object["job_id"] as? String)
                let planted = shareDir + "/\(LocalSSH.user)-shared2-\(secondID)-server_connection_info.txt"
                try "theirs\n".write(toFile: planted, atomically: true, encoding: .utf8)
                #expect(chown(planted, 65534, 65534) == 0)
                let refused = try await cli.run(["info", "shared2", "--share"])
                #expect(refused.status != 0)
                #expect(refused.stderr.contains("belongs to nobody"), "\(refused.stderr)")
                let down = try await cli.run(["teardown", "shared", "shared2", "--yes"])
                #expect(down.status == 0, "\(down.stderr)")
                #expect(try String(contentsOfFile: path, encoding: .utf8).hasPrefix("Stopped at "))
                #expect(try String(contentsOfFile: planted, encoding: .utf8) == "theirs\n")
                await cli.cancelAll()
            }
        }
    }
}
