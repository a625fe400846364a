import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// `make install-files` / `make uninstall` into a temporary prefix, the man pages and
/// completions they install, and `--version`.
@Suite struct InstallTests {
    @Test func versionSaysTheVersionAndTheCommit() async throws {
        let r = try await sh([vllmctlBinary, "--version"])
        #expect(r.status == 0)
        let line = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(line.hasPrefix(VLLMCtl.version + " (commit "), "\(line)")
        let commit = line.dropFirst((VLLMCtl.version + " (commit ").count).prefix { $0 != ")" && $0 != "+" }
        #expect(commit.count == 12 && commit.allSatisfy(\.isHexDigit), "\(line)")
    }

    @Test func startingLoadsNeitherLibcurlNorLibssh2() async throws {
        // Both are loaded on first use (CCurl/loader.c, CLibSSH2/loader.c): a run that makes no
        // request and opens no session pays nothing for them, and a host without them can still
        // run the local commands.
        let r = try await sh(["readelf", "-d", vllmctlBinary])
        #expect(r.status == 0, "\(r.stderr)")
        let needed = r.stdout.split(separator: "\n").filter { $0.contains("(NEEDED)") }
        #expect(!needed.isEmpty, "\(r.stdout)")
        for library in ["libssh2", "libcurl", "libcrypto", "libssl", "libz"] {
            #expect(!needed.contains { $0.contains(library) }, "\(library) is linked: \(needed)")
        }
    }

    @Test func theCommittedManPagesAreUpToDate() async throws {
        // The pages are generated from exactly this dump (`make man`); a changed command line
        // changes it.
        let r = try await sh([vllmctlBinary, "--experimental-dump-help"])
        let committed = try String(contentsOfFile: repoRoot + "/man/vllmctl.help.json", encoding: .utf8)
        #expect(
            r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                == committed.trimmingCharacters(in: .whitespacesAndNewlines),
            "the command line changed: run `make man` and commit man/")
        let pages = try FileManager.default.contentsOfDirectory(atPath: repoRoot + "/man").filter {
            $0.hasSuffix(".1")
        }
        for command in ["vllmctl.1", "vllmctl.doctor.1", "vllmctl.deploy.1", "vllmctl.tunnel.1"] {
            #expect(pages.contains(command), "man/\(command) is missing: run `make man`")
        }
    }

    @Test func installPutsEachFileWhereItsToolLooksAndUninstallRemovesThemAll() async throws {
        let prefix = try temporaryDirectory() + "/prefix"
        let install = try await sh([
            "make", "-s", "-C", repoRoot, "install-files", "PREFIX=\(prefix)", "BIN=\(vllmctlBinary)",
        ])
        #expect(install.status == 0, "\(install.stdout)\(install.stderr)")
        for file in [
            "bin/vllmctl", "share/vllmctl/templates/single-node.sbatch.mustache", "share/man/man1/vllmctl.1",
            "share/man/man1/vllmctl.doctor.1", "share/bash-completion/completions/vllmctl",
            "share/zsh/site-functions/_vllmctl", "share/fish/vendor_completions.d/vllmctl.fish",
        ] {
            #expect(FileManager.default.fileExists(atPath: prefix + "/" + file), "\(file)")
        }
        // bash loads the completion.
        let bash = try await sh([
            "bash", "-c", "source \"$1\" && complete -p vllmctl", "bash",
            prefix + "/share/bash-completion/completions/vllmctl",
        ])
        #expect(bash.status == 0, "\(bash.stderr)")
        #expect(bash.stdout.contains("vllmctl"))
        // man renders the pages.
        let man = try await sh([
            "env", "MANWIDTH=100", "man", "-l", prefix + "/share/man/man1/vllmctl.doctor.1",
        ])
        #expect(man.status == 0, "\(man.stderr)")
        #expect(man.stdout.contains("vllmctl doctor"))
        #expect(man.stdout.contains("--submit-probe"))
        // The installed binary finds its templates beside it.
        let templates = try await sh(["env", "-u", "VLLMCTL_TEMPLATES", prefix + "/bin/vllmctl", "templates"])
        #expect(templates.stdout.contains("single-node"), "\(templates.stdout)\(templates.stderr)")

        let uninstall = try await sh(["make", "-s", "-C", repoRoot, "uninstall", "PREFIX=\(prefix)"])
        #expect(uninstall.status == 0, "\(uninstall.stdout)\(uninstall.stderr)")
        let left = try await sh(["find", prefix, "-mindepth", "1"])
        #expect(left.stdout.isEmpty, "left behind: \(left.stdout)")
    }
}
