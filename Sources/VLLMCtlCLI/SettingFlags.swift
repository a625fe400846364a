import ArgumentParser
import VLLMCtlKit

/// `vllmctl deploy`'s flags for the rows of ``DeploySettings/table`` that `Rows` selects,
/// declared from the table rather than one property each.
///
/// swift-argument-parser finds a command's arguments by reflecting a fresh instance
/// (`Mirror(reflecting: T())`) and decodes them through `init(from:)`. This type's
/// `customMirror` hands it one `Option` (or, for a `bool` row, one `Flag`) per row, named and
/// documented by the row, so `--help`, the man pages, shell completions and
/// `--experimental-dump-help` see ordinary options; `init(from:)` decodes them by the same
/// names into ``settings``. `SettingFlagsTests` checks that every row with a flag parses into
/// its property and that the help lists it.
struct SettingFlags<Rows: SettingRows>: ParsableArguments, CustomReflectable {
    /// The flags given, as one layer of settings (unset where a flag was not given).
    private(set) var settings = DeploySettings()
    /// What was wrong with a value, thrown by ``check()``.
    private var problem: String?

    init() {}

    static var rows: [DeploySetting] { DeploySettings.table.filter(Rows.includes) }

    /// The row's flag as swift-argument-parser declares it: name, short name and help.
    static func names(_ row: DeploySetting) -> (NameSpecification, String)? {
        guard case .option(let long, let short) = row.flag else { return nil }
        let names: NameSpecification =
            short.map { [.customLong(long), .customShort($0)] } ?? [.customLong(long)]
        return (names, long)
    }

    var customMirror: Mirror {
        let children: [Mirror.Child] = Self.rows.compactMap { row in
            guard let (name, label) = Self.names(row) else { return nil }
            let help = ArgumentHelp(row.help)
            let argument: Any =
                switch row.value {
                case .string, .gpuRequest: Option<String?>(name: name, help: help)
                case .int: Option<Int?>(name: name, help: help)
                case .double: Option<Double?>(name: name, help: help)
                case .bool: Flag<Bool>(wrappedValue: false, name: name, help: help)
                case .list(_, let splitWords, _):
                    splitWords
                        ? Option<String?>(name: name, help: help) as Any
                        : Option<[String]>(wrappedValue: [], name: name, help: help) as Any
                }
            return (label: label, value: argument)
        }
        return Mirror(self, children: children)
    }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        for row in Self.rows {
            guard let (_, label) = Self.names(row) else { continue }
            let key = Key(stringValue: label)
            switch row.value {
            case .string(let p):
                settings[keyPath: p] = try c.decode(Option<String?>.self, forKey: key).wrappedValue
            case .int(let p): settings[keyPath: p] = try c.decode(Option<Int?>.self, forKey: key).wrappedValue
            case .double(let p):
                settings[keyPath: p] = try c.decode(Option<Double?>.self, forKey: key).wrappedValue
            case .bool(let p):
                // A switch: given means true, absent leaves the preset's or profile's value.
                settings[keyPath: p] = try c.decode(Flag<Bool>.self, forKey: key).wrappedValue ? true : nil
            case .gpuRequest(let p):
                if let text = try c.decode(Option<String?>.self, forKey: key).wrappedValue {
                    settings[keyPath: p] = GPURequestStyle(rawValue: text)
                    if settings[keyPath: p] == nil { problem = "--\(label) must be `gres` or `gpus`." }
                }
            case .list(let p, let splitWords, _):
                if splitWords {
                    settings[keyPath: p] = try c.decode(Option<String?>.self, forKey: key).wrappedValue.map {
                        $0.split(separator: " ").map(String.init)
                    }
                } else {
                    let lines = try c.decode(Option<[String]>.self, forKey: key).wrappedValue
                    settings[keyPath: p] = lines.isEmpty ? nil : lines
                }
            }
        }
    }

    /// Throws what was wrong with a value (`--gpu-request cards`). The command's `validate()`
    /// calls it, so the error is reported as the command's own validation errors are.
    func check() throws {
        if let problem { throw ValidationError(problem) }
    }
}

/// Which rows of the settings table a ``SettingFlags`` group declares.
protocol SettingRows {
    static func includes(_ row: DeploySetting) -> Bool
}

/// The job's settings: every row with a flag but the ready timeout.
enum JobSettingRows: SettingRows {
    static func includes(_ row: DeploySetting) -> Bool { row.key != "ready_timeout" }
}

/// How long deploy waits (`--timeout`), which `--help` lists among deploy's own options.
enum WaitSettingRows: SettingRows {
    static func includes(_ row: DeploySetting) -> Bool { row.key == "ready_timeout" }
}
