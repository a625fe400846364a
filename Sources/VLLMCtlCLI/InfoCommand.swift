import ArgumentParser
import Foundation
import VLLMCtlKit

struct InfoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Print a deployment's URL and key for colleagues.",
        discussion: """
            By default prints server_connection_info.txt as the job wrote it.
            --share copies it to the profile's share_dir with mode 0640: everyone in the file's
            group can then read the API key and use the server. Without --share, every
            connection file stays 0600 (only you).
            """)

    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "A job id or deployment name.") var deployment: String
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Print `export OPENAI_BASE_URL=… OPENAI_API_KEY=…` for eval.") var env = false
    @Flag(help: "Print only the curl command.") var curl = false
    @Flag(help: "Copy the connection file to share_dir, group-readable (0640).") var share = false

    func validate() throws {
        if [json, env, curl].filter({ $0 }).count > 1 {
            throw ValidationError("Pick one of --json, --env and --curl.")
        }
    }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let environment = try ctx.cluster(cluster)
        let context = environment.context
        let resolver = DeploymentResolver(context: context, cluster: environment.profile.name)
        var resolved = try await resolver.resolve(deployment)
        // NAME of a replicated deployment: a replica that is ready stands for it, and all are listed.
        let replicas =
            JobName.split(deployment).replica == nil && !isJobID(deployment)
            ? try await resolver.replicas(of: resolved.name) : []
        if resolved.connection == nil, let ready = replicas.first(where: { $0.connection != nil }) {
            resolved = ready
        }
        let record = try resolved.requireConnection()
        if resolved.hasEnded {
            context.terminal.note("warning: job \(resolved.jobID) has ended; this URL no longer answers.")
        }
        let info = record.connection
        if share {
            let shared = try await SharedConnectionFile(context: context, profile: environment.profile)
                .share(info, name: resolved.name, jobID: resolved.jobID)
            // A renewing deployment's successors keep this copy current (docs/RENEW.md).
            try? await context.host.writeFileAtomically(
                Data((shared.path + "\n").utf8), to: resolved.deployDir + "/" + SharedConnectionFile.pointer,
                mode: 0o600)
            context.terminal.print("Shared \(shared.path) (mode 0640).")
            let who =
                shared.members.isEmpty
                ? "everyone whose group is `\(shared.group)`"
                : "the \(shared.members.count) member\(shared.members.count == 1 ? "" : "s") of group `\(shared.group)` (\(shared.members.joined(separator: ", ")))"
            context.terminal.note(
                "Everyone in that file's group can now read the API key and use the server: \(who). `vllmctl teardown \(resolved.name)` replaces the file with a notice when it stops."
            )
        }
        if json {
            context.terminal.print(try PrettyJSON.string(record))
        } else if env {
            context.terminal.print(info.environmentExports)
        } else if curl {
            context.terminal.print(info.curlCommand)
        } else if !share {
            context.terminal.print(info.text)
            if replicas.count > 1 {
                context.terminal.print(
                    "Replicas (\(replicas.count), one key):\n"
                        + replicas.map { r in
                            "  \(r.displayName)  job \(r.jobID)  "
                                + (r.connection.map { $0.serverURL + "/v1" } ?? "not serving yet")
                        }.joined(separator: "\n"))
            }
        }
    }
}
