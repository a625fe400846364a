import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Test func startupDoesNotLoadLibcurl() async throws {
    // libcurl is dlopened on the first HTTP request; linking it would cost every run ~8 ms.
    let ldd = try await sh(["ldd", vllmctlBinary])
    #expect(ldd.status == 0)
    #expect(ldd.stdout.contains("libc.so"))
    #expect(!ldd.stdout.contains("libcurl"), "\(ldd.stdout)")
}

extension LocalCluster {
    @Suite struct CLITests {
        @Test func deployJSONHasTheDocumentedKeys() async throws {
            let cli = try CLI()
            let deployed = try await cli.withDeployment(["--name", "cli-json"]) { $0 }
            let object = deployed.object
            for key in ["job_id", "name", "url", "api_key", "model", "node", "info_file"] {
                #expect(object[key] != nil, "missing \(key)")
            }
            #expect(object["name"] as? String == "cli-json")
            #expect((object["url"] as? String)?.hasSuffix("/v1") == true)
            #expect(APIKey.isGeneratedShape(object["api_key"] as? String ?? ""))
            // The key is printed on stdout where asked for, never on stderr (logs).
            #expect(!deployed.result.stderr.contains(object["api_key"] as? String ?? "-"))
        }

        @Test func interruptLeavesTheJobRunningAndSaysHowToCancel() async throws {
            let cli = try CLI()
            try await cli.cleaningUp {
                // A long load keeps deploy waiting; SIGINT arrives while it waits.
                let argv =
                    ["env"] + cli.environment.map { "\($0)=\($1)" }
                    + [
                        vllmctlBinary, "deploy", "sim", "--name", "cli-int", "--setup",
                        "export VLLM_SIM_LOAD_SECONDS=60",
                    ]
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                process.arguments = Array(argv.dropFirst())
                let errPath = try temporaryDirectory() + "/stderr"
                _ = FileManager.default.createFile(atPath: errPath, contents: nil)
                process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
                process.standardOutput = FileHandle.nullDevice
                try process.run()
                let store = DeploymentStore(directory: cli.stateDir)
                var record: DeploymentRecord?
                for _ in 0..<100 where record == nil {
                    try await Task.sleep(for: .milliseconds(100))
                    record = store.all(cluster: "local").first
                }
                let job = try #require(record)
                try await Task.sleep(for: .seconds(1))
                kill(process.processIdentifier, SIGINT)
                for _ in 0..<50 where process.isRunning { try await Task.sleep(for: .milliseconds(100)) }
                #expect(!process.isRunning)
                #expect(process.terminationStatus == 130)
                let stderr = try String(contentsOfFile: errPath, encoding: .utf8)
                #expect(stderr.contains("keeps running"))
                #expect(stderr.contains(job.jobID))
                let squeue = Squeue(jobIDs: [job.jobID])
                let state = squeue.parse(try await sh(squeue.argv).stdout).first?.state
                #expect(state == .running || state == .pending)
                await cli.cancelAll()
            }
        }

        @Test func concurrentDeploysTakeDistinctNames() async throws {
            let cli = try CLI()
            async let a = cli.run(["deploy", "sim", "--no-wait", "--json"])
            async let b = cli.run(["deploy", "sim", "--no-wait", "--json"])
            let results = try await [a, b]
            await cli.cancelAll()
            let names = try results.map { r -> String in
                #expect(r.status == 0, "stderr: \(r.stderr)")
                let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
                return o?["name"] as? String ?? ""
            }
            #expect(Set(names) == ["sim", "sim-2"])
            let records = DeploymentStore(directory: cli.stateDir).all(cluster: "local")
            #expect(records.count == 2)
        }

