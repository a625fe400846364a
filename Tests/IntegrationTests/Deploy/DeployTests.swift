import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

extension LocalCluster {
    /// `vllmctl deploy` against the real local Slurm cluster, with the simulator as the server.
    @Suite(.serialized) struct DeployTests {
        let config: Config
        let profile: ClusterProfile
        let terminal = CapturedTerminal()
        let context: Context
        let templates = ScriptTemplates(directories: [repoRoot + "/templates"])

        init() throws {
            config = try localClusterConfig()
            profile = try config.cluster(named: "local")
            context = Context(
                host: LocalHost(), http: CurlHTTPClient(), clock: SystemClock(), terminal: terminal,
                records: DeploymentStore(directory: try temporaryDirectory()), environment: [:])
        }

        var deployer: Deployer {
            Deployer(context: context, config: config, profile: profile, templates: templates)
        }

        @Test func deploysTheSimulatorAndTheInfoFileCurlWorks() async throws {
            try await deployer.withDeployment(DeployRequest(modelOrPreset: "sim")) { outcome in
                let record = try #require(outcome.record)
                let connection = try #require(outcome.connection)
                #expect(record.phase == .ready)
                #expect(APIKey.isGeneratedShape(connection.apiKey))

                // The job wrote the seed's file, byte for byte what ConnectionInfo renders, 0600.
                let text = try String(contentsOfFile: record.infoFile, encoding: .utf8)
                #expect(text == connection.text)
                for file in [
                    record.infoFile, record.deployDir + "/" + DeploymentFiles.infoJSON,
                    record.deployDir + "/" + DeploymentFiles.apiKey,
                ] {
                    let mode =
                        try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
                    #expect(mode == 0o600, "\(file) has mode \(String(mode ?? 0, radix: 8))")
                }
                let sidecar = try JSONDecoder().decode(
                    ConnectionRecord.self,
                    from: Data(
                        contentsOf: URL(fileURLWithPath: record.deployDir + "/" + DeploymentFiles.infoJSON)))
                #expect(sidecar.jobID == record.jobID)
                #expect(sidecar.model == "Qwen/Qwen2.5-0.5B-Instruct")
                #expect(sidecar.readyAt != nil)

                // The curl command from the file, run verbatim through a shell, gets an answer.
                let curl = text.components(separatedBy: "Example curl command:\n")[1]
                let answer = try await sh([
                    "bash", "-c", curl.replacingOccurrences(of: "curl ", with: "curl -sS "),
                ])
                #expect(answer.status == 0, "curl failed: \(answer.stderr)")
                let json = try JSONSerialization.jsonObject(with: Data(answer.stdout.utf8)) as? [String: Any]
                let choices = json?["choices"] as? [[String: Any]]
                #expect((choices?.first?["text"] as? String)?.isEmpty == false)

                // A wrong key gets 401.
                let wrong = try await CurlHTTPClient().send(
                    HTTPRequest(url: connection.baseURL + "/models").authorized(APIKey.generate()))
                #expect(wrong.status == 401)

                // The local record is 0600 and findable by name and id.
                #expect(context.records.find(record.name, cluster: "local")?.jobID == record.jobID)
            }
        }

        @Test func theKeyIsNowhereItShouldNotBe() async throws {
            let request = DeployRequest(modelOrPreset: "sim", name: "secret-check")
            try await deployer.withDeployment(request) { outcome in
                let record = try #require(outcome.record)
                let key = record.apiKey
                // Slurm's job record (command, script path, environment), as Slurm shows it.
                let job = try await sh(["scontrol", "show", "job", record.jobID])
                #expect(job.status == 0)
                #expect(!job.stdout.contains(key))
                let script = try await sh(["scontrol", "write", "batch_script", record.jobID, "-"])
                #expect(script.status == 0)
                #expect(script.stdout.contains("VLLMCTL_SERVER=("))
                #expect(!script.stdout.contains(key))
                // The script file and the job's logs.
                for file in [
                    DeploymentFiles.script, DeploymentFiles.stdout(jobID: record.jobID),
                    DeploymentFiles.stderr(jobID: record.jobID),
                ] {
                    let text =
                        (try? String(contentsOfFile: record.deployDir + "/" + file, encoding: .utf8)) ?? ""
                    #expect(!text.isEmpty, "\(file) is empty")
                    #expect(!text.contains(key), "\(file) holds the key")
                }
                // No process on this machine has the key in its argv.
                for pid in try FileManager.default.contentsOfDirectory(atPath: "/proc")
                where pid.allSatisfy(\.isNumber) {
                    guard let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else {
                        continue
                    }
                    #expect(
                        !String(decoding: cmdline, as: UTF8.self).contains(key),
                        "pid \(pid) has the key in argv")
                }
                #expect(!terminal.text.contains(key))
            }
        }

