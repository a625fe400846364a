import ArgumentParser
import Foundation
import TestSupport
import Testing

@testable import VLLMCtlCLI
@testable import VLLMCtlKit

/// The settings table (`DeploySettings.table`) reaches everything it drives: each row is a
/// property, a config key, a flag (or deploy's argument) and a template value.
@Suite struct SettingsTableTests {
    /// A valid value for `row`: the settings with only it set, how config.yaml writes it, and
    /// how the command line gives it.
    struct Sample {
        var settings = DeploySettings()
        var yaml = ""
        var argv: [String] = []
    }

    static let strings = [
        "time": "01:30:00", "memory": "48G", "host": "10.0.0.9", "bind_host": "10.0.0.8",
        "model": "org/model-x",
        "template": "mine", "renew_until": "2030-01-01T08:00", "renew_from": "login",
    ]
    static let ints = [
        "nodes": 1, "gpus": 4, "cpus": 3, "port": 8123, "tensor_parallel_size": 2,
        "pipeline_parallel_size": 1,
    ]

    static func sample(_ row: DeploySetting) -> Sample {
        var out = Sample()
        switch row.value {
        case .string(let p):
            let v = strings[row.key] ?? "x-\(row.key)"
            out.settings[keyPath: p] = v
            (out.yaml, out.argv) = ("\"\(v)\"", [v])
        case .int(let p):
            let v = ints[row.key] ?? 7
            out.settings[keyPath: p] = v
            (out.yaml, out.argv) = (String(v), [String(v)])
        case .double(let p):
            out.settings[keyPath: p] = 0.5
            (out.yaml, out.argv) = ("0.5", ["0.5"])
        case .bool(let p):
            out.settings[keyPath: p] = true
            (out.yaml, out.argv) = ("true", [])
        case .gpuRequest(let p):
            out.settings[keyPath: p] = .gpus
            (out.yaml, out.argv) = ("gpus", ["gpus"])
        case .list(let p, let splitWords, _):
            let v = splitWords ? ["run-x", "--flag-x"] : ["echo set up"]
            out.settings[keyPath: p] = v
            out.yaml = "[" + v.map { "\"\($0)\"" }.joined(separator: ", ") + "]"
            out.argv = splitWords ? [v.joined(separator: " ")] : v
        }
        return out
    }

    @Test func everyPropertyHasExactlyOneRow() {
        let properties = Mirror(reflecting: DeploySettings()).children.compactMap(\.label)
        #expect(properties.count == DeploySettings.table.count)
        var touched = Set<String>()
        for row in DeploySettings.table {
            let set = Mirror(reflecting: Self.sample(row).settings).children.filter {
                if case Optional<Any>.none = $0.value { return false }
                return true
            }
            #expect(set.count == 1, "\(row.key) sets \(set.count) properties")
            if let label = set.first?.label {
                #expect(touched.insert(label).inserted, "two rows set \(label)")
            }
        }
        #expect(touched == Set(properties))
        #expect(DeploySettings.rows.count == DeploySettings.table.count, "a config key appears twice")
    }

