import Foundation

/// Durations as people and Slurm write them: `90s`, `10m`, `2h`, `1d`, `1h30m`, and Slurm's
/// `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
public enum DurationText {
    /// Seconds for a duration the user typed. A bare number is refused: Slurm reads it as
    /// minutes, most people as seconds.
    public static func parse(_ text: String) throws -> TimeInterval {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let hint = "Write it as 90s, 10m, 2h, 1d (or combined, 1h30m), or as HH:MM:SS."
        if t.isEmpty { throw VLLMCtlError.invalidInput("An empty duration was given", hint: hint) }
        if t.contains(":") || t.contains("-") {
            guard let seconds = slurm(t) else {
                throw VLLMCtlError.invalidInput("`\(text)` is not a duration", hint: hint)
            }
            return try checked(seconds, text)
        }
        if Double(t) != nil {
            throw VLLMCtlError.invalidInput("`\(text)` has no unit", hint: hint)
        }
        var total = 0.0
        var number = ""
        for c in t {
            if c.isNumber || c == "." {
                number.append(c)
                continue
            }
            let unit: Double
            switch c {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86400
            default: throw VLLMCtlError.invalidInput("`\(text)` has an unknown unit `\(c)`", hint: hint)
            }
            guard let value = Double(number) else {
                throw VLLMCtlError.invalidInput("`\(text)` is not a duration", hint: hint)
            }
            total += value * unit
            number = ""
        }
        guard number.isEmpty else {
            throw VLLMCtlError.invalidInput("`\(text)` ends without a unit", hint: hint)
        }
        return try checked(total, text)
    }

    /// The longest duration vllmctl takes: 100 years.
    public static let longest: TimeInterval = 100 * 365 * 86400

    static func checked(_ seconds: TimeInterval, _ text: String) throws -> TimeInterval {
        guard seconds.isFinite, seconds <= longest else {
            throw VLLMCtlError.invalidInput(
                "`\(text)` is longer than vllmctl takes (100 years)", hint: "Give a shorter duration.")
        }
        return seconds
    }

    /// Seconds for Slurm's time format, as squeue's `%M` prints elapsed time (`0:05`,
    /// `1:02:03`, `2-03:04:05`); nil for anything else (`INVALID`, `UNLIMITED`, empty).
    public static func slurm(_ text: String) -> TimeInterval? {
        // A bare number means minutes to Slurm; squeue's elapsed time never prints one.
        guard text.contains(":") || text.contains("-") else { return nil }
        return SlurmTime.seconds(text).map(TimeInterval.init)
    }

    /// A short form for messages: `45s`, `12m`, `1h05m`, `2d03h`.
    public static func format(_ interval: TimeInterval) -> String {
        let s = interval.isFinite ? Int(max(0, min(interval, longest * 10)).rounded()) : 0
        if s >= 86400 { return "\(s / 86400)d" + pad(s % 86400 / 3600) + "h" }
        if s >= 3600 { return "\(s / 3600)h" + pad(s % 3600 / 60) + "m" }
        if s >= 60 { return s % 60 == 0 ? "\(s / 60)m" : "\(s / 60)m" + pad(s % 60) + "s" }
        return "\(s)s"
    }

    private static func pad(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
}
