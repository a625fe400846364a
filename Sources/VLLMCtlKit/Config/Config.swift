import Foundation
import Yams

/// The user's configuration file: cluster profiles and model presets.
public struct Config: Sendable, Equatable {
    /// The file it was read from; nil for a configuration made in code.
    public var path: String?
    /// The profile used when none is named (`default_cluster`).
    public var defaultCluster: String?
    /// The cluster profiles by name (`clusters:`).
    public var clusters: [String: ClusterProfile]
    /// The model presets by name (`models:`).
    public var models: [String: ModelPreset]

    /// A configuration made in code; ``ConfigLocation/load(explicit:environment:)`` reads one
    /// from a file.
    public init(
        path: String? = nil, defaultCluster: String? = nil, clusters: [String: ClusterProfile] = [:],
        models: [String: ModelPreset] = [:]
    ) {
        self.path = path
        self.defaultCluster = defaultCluster
        self.clusters = clusters
        self.models = models
    }

    /// The profile named `name`, or the default one.
    public func cluster(named name: String?) throws -> ClusterProfile {
        if let name {
            guard let profile = clusters[name] else {
                throw VLLMCtlError.notFound(
                    what: "cluster profile", name: name,
                    hint: clusters.isEmpty
                        ? "The configuration has no clusters; run `vllmctl config init` and edit it."
                        : "Known clusters: \(clusters.keys.sorted().joined(separator: ", ")).")
            }
            return profile
        }
        if let defaultCluster {
            return try cluster(named: defaultCluster)
        }
        if clusters.count == 1, let only = clusters.values.first { return only }
        if clusters.isEmpty {
            // No configuration: Slurm on this machine with the built-in defaults.
            return ClusterProfile(name: "default")
        }
        throw VLLMCtlError.invalidInput(
            "Several clusters are configured and none is the default",
            hint: "Pass --cluster NAME, or set `default_cluster` in \(path ?? "the configuration").")
    }
}

extension Config {
    /// What a deploy of `modelOrPreset` on `profile` runs with: `flags` over the preset over
    /// the profile's defaults, when `modelOrPreset` names a preset (`models:`); otherwise
    /// `flags` over the profile with `modelOrPreset` as the model. `baseName` is what the
    /// deployment is called unless `--name` says otherwise: the preset's name, or one derived
    /// from the model.
    public func layered(modelOrPreset: String, flags: DeploySettings, profile: ClusterProfile) -> (
        settings: DeploySettings, baseName: String
    ) {
        if let preset = models[modelOrPreset] {
            return (flags.merged(over: preset.settings.merged(over: profile.defaults)), preset.name)
        }
        var model = DeploySettings()
        model.model = modelOrPreset
        return (
            flags.merged(over: model.merged(over: profile.defaults)),
            Validate.derivedName(from: modelOrPreset)
        )
    }
}

/// Where the configuration file is looked for.
public enum ConfigLocation {
    /// `--config`, else `$VLLMCTL_CONFIG`, else `$XDG_CONFIG_HOME/vllmctl/config.yaml`
    /// (`~/.config/vllmctl/config.yaml`).
    public static func resolve(explicit: String?, environment: [String: String]) -> (
        path: String, explicit: Bool
    ) {
        if let explicit { return (explicit, true) }
        if let env = environment["VLLMCTL_CONFIG"], !env.isEmpty { return (env, true) }
        return (configDirectory(environment: environment) + "/config.yaml", false)
    }

