import ArgumentParser
import Testing

@testable import VLLMCtlCLI

/// `status` as people type it skips ArgumentParser (``StatusCommand/shortcut(_:)``): both must
/// read every line the shortcut takes alike, and everything else must go to ArgumentParser.
@Suite struct StatusShortcutTests {
    /// What ArgumentParser makes of `arguments`.
    static func parsed(_ arguments: [String]) throws -> StatusCommand.Request {
        let command = try #require(try VLLMCtlCommand.parseAsRoot(arguments) as? StatusCommand)
        return command.request
    }

    @Test(arguments: [
        ["status"],
        ["status", "--json"],
        ["status", "--all"],
        ["status", "--all", "--json"],
        ["status", "--cluster", "hpc"],
        ["status", "--cluster=hpc", "--json"],
        ["status", "--json", "--config", "/tmp/a b.yaml", "--cluster", "x=y"],
        ["status", "--config=/etc/vllmctl.yaml"],
        ["status", "--accept-new-host-key", "--cluster", "hpc"],
        ["status", "--cluster", "héllo wörld"],
    ])
    func readsItsLinesAsArgumentParserDoes(_ arguments: [String]) throws {
        let shortcut = try #require(StatusCommand.shortcut(arguments))
        #expect(shortcut == (try Self.parsed(arguments)))
    }

    @Test func setsWhatTheLineSays() throws {
        let request = try #require(
            StatusCommand.shortcut(["status", "--all", "--cluster=hpc", "--config", "c.yaml", "--json"]))
        #expect(request.all && request.json && !request.watch && request.deployment == nil)
        #expect(request.cluster == ClusterChoice(config: "c.yaml", cluster: "hpc", acceptNewHostKey: false))
        #expect(request.interval == 5)
    }

    /// Each of these is ArgumentParser's to read (and to explain when it is wrong).
    @Test(arguments: [
        [], ["deploy", "sim"], ["--version"], ["help", "status"],
        ["status", "--help"], ["status", "-h"], ["status", "sim"], ["status", "12345"],
        ["status", "--watch"], ["status", "--interval", "2"], ["status", "--json", "--json"],
        ["status", "--cluster"], ["status", "--cluster", "--json"], ["status", "--cluster="],
        ["status", "--cluster", "a", "--cluster", "b"], ["status", "--config", "-x"],
        ["status", "--json=yes"], ["status", "--"], ["status", "--jso"], ["status", "-j"],
        ["status", "--generate-completion-script", "bash"], ["status", "--all", "extra"],
    ])
    func leavesEverythingElseToArgumentParser(_ arguments: [String]) {
        #expect(StatusCommand.shortcut(arguments) == nil)
    }
}
