import CLibSSH2
import Foundation

/// The SSH handshake and the server's host key: checked against known_hosts (hashed and
/// `[host]:port` entries included), recorded or refused as the `HostKeyPolicy` says.
extension SSHSession {
    func handshake() throws {
        // Prefer the host key types known_hosts has for this host, so that a known_hosts with
        // only an ed25519 key matches what the server shows.
        let known = KnownHosts(session: self, files: options.knownHostsFiles + options.globalKnownHostsFiles)
        let types = known.keyTypes(host: options.host, port: options.port)
        if !types.isEmpty {
            let supported = supportedAlgorithms(LIBSSH2_METHOD_HOSTKEY)
            var names: [String] = []
            for type in types {
                for name in KnownHosts.methodNames(forKeyType: type)
                where supported.contains(name) && !names.contains(name) {
                    names.append(name)
                }
            }
            if !names.isEmpty {
                _ = libssh2_session_method_pref(raw, LIBSSH2_METHOD_HOSTKEY, names.joined(separator: ","))
            }
        }
        if libssh2_session_handshake(raw, socket) != 0 {
            throw error(
                "the SSH handshake failed",
                hint:
                    "Is an SSH server listening on port \(options.port)? If the server only offers algorithms libssh2 1.10 lacks, ask the admins or use another login node"
            )
        }
    }

    /// `SHA256:…` as OpenSSH prints it.
    private func hostKeyFingerprint() -> String {
        guard let hash = libssh2_hostkey_hash(raw, LIBSSH2_HOSTKEY_HASH_SHA256) else { return "unknown" }
        let bytes = Data(bytes: hash, count: 32).base64EncodedString()
        return "SHA256:" + bytes.replacingOccurrences(of: "=", with: "")
    }

    private func supportedAlgorithms(_ method: Int32) -> Set<String> {
        var algs: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        let n = libssh2_session_supported_algs(raw, method, &algs)
        guard n > 0, let algs else { return [] }
        defer { libssh2_free(raw, algs) }
        var out: Set<String> = []
        for i in 0..<Int(n) { if let p = algs[i] { out.insert(String(cString: p)) } }
        return out
    }

    func checkHostKey() throws {
        var length = 0
        var type: Int32 = 0
        guard let keyPtr = libssh2_session_hostkey(raw, &length, &type) else {
            throw error(
                "the server sent no host key", hint: "Try again; if it persists, ask the cluster admins")
        }
        let key = Data(bytes: keyPtr, count: length)
        let known = KnownHosts(session: self, files: options.knownHostsFiles + options.globalKnownHostsFiles)
        let keyType = KnownHosts.keyType(forHostKeyType: type)
        let typeName = KnownHosts.typeName(keyType)
        let result = known.check(host: options.host, port: options.port, key: key, keyType: keyType)
        if let observe = options.onHostKey {
            let status: SSHHostKeyFinding.Status
            switch result {
            case .match: status = .known
            case .unknown: status = .unknown
            case .changed(let file, let line): status = .changed(file: file, line: line)
            case .revoked(let file, let line): status = .revoked(file: file, line: line)
            }
            observe(
                SSHHostKeyFinding(
                    typeName: typeName, fingerprint: hostKeyFingerprint(), status: status,
                    serverBanner: serverBanner,
                    hostPattern: KnownHosts.hostPattern(options.host, options.port)))
        }
        switch result {
        case .match:
            return
        case .revoked(let file, let line):
            throw SSHError(
                host: options.place,
                message:
                    "the server's \(typeName) host key is marked @revoked at \(file):\(line), so vllmctl refuses it (as OpenSSH does)",
                hint:
                    "Ask the cluster admins for the host's current key and its fingerprint; do not remove the @revoked line unless they confirm the key is safe again"
            )
        case .changed(let file, let line):
            throw SSHError(
                host: options.place,
                message:
                    "the host key has CHANGED: the server shows a different \(typeName) key than the one recorded at \(file):\(line). Someone may be intercepting the connection, or the host was reinstalled",
                hint:
                    "Ask the cluster admins for the new key's fingerprint; once confirmed, remove the old line with `ssh-keygen -R '\(KnownHosts.hostPattern(options.host, options.port))' -f \(file)` and connect again"
            )
        case .unknown:
            let fingerprint = hostKeyFingerprint()
            if options.hostKeyPolicy == .acceptOnce {
                unknownHostAccepted = true
                return
            }
            guard options.hostKeyPolicy == .acceptNew else {
                let files =
                    options.knownHostsFiles.isEmpty
                    ? "known_hosts" : options.knownHostsFiles.joined(separator: ", ")
                throw SSHError(
                    host: options.place,
                    message: "the host is not in \(files) (its \(typeName) key is \(fingerprint))",
                    hint:
                        "Check the fingerprint with the cluster admins, then run again with `--accept-new-host-key` to record it (or `ssh` to it once)"
                )
            }
            guard let file = options.knownHostsFiles.first else {
                throw SSHError(
                    host: options.place,
                    message: "the host is unknown and there is no known_hosts file to record it in",
                    hint: "Set UserKnownHostsFile in your ssh_config")
            }
            try KnownHosts.append(
                host: options.host, port: options.port, typeName: typeName, key: key, to: file,
                place: options.place)
        }
    }
}