    /// `$XDG_CONFIG_HOME/vllmctl`, else `~/.config/vllmctl`: where config.yaml and the user's
    /// templates live.
    public static func configDirectory(environment: [String: String]) -> String {
        if let xdg = environment["XDG_CONFIG_HOME"], xdg.hasPrefix("/") { return xdg + "/vllmctl" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.config/vllmctl"
    }

    /// Loads the file. A missing default file gives an empty configuration; a missing file the
    /// user named is an error.
    public static func load(explicit: String?, environment: [String: String]) throws -> Config {
        let (path, isExplicit) = resolve(explicit: explicit, environment: environment)
        guard FileManager.default.fileExists(atPath: path) else {
            if isExplicit {
                throw VLLMCtlError.file(
                    path: path,
                    message:
                        "no such configuration file. Create one with `vllmctl config init --config \(path)`")
            }
            return Config()
        }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw VLLMCtlError.file(path: path, message: "cannot be read: \(error.localizedDescription)")
        }
        return try ConfigParser(file: path).parse(text)
    }
}

/// Reads the YAML node tree by hand so that every error can name the line and the key.
public struct ConfigParser {
    let file: String

    public init(file: String) { self.file = file }

    /// The keys of ``DeploySettings/table``: allowed in profiles and presets.
    static let settingKeys = Set(DeploySettings.table.map(\.key))
    static let clusterOnlyKeys: Set<String> = ["ssh_host", "workdir", "share_dir", "http_proxy"]

    /// The parser reads scalars itself (`string`, `int`, `double`, `bool` below), so Yams needs
    /// neither its default resolver nor its default constructor. The default resolver compiles
    /// seven regular expressions (ICU's static sets with them) the first time it is used: about
    /// a tenth of `vllmctl status`'s own work.
    static var constructor: Constructor { Constructor([:], [:], [:]) }

