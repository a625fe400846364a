import Foundation

@testable import VLLMCtlKit

/// The built `vllmctl` binary, beside the test bundle.
package let vllmctlBinary: String = {
    let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for dir in [bundleDir, bundleDir.deletingLastPathComponent()] {
        let path = dir.appendingPathComponent("vllmctl").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return repoRoot + "/.build/debug/vllmctl"
}()

/// Runs the CLI with its own state directory and the local cluster's config.
package struct CLI: Sendable {
    package let stateDir: String
    package var configPath = repoRoot + "/.cluster/vllmctl.yaml"
    package var extraEnvironment: [String: String] = [:]
    /// The test host (network namespace) the CLI runs on; nil: the login host (this one).
    package var host: TestHost?
    /// The cluster profiles whose records and tunnels `cancelAll` cleans up.
    package var clusters = ["local"]

    package init() throws { stateDir = try temporaryDirectory() }

    /// The CLI as a laptop runs it: in the `vc-laptop` namespace, profile `hpc` (through the
    /// login node's sshd), with the local cluster's ssh_config.
    package static func laptop() throws -> CLI {
        var cli = try CLI()
        cli.configPath = try renderedClusterConfig()
        cli.extraEnvironment["VLLMCTL_SSH_CONFIG"] = LocalSSH.config
        cli.host = .laptop
        cli.clusters = ["hpc"]
        return cli
    }

    package var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["VLLMCTL_STATE_DIR"] = stateDir
        env["VLLMCTL_CONFIG"] = configPath
        env["VLLMCTL_TEMPLATES"] = repoRoot + "/templates"
        for (k, v) in extraEnvironment { env[k] = v }
        return env
    }

    /// The argv that runs vllmctl with `args` in this CLI's environment (on its host).
    package func argv(_ args: [String]) -> [String] {
        (host?.prefix ?? []) + ["env"] + environment.map { "\($0)=\($1)" } + [vllmctlBinary] + args
    }

    package func run(_ args: [String], timeout: Duration = .seconds(120)) async throws -> CommandResult {
        try await sh(argv(args), timeout: timeout)
    }

    /// Runs `body`, then cancels every job this CLI deployed, pass or fail (awaited, so that no
    /// job outlives its test).
    package func cleaningUp<T>(_ body: () async throws -> T) async throws -> T {
        try await running(body, thenAwaiting: cancelAll)
    }

    /// Cancels every job this CLI's records know on `clusters` and closes its open tunnels there.
    package func cancelAll() async {
        let store = DeploymentStore(directory: stateDir)
        let ids = clusters.flatMap { store.all(cluster: $0) }.map(\.jobID)
        if !ids.isEmpty { _ = try? await sh(Scancel(jobIDs: ids).argv) }
        let tunnels = TunnelStore(records: store)
        for tunnel in clusters.flatMap({ tunnels.open(cluster: $0) }) { _ = tunnels.close(tunnel) }
    }

    /// `vllmctl deploy MODEL --json ARGS`, parsed; throws with deploy's stderr if it failed.
    package func deploy(_ args: [String], model: String = "sim", timeout: Duration = .seconds(120))
        async throws
        -> CLIDeployment
    {
        let result = try await run(["deploy", model, "--json"] + args, timeout: timeout)
        guard result.status == 0,
            let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        else {
            throw DeployFailed(args: args, result: result)
        }
        return CLIDeployment(object: object, result: result)
    }

    /// Deploys through the binary (`deploy MODEL --json ARGS`), hands `body` what deploy
    /// reported, and cancels every job this CLI deployed afterwards (also those `body`
    /// deployed), awaited, pass or fail.
    package func withDeployment<T>(
        _ args: [String], model: String = "sim", timeout: Duration = .seconds(120),
        _ body: (CLIDeployment) async throws -> T
    ) async throws -> T {
        try await cleaningUp { try await body(try await deploy(args, model: model, timeout: timeout)) }
    }
}

/// One deployment as `vllmctl deploy --json` reported it.
package struct CLIDeployment {
    /// The whole JSON object, for the fields a test looks at beyond these.
    package let object: [String: Any]
    /// deploy's own output (stderr holds its notes).
    package let result: CommandResult

    package var jobID: String { object["job_id"] as? String ?? "" }
    package var name: String { object["name"] as? String ?? "" }
    package var url: String { object["url"] as? String ?? "" }
    package var apiKey: String { object["api_key"] as? String ?? "" }
    package var node: String? { object["node"] as? String }
    /// The deployment directory, where the info file is.
    package var deployDir: String {
        ((object["info_file"] as? String ?? "") as NSString).deletingLastPathComponent
    }
}

/// `vllmctl deploy` failed where a test needed a deployment.
package struct DeployFailed: Error, CustomStringConvertible {
    package let args: [String]
    package let result: CommandResult
    package var description: String {
        "deploy \(args.joined(separator: " ")) failed (status \(result.status)): \(result.stderr)"
    }
}
