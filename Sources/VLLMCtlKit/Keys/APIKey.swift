import Foundation

/// API keys in the seed's format: `sk-` followed by 32 lowercase letters and digits.
///
/// 32 symbols from an alphabet of 36 carry log2(36^32) ≈ 165 bits.
public struct APIKey: Sendable, Equatable, CustomStringConvertible {
    /// What every key starts with.
    public static let prefix = "sk-"
    /// The number of random symbols after the prefix.
    public static let length = 32
    static let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")

    /// The secret itself. Printing an `APIKey` shows only a redacted form.
    public let value: String

    /// The characters a key given by the user may hold: letters, digits and `-._~+/=` (the
    /// URL-safe and base64 alphabets). Nothing a shell, JSON or an HTTP header treats specially,
    /// so the key can be written into the job's JSON and the seed's curl line as it is.
    static let allowedPunctuation: Set<Character> = ["-", ".", "_", "~", "+", "/", "="]
    /// Lengths a key given by the user may have.
    public static let allowedLengths = 16...512

    /// Wraps a key given by the user (`--api-key-file`), checking its shape.
    public init(_ value: String) throws {
        let safe = value.unicodeScalars.allSatisfy {
            $0.isASCII
                && (CharacterSet.alphanumerics.contains($0)
                    || Self.allowedPunctuation.contains(Character($0)))
        }
        guard safe, Self.allowedLengths.contains(value.count) else {
            throw VLLMCtlError.invalidInput(
                "The API key given is not usable: a key may hold only letters, digits and `-._~+/=`, \(Self.allowedLengths.lowerBound) to \(Self.allowedLengths.upperBound) of them (this one \(safe ? "has \(value.count)" : "holds other characters"))",
                hint:
                    "Leave --api-key-file out and vllmctl generates a strong one, or make one with `openssl rand -hex 24`."
            )
        }
        self.value = value
    }

    private init(unchecked value: String) { self.value = value }

    /// The key in the file at `path` (`--api-key-file`): its one line, checked like ``init(_:)``.
    public init(contentsOfFile path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw VLLMCtlError.file(
                path: path, message: "cannot be read; give a file that holds the key on one line")
        }
        try self.init(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A new key drawn from `generator`. In the product this is `SystemRandomNumberGenerator`,
    /// the operating system's CSPRNG (getrandom(2) on Linux); `Int.random(in:using:)` rejects
    /// biased draws, so every symbol is uniform.
    public static func generate<G: RandomNumberGenerator>(using generator: inout G) -> APIKey {
        var symbols = ""
        symbols.reserveCapacity(length)
        for _ in 0..<length {
            symbols.append(alphabet[Int.random(in: 0..<alphabet.count, using: &generator)])
        }
        return APIKey(unchecked: prefix + symbols)
    }

    /// A new key from the operating system's CSPRNG.
    public static func generate() -> APIKey {
        var system = SystemRandomNumberGenerator()
        return generate(using: &system)
    }

    /// Whether `text` has the exact shape of a generated key.
    public static func isGeneratedShape(_ text: String) -> Bool {
        guard text.hasPrefix(prefix) else { return false }
        let body = text.dropFirst(prefix.count)
        return body.count == length && body.allSatisfy { alphabet.contains($0) }
    }

    /// A redacted form, so that a key printed by accident shows nothing secret.
    public var description: String { "sk-…(redacted)" }
}
