import Foundation

/// Everything needed to open one SSH session.
public struct SSHConnectOptions: Sendable {
    /// For messages: the alias the user wrote.
    public var displayName: String
    public var host: String
    public var port: Int
    public var user: String
    /// Private key files, tried in order after the agent. Empty: `~/.ssh/id_ed25519`,
    /// `id_ecdsa`, `id_rsa`.
    public var identityFiles: [String]
    /// With IdentitiesOnly, only agent keys that match an identity file's `.pub` are offered.
    public var identitiesOnly: Bool
    /// known_hosts files: all are read; new keys are appended to the first.
    public var knownHostsFiles: [String]
    /// System-wide known_hosts files: read after `knownHostsFiles`, never written.
    public var globalKnownHostsFiles: [String]
    public var hostKeyPolicy: HostKeyPolicy
    /// Seconds for the TCP connect and for each blocking step of the handshake.
    public var connectTimeout: Double
    /// ssh-agent's socket; nil for no agent.
    public var agentSocket: String?
    /// ServerAliveInterval (seconds; 0 for none) and ServerAliveCountMax. Keepalives are
    /// configured on the session; sending them and counting missed replies is up to whoever
    /// keeps a session open for long (the tunnel).
    public var serverAliveInterval = 0
    public var serverAliveCountMax = 3
    /// Asks for a key file's passphrase (path in, passphrase out; nil gives up on that key).
    public var passphrase: (@Sendable (String) -> String?)? {
        didSet { for i in jumpHosts.indices { jumpHosts[i].passphrase = passphrase } }
    }
    /// Answers keyboard-interactive prompts (instruction, [(prompt, echo)]) → answers, or nil.
    public var keyboardInteractive: (@Sendable (String, [(String, Bool)]) -> [String]?)? {
        didSet { for i in jumpHosts.indices { jumpHosts[i].keyboardInteractive = keyboardInteractive } }
    }
    /// ProxyJump: the session goes through a direct-tcpip channel of a session to this host.
    public var jumpHosts: [SSHConnectOptions] = []
    /// For tests: the TCP socket's send buffer (SO_SNDBUF) in bytes, small so that sends would
    /// block often (libssh2's EAGAIN on sending); nil leaves the system's.
    var sendBufferSize: Int32?
    /// Told what the server's host key is and whether known_hosts knows it, before the
    /// host-key decision (so also when connecting fails afterwards). For `vllmctl doctor`.
    public var onHostKey: (@Sendable (SSHHostKeyFinding) -> Void)?

    public init(
        displayName: String, host: String, port: Int = 22, user: String, identityFiles: [String] = [],
        identitiesOnly: Bool = false, knownHostsFiles: [String], globalKnownHostsFiles: [String] = [],
        hostKeyPolicy: HostKeyPolicy = .strict,
        connectTimeout: Double = 15, agentSocket: String? = nil,
        passphrase: (@Sendable (String) -> String?)? = nil,
        keyboardInteractive: (@Sendable (String, [(String, Bool)]) -> [String]?)? = nil
    ) {
        self.displayName = displayName
        self.host = host
        self.port = port
        self.user = user
        self.identityFiles = identityFiles
        self.identitiesOnly = identitiesOnly
        self.knownHostsFiles = knownHostsFiles
        self.globalKnownHostsFiles = globalKnownHostsFiles
        self.hostKeyPolicy = hostKeyPolicy
        self.connectTimeout = connectTimeout
        self.agentSocket = agentSocket
        self.passphrase = passphrase
        self.keyboardInteractive = keyboardInteractive
    }

    /// Options from a resolved ssh_config entry without ProxyJump (see `resolve` for that).
    /// `acceptNewHostKey` overrides StrictHostKeyChecking for unknown hosts (a changed key is
    /// refused regardless).
    public init(
        config: SSHHostConfig, environment: [String: String], home: String, localUser: String,
        acceptNewHostKey: Bool = false
    ) throws {
        if let jump = config.proxyJump {
            throw SSHError(
                host: config.alias,
                message:
                    "the ssh_config entry uses `ProxyJump \(jump)`, which must be resolved through the ssh_config file",
                hint: "This is a bug in vllmctl")
        }
        self.init(
            displayName: config.alias, host: config.hostName, port: config.port,
            user: config.user ?? localUser,
            identityFiles: config.identityFiles.isEmpty
                ? ["id_ed25519", "id_ecdsa", "id_rsa"].map { home + "/.ssh/" + $0 } : config.identityFiles,
            identitiesOnly: config.identitiesOnly, knownHostsFiles: config.userKnownHostsFiles,
            globalKnownHostsFiles: config.globalKnownHostsFiles,
            hostKeyPolicy: acceptNewHostKey ? .acceptNew : (config.strictHostKeyChecking ?? .strict),
            connectTimeout: Double(config.connectTimeout ?? 15),
            agentSocket: environment["SSH_AUTH_SOCK"].flatMap { $0.isEmpty ? nil : $0 })
        serverAliveInterval = config.serverAliveInterval ?? 0
        serverAliveCountMax = config.serverAliveCountMax ?? 3
    }

    /// Options for `alias` from ssh_config text, with its ProxyJump hop (one hop; the jump
    /// host's own settings come from the same file, `user@host:port` in ProxyJump win).
    public static func resolve(
        alias: String, configText: String, file: String, environment: [String: String], home: String,
        localUser: String, acceptNewHostKey: Bool = false
    ) throws -> SSHConnectOptions {
        var config = try SSHConfig.resolve(
            alias: alias, text: configText, file: file, home: home, localUser: localUser)
        guard let proxyJump = config.proxyJump else {
            return try SSHConnectOptions(
                config: config, environment: environment, home: home, localUser: localUser,
                acceptNewHostKey: acceptNewHostKey)
        }
        let hops = SSHJumpHost.parse(proxyJump)
        guard hops.count == 1, let hop = hops.first else {
            throw SSHError(
                host: alias,
                message: "`ProxyJump \(proxyJump)` has \(hops.count) hops; vllmctl supports one hop so far",
                hint: "Use a single jump host, or run vllmctl on a machine closer to the cluster")
        }
        var jumpConfig = try SSHConfig.resolve(
            alias: hop.host, text: configText, file: file, home: home, localUser: localUser)
        if let user = hop.user { jumpConfig.user = user }
        if let port = hop.port { jumpConfig.port = port }
        if jumpConfig.proxyJump != nil {
            throw SSHError(
                host: alias,
                message:
                    "the jump host `\(hop.host)` has a ProxyJump of its own; vllmctl supports one hop so far",
                hint: "Use a single jump host")
        }
        config.proxyJump = nil
        var options = try SSHConnectOptions(
            config: config, environment: environment, home: home, localUser: localUser,
            acceptNewHostKey: acceptNewHostKey)
        options.jumpHosts = [
            try SSHConnectOptions(
                config: jumpConfig, environment: environment, home: home, localUser: localUser,
                acceptNewHostKey: acceptNewHostKey)
        ]
        return options
    }

    var place: String { "\(displayName) (\(user)@\(host):\(port))" }
}
