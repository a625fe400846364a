import Foundation
import Mustache

/// Mustache content type for shell scripts: `{{value}}` renders as one shell-quoted word.
/// `{{{value}}}` renders raw; templates use it only for `#SBATCH` lines, whose values
/// vllmctl validates first, and for the profile's setup lines, which are shell code.
struct ShellContentType: MustacheContentType {
    func escapeText(_ text: String) -> String { Shell.quote(text) }
}

/// The sbatch templates: the built-in ones shipped in `templates/`, overridden or extended by
/// `*.sbatch.mustache` files in the user's config directory (`templates/` beside config.yaml).
public struct ScriptTemplates: Sendable {
    public static let fileSuffix = ".sbatch.mustache"
    public static let partialSuffix = ".partial.mustache"
    public static let defaultName = "single-node"
    /// The built-in template for a server across several nodes (`--nodes` above 1).
    public static let multiNodeName = "multi-node"

    /// Directories searched, later ones overriding earlier ones.
    public var directories: [String]

    public init(directories: [String]) { self.directories = directories }

    private static let registerShell: Void = {
        MustacheContentTypes.register(ShellContentType(), named: "SHELL")
    }()

    /// Built-in templates: `$VLLMCTL_TEMPLATES`, the installed share directory, or the
    /// `templates/` folder of the source checkout the binary was built from.
    public static func builtInDirectory(environment: [String: String]) -> String? {
        if let dir = environment["VLLMCTL_TEMPLATES"], !dir.isEmpty { return dir }
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        return builtInDirectory(executable: exe.path)
    }

    /// The documented places only, for the executable at `path`: `PREFIX/share/vllmctl/templates`
    /// beside `PREFIX/bin`, or, for a binary in a SwiftPM build folder (`CHECKOUT/.build/…`),
    /// the checkout's `templates/`. Never any other ancestor: a writable one could plant a
    /// runtime partial that reads keys.
    static func builtInDirectory(executable path: String) -> String? {
        let exe = URL(fileURLWithPath: path)
        let share = exe.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("share/vllmctl/templates").path
        if FileManager.default.fileExists(atPath: share + "/\(defaultName)\(fileSuffix)") { return share }
        if let build = path.range(of: "/.build/") {
            let candidate = String(path[..<build.lowerBound]) + "/templates"
            if FileManager.default.fileExists(atPath: candidate + "/\(defaultName)\(fileSuffix)") {
                return candidate
            }
        }
        return nil
    }

    /// All template files by name; a user's file replaces a built-in one of the same name.
    public func files() -> [String: String] {
        var found: [String: String] = [:]
        for dir in directories {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { continue }
            for file in names where file.hasSuffix(Self.fileSuffix) || file.hasSuffix(Self.partialSuffix) {
                found[file] = dir + "/" + file
            }
        }
        return found
    }

    /// Names of the sbatch templates (partials excluded).
    public func names() -> [String] {
        files().keys.filter { $0.hasSuffix(Self.fileSuffix) }.map {
            String($0.dropLast(Self.fileSuffix.count))
        }.sorted()
    }

    /// The path of template `name`; with `partial`, of the partial `name` (vllmctl's own
    /// scripts that are not job scripts, such as renewal's loop on the login node).
    public func path(of name: String, partial: Bool = false) throws -> String {
        if partial, let path = files()[name + Self.partialSuffix] { return path }
        guard let path = files()[name + Self.fileSuffix] else {
            let known = names()
            throw VLLMCtlError.notFound(
                what: "template", name: name,
                hint: known.isEmpty
                    ? "No templates were found; set VLLMCTL_TEMPLATES to the `templates` folder of vllmctl."
                    : "Known templates: \(known.joined(separator: ", ")). Add your own as NAME\(Self.fileSuffix) in \(directories.last ?? "your config directory")."
            )
        }
        return path
    }

    /// Renders template `name` (with `partial`, the partial `name`) with `context`. Partials (`{{> vllmctl-runtime}}`) come from
    /// the same directories.
    public func render(_ name: String, context: [String: Any], partial: Bool = false) throws -> String {
        _ = Self.registerShell
        let mainPath = try path(of: name, partial: partial)
        var templates: [String: MustacheTemplate] = [:]
        for (file, path) in files() {
            let partialName: String
            if file.hasSuffix(Self.partialSuffix) {
                partialName = String(file.dropLast(Self.partialSuffix.count))
            } else {
                partialName = String(file.dropLast(Self.fileSuffix.count))
            }
            templates[partialName] = try compile(path)
        }
        let library = MustacheLibrary(templates: templates)
        return try compile(mainPath).render(context, library: library)
    }

    private func compile(_ path: String) throws -> MustacheTemplate {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw VLLMCtlError.file(path: path, message: "cannot be read: \(error.localizedDescription)")
        }
        do {
            // Every template is shell: quoting is on unless a template turns it off.
            return try MustacheTemplate(string: "{{% CONTENT_TYPE: SHELL}}" + text)
        } catch {
            throw VLLMCtlError.file(path: path, message: "is not a valid Mustache template: \(error)")
        }
    }
}
