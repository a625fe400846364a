import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// `vllmctl doctor` against the local cluster: a healthy setup passes, and each problem made on
/// purpose is reported with its fix.
extension LocalCluster {
    @Suite struct DoctorTests {
        struct Outcome {
            var status: Int32
            var checks: [String: [String: Any]]
            var seconds: Double
            var stderr: String

            func verdict(_ id: String) -> String? { checks[id]?["verdict"] as? String }
            func fix(_ id: String) -> String { checks[id]?["fix"] as? String ?? "" }
            func detail(_ id: String) -> String { checks[id]?["detail"] as? String ?? "" }
            var problems: [String] {
                checks.filter { $0.value["verdict"] as? String == "problem" }.map(\.key).sorted()
            }
        }

        func doctor(_ args: [String], cli: CLI) async throws -> Outcome {
            let started = Date()
            let r = try await cli.run(["doctor", "--json"] + args)
            let seconds = Date().timeIntervalSince(started)
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
                "\(r.stdout)\(r.stderr)")
            let list = try #require(object["checks"] as? [[String: Any]])
            var checks: [String: [String: Any]] = [:]
            for c in list { checks[c["id"] as? String ?? ""] = c }
            #expect((object["ok"] as? Bool) == (r.status == 0))
            return Outcome(status: r.status, checks: checks, seconds: seconds, stderr: r.stderr)
        }

