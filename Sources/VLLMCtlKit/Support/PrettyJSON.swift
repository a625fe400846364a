import Foundation

/// JSON as vllmctl prints it for people and scripts: indented, keys sorted, slashes as is.
public enum PrettyJSON {
    public static func string(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
