import Foundation

@testable import VLLMCtlKit

/// The loopback sshds of the local cluster: 2222 (OpenSSH defaults), 2223 (also ssh-rsa) and
/// 2224 (keyboard-interactive through PAM only, for `vllmctl-kbd`).
package enum LocalSSH {
    package static let dir = repoRoot + "/.cluster/ssh"
    package static let knownHosts = dir + "/known_hosts"
    package static let config = dir + "/ssh_config"
    package static var user: String { ProcessInfo.processInfo.userName }

    package static func options(
        port: Int = 2222, keys: [String] = ["id_ed25519"], knownHosts: [String] = [knownHosts],
        policy: HostKeyPolicy = .strict, agent: String? = nil,
        passphrase: (@Sendable (String) -> String?)? = nil, host: String = "127.0.0.1"
    ) -> SSHConnectOptions {
        SSHConnectOptions(
            displayName: "test-\(port)", host: host, port: port, user: user,
            identityFiles: keys.map { dir + "/" + $0 }, identitiesOnly: true, knownHostsFiles: knownHosts,
            hostKeyPolicy: policy, connectTimeout: 10, agentSocket: agent, passphrase: passphrase)
    }

    package static let kbdPort = 2224
    package static let kbdUser = "vllmctl-kbd"

    /// The password PAM asks `vllmctl-kbd` for (made by cluster-up.sh).
    package static func kbdPassword() throws -> String {
        try String(contentsOfFile: dir + "/kbd-password.txt", encoding: .utf8)
            .trimmingCharacters(in: .newlines)
    }

    /// Options for the keyboard-interactive sshd: no keys, no agent, only `answer`.
    package static func kbdOptions(
        answer: (@Sendable (String, [(String, Bool)]) -> [String]?)?
    ) -> SSHConnectOptions {
        SSHConnectOptions(
            displayName: "test-\(kbdPort)", host: "127.0.0.1", port: kbdPort, user: kbdUser,
            identityFiles: [], identitiesOnly: true, knownHostsFiles: [knownHosts], connectTimeout: 10,
            keyboardInteractive: answer)
    }

    /// The host's public key line for `type` (`ssh-ed25519 AAAA…`).
    package static func hostKey(_ type: String) throws -> String {
        let pub = try String(contentsOfFile: dir + "/ssh_host_\(type)_key.pub", encoding: .utf8)
        return pub.split(separator: " ").prefix(2).joined(separator: " ")
    }

    package static func connect(_ options: SSHConnectOptions) async throws -> String {
        let host = RemoteHost(options: options)
        return try await host.output(["id", "-un"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