        /// A CLI without proxies in its environment, reading the cluster's ssh_config.
        func cli(config: String? = nil, sshConfig: String = LocalSSH.config) throws -> CLI {
            var cli = try CLI()
            cli.configPath = try config ?? renderedClusterConfig()
            cli.extraEnvironment["VLLMCTL_SSH_CONFIG"] = sshConfig
            for name in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "SSH_AUTH_SOCK"] {
                cli.extraEnvironment[name] = ""
            }
            return cli
        }

        @Test(arguments: ["local", "local-ssh"])
        func aHealthySetupPassesQuickly(_ cluster: String) async throws {
            let out = try await doctor(["--cluster", cluster], cli: try cli())
            #expect(out.status == 0, "\(out.problems) \(out.stderr)")
            #expect(out.problems.isEmpty)
            for id in [
                "config", "slurm.commands", "slurm.controller", "slurm.partition", "slurm.request", "workdir",
                "proxy", "libcurl", "tunnel.port",
            ] {
                // A clone under /tmp (as CI may make one) puts the workdir there: doctor rightly warns.
                if id == "workdir" && repoRoot.hasPrefix("/tmp/") {
                    #expect(out.verdict(id) != "problem", "\(id): \(out.detail(id))")
                    continue
                }
                #expect(out.verdict(id) == "ok", "\(id): \(out.detail(id))")
            }
            if cluster == "local-ssh" {
                for id in ["ssh.alias", "ssh.hostkey", "ssh.identity", "ssh.login", "ssh.latency"] {
                    #expect(out.verdict(id) == "ok", "\(id): \(out.detail(id))")
                }
            }
            // Its speed (goal: under 2 s) is measured in `make bench`, not here: timed tests
            // fail under parallel load.
        }

        @Test func submitProbeSeesTheWorkdirFromAComputeNode() async throws {
            let out = try await doctor(["--cluster", "local", "--submit-probe"], cli: try cli())
            #expect(out.status == 0, "\(out.problems)")
            #expect(out.verdict("workdir.shared") == "ok", "\(out.detail("workdir.shared"))")
            #expect(out.detail("workdir.shared").contains("node"))
        }

        /// An ssh_config with one alias, `doctor-test`, on `port` with `key`, and its own known_hosts.
        func sshConfig(port: Int, key: String, knownHosts: String) throws -> String {
            let dir = try temporaryDirectory()
            let text = """
                Host doctor-test
                    HostName 127.0.0.1
                    Port \(port)
                    User \(LocalSSH.user)
                    IdentityFile \(LocalSSH.dir)/\(key)
                    IdentitiesOnly yes
                    UserKnownHostsFile \(knownHosts)
                    GlobalKnownHostsFile /dev/null
                """
            try text.write(toFile: dir + "/ssh_config", atomically: true, encoding: .utf8)
            return dir + "/ssh_config"
        }

        func config(_ profile: String) throws -> String {
            let path = try temporaryDirectory() + "/vllmctl.yaml"
            try "clusters:\n  t:\n\(profile)\n".write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        /// doctor on a profile whose ssh_host is `doctor-test` (see `sshConfig`).
        func sshDoctor(port: Int, key: String, knownHosts: String = LocalSSH.knownHosts) async throws
            -> Outcome
        {
            let ssh = try sshConfig(port: port, key: key, knownHosts: knownHosts)
            let config = try config("    ssh_host: doctor-test\n    partition: debug")
            return try await doctor(["--cluster", "t"], cli: try cli(config: config, sshConfig: ssh))
        }

        @Test func anRSAOnlyIdentityOnTheModernSSHDIsAProblemWithTheEd25519Fix() async throws {
            let out = try await sshDoctor(port: 2222, key: "id_rsa")
            #expect(out.status == 1)
            #expect(out.verdict("ssh.identity") == "problem", "\(out.detail("ssh.identity"))")
            #expect(out.detail("ssh.identity").contains("OpenSSH 9"))
            #expect(out.fix("ssh.identity").contains("ssh-keygen -t ed25519"))
            #expect(out.verdict("ssh.login") == "problem")
            #expect(out.verdict("ssh.hostkey") == "ok")
        }

        @Test func anRSAKeyWhereSSHRSAIsStillAllowedIsAWarning() async throws {
            let out = try await sshDoctor(port: 2223, key: "id_rsa")
            #expect(out.verdict("ssh.login") == "ok", "\(out.detail("ssh.login"))")
            #expect(out.verdict("ssh.identity") == "warning", "\(out.detail("ssh.identity"))")
        }

        @Test func anUnknownHostKeyIsAProblemAndKnownHostsIsNotWritten() async throws {
            let knownHosts = try temporaryDirectory() + "/known_hosts"
            _ = FileManager.default.createFile(atPath: knownHosts, contents: Data())
            let out = try await sshDoctor(port: 2222, key: "id_ed25519", knownHosts: knownHosts)
            #expect(out.status == 1)
            #expect(out.verdict("ssh.hostkey") == "problem")
            #expect(out.detail("ssh.hostkey").contains("SHA256:"))
            #expect(out.fix("ssh.hostkey").contains("--accept-new-host-key"))
            // The login itself was still tried (a key signs the session; no password was sent).
            #expect(out.verdict("ssh.login") == "ok", "\(out.detail("ssh.login"))")
            #expect(try String(contentsOfFile: knownHosts, encoding: .utf8).isEmpty)
        }

        @Test func anAliasThatDoesNotResolveIsAProblem() async throws {
            let out = try await doctor(
                ["--cluster", "t"], cli: try cli(config: try config("    ssh_host: no-such-alias.invalid")))
            #expect(out.verdict("ssh.alias") == "problem")
            #expect(out.fix("ssh.alias").contains("Host no-such-alias.invalid"))
        }

        @Test func aWrongPartitionIsAProblemNamingTheRealOnes() async throws {
            let out = try await doctor(
                ["--cluster", "t"], cli: try cli(config: try config("    partition: nope")))
            #expect(out.status == 1)
            #expect(out.verdict("slurm.partition") == "problem")
            #expect(out.fix("slurm.partition").contains("debug"))
        }

        @Test func anUnwritableWorkdirIsAProblem() async throws {
            // Tests run as root, which writes anywhere: a path under a regular file is unwritable for all.
            let dir = try temporaryDirectory()
            _ = FileManager.default.createFile(atPath: dir + "/file", contents: Data())
            let out = try await doctor(
                ["--cluster", "t"],
                cli: try cli(config: try config("    partition: debug\n    workdir: \(dir)/file/deployments"))
            )
            #expect(out.status == 1)
            #expect(out.verdict("workdir") == "problem", "\(out.detail("workdir"))")
            #expect(out.fix("workdir").contains("workdir:"))
        }

        @Test func anHTTPProxyThatWouldCatchTheNodesIsReportedWithNoProxy() async throws {
            var cli = try cli()
            cli.extraEnvironment["http_proxy"] = "http://proxy.example:3128"
            cli.extraEnvironment["no_proxy"] = "localhost"
            let out = try await doctor(["--cluster", "local"], cli: cli)
            #expect(out.status == 0)
            #expect(out.verdict("proxy") == "warning")
            #expect(out.detail("proxy").contains("10.77.0.11"))
            #expect(out.detail("proxy").contains("vllmctl ignores"))
            #expect(out.fix("proxy").contains("no_proxy"))
            cli.extraEnvironment["no_proxy"] = "localhost,node1,node2,10.77.0.0/16"
            #expect(try await doctor(["--cluster", "local"], cli: cli).verdict("proxy") == "ok")
        }

        @Test func theTextReportSaysOkWarningOrProblemPerLine() async throws {
            let r = try await cli().run(["doctor", "--cluster", "local"])
            #expect(r.status == 0, "\(r.stdout)")
            #expect(r.stdout.contains("ok       partition"))
            #expect(r.stdout.contains("No problems found") || r.stdout.contains("warning"))
        }
    }
}
