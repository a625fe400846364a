import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

extension LocalCluster {
    /// A deploy through the `local-ssh` profile: every Slurm command and file over SSH.
    @Suite struct SSHDeployTests {
        @Test func remoteDeployEndToEnd() async throws {
            var cli = try CLI()
            cli.configPath = try renderedClusterConfig()
            cli.extraEnvironment["VLLMCTL_SSH_CONFIG"] = LocalSSH.config
            cli.clusters = ["local-ssh"]
            try await cli.withDeployment(["--cluster", "local-ssh", "--name", "ssh-e2e"]) { deployed in
                let object = deployed.object
                let url = try #require(object["url"] as? String)
                let key = try #require(object["api_key"] as? String)
                let infoFile = try #require(object["info_file"] as? String)
                let info = try String(contentsOfFile: infoFile, encoding: .utf8)
                #expect(info.contains(key))
                let dir = (infoFile as NSString).deletingLastPathComponent
                for name in ["api_key", "job.sbatch", DeploymentFiles.infoJSON] {
                    let mode =
                        try FileManager.default.attributesOfItem(atPath: dir + "/" + name)[.posixPermissions]
                        as? Int
                    #expect(mode == 0o600, "\(name)")
                }
                #expect(
                    try FileManager.default.contentsOfDirectory(atPath: dir).allSatisfy {
                        !$0.contains(".tmp")
                    })
                let curl = try await sh([
                    "curl", "-sf", "-H", try bearerHeaderFile(key), url + "/models",
                ])
                #expect(curl.status == 0, "\(curl.stderr)")
                #expect(curl.stdout.contains("\"sim\""))
                let status = try await cli.run(["status", "--cluster", "local-ssh"])
                #expect(status.status == 0, "stderr: \(status.stderr)")
                #expect(status.stdout.contains("ssh-e2e"))
                #expect(status.stdout.contains("RUNNING"))
                let logs = try await cli.run(["logs", "ssh-e2e", "--cluster", "local-ssh"])
                #expect(logs.status == 0, "stderr: \(logs.stderr)")
                let down = try await cli.run(["teardown", "ssh-e2e", "--cluster", "local-ssh", "--yes"])
                #expect(down.status == 0, "stderr: \(down.stderr)")
                #expect(!FileManager.default.fileExists(atPath: infoFile))
            }
        }
    }
}
