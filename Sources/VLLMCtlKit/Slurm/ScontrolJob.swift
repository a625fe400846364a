/// `scontrol show job --oneliner ID`: `Key=Value` pairs separated by spaces.
public enum ScontrolJob {
    public static func parse(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for token in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            guard let eq = token.firstIndex(of: "=") else { continue }
            fields[String(token[..<eq])] = String(token[token.index(after: eq)...])
        }
        return fields
    }
}
