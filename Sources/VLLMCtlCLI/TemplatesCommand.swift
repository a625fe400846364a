import ArgumentParser
import Foundation
import VLLMCtlKit

struct TemplatesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "templates",
        abstract: "List the sbatch templates, or show one.",
        discussion:
            "Add or override templates as NAME.sbatch.mustache in the `templates` folder beside your config.yaml."
    )

    @Argument(help: "A template to show.") var name: String?

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let templates = ctx.templates
        let terminal = ctx.terminal
        if let name {
            let path = try templates.path(of: name)
            terminal.note("# \(path)")
            terminal.print(try String(contentsOfFile: path, encoding: .utf8))
            return
        }
        let files = templates.files()
        for name in templates.names() {
            terminal.print("\(name)\t\(files[name + ScriptTemplates.fileSuffix] ?? "")")
        }
    }
}
