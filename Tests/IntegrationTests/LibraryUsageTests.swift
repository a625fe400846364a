// The code between `snippet:begin` and `snippet:end` is the code block of the DocC article
// Sources/VLLMCtlKit/VLLMCtlKit.docc/UsingTheLibrary.md, character for character
// (VLLMCtlKitTests' DocumentationTests checks that); the test below runs it against the local
// cluster. This file imports VLLMCtlKit without @testable, like any user of the library, and
// the article's imports open it, so `import Testing` comes after them.
// swift-format-ignore-file: OrderedImports

// snippet:begin
import Foundation
import VLLMCtlKit

/// Deploys `preset` on the cluster profile `cluster` (nil: the configuration's default), uses
/// the server through a tunnel, and tears it down again.
func deployUseAndTearDown(
    preset: String, cluster: String?, environment: [String: String], terminal: any Terminal
) async throws -> [TeardownOutcome] {
    // The configuration: $VLLMCTL_CONFIG, else $XDG_CONFIG_HOME/vllmctl/config.yaml.
    let config = try ConfigLocation.load(explicit: nil, environment: environment)
    let profile = try config.cluster(named: cluster)
    guard let alias = profile.sshHost else {
        throw VLLMCtlError.invalidInput(
            "The profile `\(profile.name)` has no ssh_host",
            hint: "A tunnel needs a login node to go through.")
    }

    // The context: Slurm's commands and files go to the login node over one SSH session, and
    // so does every HTTP request to a compute node.
    let login = try RemoteHost(
        alias: alias, configPath: SSHConfig.defaultPath(environment: environment),
        environment: environment, acceptNewHostKey: false)
    let context = Context(
        host: login, http: CurlHTTPClient(route: login, proxy: profile.httpProxy), clock: SystemClock(),
        terminal: terminal,
        records: DeploymentStore(directory: DeploymentStore.defaultDirectory(environment: environment)),
        environment: environment)

    // Deploy: render the script, submit it, follow the job, and wait until the server answers.
    let templates = ScriptTemplates(
        directories: [ScriptTemplates.builtInDirectory(environment: environment)].compactMap { $0 })
    let deployer = Deployer(context: context, config: config, profile: profile, templates: templates)
    let outcome = try await deployer.deploy(DeployRequest(modelOrPreset: preset))
    guard let record = outcome.record, let connection = outcome.connection else {
        preconditionFailure("deploy(_:) waits by default: it returns the record and connection, or throws")
    }

    // What colleagues need, as in server_connection_info.txt.
    terminal.print("Server URL: \(connection.serverURL)")
    terminal.print("API Key: \(connection.apiKey)")
    terminal.print(connection.curlCommand)

    // A tunnel through the login node: a local port that reaches the job's node.
    do {
        let tunnel = try Tunnel(
            session: try await login.detachSession(),
            listener: try LocalListener.bind(address: "127.0.0.1", port: 0),
            targetHost: connection.host, targetPort: connection.port)
        defer { tunnel.stop() }
        try await tunnel.checkHealth(http: context.http, deployment: record.name)
        let models = try await context.http.send(
            HTTPRequest(url: tunnel.baseURL + "/v1/models").authorized(try APIKey(connection.apiKey)))
        terminal.print("\(tunnel.baseURL)/v1 serves \(ModelList.names(models.body))")
    }

    // Tear down: ask Slurm everything first (nothing is cancelled if it does not answer), then
    // cancel the job, wait for Slurm to confirm, and mark the record ended.
    let teardown = Teardown(context: context, profile: profile, user: try await login.userName())
    let plan = try await teardown.plan(.named([record.name]))
    return await teardown.execute(plan)
}
// snippet:end

import TestSupport
import Testing

extension LocalCluster {
    /// The article's code, run against the local cluster through the `local-ssh` profile.
    @Suite struct LibraryUsageTests {
        @Test func theArticlesCodeDeploysTunnelsAndTearsDown() async throws {
            let state = try temporaryDirectory()
            let environment = [
                "HOME": NSHomeDirectory(),
                "VLLMCTL_CONFIG": try renderedClusterConfig(),
                "VLLMCTL_SSH_CONFIG": LocalSSH.config,
                "VLLMCTL_TEMPLATES": repoRoot + "/templates",
                "XDG_STATE_HOME": state,
            ]
            let terminal = CapturedTerminal()
            let records = DeploymentStore(
                directory: DeploymentStore.defaultDirectory(environment: environment))
            #expect(records.directory.hasPrefix(state))
            let outcomes: [TeardownOutcome]
            do {
                outcomes = try await deployUseAndTearDown(
                    preset: "sim", cluster: "local-ssh", environment: environment, terminal: terminal)
            } catch {
                // No job is left behind, whichever step failed.
                let ids = records.all(cluster: "local-ssh").map(\.jobID)
                if !ids.isEmpty { _ = try? await sh(Scancel(jobIDs: ids).argv) }
                throw error
            }

            let record = try #require(records.all(cluster: "local-ssh").first)
            #expect(record.phase == .ended)
            #expect(outcomes.count == 1)
            #expect(outcomes.allSatisfy { $0.succeeded }, "\(outcomes.map(\.message))")
            #expect(outcomes.first?.action.kind == .cancel)
            #expect(outcomes.first?.action.jobID == record.jobID)

            let text = terminal.text
            #expect(text.contains("Submitted job \(record.jobID)"))
            #expect(text.contains("API Key: \(record.apiKey)"))
            #expect(text.contains("Authorization: Bearer \(record.apiKey)"))
            #expect(text.contains(#"/v1 serves ["sim"]"#), "\(text)")
        }
    }
}
