import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// known_hosts files, checked line by line with libssh2's parser so that hashed (`|1|`)
/// entries work and a mismatch can name its file and line.
///
/// Hosts on a port other than 22 are looked up as `[host]:port` only, as OpenSSH does.
struct KnownHosts {
    enum Result: Equatable {
        case match
        /// A line for this host and key type holds another key.
        case changed(file: String, line: Int)
        /// The key is marked `@revoked` (it must never be accepted, as in OpenSSH).
        case revoked(file: String, line: Int)
        case unknown
    }

    /// The libssh2 session whose known-host collections parse the lines; `owner` keeps it alive.
    private let raw: OpaquePointer
    private let owner: AnyObject
    let files: [String]
    /// A file's text, or nil when it cannot be read (it is then skipped).
    var read: @Sendable (String) -> String? = { try? String(contentsOfFile: $0, encoding: .utf8) }

    init(session: SSHSession, files: [String]) {
        raw = session.raw
        owner = session
        self.files = files
    }

    /// Checks against `files` without a connection, on a libssh2 session of its own that is never
    /// connected (libssh2's known-host parser needs one): for the fuzz target and tests. Nil when
    /// libssh2 cannot create a session.
    init?(unconnectedWithFiles files: [String]) {
        guard let session = UnconnectedSession() else { return nil }
        raw = session.raw
        owner = session
        self.files = files
    }

    /// The name known_hosts uses for the host: `host`, or `[host]:port` off port 22.
    static func hostPattern(_ host: String, _ port: Int) -> String {
        port == 22 ? host : "[\(host)]:\(port)"
    }

    /// The key types (LIBSSH2_KNOWNHOST_KEY_*) recorded for the host, in file order.
    func keyTypes(host: String, port: Int) -> [Int32] {
        var types: [Int32] = []
        // A key that matches nothing, with key type 0 (any): every line for the host then
        // answers MATCH or MISMATCH and tells its own type.
        eachLine(host: host, port: port, key: Data([0]), keyType: 0) { status, known, _, _ in
            if status != LIBSSH2_KNOWNHOST_CHECK_NOTFOUND {
                let t = Int32(known & Int32(LIBSSH2_KNOWNHOST_KEY_MASK))
                if !types.contains(t) { types.append(t) }
            }
            return false
        }
        return types
    }

    func check(host: String, port: Int, key: Data, keyType: Int32) -> Result {
        var changed: (String, Int)?
        var matched = false
        var revoked: (String, Int)?
        // A revoked key is refused whatever else the files say.
        eachLine(host: host, port: port, key: key, keyType: keyType, marker: "@revoked") {
            status, _, file, line in
            if status == LIBSSH2_KNOWNHOST_CHECK_MATCH { revoked = (file, line) }
            return revoked != nil
        }
        if let revoked { return .revoked(file: revoked.0, line: revoked.1) }
        eachLine(host: host, port: port, key: key, keyType: keyType) { status, _, file, line in
            if status == LIBSSH2_KNOWNHOST_CHECK_MATCH {
                matched = true
                return true
            }
            if status == LIBSSH2_KNOWNHOST_CHECK_MISMATCH && changed == nil { changed = (file, line) }
            return false
        }
        if matched { return .match }
        if let changed { return .changed(file: changed.0, line: changed.1) }
        return .unknown
    }

