import Foundation

/// The public parts of an OpenSSH private key file: its type and whether it is encrypted.
struct PrivateKeyInfo {
    var type: String?
    var encrypted = false

    init(path: String) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        if text.contains("BEGIN RSA PRIVATE KEY") {
            type = "ssh-rsa"
            encrypted = text.contains("ENCRYPTED")
            return
        }
        if text.contains("BEGIN EC PRIVATE KEY") {
            type = "ecdsa"
            encrypted = text.contains("ENCRYPTED")
            return
        }
        let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        guard let data = Data(base64Encoded: body) else { return }
        // "openssh-key-v1\0", string ciphername, string kdfname, string kdfoptions, uint32 n,
        // string publickey (whose first field is the key type).
        var reader = SSHWireReader(data: data.dropFirst(15))
        guard data.starts(with: Data("openssh-key-v1\0".utf8)), let cipher = reader.string(),
            reader.string() != nil,
            reader.string() != nil, reader.uint32() != nil, let publicKey = reader.bytes()
        else { return }
        encrypted = String(decoding: cipher, as: UTF8.self) != "none"
        var inner = SSHWireReader(data: publicKey)
        type = inner.string().map { String(decoding: $0, as: UTF8.self) }
    }

    /// The key blob of a `.pub` file (`type base64 comment`).
    static func publicBlob(path: String) -> Data? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count >= 2 else { return nil }
        return Data(base64Encoded: String(fields[1]))
    }
}

/// Reads SSH wire-format fields (uint32 lengths, big-endian).
struct SSHWireReader {
    var data: Data

    init(data: Data) { self.data = Data(data) }

    mutating func uint32() -> UInt32? {
        guard data.count >= 4 else { return nil }
        let v = data.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        data = data.dropFirst(4)
        return v
    }

    mutating func bytes() -> Data? {
        guard let n = uint32(), data.count >= Int(n) else { return nil }
        let v = Data(data.prefix(Int(n)))
        data = data.dropFirst(Int(n))
        return v
    }

    mutating func string() -> Data? { bytes() }
}
