import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Authentication: the agent's identities, then key files (asking for a passphrase), then
/// keyboard-interactive; a refusal says what was tried and what to do.
extension SSHSession {
    func authenticate() throws {
        let user = options.user
        var methodsPtr = libssh2_userauth_list(raw, user, UInt32(user.utf8.count))
        if methodsPtr == nil && libssh2_userauth_authenticated(raw) != 0 { return }
        guard let listed = methodsPtr else {
            throw error("the server did not list its authentication methods", hint: "Try again")
        }
        let methods = Set(String(cString: listed).split(separator: ",").map(String.init))
        methodsPtr = nil
        var tried: [String] = []
        var rsaFailed = false

        if methods.contains("publickey") {
            if let socketPath = options.agentSocket, try authenticateWithAgent(socketPath, tried: &tried) {
                return
            }
            for file in options.identityFiles where FileManager.default.fileExists(atPath: file) {
                let info = PrivateKeyInfo(path: file)
                var passphrase: String?
                var rc = libssh2_userauth_publickey_fromfile_ex(
                    raw, user, UInt32(user.utf8.count), nil, file, nil)
                if rc == LIBSSH2_ERROR_FILE && info.encrypted {
                    passphrase = options.passphrase?(file)
                    guard let passphrase else {
                        tried.append("\(file) (encrypted, no passphrase given)")
                        continue
                    }
                    rc = libssh2_userauth_publickey_fromfile_ex(
                        raw, user, UInt32(user.utf8.count), nil, file, passphrase)
                }
                if rc == 0 {
                    authenticatedWith = file
                    return
                }
                let last = lastError.message
                if rc == LIBSSH2_ERROR_FILE {
                    tried.append(
                        "\(file) (cannot be read\(passphrase != nil ? "; wrong passphrase?" : ""): \(last))")
                } else {
                    tried.append("\(file) (refused)")
                    if info.type == "ssh-rsa" { rsaFailed = true }
                }
                if libssh2_session_last_errno(raw) == LIBSSH2_ERROR_SOCKET_RECV
                    || libssh2_session_last_errno(raw) == LIBSSH2_ERROR_SOCKET_DISCONNECT
                {
                    throw error("the connection dropped during authentication", hint: "Try again")
                }
            }
        }

        if methods.contains("keyboard-interactive") {
            if unknownHostAccepted {
                tried.append("keyboard-interactive (not offered to a host whose key is unknown)")
            } else if box.keyboardInteractive == nil {
                tried.append("keyboard-interactive (no terminal to answer its prompts)")
            } else {
                let rc = libssh2_userauth_keyboard_interactive_ex(
                    raw, user, UInt32(user.utf8.count), keyboardInteractiveCallback)
                if rc == 0 {
                    authenticatedWith = "keyboard-interactive"
                    return
                }
                tried.append("keyboard-interactive (refused)")
            }
        }

        if rsaFailed {
            throw SSHError(
                host: options.place,
                message:
                    "the server refused the RSA key. libssh2 1.10 signs RSA keys only with ssh-rsa (SHA-1), which OpenSSH 8.8+ refuses",
                hint:
                    "Use an ed25519 or ECDSA key: `ssh-keygen -t ed25519`, add the .pub to ~/.ssh/authorized_keys on the cluster, and name it with IdentityFile"
            )
        }
        let triedText =
            tried.isEmpty
            ? "no key or agent identity was available" : "tried " + tried.joined(separator: ", ")
        throw SSHError(
            host: options.place,
            message:
                "authentication as `\(user)` failed (\(triedText); the server accepts: \(methods.sorted().joined(separator: ", ")))",
            hint: methods.contains("publickey") || !methods.contains("keyboard-interactive")
                ? "Check User and IdentityFile in your ssh_config and that the public key is in ~/.ssh/authorized_keys on the cluster; an ssh-agent (SSH_AUTH_SOCK) is tried first"
                : "This server asks questions (password, one-time code) instead of taking keys: run vllmctl on a terminal and answer them correctly, and check User in your ssh_config"
        )
    }

    /// Offers the agent's identities; true once one is accepted.
    private func authenticateWithAgent(_ socketPath: String, tried: inout [String]) throws -> Bool {
        guard let agent = libssh2_agent_init(raw) else { return false }
        defer { libssh2_agent_free(agent) }
        libssh2_agent_set_identity_path(agent, socketPath)
        guard libssh2_agent_connect(agent) == 0 else {
            tried.append("ssh-agent at \(socketPath) (cannot connect)")
            return false
        }
        defer { libssh2_agent_disconnect(agent) }
        guard libssh2_agent_list_identities(agent) == 0 else { return false }
        let allowed: Set<Data>? =
            options.identitiesOnly
            ? Set(options.identityFiles.compactMap { PrivateKeyInfo.publicBlob(path: $0 + ".pub") }) : nil
        var prev: UnsafeMutablePointer<libssh2_agent_publickey>?
        var identity: UnsafeMutablePointer<libssh2_agent_publickey>?
        while libssh2_agent_get_identity(agent, &identity, prev) == 0, let id = identity {
            prev = id
            let blob = Data(bytes: id.pointee.blob, count: Int(id.pointee.blob_len))
            if let allowed, !allowed.contains(blob) { continue }
            if libssh2_agent_userauth(agent, options.user, id) == 0 {
                authenticatedWith = "ssh-agent key \(id.pointee.comment.map { String(cString: $0) } ?? "")"
                return true
            }
            tried.append("ssh-agent key \(id.pointee.comment.map { String(cString: $0) } ?? "") (refused)")
        }
        return false
    }
}

private let keyboardInteractiveCallback:
    @convention(c) (
        UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, Int32, Int32,
        UnsafePointer<LIBSSH2_USERAUTH_KBDINT_PROMPT>?,
        UnsafeMutablePointer<LIBSSH2_USERAUTH_KBDINT_RESPONSE>?,
        UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) -> Void = { _, _, instruction, instructionLength, count, prompts, responses, abstract in
        guard let abstract, let pointer = abstract.pointee, let prompts, let responses else { return }
        let box = Unmanaged<CallbackBox>.fromOpaque(pointer).takeUnretainedValue()
        let text =
            instruction.map {
                String(
                    decoding: UnsafeRawBufferPointer(start: $0, count: Int(instructionLength)), as: UTF8.self)
            } ?? ""
        var asked: [(String, Bool)] = []
        for i in 0..<Int(count) {
            let p = prompts[i]
            let prompt =
                p.text.map {
                    String(decoding: UnsafeRawBufferPointer(start: $0, count: Int(p.length)), as: UTF8.self)
                } ?? ""
            asked.append((prompt, p.echo != 0))
        }
        guard let answers = box.keyboardInteractive?(text, asked) else { return }
        for i in 0..<min(Int(count), answers.count) {
            // libssh2 frees the answers with its free function (the default: free).
            responses[i].text = strdup(answers[i])
            responses[i].length = UInt32(answers[i].utf8.count)
        }
    }
