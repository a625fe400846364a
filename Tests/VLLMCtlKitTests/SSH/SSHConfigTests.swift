import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct SSHConfigTests {
    static let text = """
        # a comment
        Host login
            HostName login.example.org
            User alice
            Port 2022
            IdentityFile ~/.ssh/id_cluster
            IdentitiesOnly yes
            UserKnownHostsFile ~/.ssh/known_hosts_cluster
            StrictHostKeyChecking accept-new
            ConnectTimeout 7
            ServerAliveInterval 30
            ServerAliveCountMax 4

        Host gpu-* !gpu-bad
            HostName %h.cluster.example.org
            ProxyJump bob@bastion.example.org:2200

        Host = quoted
            HostName="quoted.example.org"
            IdentityFile "/keys/with space"

        Match host foo
            User nobody

        Host *
            User everyone
            Port 22
            IdentityFile %d/.ssh/id_default
            ConnectTimeout 99
        """

    func resolve(_ alias: String) throws -> SSHHostConfig {
        try SSHConfig.resolve(
            alias: alias, text: Self.text, file: "config", home: "/home/me", localUser: "me")
    }

    @Test func aliasGetsEveryKeyword() throws {
        let c = try resolve("login")
        #expect(c.hostName == "login.example.org")
        #expect(c.user == "alice")
        #expect(c.port == 2022)
        // IdentityFile accumulates, in file order.
        #expect(c.identityFiles == ["/home/me/.ssh/id_cluster", "/home/me/.ssh/id_default"])
        #expect(c.identitiesOnly)
        #expect(c.userKnownHostsFiles == ["/home/me/.ssh/known_hosts_cluster"])
        #expect(c.strictHostKeyChecking == .acceptNew)
        // The first value wins: `Host *` comes later.
        #expect(c.connectTimeout == 7)
        #expect(c.serverAliveInterval == 30)
        #expect(c.serverAliveCountMax == 4)
        #expect(c.proxyJump == nil)
    }

    /// ConnectTimeout 0 is OpenSSH's "no timeout of its own" (vllmctl's default then); numbers
    /// out of range are errors that name the line, never a trap (issue 12 item 13).
    @Test func timeoutsAreRangeChecked() throws {
        func one(_ line: String) throws -> SSHHostConfig {
            try SSHConfig.resolve(
                alias: "h", text: "Host h\n    \(line)\n", file: "config", home: "/home/me", localUser: "me")
        }
        #expect(try one("ConnectTimeout 0").connectTimeout == nil)
        for line in [
            "ConnectTimeout 99999999999", "ConnectTimeout 99999999999999999999", "ConnectTimeout -1",
            "ServerAliveInterval 5000000000", "ServerAliveCountMax 0",
        ] {
            #expect(throws: VLLMCtlError.self, "\(line)") { try one(line) }
        }
    }

    @Test func wildcardsNegationAndTokens() throws {
        let c = try resolve("gpu-7")
        #expect(c.hostName == "gpu-7.cluster.example.org")
        #expect(c.user == "everyone")
        #expect(c.proxyJump == "bob@bastion.example.org:2200")
        #expect(
            SSHJumpHost.parse(c.proxyJump!) == [
                SSHJumpHost(user: "bob", host: "bastion.example.org", port: 2200)
            ])
        let bad = try resolve("gpu-bad")
        #expect(bad.hostName == "gpu-bad")
        #expect(bad.proxyJump == nil)
    }

    @Test func equalsAndQuotes() throws {
        let c = try resolve("quoted")
        #expect(c.hostName == "quoted.example.org")
        #expect(c.identityFiles.first == "/keys/with space")
    }

    @Test func defaultsWhenNothingMatches() throws {
        let c = try SSHConfig.resolve(
            alias: "plain", text: "Host other\n  User x\n", file: "f", home: "/h", localUser: "me")
        #expect(c.hostName == "plain")
        #expect(c.user == nil)
        #expect(c.port == 22)
        #expect(c.identityFiles.isEmpty)
        #expect(c.userKnownHostsFiles == ["/h/.ssh/known_hosts", "/h/.ssh/known_hosts2"])
        #expect(c.globalKnownHostsFiles == ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"])
        #expect(c.strictHostKeyChecking == nil)
        // A missing file gives the defaults too.
        let missing = try SSHConfig.resolve(
            alias: "plain", path: "/nonexistent/config", home: "/h", localUser: "me")
        #expect(missing.hostName == "plain")
    }

    @Test func globMatching() {
        #expect(SSHConfig.glob("*.example.org", "a.example.org"))
        #expect(SSHConfig.glob("node-??", "node-12"))
        #expect(!SSHConfig.glob("node-??", "node-123"))
        #expect(SSHConfig.glob("LOGIN", "login"))
        #expect(SSHConfig.hostMatches("x", patterns: ["*", "!y"]))
        #expect(!SSHConfig.hostMatches("y", patterns: ["*", "!y"]))
    }

    @Test func badValuesNameTheLine() throws {
        #expect(
            throws: VLLMCtlError.config(
                file: "f", line: 2, key: "Port", problem: "`abc` is not a whole number")
        ) {
            try SSHConfig.resolve(
                alias: "h", text: "Host h\n  Port abc\n", file: "f", home: "/h", localUser: "me")
        }
        #expect(throws: VLLMCtlError.self) {
            try SSHConfig.resolve(
                alias: "h", text: "Host h\nStrictHostKeyChecking maybe\n", file: "f", home: "/h",
                localUser: "me")
        }
    }

    @Test func proxyJumpResolvesTheHopThroughTheSameFile() throws {
        let text = Self.text + "\nHost bastion.example.org\n    IdentityFile ~/.ssh/id_bastion\n"
        let o = try SSHConnectOptions.resolve(
            alias: "gpu-7", configText: text, file: "config", environment: [:], home: "/home/me",
            localUser: "me")
        #expect(o.host == "gpu-7.cluster.example.org")
        let jump = try #require(o.jumpHosts.first)
        #expect(o.jumpHosts.count == 1)
        #expect(jump.host == "bastion.example.org")
        #expect(jump.user == "bob")
        #expect(jump.port == 2200)
        #expect(jump.identityFiles == ["/home/me/.ssh/id_default", "/home/me/.ssh/id_bastion"])
        #expect(jump.jumpHosts.isEmpty)
    }

    @Test func proxyJumpWithTwoHopsIsRefusedClearly() throws {
        let text = "Host far\n  ProxyJump a,b\n"
        #expect {
            try SSHConnectOptions.resolve(
                alias: "far", configText: text, file: "f", environment: [:], home: "/h", localUser: "me")
        } throws: { error in
            "\(error)".contains("one hop")
        }
    }

    @Test func optionsFromConfig() throws {
        let c = try resolve("login")
        let o = try SSHConnectOptions(
            config: c, environment: ["SSH_AUTH_SOCK": "/tmp/agent"], home: "/home/me", localUser: "me")
        #expect(o.host == "login.example.org")
        #expect(o.user == "alice")
        #expect(o.port == 2022)
        #expect(o.hostKeyPolicy == .acceptNew)
        #expect(o.connectTimeout == 7)
        #expect(o.agentSocket == "/tmp/agent")
        #expect(o.serverAliveInterval == 30)
        #expect(o.serverAliveCountMax == 4)
        let strict = try SSHConnectOptions(
            config: SSHHostConfig(alias: "x"), environment: [:], home: "/home/me", localUser: "me")
        #expect(strict.hostKeyPolicy == .strict)
        #expect(strict.user == "me")
        #expect(
            strict.identityFiles == [
                "/home/me/.ssh/id_ed25519", "/home/me/.ssh/id_ecdsa", "/home/me/.ssh/id_rsa",
            ])
        let accept = try SSHConnectOptions(
            config: SSHHostConfig(alias: "x"), environment: [:], home: "/h", localUser: "me",
            acceptNewHostKey: true)
        #expect(accept.hostKeyPolicy == .acceptNew)
    }
}