        @Test func theSidecarRecordsTheEnd() async throws {
            let cli = try CLI()
            let result = try await cli.run(["deploy", "sim", "--json", "--name", "cli-end"])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            let dir = ((object["info_file"] as? String ?? "") as NSString).deletingLastPathComponent
            await cli.cancelAll()
            var ended: String?
            for _ in 0..<100 where ended == nil {
                try await Task.sleep(for: .milliseconds(100))
                let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + DeploymentFiles.infoJSON))
                ended = try JSONDecoder().decode(ConnectionRecord.self, from: data).endedAt
            }
            #expect(ended != nil)
        }

        @Test func configInitWritesAPrivateFileThatParses() async throws {
            var cli = try CLI()
            cli.configPath = try temporaryDirectory() + "/sub/config.yaml"
            let result = try await cli.run(["config", "init"])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            let mode =
                try FileManager.default.attributesOfItem(atPath: cli.configPath)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            #expect(try await cli.run(["config", "check"]).status == 0)
            let again = try await cli.run(["config", "init"])
            #expect(again.status != 0)
            #expect(again.stderr.contains("--force"))
        }

        @Test func aBadConfigNamesFileLineAndKey() async throws {
            var cli = try CLI()
            cli.configPath = try temporaryDirectory() + "/config.yaml"
            try "clusters:\n  local:\n    partition: debug\n    gpu: 2\n".write(
                toFile: cli.configPath, atomically: true, encoding: .utf8)
            let result = try await cli.run(["deploy", "sim", "--dry-run"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("\(cli.configPath):4"))
            #expect(result.stderr.contains("clusters.local.gpu"))
        }

        @Test func userTemplatesOverrideAndAreListed() async throws {
            var cli = try CLI()
            let configDir = try temporaryDirectory()
            try FileManager.default.createDirectory(
                atPath: configDir + "/vllmctl/templates", withIntermediateDirectories: true)
            try "#!/bin/bash\n#SBATCH --job-name={{{job_name}}}\n# custom {{model}}\n{{> vllmctl-runtime}}\n"
                .write(
                    toFile: configDir + "/vllmctl/templates/mine.sbatch.mustache", atomically: true,
                    encoding: .utf8)
            cli.extraEnvironment["XDG_CONFIG_HOME"] = configDir
            let list = try await cli.run(["templates"])
            #expect(list.stdout.contains("single-node"))
            #expect(list.stdout.contains("mine"))
            let dry = try await cli.run(["deploy", "sim", "--template", "mine", "--dry-run"])
            #expect(dry.status == 0, "stderr: \(dry.stderr)")
            #expect(dry.stdout.contains("# custom Qwen/Qwen2.5-0.5B-Instruct"))
            #expect(dry.stdout.contains("vllmctl runtime"))
            let missing = try await cli.run(["deploy", "sim", "--template", "nope", "--dry-run"])
            #expect(missing.status != 0)
            #expect(missing.stderr.contains("Known templates"))
        }

        @Test func nonsenseFlagsFailBeforeSubmission() async throws {
            let cli = try CLI()
            let result = try await cli.run(["deploy", "sim", "--gpus", "0", "--tensor-parallel-size", "2"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("needs 2 GPUs"))
            #expect(DeploymentStore(directory: cli.stateDir).all(cluster: "local").isEmpty)
            let time = try await cli.run(["deploy", "sim", "--time", "soon"])
            #expect(time.stderr.contains("HH:MM:SS"))
            // Numbers out of range are clear errors (exit 1 or 64), never a trap (exit 132/133).
            for args in [
                ["status", "--watch", "--interval", "1e300"], ["metrics", "x", "--interval", "1e300"],
                ["teardown", "--stale", "--grace", "99999999999999999999:00", "--dry-run"],
                ["query", "--url", "http://127.0.0.1:9", "--connect-timeout", "1e300", "--prompt", "x"],
                ["deploy", "sim", "--timeout", "1e300", "--dry-run"],
            ] {
                let r = try await cli.run(args)
                #expect(r.status == 1 || r.status == 64, "\(args): \(r.status) \(r.stderr)")
                #expect(
                    !r.stderr.contains("Fatal error") && !r.stderr.contains("crashed"), "\(args): \(r.stderr)"
                )
            }
        }

        /// The reproduction: a job name holding a newline and the old field separator
        /// made a plain job of the user read as a deployment named `forged`, which teardown
        /// would then cancel.
        @Test func aForgedJobNameNeitherShowsNorCancelsAPlainJob() async throws {
            let cli = try CLI()
            let plain = try Sbatch.parseJobID(
                try await sh([
                    "sbatch", "--parsable", "--hold", "--job-name=plain-forge-target", "--output=/dev/null",
                    "--wrap", "sleep 900",
                ]), argv: [])
            let name = "x\n\(plain)\u{1F}vllmctl-forged"
            let forger = try Sbatch.parseJobID(
                try await sh([
                    "sbatch", "--parsable", "--hold", "--job-name=\(name)", "--output=/dev/null", "--wrap",
                    "sleep 900",
                ]), argv: [])
            let status = try await cli.run(["status", "--json"])
            let teardown = try await cli.run(["teardown", "--all", "--dry-run"])
            _ = try await sh(["scancel", plain, forger])
            #expect(status.status == 0, "\(status.stderr)")
            #expect(!status.stdout.contains("forged"), "\(status.stdout)")
            #expect(!status.stdout.contains("\"\(plain)\""), "\(status.stdout)")
            #expect(!teardown.stdout.contains(plain), "\(teardown.stdout)")
            #expect(!teardown.stdout.contains(forger), "\(teardown.stdout)")
        }

        /// sbatch succeeded but the record could not be saved (here: a directory stands where the
        /// record file goes; in life, a full disk or quota). The job must not run untracked.
        @Test func aJobWhoseRecordCannotBeSavedIsCancelled() async throws {
            let cli = try CLI()
            let probe = try Sbatch.parseJobID(
                try await sh(["sbatch", "--parsable", "--hold", "--output=/dev/null", "--wrap", "true"]),
                argv: [])
            _ = try await sh(["scancel", probe])
            let dir = cli.stateDir + "/local"
            for id in (Int(probe)! + 1)...(Int(probe)! + 40) {
                try FileManager.default.createDirectory(
                    atPath: "\(dir)/\(id).json", withIntermediateDirectories: true)
            }
            let r = try await cli.run(["deploy", "sim", "--name", "unrecorded"])
            #expect(r.status != 0)
            #expect(r.stderr.contains("its local record could not be saved"), "\(r.stderr)")
            #expect(r.stderr.contains("vllmctl cancelled it"), "\(r.stderr)")
            let id = try #require(
                r.stderr.firstMatch(of: /job (\d+) \(vllmctl-unrecorded\)/).map { String($0.1) })
            let squeue = Squeue(jobIDs: [id])
            var state = squeue.parse(try await sh(squeue.argv).stdout).first?.state
            for _ in 0..<20 where state != nil && !(state?.isFinal ?? true) {
                try await Task.sleep(for: .milliseconds(250))
                state = squeue.parse(try await sh(squeue.argv).stdout).first?.state
            }
            #expect(state == nil || state?.isFinal == true, "\(String(describing: state))")
        }

        /// A server bound to its node's address only (not loopback) still becomes ready: the job
        /// probes the address it binds (issue 12 item 8).
        @Test func aServerBoundToTheNodeAddressBecomesReady() async throws {
            let cli = try CLI()
            let r = try await cli.run([
                "deploy", "sim", "--name", "bound", "--nodelist", "node1", "--bind-host", "10.77.0.11",
                "--json",
                "--timeout", "60",
            ])
            await cli.cancelAll()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(
                r.stdout.contains("\"url\":\"http:\\/\\/10.77.0.11:")
                    || r.stdout.contains("http://10.77.0.11:"), "\(r.stdout)")
        }

        /// A key with shell code, or the key among the server's arguments (argv and the stored
        /// batch script are readable by every user), is refused before anything is submitted.
        @Test func unsafeKeysAreRefusedBeforeSubmission() async throws {
            let cli = try CLI()
            let file = cli.stateDir + "/key"
            try "sk-0123456789abcdef$(touch${IFS}/tmp/vllmctl-pwned)\n".write(
                toFile: file, atomically: true, encoding: .utf8)
            let hostile = try await cli.run([
                "deploy", "sim", "--name", "hostile-key", "--api-key-file", file,
            ])
            #expect(hostile.status != 0)
            #expect(hostile.stderr.contains("letters, digits and `-._~+/=`"), "\(hostile.stderr)")
            for args in [
                ["--", "--api_key=sk-leak0123456789abc"], ["--", "--api-k", "sk-leak0123456789abc"],
            ] {
                let leak = try await cli.run(["deploy", "sim", "--name", "leaky"] + args)
                #expect(leak.status != 0, "\(args)")
                #expect(
                    leak.stderr.contains("where every user of the cluster could read it"), "\(leak.stderr)")
            }
            #expect(DeploymentStore(directory: cli.stateDir).all(cluster: "local").isEmpty)
            let queue = try await sh([
                "squeue", "--noheader", "--name=vllmctl-hostile-key,vllmctl-leaky", "-o", "%i",
            ])
            #expect(queue.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
            #expect(!FileManager.default.fileExists(atPath: "/tmp/vllmctl-pwned"))
        }

        /// `status` as typed skips ArgumentParser (StatusCommand.shortcut). Through the binary
        /// it shows what the parsed command shows: `--interval 5` changes nothing but sends the
        /// same table through ArgumentParser.
        @Test func theStatusShortcutShowsWhatTheParsedCommandShows() async throws {
            let cli = try CLI()
            let submitted = try await sh([
                "sbatch", "--parsable", "--hold", "--job-name=vllmctl-cli-shortcut", "--output=/dev/null",
                "--wrap", "true",
            ])
            let job = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            try #require(submitted.status == 0 && isJobID(job), "\(submitted.stderr)")
            try await running(
                {
                    // Other tests' jobs come and go meanwhile: only this job's row is compared.
                    func row(_ args: [String]) async throws -> String {
                        let result = try await cli.run(args)
                        #expect(result.status == 0, "\(args): \(result.stderr)")
                        return result.stdout.split(separator: "\n").first { $0.contains("  \(job)  ") }.map(
                            String.init) ?? ""
                    }
                    let shortcut = try await row(["status"])
                    #expect(shortcut.hasPrefix("cli-shortcut ") && shortcut.contains("PENDING (JobHeldUser)"))
                    #expect(shortcut == (try await row(["status", "--interval", "5"])))
                    func json(_ args: [String]) async throws -> NSDictionary? {
                        let result = try await cli.run(args)
                        let object =
                            try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
                        let rows = object?["deployments"] as? [[String: Any]] ?? []
                        return rows.first { $0["job_id"] as? String == job }.map { $0 as NSDictionary }
                    }
                    let shortcutJSON = try #require(try await json(["status", "--json"]))
                    #expect(shortcutJSON == (try await json(["status", "--json", "--interval", "5"])))
                }, thenAwaiting: { _ = try? await sh(["scancel", job]) })
        }

        /// Ctrl-C is how `status --watch` ends: quietly, with status 0.
        @Test func statusWatchEndsQuietlyOnInterrupt() async throws {
            let cli = try CLI()
            let argv = cli.argv(["status", "--watch", "--interval", "0.5"])
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = Array(argv.dropFirst())
            let dir = try temporaryDirectory()
            _ = FileManager.default.createFile(atPath: dir + "/out", contents: nil)
            _ = FileManager.default.createFile(atPath: dir + "/err", contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/out"))
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/err"))
            try process.run()
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            // A table drawn, and a while more: the loop is in its wait or its next round.
            for _ in 0..<100 {
                if let size = try? FileManager.default.attributesOfItem(atPath: dir + "/out")[.size] as? Int,
                    size > 0
                {
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            try await Task.sleep(for: .milliseconds(700))
            kill(process.processIdentifier, SIGINT)
            for _ in 0..<50 where process.isRunning { try await Task.sleep(for: .milliseconds(100)) }
            #expect(!process.isRunning)
            #expect(process.terminationStatus == 0)
            #expect(try String(contentsOfFile: dir + "/err", encoding: .utf8) == "")
        }
    }
}