    public func parse(_ text: String) throws -> Config {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text, Resolver.basic, Self.constructor)
        } catch let error as YamlError {
            throw yamlError(error)
        }
        var config = Config(path: file)
        guard let root else { return config }
        let top = try mapping(root, key: nil)
        for (keyNode, value) in top {
            let key = keyNode.string ?? ""
            switch key {
            case "default_cluster":
                config.defaultCluster = try string(value, key: key)
            case "clusters":
                for (nameNode, body) in try mapping(value, key: key) {
                    let name = nameNode.string ?? ""
                    config.clusters[name] = try cluster(name: name, body)
                }
            case "models":
                for (nameNode, body) in try mapping(value, key: key) {
                    let name = nameNode.string ?? ""
                    let settings = try settings(body, context: "models.\(name)", extra: [])
                    guard settings.0.model != nil else {
                        throw fail(
                            body, key: "models.\(name).model",
                            "the preset has no `model` (a Hugging Face id or a path)")
                    }
                    config.models[name] = ModelPreset(name: name, settings: settings.0)
                }
            default:
                throw fail(
                    keyNode, key: key, "unknown top-level key; expected default_cluster, clusters or models")
            }
        }
        if let d = config.defaultCluster, config.clusters[d] == nil {
            let node = top.first { $0.key.string == "default_cluster" }?.value
            throw fail(node, key: "default_cluster", "names `\(d)`, which is not under `clusters`")
        }
        return config
    }

    private func cluster(name: String, _ node: Node) throws -> ClusterProfile {
        let (defaults, extra) = try settings(node, context: "clusters.\(name)", extra: Self.clusterOnlyKeys)
        return ClusterProfile(
            name: name, sshHost: extra["ssh_host"], workdir: extra["workdir"], shareDir: extra["share_dir"],
            httpProxy: extra["http_proxy"], defaults: defaults)
    }

    private func settings(_ node: Node, context: String, extra allowedExtra: Set<String>) throws
        -> (DeploySettings, [String: String])
    {
        var s = DeploySettings()
        var extra: [String: String] = [:]
        for (keyNode, v) in try mapping(node, key: context) {
            let key = keyNode.string ?? ""
            let path = "\(context).\(key)"
            if allowedExtra.contains(key) {
                extra[key] = try string(v, key: path)
                continue
            }
            guard let row = DeploySettings.rows[key] else {
                let allowed = (Self.settingKeys.union(allowedExtra)).sorted().joined(separator: ", ")
                throw fail(keyNode, key: path, "unknown key; allowed here: \(allowed)")
            }
            try read(v, into: &s, row: row, path: path)
        }
        return (s, extra)
    }

    /// Reads one setting's value into its property, by the type its row gives.
    private func read(_ v: Node, into s: inout DeploySettings, row: DeploySetting, path: String) throws {
        switch row.value {
        case .string(let p): s[keyPath: p] = try string(v, key: path)
        case .int(let p): s[keyPath: p] = try int(v, key: path)
        case .double(let p): s[keyPath: p] = try double(v, key: path)
        case .bool(let p): s[keyPath: p] = try bool(v, key: path)
        case .list(let p, let splitWords, _):
            s[keyPath: p] = try stringList(v, key: path, splitWords: splitWords)
        case .gpuRequest(let p):
            let text = try string(v, key: path)
            guard let style = GPURequestStyle(rawValue: text) else {
                throw fail(v, key: path, "must be `gres` (--gres=gpu:N) or `gpus` (--gpus=N), not `\(text)`")
            }
            s[keyPath: p] = style
        }
    }

    // MARK: typed readers

    private func mapping(_ node: Node, key: String?) throws -> [(key: Node, value: Node)] {
        guard case .mapping(let m) = node else {
            throw fail(node, key: key, "expected a mapping of `key: value` lines")
        }
        var seen = Set<String>()
        for (k, _) in m {
            let name = k.string ?? ""
            if !seen.insert(name).inserted {
                throw fail(k, key: key.map { "\($0).\(name)" } ?? name, "appears twice")
            }
        }
        return m.map { ($0.key, $0.value) }
    }

    private func string(_ node: Node, key: String) throws -> String {
        guard case .scalar(let s) = node else { throw fail(node, key: key, "expected a single value") }
        return s.string
    }

    private func int(_ node: Node, key: String) throws -> Int {
        // Plain decimal digits (no leading 0, which YAML reads as octal) need none of Yams's
        // handling of `_`, signs, bases and `1:30`, which goes through Foundation.
        if case .scalar(let s) = node, s.style == .plain, let first = s.string.utf8.first,
            first != UInt8(ascii: "0") || s.string.utf8.count == 1,
            s.string.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let v = Int(s.string)
        {
            return v
        }
        guard case .scalar = node, let v = node.int else {
            throw fail(node, key: key, "expected a whole number")
        }
        return v
    }

    private func double(_ node: Node, key: String) throws -> Double {
        // `0.85`, `120`: digits with at most one dot read as Yams would, without Foundation.
        if case .scalar(let s) = node, s.style == .plain, let first = s.string.utf8.first,
            (0x30...0x39).contains(first),
            s.string.utf8.allSatisfy({ (0x30...0x39).contains($0) || $0 == UInt8(ascii: ".") }),
            let v = Double(s.string)
        {
            return v
        }
        guard case .scalar = node, let v = node.float else { throw fail(node, key: key, "expected a number") }
        return v
    }

    private func bool(_ node: Node, key: String) throws -> Bool {
        guard case .scalar = node, let v = node.bool else {
            throw fail(node, key: key, "expected true or false")
        }
        return v
    }

    private func stringList(_ node: Node, key: String, splitWords: Bool) throws -> [String] {
        switch node {
        case .sequence(let seq):
            return try seq.map { try string($0, key: key) }
        case .scalar(let s) where splitWords:
            return s.string.split(separator: " ").map(String.init)
        default:
            throw fail(node, key: key, "expected a list, e.g. [\"a\", \"b\"]")
        }
    }

    private func fail(_ node: Node?, key: String?, _ problem: String) -> VLLMCtlError {
        .config(file: file, line: node?.mark?.line, key: key, problem: problem)
    }

    private func yamlError(_ error: YamlError) -> VLLMCtlError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
            .composer(_, let problem, let mark, _):
            return .config(file: file, line: mark.line, key: nil, problem: "is not valid YAML: \(problem)")
        default:
            return .config(file: file, line: nil, key: nil, problem: "is not valid YAML: \(error)")
        }
    }
}
