import ArgumentParser
import Foundation
import VLLMCtlKit

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Create or check the configuration file.",
        subcommands: [Init.self, Check.self])

    struct Init: AsyncParsableCommand {
        // Named here: without a name ArgumentParser derives one from the type on every run.
        static let configuration = CommandConfiguration(
            commandName: "init", abstract: "Write a commented starter config.yaml.")
        @Option(help: "Where to write it (default: $XDG_CONFIG_HOME/vllmctl/config.yaml).") var config:
            String?
        @Flag(help: "Replace an existing file.") var force = false

        func run() async throws { try await run(.live) }

        func run(_ ctx: CLIContext) async throws {
            let path = ConfigLocation.resolve(explicit: config, environment: ctx.environment).path
            if FileManager.default.fileExists(atPath: path) && !force {
                throw VLLMCtlError.file(path: path, message: "already exists; pass --force to replace it")
            }
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try LocalFiles.writeAtomically(Data(StarterConfig.text.utf8), to: path, mode: 0o600)
            ctx.terminal.print(
                "Wrote \(path). Edit the cluster profile, then try `vllmctl deploy PRESET --dry-run`.")
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check", abstract: "Read the configuration and report problems.")
        @OptionGroup var cluster: ClusterOptions

        func run() async throws { try await run(.live) }

        func run(_ ctx: CLIContext) async throws {
            let loaded = try ConfigLocation.load(explicit: cluster.config, environment: ctx.environment)
            ctx.terminal.print(
                "\(loaded.path ?? "(no file)"): \(loaded.clusters.count) cluster(s), \(loaded.models.count) model preset(s); default cluster: \(loaded.defaultCluster ?? "none")"
            )
        }
    }
}
