/// One sample from Prometheus' text exposition format.
public struct MetricSample: Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
    public var value: Double
}

/// Parses Prometheus' text format (what vLLM's `/metrics` serves).
public enum PrometheusText {
    public static func parse(_ text: String) -> [MetricSample] {
        var samples: [MetricSample] = []
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            var name = ""
            var labels: [String: String] = [:]
            var rest = Substring(line)
            if let brace = line.firstIndex(of: "{"), let close = line.lastIndex(of: "}"), brace < close {
                name = String(line[..<brace])
                labels = parseLabels(line[line.index(after: brace)..<close])
                rest = line[line.index(after: close)...]
            } else {
                let parts = line.split(separator: " ", maxSplits: 1)
                guard parts.count == 2 else { continue }
                name = String(parts[0])
                rest = parts[1]
            }
            let fields = rest.split(separator: " ")
            guard let first = fields.first,
                let value = Double(first == "+Inf" ? "inf" : first == "-Inf" ? "-inf" : String(first))
            else { continue }
            samples.append(MetricSample(name: name, labels: labels, value: value))
        }
        return samples
    }

    /// The sum of all samples named `name` (over label sets), or nil when there are none.
    public static func total(_ samples: [MetricSample], _ name: String) -> Double? {
        let matching = samples.filter { $0.name == name }
        return matching.isEmpty ? nil : matching.reduce(0) { $0 + $1.value }
    }

    private static func parseLabels(_ text: Substring) -> [String: String] {
        var labels: [String: String] = [:]
        var i = text.startIndex
        while i < text.endIndex {
            guard let eq = text[i...].firstIndex(of: "=") else { break }
            let key = text[i..<eq].trimmingCharacters(in: [" ", ","])
            var j = text.index(after: eq)
            guard j < text.endIndex, text[j] == "\"" else { break }
            j = text.index(after: j)
            var value = ""
            while j < text.endIndex, text[j] != "\"" {
                if text[j] == "\\", text.index(after: j) < text.endIndex {
                    j = text.index(after: j)
                    value.append(text[j] == "n" ? "\n" : text[j])
                } else {
                    value.append(text[j])
                }
                j = text.index(after: j)
            }
            labels[key] = value
            i = j < text.endIndex ? text.index(after: j) : j
        }
        return labels
    }
}
