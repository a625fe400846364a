import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct SSHTests {
    // MARK: authentication

    @Test(arguments: ["id_ed25519", "id_ecdsa"])
    func keyFileAuthentication(_ key: String) async throws {
        #expect(try await LocalSSH.connect(LocalSSH.options(keys: [key])) == LocalSSH.user)
    }

    @Test func encryptedKeyWithPassphrase() async throws {
        let passphrase = try String(contentsOfFile: LocalSSH.dir + "/passphrase.txt", encoding: .utf8)
            .trimmingCharacters(in: .newlines)
        let asked = Locked(0)
        let options = LocalSSH.options(keys: ["id_ed25519_enc"]) { path in
            asked.withLock { $0 += 1 }
            return path.hasSuffix("id_ed25519_enc") ? passphrase : nil
        }
        #expect(try await LocalSSH.connect(options) == LocalSSH.user)
        #expect(asked.value == 1)
    }

    @Test func encryptedKeyWithoutOrWithWrongPassphrase() async throws {
        let none = await thrownText { try await LocalSSH.connect(LocalSSH.options(keys: ["id_ed25519_enc"])) }
        #expect(none?.contains("encrypted, no passphrase given") == true, "\(none ?? "no error")")
        let wrong = await thrownText {
            try await LocalSSH.connect(LocalSSH.options(keys: ["id_ed25519_enc"]) { _ in "not it" })
        }
        #expect(wrong?.contains("wrong passphrase") == true, "\(wrong ?? "no error")")
    }

    @Test func rsaKeyIsRefusedByModernSSHDWithAnExplanation() async throws {
        let text = await thrownText {
            try await LocalSSH.connect(LocalSSH.options(port: 2222, keys: ["id_rsa"]))
        }
        #expect(
            text?.contains(
                "libssh2 1.10 signs RSA keys only with ssh-rsa (SHA-1), which OpenSSH 8.8+ refuses") == true,
            "\(text ?? "no error")")
        #expect(text?.contains("ed25519 or ECDSA") == true)
    }

    @Test func rsaKeyWorksWhereSSHRSAIsAllowed() async throws {
        #expect(try await LocalSSH.connect(LocalSSH.options(port: 2223, keys: ["id_rsa"])) == LocalSSH.user)
    }

    @Test func sshAgent() async throws {
        let dir = try temporaryDirectory()
        let socket = dir + "/agent.sock"
        let started = try await sh(["ssh-agent", "-a", socket, "-s"])
        #expect(started.status == 0, "\(started.stderr)")
        let pid = started.stdout.split(separator: "\n").compactMap { line -> Int32? in
            guard line.hasPrefix("SSH_AGENT_PID=") else { return nil }
            return Int32(line.dropFirst("SSH_AGENT_PID=".count).prefix { $0.isNumber })
        }.first
        defer { if let pid { kill(pid, SIGTERM) } }
        let added = try await sh(["env", "SSH_AUTH_SOCK=" + socket, "ssh-add", LocalSSH.dir + "/id_ecdsa"])
        #expect(added.status == 0, "\(added.stderr)")
        // No key files at all: only the agent can authenticate.
        var options = LocalSSH.options(keys: [], agent: socket)
        options.identitiesOnly = false
        #expect(try await LocalSSH.connect(options) == LocalSSH.user)
        // With IdentitiesOnly, the agent offers only keys named by IdentityFile (their .pub):
        // the agent's ECDSA key matches id_ecdsa.
        var only = LocalSSH.options(keys: ["id_ecdsa"], agent: socket)
        only.identitiesOnly = true
        #expect(try await LocalSSH.connect(only) == LocalSSH.user)
    }

    @Test func noUsableKeySaysWhatWasTried() async throws {
        let text = await thrownText { try await LocalSSH.connect(LocalSSH.options(keys: ["does-not-exist"])) }
        #expect(text?.contains("authentication as") == true, "\(text ?? "no error")")
    }

    // MARK: keyboard-interactive

    @Test func keyboardInteractiveAnswersThePasswordPrompt() async throws {
        let password = try LocalSSH.kbdPassword()
        let asked = PromptLog()
        let options = LocalSSH.kbdOptions { instruction, prompts in
            asked.append(instruction, prompts)
            return prompts.map { _ in password }
        }
        #expect(try await LocalSSH.connect(options) == LocalSSH.kbdUser)
        // One round with one question: PAM's password prompt, not echoed. (sshd ends with a
        // round of no questions, which is answered without asking.)
        let rounds = asked.rounds
        #expect(rounds.count == 1, "\(rounds)")
        #expect(rounds.first?.prompts.count == 1, "\(rounds)")
        let prompt = try #require(rounds.first?.prompts.first)
        #expect(prompt.0.contains("Password"), "\(prompt.0)")
        #expect(prompt.1 == false, "the password prompt must not echo")
    }

    @Test func keyboardInteractiveWithAWrongPasswordFails() async throws {
        let password = try LocalSSH.kbdPassword()
        let asked = PromptLog()
        let options = LocalSSH.kbdOptions { instruction, prompts in
            asked.append(instruction, prompts)
            return prompts.map { _ in "not-" + password }
        }
        let text = await thrownText { try await LocalSSH.connect(options) }
        #expect(text?.contains("authentication as `vllmctl-kbd` failed") == true, "\(text ?? "no error")")
        #expect(text?.contains("keyboard-interactive (refused)") == true, "\(text ?? "no error")")
        #expect(!asked.rounds.isEmpty)
    }

    @Test func keyboardInteractiveWithoutAResponderSaysWhatTheServerWants() async throws {
        let error = await #expect(throws: SSHError.self) {
            try await LocalSSH.connect(LocalSSH.kbdOptions(answer: nil))
        }
        let text = error.map { "\($0)" }
        #expect(text?.contains("authentication as `vllmctl-kbd` failed") == true, "\(text ?? "no error")")
        #expect(
            text?.contains("keyboard-interactive (no terminal to answer its prompts)") == true,
            "\(text ?? "no error")")
        #expect(text?.contains("the server accepts: keyboard-interactive") == true, "\(text ?? "no error")")
        #expect(text?.contains("run vllmctl on a terminal") == true, "\(text ?? "no error")")
    }

    @Test func keyboardInteractiveThroughTheSSHConfigAlias() async throws {
        let password = try LocalSSH.kbdPassword()
        let host = try RemoteHost(
            alias: "vllmctl-local-kbd", configPath: LocalSSH.config,
            environment: ProcessInfo.processInfo.environment.filter { $0.key != "SSH_AUTH_SOCK" },
            acceptNewHostKey: false, keyboardInteractive: { _, prompts in prompts.map { _ in password } })
        #expect(host.options.port == LocalSSH.kbdPort)
        #expect(host.options.user == LocalSSH.kbdUser)
        #expect(try await host.userName() == LocalSSH.kbdUser)
        #expect(try await host.homeDirectory() == "/home/" + LocalSSH.kbdUser)
    }

    // MARK: known_hosts

    @Test func unknownHostIsRefused() async throws {
        let file = try temporaryDirectory() + "/known_hosts"
        try "".write(toFile: file, atomically: true, encoding: .utf8)
        let text = await thrownText { try await LocalSSH.connect(LocalSSH.options(knownHosts: [file])) }
        #expect(text?.contains("not in \(file)") == true, "\(text ?? "no error")")
        #expect(text?.contains("--accept-new-host-key") == true)
        #expect(text?.contains("SHA256:") == true)
    }

    @Test func acceptNewAppendsTheKeyAndThenItMatches() async throws {
        let file = try temporaryDirectory() + "/sub/known_hosts"
        #expect(
            try await LocalSSH.connect(LocalSSH.options(knownHosts: [file], policy: .acceptNew))
                == LocalSSH.user)
        let written = try String(contentsOfFile: file, encoding: .utf8)
        #expect(written.hasPrefix("[127.0.0.1]:2222 "))
        #expect(written.split(separator: "\n").count == 1)
        let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try await LocalSSH.connect(LocalSSH.options(knownHosts: [file])) == LocalSSH.user)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == written)
    }

    @Test func changedKeyIsRefusedWithFileAndLine() async throws {
        let file = try temporaryDirectory() + "/known_hosts"
        // Line 3 claims another ed25519 key (a user key) for the host.
        let other = try String(contentsOfFile: LocalSSH.dir + "/id_ed25519.pub", encoding: .utf8)
            .split(separator: " ").prefix(2).joined(separator: " ")
        try "# comment\nother.example.org \(try LocalSSH.hostKey("ed25519"))\n[127.0.0.1]:2222 \(other)\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        for policy in [HostKeyPolicy.strict, .acceptNew] {
            let text = await thrownText {
                try await LocalSSH.connect(LocalSSH.options(knownHosts: [file], policy: policy))
            }
            #expect(text?.contains("CHANGED") == true, "\(text ?? "no error")")
            #expect(text?.contains("\(file):3") == true, "\(text ?? "no error")")
        }
    }

    /// OpenSSH never accepts a key marked @revoked, whatever else known_hosts says (issue 12
    /// item 17: such lines were skipped).
    @Test func aRevokedKeyIsRefused() async throws {
        let file = try temporaryDirectory() + "/known_hosts"
        let key = try LocalSSH.hostKey("ed25519")
        try "@revoked [127.0.0.1]:2222 \(key)\n[127.0.0.1]:2222 \(key)\n".write(
            toFile: file, atomically: true, encoding: .utf8)
        for policy in [HostKeyPolicy.strict, .acceptNew] {
            let text = await thrownText {
                try await LocalSSH.connect(LocalSSH.options(knownHosts: [file], policy: policy))
            }
            #expect(text?.contains("@revoked at \(file):1") == true, "\(text ?? "no error")")
        }
        // A revoked line for another host's key changes nothing.
        try "@revoked other.example.org \(key)\n[127.0.0.1]:2222 \(key)\n".write(
            toFile: file, atomically: true, encoding: .utf8)
        #expect(try await LocalSSH.connect(LocalSSH.options(knownHosts: [file])) == LocalSSH.user)
    }

    @Test func hashedEntriesMatch() async throws {
        let file = try temporaryDirectory() + "/known_hosts"
        try FileManager.default.copyItem(atPath: LocalSSH.knownHosts, toPath: file)
        let hashed = try await sh(["ssh-keygen", "-H", "-f", file])
        #expect(hashed.status == 0, "\(hashed.stderr)")
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.hasPrefix("|1|"))
        #expect(!text.contains("127.0.0.1"))
        #expect(try await LocalSSH.connect(LocalSSH.options(knownHosts: [file])) == LocalSSH.user)
    }

    @Test(arguments: ["ed25519", "ecdsa"])
    func aSingleKeyTypeInKnownHostsMatches(_ type: String) async throws {
        // The host-key method preference follows known_hosts, whatever the server prefers.
        let file = try temporaryDirectory() + "/known_hosts"
        try "[127.0.0.1]:2222 \(try LocalSSH.hostKey(type))\n".write(
            toFile: file, atomically: true, encoding: .utf8)
        #expect(try await LocalSSH.connect(LocalSSH.options(knownHosts: [file])) == LocalSSH.user)
    }

    @Test func aPlainHostEntryDoesNotCoverAnotherPort() async throws {
        let file = try temporaryDirectory() + "/known_hosts"
        try "127.0.0.1 \(try LocalSSH.hostKey("ed25519"))\n".write(
            toFile: file, atomically: true, encoding: .utf8)
        let text = await thrownText { try await LocalSSH.connect(LocalSSH.options(knownHosts: [file])) }
        #expect(text?.contains("not in") == true, "\(text ?? "no error")")
    }

    // MARK: ssh_config

    @Test(arguments: ["vllmctl-local", "vllmctl-local-legacy"])
    func sshConfigAlias(_ alias: String) async throws {
        let host = try RemoteHost(
            alias: alias, configPath: LocalSSH.config,
            environment: ProcessInfo.processInfo.environment
                .filter { $0.key != "SSH_AUTH_SOCK" }, acceptNewHostKey: false)
        #expect(host.options.port == (alias.hasSuffix("legacy") ? 2223 : 2222))
        let user = try await host.userName()
        #expect(user == LocalSSH.user)
    }

    @Test func cliRefusesAnUnknownHostUnlessAcceptNewHostKeyIsGiven() async throws {
        let dir = try temporaryDirectory()
        let knownHosts = dir + "/known_hosts"
        let config = try String(contentsOfFile: LocalSSH.config, encoding: .utf8)
            .replacingOccurrences(of: LocalSSH.knownHosts, with: knownHosts)
        try config.write(toFile: dir + "/ssh_config", atomically: true, encoding: .utf8)
        var cli = try CLI()
        cli.configPath = try renderedClusterConfig()
        cli.extraEnvironment["VLLMCTL_SSH_CONFIG"] = dir + "/ssh_config"
        let refused = try await cli.run(["status", "--cluster", "local-ssh"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--accept-new-host-key"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: knownHosts))
        let accepted = try await cli.run(["status", "--cluster", "local-ssh", "--accept-new-host-key"])
        #expect(accepted.status == 0, "\(accepted.stderr)")
        #expect(try String(contentsOfFile: knownHosts, encoding: .utf8).hasPrefix("[127.0.0.1]:2222 "))
        let again = try await cli.run(["status", "--cluster", "local-ssh"])
        #expect(again.status == 0, "\(again.stderr)")
    }

    @Test func proxyJumpThroughTheSameSSHD() async throws {
        let dir = try temporaryDirectory()
        // The target is the modern sshd, reached through the legacy one as the jump host.
        let config =
            try String(contentsOfFile: LocalSSH.config, encoding: .utf8) + """

                Host jumped
                    HostName 127.0.0.1
                    Port 2222
                    IdentityFile \(LocalSSH.dir)/id_ed25519
                    IdentitiesOnly yes
                    UserKnownHostsFile \(LocalSSH.knownHosts)
                    ProxyJump vllmctl-local-legacy

                """
        try config.write(toFile: dir + "/ssh_config", atomically: true, encoding: .utf8)
        let env = ProcessInfo.processInfo.environment.filter { $0.key != "SSH_AUTH_SOCK" }
        let host = try RemoteHost(
            alias: "jumped", configPath: dir + "/ssh_config", environment: env, acceptNewHostKey: false)
        #expect(host.options.jumpHosts.first?.port == 2223)
        let connection = try await host.output(["printenv", "SSH_CONNECTION"])
        #expect(connection.hasSuffix(" 2222\n"), "\(connection)")
        // Many channels and SFTP through the hop.
        let big = String(repeating: "x", count: 3_000_000)
        #expect(
            try await host.run(["wc", "-c"], input: big, timeout: .seconds(60)).stdout.trimmingCharacters(
                in: .whitespacesAndNewlines) == "3000000")
        #expect(try await host.homeDirectory() == NSHomeDirectory())
        // A target the jump host cannot reach.
        let bad = config.replacingOccurrences(
            of: "    Port 2222\n    IdentityFile", with: "    Port 1\n    IdentityFile")
        try bad.write(toFile: dir + "/bad_config", atomically: true, encoding: .utf8)
        let unreachable = try RemoteHost(
            alias: "jumped", configPath: dir + "/bad_config", environment: env, acceptNewHostKey: false)
        let text = await thrownText { try await unreachable.userName() }
        #expect(
            text?.contains("jump host could not open a connection to 127.0.0.1:1") == true,
            "\(text ?? "no error")")
    }

    // MARK: exec

    @Test func execQuotesOnceFeedsStdinAndReportsStatus() async throws {
        let host = RemoteHost(options: LocalSSH.options())
        let words = ["a b", "it's", "$HOME", "*", "`id`", "new\nline", ""]
        let printed = try await host.output(["printf", "[%s]"] + words)
        #expect(printed == words.map { "[\($0)]" }.joined())
        let r = try await host.run(
            ["sh", "-c", "cat; echo oops >&2; exit 3"], input: "secret 'stdin'\n", timeout: .seconds(30))
        #expect(r.status == 3)
        #expect(r.stdout == "secret 'stdin'\n")
        // A login shell's rc files may write to stderr before the command does (a real
        // cluster's, or pyenv's rehash racing another session's here), so only the end is ours.
        #expect(r.stderr.hasSuffix("oops\n"), "\(r.stderr)")
        // Lots of stdin and stdout both ways do not deadlock.
        let big = String(repeating: "0123456789abcdef\n", count: 200_000)
        let echoed = try await host.run(["cat"], input: big, timeout: .seconds(60))
        #expect(echoed.stdout.count == big.count)
        let missing = await thrownText { try await host.run(["no-such-program-xyz"]) }
        #expect(missing?.contains("was not found") == true, "\(missing ?? "no error")")
    }

    @Test func oneSessionCarriesManyChannels() async throws {
        let host = RemoteHost(options: LocalSSH.options())
        // SSH_CONNECTION names our client port: the same for every command of one session.
        async let a = host.output(["printenv", "SSH_CONNECTION"])
        async let b = host.output(["printenv", "SSH_CONNECTION"])
        let (x, y) = try await (a, b)
        let z = try await host.output(["printenv", "SSH_CONNECTION"])
        #expect(!x.isEmpty)
        #expect(x == y)
        #expect(x == z)
        let s1 = try await host.session(), s2 = try await host.session()
        #expect(s1 === s2)
    }

    @Test func timeoutThrowsAndTheSessionStillWorks() async throws {
        let host = RemoteHost(options: LocalSSH.options())
        // The timeout's own error (not sleep's success 10 s later) shows the call was abandoned.
        let text = await thrownText { try await host.run(["sleep", "10"], timeout: .seconds(1)) }
        #expect(text?.contains("did not answer within 1 s") == true, "\(text ?? "no error")")
        #expect(try await host.output(["echo", "still here"]) == "still here\n")
    }

    // MARK: SFTP

    @Test func sftpFiles() async throws {
        let host = RemoteHost(options: LocalSSH.options())
        let dir = try temporaryDirectory() + "/remote/a/b"
        try await host.makeDirectory(dir, mode: 0o700)
        let dirMode = try FileManager.default.attributesOfItem(atPath: dir)[.posixPermissions] as? Int
        #expect(dirMode == 0o700)
        try await host.makeDirectory(dir, mode: 0o700)  // existing: fine
        let path = dir + "/api_key"
        try await host.writeFileAtomically(Data("first".utf8), to: path, mode: 0o600)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "first")
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
        // Over an existing file (SFTP v3 rename refuses; the fallback renames atomically).
        try await host.writeFileAtomically(Data("second".utf8), to: path, mode: 0o600)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "second")
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
        try await host.writeFileAtomically(Data("#!/bin/sh\n".utf8), to: dir + "/script", mode: 0o700)
        #expect(try await host.fileMode(dir + "/script") == 0o700)
        // No temporary file is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["api_key", "script"])
        #expect(try await host.readFile(path) == Data("second".utf8))
        #expect(try await host.readFile(path, from: 2) == Data("cond".utf8))
        #expect(try await host.readFile(dir + "/missing") == nil)
        // A failed write (the directory does not exist) leaves nothing.
        let failed = await thrownText {
            try await host.writeFileAtomically(Data("x".utf8), to: dir + "/nope/f", mode: 0o600)
        }
        #expect(failed != nil)
        try await host.removeFile(path)
        try await host.removeFile(path)  // missing: fine
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try await host.homeDirectory() == NSHomeDirectory())
    }
}

/// The keyboard-interactive rounds a responder was asked: instruction and (prompt, echo).
final class PromptLog: Sendable {
    private let asked = Mutex<[(instruction: String, prompts: [(String, Bool)])]>([])
    func append(_ instruction: String, _ prompts: [(String, Bool)]) {
        asked.withLock { $0.append((instruction, prompts)) }
    }
    var rounds: [(instruction: String, prompts: [(String, Bool)])] { asked.withLock { $0 } }
}
