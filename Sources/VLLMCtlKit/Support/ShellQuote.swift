import Foundation

/// Quoting for POSIX shells.
public enum Shell {
    /// Quotes `value` so that a POSIX shell reads it back as exactly one word, unchanged.
    ///
    /// Plain words made only of safe characters stay as they are; everything else is put in
    /// single quotes, where nothing is special except the single quote itself.
    public static func quote(_ value: String) -> String {
        if !value.isEmpty, value.unicodeScalars.allSatisfy(isSafe) {
            return value
        }
        return "'" + value.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
    }

    /// Quotes every word of `argv` and joins them with spaces: a command line a shell runs as
    /// that exact argv.
    public static func join(_ argv: [String]) -> String {
        argv.map(quote).joined(separator: " ")
    }

    private static func isSafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9": return true
        case "-", "_", ".", "/", ":", "=", "@", "%", "+", ",": return true
        default: return false
        }
    }
}
