import ArgumentParser
import Foundation
import VLLMCtlKit

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "Show a deployment's job output (locally or over SSH).")

    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "A job id or deployment name.") var deployment: String
    @Flag(help: "Keep printing new output until the job ends.") var follow = false
    @Flag(help: "The job's stderr instead of stdout.") var stderr = false
    @Option(help: "How many last lines to show first.") var lines: Int = 50
    @Option(
        help:
            "A node of a multi-node deployment: its Ray log instead (e.g. node2; `vllmctl status` lists them)."
    )
    var node: String?

    func validate() throws {
        if let node, node.isEmpty || !node.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) {
            throw ValidationError("`\(node)` is not a node name (letters, digits, `-`, `_` and `.`).")
        }
        if node != nil && stderr {
            throw ValidationError(
                "--node shows the node's Ray log (stdout and stderr together); leave out --stderr.")
        }
    }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let env = try ctx.cluster(cluster)
        let resolved = try await DeploymentResolver(context: env.context, cluster: env.profile.name).resolve(
            deployment)
        let path =
            node.map { resolved.deployDir + "/" + DeploymentFiles.rayLog(node: $0, jobID: resolved.jobID) }
            ?? (stderr ? resolved.stderrPath : resolved.stdoutPath)
        if let node, try await env.context.host.readFile(path) == nil {
            let nodes = (resolved.job?.nodes).map { Hostlist.expand($0).joined(separator: ", ") }
            throw VLLMCtlError.invalidInput(
                "Job \(resolved.jobID) (\(resolved.displayName)) has no Ray log for \(node)",
                hint: (nodes.map { "Its nodes are \($0). " } ?? "")
                    + "Only multi-node deployments (--nodes 2 or more) keep one per node, once the job has started; without --node, `vllmctl logs` shows the job's own output."
            )
        }
        let follower = LogFollower(context: env.context)
        let terminal = env.context.terminal
        let write = ctx.write
        try await cancellingOnSignal {
            try await follower.run(
                path: path, jobID: resolved.jobID, lines: lines, follow: follow, emit: write)
        }
        if follow { terminal.note("vllmctl: job \(resolved.jobID) has ended.") }
    }
}