        @Test func aTakenPortMovesToTheNextFreeOne() async throws {
            try await deployer.withDeployment(DeployRequest(modelOrPreset: "sim", name: "port-a")) { first in
                var flags = DeploySettings()
                flags.port = try #require(first.connection?.port)
                // On the first one's node: on the other node the same port is free.
                flags.nodelist = try #require(first.record?.node)
                let second = try await deployer.deploy(
                    DeployRequest(modelOrPreset: "sim", name: "port-b", flags: flags))
                let a = try #require(first.connection), b = try #require(second.connection)
                #expect(a.port != b.port)
                let log = try String(
                    contentsOfFile: second.plan.deployDir + "/"
                        + DeploymentFiles.stderr(jobID: second.record!.jobID), encoding: .utf8)
                #expect(log.contains("port \(a.port) is taken"))
            }
        }

        /// Two jobs starting on one node can both find a port free; the one whose server loses
        /// the bind must not take the other's /health for its own (it answers, but not to this
        /// job's key), and moves on to the next port.
        @Test func aServerThatLosesItsPortToAnotherIsNotTakenForReady() async throws {
            let dir = try temporaryDirectory()
            let sim = repoRoot + "/slurm/sim/bin/vllm"
            let wrapper = dir + "/serve-after-another"
            // The first start lets another server (another key) take the port, then binds it.
            try """
            #!/bin/bash
            port=""; prev=""
            for a in "$@"; do [[ "$prev" == --port ]] && port="$a"; prev="$a"; done
            if [[ ! -e \(dir)/foreign.pid ]]; then
              VLLM_API_KEY=sk-foreign0foreign0foreign0foreign VLLM_SIM_LOAD_SECONDS=0 \
                setsid \(sim) serve other --host 0.0.0.0 --port "$port" </dev/null >/dev/null 2>&1 &
              echo $! > \(dir)/foreign.pid
              for _ in $(seq 100); do
                [[ "$(exec 3<>/dev/tcp/127.0.0.1/$port && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && head -c 12 <&3)" == *200* ]] && break
                sleep 0.1
              done
            fi
            exec \(sim) serve "$@"
            """.write(toFile: wrapper, atomically: true, encoding: .utf8)
            chmod(wrapper, 0o755)
            var flags = DeploySettings()
            flags.serverCommand = [wrapper]
            flags.port = 18_000 + Int.random(in: 0..<2000)
            let foreign = dir + "/foreign.pid"
            defer {
                let pid = try? String(contentsOfFile: foreign, encoding: .utf8)
                if let pid = pid.flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
                    kill(pid, SIGKILL)
                }
            }
            try await deployer.withDeployment(
                DeployRequest(modelOrPreset: "sim", name: "lost-port", flags: flags)
            ) { outcome in
                #expect(FileManager.default.fileExists(atPath: foreign), "the other server was not started")
                let connection = try #require(outcome.connection)
                #expect(connection.port == flags.port! + 1)
                // The URL deploy hands out is this job's server: it takes this job's key.
                let models = try await CurlHTTPClient().send(
                    HTTPRequest(url: connection.serverURL + "/v1/models").authorized(
                        try APIKey(connection.apiKey)))
                #expect(models.status == 200)
                let log = try String(
                    contentsOfFile: outcome.plan.deployDir + "/"
                        + DeploymentFiles.stderr(jobID: outcome.record!.jobID), encoding: .utf8)
                #expect(log.contains("was taken while the server started"), "\(log)")
            }
        }

        /// A server whose "address already in use" reaches stderr after it has exited (written
        /// by a child of the server, as vLLM's engine process may): the job waits for its
        /// stderr to be complete before it judges the failure, and moves on to the next port.
        @Test func aLateAddressInUseMessageStillMovesToTheNextPort() async throws {
            let dir = try temporaryDirectory()
            let wrapper = dir + "/late-words"
            try """
            #!/bin/bash
            if [[ ! -e \(dir)/failed-once ]]; then
              : > \(dir)/failed-once
              ( sleep 0.5; echo "ERROR: [Errno 98] error while attempting to bind: address already in use" >&2 ) &
              exit 1
            fi
            exec \(repoRoot)/slurm/sim/bin/vllm serve "$@"
            """.write(toFile: wrapper, atomically: true, encoding: .utf8)
            chmod(wrapper, 0o755)
            var flags = DeploySettings()
            flags.serverCommand = [wrapper]
            flags.port = 20_000 + Int.random(in: 0..<2000)
            try await deployer.withDeployment(
                DeployRequest(modelOrPreset: "sim", name: "late-words", flags: flags)
            ) { outcome in
                let connection = try #require(outcome.connection, "\(terminal.stderr)")
                #expect(connection.port == flags.port! + 1)
                let log = try String(
                    contentsOfFile: outcome.plan.deployDir + "/"
                        + DeploymentFiles.stderr(jobID: outcome.record!.jobID), encoding: .utf8)
                #expect(log.contains("was taken while the server started"), "\(log)")
                // The start-up captures are gone.
                let left = try FileManager.default.contentsOfDirectory(atPath: outcome.plan.deployDir)
                #expect(!left.contains { $0.hasPrefix(".server-") }, "\(left)")
            }
        }

        @Test func aServerThatFailsAtStartupIsReportedWithItsLog() async throws {
            try await cancellingJobs(recordedIn: context.records) { _ in
                var flags = DeploySettings()
                flags.vllmArgs = ["--sim-fail-startup", "CUDA out of memory. Tried to allocate 20.00 GiB"]
                let error = await #expect(throws: VLLMCtlError.self) {
                    _ = try await deployer.deploy(
                        DeployRequest(modelOrPreset: "sim", name: "fails", flags: flags))
                }
                guard case .jobEnded(_, let state, _, let logTail) = error else {
                    Issue.record("expected jobEnded, got \(String(describing: error))")
                    return
                }
                #expect(state == "FAILED")
                #expect(logTail.contains("CUDA out of memory"))
                #expect("\(error.map { "\($0)" } ?? "no error")".contains("vllmctl logs"))
            }
        }

        @Test func anUnknownPartitionGetsAPlainError() async throws {
            var flags = DeploySettings()
            flags.partition = "nosuchpartition"
            let error = await #expect(throws: VLLMCtlError.self) {
                _ = try await deployer.deploy(
                    DeployRequest(modelOrPreset: "sim", name: "badpart", flags: flags))
            }
            let text = "\(error.map { "\($0)" } ?? "no error")"
            #expect(text.contains("Invalid partition"))
            #expect(text.contains("sinfo -s"))
            // Nothing half-made is left: no key file, no script, no directory.
            let dirs = try FileManager.default.contentsOfDirectory(atPath: repoRoot + "/.cluster/deployments")
                .filter { $0.hasPrefix("badpart-") }
            #expect(dirs.isEmpty)
            #expect(context.records.all(cluster: "local").allSatisfy { $0.name != "badpart" })
        }

        @Test func dryRunSubmitsNothing() async throws {
            let before = try await sh(["squeue", "--noheader", "--format=%i"]).stdout
            let outcome = try await deployer.deploy(
                DeployRequest(modelOrPreset: "sim", name: "dry", dryRun: true))
            #expect(outcome.record == nil)
            #expect(outcome.script.contains("#SBATCH --job-name=vllmctl-dry"))
            #expect(!FileManager.default.fileExists(atPath: outcome.plan.deployDir))
            #expect(try await sh(["squeue", "--noheader", "--format=%i"]).stdout == before)
        }

        @Test func noWaitReturnsAfterSubmission() async throws {
            try await deployer.withDeployment(
                DeployRequest(modelOrPreset: "sim", name: "nowait", wait: false)
            ) { outcome in
                let record = try #require(outcome.record)
                #expect(record.phase == .submitted)
                #expect(outcome.connection == nil)
                let squeue = Squeue(jobIDs: [record.jobID])
                #expect(squeue.parse(try await sh(squeue.argv).stdout).first?.name == "vllmctl-nowait")
            }
        }
    }
}
