import Foundation

/// A private key vllmctl could offer: from ssh-agent or a key file.
public struct SSHIdentity: Sendable, Equatable {
    /// `ssh-agent key COMMENT` or the key file's path.
    public var name: String
    /// `ssh-ed25519`, `ecdsa…`, `ssh-rsa`, or nil when unreadable.
    public var type: String?
    public var encrypted: Bool
    public var fromAgent: Bool

    public init(name: String, type: String?, encrypted: Bool = false, fromAgent: Bool = false) {
        self.name = name
        self.type = type
        self.encrypted = encrypted
        self.fromAgent = fromAgent
    }

    var isRSA: Bool { type == "ssh-rsa" }
    var shortType: String {
        guard let type else { return "unknown type" }
        if type.hasPrefix("ecdsa") { return "ECDSA" }
        switch type {
        case "ssh-ed25519": return "ed25519"
        case "ssh-rsa": return "RSA"
        case "ssh-dss": return "DSA"
        default: return type
        }
    }
}

/// Pure decisions about SSH for `vllmctl doctor`.
public enum SSHAdvice {
    /// `(9, 2)` from `SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3`; nil for other servers.
    public static func openSSHVersion(banner: String?) -> (major: Int, minor: Int)? {
        guard let banner, let range = banner.range(of: "OpenSSH_") else { return nil }
        let digits = banner[range.upperBound...].prefix { $0.isNumber || $0 == "." }
        let parts = digits.split(separator: ".").compactMap { Int($0) }
        guard let major = parts.first else { return nil }
        return (major, parts.count > 1 ? parts[1] : 0)
    }

    /// `(1, 10)` from `1.10.0`.
    public static func version(_ text: String) -> (major: Int, minor: Int)? {
        let parts = text.split(separator: ".").compactMap { Int($0) }
        guard parts.count >= 2 else { return nil }
        return (parts[0], parts[1])
    }

    /// libssh2 before 1.11 signs RSA keys only with ssh-rsa (SHA-1).
    public static func libssh2SignsRSAWithSHA1(_ libssh2Version: String) -> Bool {
        guard let v = version(libssh2Version) else { return true }
        return v < (1, 11)
    }

    /// OpenSSH 8.8 and later refuse ssh-rsa (SHA-1) signatures unless configured otherwise.
    public static func refusesSHA1RSA(banner: String?) -> Bool? {
        guard let v = openSSHVersion(banner: banner) else { return nil }
        return !(v < (8, 8))
    }

    static let makeEd25519 =
        "`ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519`, add ~/.ssh/id_ed25519.pub to ~/.ssh/authorized_keys on the cluster (`ssh-copy-id -i ~/.ssh/id_ed25519.pub HOST` with a key that works), and name it with `IdentityFile ~/.ssh/id_ed25519` in the ssh_config entry"

    /// Which identity would be used and whether its type works with this libssh2 and server.
    /// `loggedInWith` is what the login succeeded with, nil when it failed or was not tried.
    public static func identity(
        candidates: [SSHIdentity], banner: String?, libssh2Version: String, loggedInWith: String?
    ) -> (verdict: DoctorVerdict, detail: String, fix: String?) {
        guard let first = candidates.first else {
            return (
                .problem, "no key: no agent identity and none of the IdentityFile keys exist",
                "Make an ed25519 key: " + makeEd25519
            )
        }
        let list = candidates.map { "\($0.name) (\($0.shortType)\($0.encrypted ? ", encrypted" : ""))" }
        let shown = list.prefix(3).joined(separator: ", ") + (list.count > 3 ? ", …" : "")
        let rsaProblem =
            libssh2SignsRSAWithSHA1(libssh2Version) && (refusesSHA1RSA(banner: banner) ?? true)
        let server = openSSHVersion(banner: banner).map { "OpenSSH \($0.major).\($0.minor)" } ?? "the server"
        let why =
            "libssh2 \(libssh2Version) signs RSA keys only with ssh-rsa (SHA-1), which \(server) refuses by default"
        if let used = loggedInWith {
            let usedIdentity = candidates.first { $0.name == used }
            if usedIdentity?.isRSA == true && rsaProblem {
                return (
                    .warning,
                    "logged in with the RSA key \(used) only because this server still accepts ssh-rsa; \(why)",
                    "Before the server drops ssh-rsa, make an ed25519 key: " + makeEd25519
                )
            }
            return (.ok, "logged in with \(used); offered in order: \(shown)", nil)
        }
        let usable = candidates.filter { !$0.isRSA || !rsaProblem }
        if usable.isEmpty && rsaProblem {
            return (
                .problem, "only RSA keys (\(shown)): \(why)",
                "Use an ed25519 or ECDSA key; to make one: " + makeEd25519
            )
        }
        if first.isRSA && rsaProblem {
            return (
                .warning,
                "the RSA key \(first.name) is offered first and will be refused (\(why)); next: \(usable.first?.name ?? "none")",
                "Put an ed25519 or ECDSA key first with IdentityFile; to make one: " + makeEd25519
            )
        }
        let encryptedNote =
            first.encrypted && !first.fromAgent
            ? "; it is encrypted: vllmctl asks for its passphrase on a terminal, or load it with `ssh-add`"
            : ""
        return (.ok, "would offer \(shown)\(encryptedNote)", nil)
    }

    /// Parses ssh-agent's SSH2_AGENT_IDENTITIES_ANSWER (after the 4-byte length): message 12,
    /// a count, then (key blob, comment) pairs. The key type is the blob's first string.
    public static func agentIdentities(_ message: Data) -> [SSHIdentity]? {
        guard message.first == 12 else { return nil }
        var reader = SSHWireReader(data: message.dropFirst())
        guard let count = reader.uint32() else { return nil }
        var out: [SSHIdentity] = []
        for _ in 0..<min(Int(count), 1000) {
            guard let blob = reader.bytes(), let comment = reader.string() else { return nil }
            var inner = SSHWireReader(data: blob)
            let type = inner.string().map { String(decoding: $0, as: UTF8.self) }
            out.append(
                SSHIdentity(
                    name: "ssh-agent key \(String(decoding: comment, as: UTF8.self))", type: type,
                    fromAgent: true))
        }
        return out
    }
}