    /// Calls `body(status, typemask of the line's key, file, line)` for each parsable line,
    /// until it returns true. With `marker` (`@revoked`), only lines with that marker, read
    /// without it; without, only lines without a marker (`@cert-authority` is not supported).
    private func eachLine(
        host: String, port: Int, key: Data, keyType: Int32, marker: String? = nil,
        _ body: (Int32, Int32, String, Int) -> Bool
    ) {
        let name = Self.hostPattern(host, port)
        let typemask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | keyType
        for file in files {
            guard let text = read(file) else { continue }
            for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                var trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
                if let marker {
                    guard trimmed.hasPrefix(marker + " ") || trimmed.hasPrefix(marker + "\t") else {
                        continue
                    }
                    trimmed = trimmed.dropFirst(marker.count).trimmingCharacters(in: .whitespaces)
                } else if trimmed.hasPrefix("@") {
                    continue
                }
                guard let collection = libssh2_knownhost_init(raw) else { continue }
                defer { libssh2_knownhost_free(collection) }
                guard
                    libssh2_knownhost_readline(
                        collection, trimmed, trimmed.utf8.count, LIBSSH2_KNOWNHOST_FILE_OPENSSH) == 0
                else { continue }
                var found: UnsafeMutablePointer<libssh2_knownhost>?
                let status = key.withUnsafeBytes { raw in
                    libssh2_knownhost_checkp(
                        collection, name, -1, raw.baseAddress!.assumingMemoryBound(to: CChar.self), key.count,
                        typemask, &found)
                }
                let knownType = found.map { Int32($0.pointee.typemask) } ?? 0
                if body(status, knownType, file, index + 1) { return }
            }
        }
    }

    /// LIBSSH2_KNOWNHOST_KEY_* for a LIBSSH2_HOSTKEY_TYPE_*.
    static func keyType(forHostKeyType type: Int32) -> Int32 {
        switch type {
        case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA
        case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521
        case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519
        default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN
        }
    }

    /// The name a key type has in a known_hosts line.
    static func typeName(_ keyType: Int32) -> String {
        switch keyType {
        case LIBSSH2_KNOWNHOST_KEY_SSHRSA: return "ssh-rsa"
        case LIBSSH2_KNOWNHOST_KEY_SSHDSS: return "ssh-dss"
        case LIBSSH2_KNOWNHOST_KEY_ECDSA_256: return "ecdsa-sha2-nistp256"
        case LIBSSH2_KNOWNHOST_KEY_ECDSA_384: return "ecdsa-sha2-nistp384"
        case LIBSSH2_KNOWNHOST_KEY_ECDSA_521: return "ecdsa-sha2-nistp521"
        case LIBSSH2_KNOWNHOST_KEY_ED25519: return "ssh-ed25519"
        default: return "unknown"
        }
    }

    /// Host key method names (for libssh2_session_method_pref) that produce a key type.
    static func methodNames(forKeyType keyType: Int32) -> [String] {
        switch keyType {
        case LIBSSH2_KNOWNHOST_KEY_SSHRSA: return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        case LIBSSH2_KNOWNHOST_KEY_UNKNOWN: return []
        default: return [typeName(keyType)]
        }
    }

    /// Appends `[host]:port type base64` to `file` (created 0600, its directory 0700).
    static func append(host: String, port: Int, typeName: String, key: Data, to file: String, place: String)
        throws
    {
        let directory = (file as NSString).deletingLastPathComponent
        if !directory.isEmpty { mkdir(directory, 0o700) }
        var line = "\(hostPattern(host, port)) \(typeName) \(key.base64EncodedString())\n"
        // Start on a new line if the file does not end with one.
        if let existing = FileManager.default.contents(atPath: file), let last = existing.last,
            last != UInt8(ascii: "\n")
        {
            line = "\n" + line
        }
        let fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SSHError(
                host: place,
                message: "cannot record the new host key in \(file): \(String(cString: strerror(errno)))",
                hint: "Check the file's permissions")
        }
        defer { close(fd) }
        let bytes = Array(line.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else {
            throw SSHError(
                host: place,
                message: "cannot record the new host key in \(file): \(String(cString: strerror(errno)))",
                hint: "Check the disk and the file's permissions")
        }
    }
}

/// A libssh2 session that never connects, freed with this object.
private final class UnconnectedSession {
    let raw: OpaquePointer

    init?() {
        guard LibSSH2.problem == nil else { return nil }
        guard let raw = libssh2_session_init_ex(nil, nil, nil, nil) else { return nil }
        self.raw = raw
    }

    deinit { libssh2_session_free(raw) }
}
