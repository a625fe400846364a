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

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let env = try ctx.cluster(cluster)
        let resolved = try await DeploymentResolver(context: env.context, cluster: env.profile.name).resolve(
            deployment)
        let follower = LogFollower(context: env.context)
        let path = stderr ? resolved.stderrPath : resolved.stdoutPath
        let terminal = env.context.terminal
        let write = ctx.write
        try await cancellingOnSignal {
            try await follower.run(
                path: path, jobID: resolved.jobID, lines: lines, follow: follow, emit: write)
        }
        if follow { terminal.note("vllmctl: job \(resolved.jobID) has ended.") }
    }
}