    @Test func everyRowIsAConfigKeyInProfilesAndPresets() throws {
        for row in DeploySettings.table {
            let sample = Self.sample(row)
            let model = row.key == "model" ? "" : "    model: org/m\n"
            let config = try ConfigParser(file: "/c.yaml").parse(
                """
                clusters:
                  hpc:
                    \(row.key): \(sample.yaml)
                models:
                  m:
                \(model)    \(row.key): \(sample.yaml)
                """)
            #expect(config.clusters["hpc"]?.defaults == sample.settings, "\(row.key) in a profile")
            var preset = sample.settings
            if row.key != "model" { preset.model = "org/m" }
            #expect(config.models["m"]?.settings == preset, "\(row.key) in a preset")
        }
        // And nothing else is.
        let error = #expect(throws: VLLMCtlError.self) {
            try ConfigParser(file: "/c.yaml").parse("clusters:\n  hpc:\n    tensor_paralel_size: 2\n")
        }
        let allowed = DeploySettings.table.map(\.key) + ["ssh_host", "workdir", "share_dir", "http_proxy"]
        #expect(
            "\(error.map { "\($0)" } ?? "no error")".contains(
                "unknown key; allowed here: " + allowed.sorted().joined(separator: ", ")))
    }

    /// docs/CONFIG.md lists the keys a profile and a preset take.
    @Test func theConfigDocsListEveryKey() throws {
        let text = try String(contentsOfFile: repoRoot + "/docs/CONFIG.md", encoding: .utf8)
        let start = try #require(text.range(of: "Keys allowed in both a profile and a preset: `"))
        let list = text[start.upperBound...].prefix { $0 != "`" }
        #expect(
            Set(list.split(whereSeparator: \.isWhitespace).map(String.init)) == Set(DeploySettings.rows.keys))
    }

    @Test func everyRowIsAFlagOrDeploysArgument() throws {
        let help = DeployCommand.helpMessage(columns: 1000)
        for row in DeploySettings.table {
            let sample = Self.sample(row)
            switch row.flag {
            case .option(let name, let short):
                let command = try DeployCommand.parse(["org/m", "--" + name] + sample.argv)
                #expect(command.flags == sample.settings, "--\(name)")
                if let short {
                    let viaShort = try DeployCommand.parse(["org/m", "-\(short)"] + sample.argv)
                    #expect(viaShort.flags == sample.settings, "-\(short)")
                }
                #expect(help.contains("--\(name)") && help.contains(row.help), "--\(name) in --help")
            case .argument where row.key == "model":
                let command = try DeployCommand.parse(["org/model-x"])
                #expect(command.model == "org/model-x")
            case .argument:
                let command = try DeployCommand.parse(["org/m", "--"] + sample.settings.vllmArgs!)
                #expect(command.flags == sample.settings, "\(row.key)")
            case .configOnly:
                #expect(!help.contains("--\(row.key)"), "\(row.key) is config only")
            }
        }
        #expect(DeployCommand.flagsOnlyIn(help: help).isEmpty)
    }

    @Test func everyRowReachesTheTemplate() throws {
        var base = DeploySettings()
        base.model = "org/base"
        base.gpus = 2
        func plan(_ s: DeploySettings) throws -> DeployPlan {
            try DeployPlan(name: "n", cluster: "c", settings: s, workdir: "/w", stamp: "st")
        }
        let without = try plan(base)
        for row in DeploySettings.table {
            let settings = Self.sample(row).settings.merged(over: base)
            let with = try plan(settings)
            let context = with.renderContext
            switch row.template {
            case .sbatch(let key):
                #expect(context[key] as? String == row.text(in: settings), "\(row.key)")
                #expect(without.renderContext[key] == nil, "\(row.key)")
            case .value(let key, let fallback):
                #expect(context[key] as? String == row.text(in: settings), "\(row.key)")
                #expect(without.renderContext[key] as? String == fallback, "\(row.key)")
            case .flag(let key):
                #expect(context[key] as? Bool == true, "\(row.key)")
                #expect(without.renderContext[key] == nil, "\(row.key)")
            case .lines(let key):
                if case .list(let p, _, _) = row.value {
                    #expect(context[key] as? [String] == settings[keyPath: p], "\(row.key)")
                }
            case .serverFlag(let flag):
                let argv = with.serverArgv
                let at = try #require(argv.firstIndex(of: flag), Comment(rawValue: row.key))
                #expect(argv[at + 1] == row.text(in: settings))
                #expect(!without.serverArgv.contains(flag))
            case .deployment:
                // Not in any one job's script: the deployment's shape (how many jobs).
                #expect(Self.describe(context) == Self.describe(without.renderContext), "\(row.key)")
            case .derived(let keys) where keys.isEmpty:
                #expect(with.template == row.text(in: settings), "\(row.key)")
            case .derived(let keys):
                #expect(keys.contains { context[$0] != nil }, "\(row.key)")
                #expect(
                    Self.describe(context) != Self.describe(without.renderContext),
                    "\(row.key) changes nothing the template sees")
            }
        }
    }

    static func describe(_ context: [String: Any]) -> String {
        context.keys.sorted().map { "\($0)=\(context[$0]!)" }.joined(separator: "\n")
    }

    /// Flags over the preset over the profile, with values from a real config and command line.
    @Test func flagsOverPresetOverProfile() throws {
        let config = try ConfigParser(file: "/c.yaml").parse(
            """
            clusters:
              hpc:
                partition: from-profile
                time: "01:00:00"
                gpus: 1
                setup: ["profile line"]
                vllm_args: ["--profile-arg"]
            models:
              qwen:
                model: Qwen/Qwen2.5-14B-Instruct
                time: "02:00:00"
                gpus: 2
                setup: ["preset line"]
            """)
        let profile = try config.cluster(named: "hpc")
        func layered(_ argv: [String]) throws -> DeploySettings {
            let command = try DeployCommand.parse(argv)
            return config.layered(modelOrPreset: command.model, flags: command.flags, profile: profile)
                .settings
        }
        let plain = try layered(["qwen"])
        #expect(plain.partition == "from-profile")
        #expect(plain.time == "02:00:00")
        #expect(plain.gpus == 2)
        #expect(plain.setup == ["profile line", "preset line"])
        #expect(plain.vllmArgs == ["--profile-arg"])
        let flagged = try layered([
            "qwen", "--partition", "from-flag", "--time", "03:00:00", "--gpus", "4", "--setup", "flag line",
            "--", "--flag-arg",
        ])
        #expect(flagged.partition == "from-flag")
        #expect(flagged.time == "03:00:00")
        #expect(flagged.gpus == 4)
        #expect(flagged.setup == ["profile line", "preset line", "flag line"])
        #expect(flagged.vllmArgs == ["--profile-arg", "--flag-arg"])
        // A model that is not a preset: flags over the profile, named after the model.
        let (direct, name) = config.layered(
            modelOrPreset: "org/Other-Model",
            flags: try DeployCommand.parse(["org/Other-Model", "--gpus", "3"]).flags,
            profile: profile)
        #expect(direct.model == "org/Other-Model" && direct.gpus == 3 && direct.time == "01:00:00")
        #expect(name == "other-model")
    }

    @Test func badFlagValuesKeepTheirMessages() throws {
        let gpuRequest = #expect(throws: (any Error).self) {
            try DeployCommand.parse(["m", "--gpu-request", "cards"])
        }
        #expect(DeployCommand.message(for: gpuRequest!) == "--gpu-request must be `gres` or `gpus`.")
        let timeout = #expect(throws: (any Error).self) { try DeployCommand.parse(["m", "--timeout", "0"]) }
        #expect(
            DeployCommand.message(for: timeout!).hasPrefix("--timeout must be a number of seconds above 0"))
    }
}

extension DeployCommand {
    /// The `--flags` in `help` that are neither a row of the table nor one of deploy's own.
    static func flagsOnlyIn(help: String) -> [String] {
        let own: Set = [
            "config", "cluster", "accept-new-host-key", "name", "api-key-file", "dry-run", "no-wait", "json",
            "tunnel", "tunnel-port", "version", "help", "wait-all",
        ]
        let rows = Set(
            DeploySettings.table.compactMap { row -> String? in
                if case .option(let name, _) = row.flag { return name }
                return nil
            })
        let given = help.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" }).filter {
            $0.hasPrefix("--") && $0.count > 2 && $0.dropFirst(2).allSatisfy { $0.isLetter || $0 == "-" }
        }
        return given.map { String($0.dropFirst(2)) }.filter { !own.contains($0) && !rows.contains($0) }
    }
}
