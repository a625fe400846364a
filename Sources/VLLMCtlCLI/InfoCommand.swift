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

    func run() async throws {
        let environment = try CLIEnvironment(options: cluster)
        let context = environment.context
        let resolved = try await DeploymentResolver(context: context, cluster: environment.profile.name)
            .resolve(deployment)
        let record = try resolved.requireConnection()
        if resolved.hasEnded {
            context.terminal.note("warning: job \(resolved.jobID) has ended; this URL no longer answers.")
        }
        let info = record.connection
        if share {
            try await shareFile(info, name: resolved.name, profile: environment.profile, context: context)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            context.terminal.print(String(decoding: try encoder.encode(record), as: UTF8.self))
        } else if env {
            context.terminal.print(info.environmentExports)
        } else if curl {
            context.terminal.print(info.curlCommand)
        } else if !share {
            context.terminal.print(info.text)
        }
    }

    func shareFile(_ info: ConnectionInfo, name: String, profile: ClusterProfile, context: Context)
        async throws
    {
        guard let dir = profile.shareDir else {
            throw VLLMCtlError.invalidInput(
                "The cluster profile `\(profile.name)` has no share_dir",
                hint: "Add `share_dir: /path/your/group/can/read` to it in the configuration.")
        }
        let path = dir + "/" + name + "-" + DeploymentFiles.infoText
        try await context.host.writeFileAtomically(Data(info.text.utf8), to: path, mode: 0o640)
        context.terminal.print("Shared \(path) (mode 0640).")
        context.terminal.note(
            "Everyone in that file's group can now read the API key and use the server. `vllmctl teardown \(name)` replaces the file with a notice when it stops."
        )
    }
}
