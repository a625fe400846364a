import ArgumentParser
import Foundation
import TestSupport
import Testing

@testable import VLLMCtlCLI
@testable import VLLMCtlKit

/// The logic the commands hand to the library: what each piece decides, and the command's
/// words for it.
@Suite struct CommandLogicTests {
    @Test func aBadDurationNamesItsFlag() async throws {
        #expect(throws: Never.self) {
            _ = try StaleCriteria(grace: "90s", olderThan: "1h30m", pendingLongerThan: nil)
        }
        let c = try StaleCriteria(grace: nil, olderThan: "2h", pendingLongerThan: "01:00:00")
        #expect(c.grace == StaleCriteria.defaultGrace && c.olderThan == 7200 && c.pendingLongerThan == 3600)
        for (flag, arguments) in [
            ("--grace", ["--grace", "5"]), ("--older-than", ["--older-than", "soon"]),
            ("--pending-longer-than", ["--pending-longer-than=1 day"]),
        ] {
            let text = refusal(["teardown", "--stale"] + arguments)
            #expect(text.contains(flag + ":"), "\(text)")
            #expect(text.contains("90s, 10m, 2h"), "the hint is kept: \(text)")
        }
    }

    @Test func aKeyFileIsReadCheckedAndTrimmed() throws {
        let dir = try temporaryDirectory()
        let key = APIKey.generate().value
        try (key + "\n").write(toFile: dir + "/key", atomically: true, encoding: .utf8)
        #expect(try APIKey(contentsOfFile: dir + "/key").value == key)
        let missing = thrown { _ = try APIKey(contentsOfFile: dir + "/none") }
        #expect(missing.contains("cannot be read"), "\(missing)")
        try "x; rm -rf ~\n".write(toFile: dir + "/bad", atomically: true, encoding: .utf8)
        let bad = thrown { _ = try APIKey(contentsOfFile: dir + "/bad") }
        #expect(bad.contains("not usable"), "\(bad)")
        #expect(!bad.contains("rm -rf"), "the file's text is not echoed: \(bad)")
    }

    @Test func anInterruptedDeploySaysWhatKeepsRunning() throws {
        let h = try CommandHarness()
        #expect(
            DeployReport.interrupted(records: h.records, cluster: "test")
                == "Stopped before anything was submitted.")
        for (k, id) in [(1, "71"), (2, "72")] {
            var r = try h.deployment("sim", id: id)
            r.replica = k
            r.phase = .submitted
            try h.records.save(r)
        }
        let text = DeployReport.interrupted(records: h.records, cluster: "test")
        #expect(text.contains("Jobs 71, 72 (sim) keep running"), "\(text)")
        #expect(text.contains("vllmctl teardown sim"), "\(text)")
    }

    @Test func onlyADeploymentOfSeveralReplicasOrOneThatRenewsOrIsKeptIsBalanced() async throws {
        let h = try CommandHarness(host: schedulerHost([]))
        for (k, id) in [(1, "81"), (2, "82")] {
            var r = try h.deployment("pair", id: id)
            r.replica = k
            try h.records.save(r)
        }
        _ = try h.deployment("single", id: "83")
        let kept = try h.deployment("kept", id: "84")
        var keep = DeploySettings()
        keep.keep = 1
        try JSONEncoder().encode(keep).write(
            to: URL(fileURLWithPath: kept.deployDir + "/" + DeploymentFiles.settings))
        let resolver = DeploymentResolver(
            context: Context(
                host: h.host, http: h.http, clock: SteppingClock(t0), terminal: h.terminal,
                records: h.records,
                environment: [:]),
            cluster: "test")
        #expect(try await resolver.balances("pair"))
        #expect(try await !resolver.balances("pair@2"), "one replica by its own name")
        #expect(try await !resolver.balances("81"), "a job id")
        #expect(try await !resolver.balances("single"), "one job that does not renew")
        #expect(try await resolver.balances("kept"), "one job kept up: its replacement joins")
    }

    @Test func queryServerFlagsAreCheckedTogether() throws {
        for (arguments, words) in [
            (["--port", "8000"], "--port goes with --host"),
            (["--url", "http://x", "--host", "y"], "not both"),
            (["--url", "http://x", "--ssl"], "put them in the URL"),
            (["--host", "x", "--port", "0"], "between 1 and 65535"),
            (["--url", "http://x", "--info", "--stream"], "leave out the query options"),
            (["--url", "http://x", "--top-p", "0"], "top"),
        ] {
            let text = refusal(["query"] + arguments)
            #expect(text.contains(words), "\(arguments): \(text)")
        }
    }
}

/// What `vllmctl ARGUMENTS` says when it refuses them at parsing ("" when it takes them).
private func refusal(_ arguments: [String]) -> String {
    do {
        _ = try VLLMCtlCommand.parseAsRoot(arguments)
        return ""
    } catch {
        return VLLMCtlCommand.message(for: error)
    }
}

/// The error `body` throws, as text ("" when it throws none).
private func thrown(_ body: () throws -> Void) -> String {
    do {
        try body()
        return ""
    } catch {
        return "\(error)"
    }
}
