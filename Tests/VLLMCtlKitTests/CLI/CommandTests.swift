import ArgumentParser
import Foundation
import TestSupport
import Testing

@testable import VLLMCtlCLI
@testable import VLLMCtlKit

@Suite struct CommandTests {
    @Test func statusListsDeploymentsFromOneSqueue() async throws {
        let host = schedulerHost([job("41", "vllmctl-sim")])
        let h = try CommandHarness(host: host)
        _ = try h.deployment("sim", id: "41")
        try await h.run(["status"])
        #expect(h.terminal.stdout.contains("NAME"))
        #expect(h.terminal.stdout.contains("sim"))
        #expect(h.terminal.stdout.contains("41"))
        #expect(h.terminal.stdout.contains("healthy"))
        #expect(host.programs.filter { $0 == "squeue" }.count == 1)
        #expect(!host.programs.contains("sacct"))
    }

    @Test func statusSaysHowToStartWhenThereIsNothing() async throws {
        let h = try CommandHarness(host: schedulerHost([]))
        try await h.run(["status"])
        #expect(h.terminal.stdout.contains("No vllmctl deployments on test"))
        #expect(h.terminal.stdout.contains("vllmctl deploy MODEL"))
    }

    @Test func statusDetailAsksTheSchedulerOnce() async throws {
        var running = job("42", "vllmctl-sim")
        running.resources = [("Partition", "debug"), ("TimeLimit", "1:00:00")]
        let host = schedulerHost([running])
        let h = try CommandHarness(
            host: host,
            http: ScriptedHTTP { request in
                let body: String
                if request.url.hasSuffix("/version") {
                    body = #"{"version": "0.9.0", "simulator": true}"#
                } else if request.url.hasSuffix("/v1/models") {
                    body = #"{"data": [{"id": "sim"}]}"#
                } else {
                    body = ""
                }
                return HTTPResponse(status: 200, headers: [:], body: Data(body.utf8))
            })
        _ = try h.deployment("sim", id: "42")
        try await h.run(["status", "sim"])
        let out = h.terminal.stdout
        #expect(out.contains("Resources:   Partition=debug TimeLimit=1:00:00"), "\(out)")
        #expect(out.contains("Server:      vLLM 0.9.0 (vllm-sim, a simulator)"))
        #expect(out.contains("Models:      sim"))
        #expect(out.contains("Tunnel:      none open"))
        // One scheduler call: squeue with the detail fields (no sacct, no scontrol).
        let scheduler = host.programs.filter { ["squeue", "sacct", "scontrol"].contains($0) }
        #expect(scheduler == ["squeue"], "\(host.argvs)")
    }

    @Test func statusDetailJSONHasTheDocumentedKeys() async throws {
        let h = try CommandHarness(
            host: schedulerHost([job("43", "vllmctl-sim")]), http: FixedHTTP(status: 503))
        _ = try h.deployment("sim", id: "43")
        try await h.run(["status", "sim", "--json"])
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(h.terminal.stdout.utf8)) as? [String: Any])
        #expect(Set(object.keys) == ["status", "stdout", "stderr"])
        let status = try #require(object["status"] as? [String: Any])
        #expect(status["health"] as? String == "unhealthy")
    }

    @Test func statusRefusesABadInterval() async throws {
        let h = try CommandHarness()
        await #expect(throws: (any Error).self) {
            try await h.run(["status", "--watch", "--interval", "1e300"])
        }
    }

    @Test func infoPrintsTheFileOrOnePartOfIt() async throws {
        let h = try CommandHarness(host: schedulerHost([job("44", "vllmctl-sim")]))
        _ = try h.deployment("sim", id: "44")
        try await h.run(["info", "sim"])
        #expect(h.terminal.stdout.contains("Server URL: http://10.77.0.11:8000"), "\(h.terminal.stdout)")
        #expect(h.terminal.stdout.contains(testKey))
        let h2 = try CommandHarness(host: schedulerHost([job("44", "vllmctl-sim")]))
        _ = try h2.deployment("sim", id: "44")
        try await h2.run(["info", "sim", "--env"])
        #expect(h2.terminal.stdout.hasPrefix("export OPENAI_BASE_URL="))
        await #expect(throws: (any Error).self) { try await h.run(["info", "sim", "--env", "--curl"]) }
    }

    @Test func infoOfAJobThatIsNotOursIsNotFound() async throws {
        // Job 45 is the user's but not vllmctl's: its directory is never read.
        let h = try CommandHarness(host: schedulerHost([job("45", "plain")]))
        await #expect(throws: VLLMCtlError.self) { try await h.run(["info", "45"]) }
    }

    @Test func queryAsksTheGivenURLWithTheEnvironmentsKey() async throws {
        let seen = Locked<[HTTPRequest]>([])
        let h = try CommandHarness(
            http: ScriptedHTTP { request in
                seen.withLock { $0.append(request) }
                let body = #"{"choices": [{"text": " four", "finish_reason": "stop"}]}"#
                return HTTPResponse(status: 200, headers: [:], body: Data(body.utf8))
            })
        var ctx = h.context
        ctx.environment["VLLMCTL_API_KEY"] = testKey
        try h.writeConfig()
        let command = try #require(
            try VLLMCtlCommand.parseAsRoot([
                "query", "--url", "http://10.0.0.5:8000/v1", "--prompt", "2+2=", "--model", "m",
            ]) as? QueryCommand)
        try await command.run(ctx)
        #expect(h.terminal.stdout == " four")
        let request = try #require(seen.value.first)
        #expect(request.url == "http://10.0.0.5:8000/v1/completions")
        #expect(request.headers.contains { $0.0 == "Authorization" && $0.1 == "Bearer \(testKey)" })
    }

    @Test func queryReadsThePromptFromStdinOnlyWhenItIsNotATerminal() async throws {
        var h = try CommandHarness()
        h.input = GivenInput(isTerminal: true)
        await #expect(throws: ValidationError.self) {
            try await h.run(["query", "--url", "http://10.0.0.5:8000", "--model", "m"])
        }
        #expect(throws: (any Error).self) {
            try VLLMCtlCommand.parseAsRoot(["query", "sim", "--url", "http://10.0.0.5:8000"])
        }
    }

    @Test func logsPrintsTheLastLines() async throws {
        let h = try CommandHarness(host: schedulerHost([job("46", "vllmctl-sim")]))
        _ = try h.deployment("sim", id: "46")
        try await h.run(["logs", "sim", "--lines", "2"])
        #expect(h.written.value == "two\nthree\n")
    }

    @Test func metricsNeedARunningServer() async throws {
        let h = try CommandHarness(host: schedulerHost([job("47", "vllmctl-sim", .pending)]))
        _ = try h.deployment("sim", id: "47")
        await #expect(throws: VLLMCtlError.self) { try await h.run(["metrics", "sim"]) }
    }

    @Test func tunnelNeedsAnSSHProfileAndClosesNothingWhenNoneIsOpen() async throws {
        let h = try CommandHarness(host: schedulerHost([job("48", "vllmctl-sim")]))
        _ = try h.deployment("sim", id: "48")
        await #expect(throws: ValidationError.self) { try await h.run(["tunnel", "sim"]) }
        try await h.run(["tunnel", "sim", "--close"])
        #expect(h.terminal.stdout == "No open tunnel to `sim` on test.")
        #expect(throws: (any Error).self) { try VLLMCtlCommand.parseAsRoot(["tunnel"]) }
        for bad in ["gpu017", ":8000", "gpu017:0", "gpu017:http", "gpu017:70000"] {
            #expect(throws: (any Error).self) { try VLLMCtlCommand.parseAsRoot(["tunnel", "--to", bad]) }
        }
        #expect(try VLLMCtlCommand.parseAsRoot(["tunnel", "--to", "[fd00::5]:8000"]) is TunnelCommand)
    }

    @Test func teardownAllAsksFirstAndRefusesWithoutATerminal() async throws {
        let host = schedulerHost([job("49", "vllmctl-sim")])
        let h = try CommandHarness(host: host)
        _ = try h.deployment("sim", id: "49")
        await #expect(throws: VLLMCtlError.self) { try await h.run(["teardown", "--all"]) }
        #expect(!host.programs.contains("scancel"))

        var asked = try CommandHarness(host: host)
        asked.input = GivenInput(isTerminal: true, answer: "n")
        try await asked.run(["teardown", "--all"])
        #expect(asked.terminal.stdout.hasSuffix("Nothing was changed."))
        #expect(!host.programs.contains("scancel"))

        var yes = try CommandHarness(host: host)
        yes.input = GivenInput(isTerminal: true, answer: "y")
        try await yes.run(["teardown", "--all"])
        #expect(host.argvs.contains(["scancel", "--", "49"]))
    }

    @Test func teardownDryRunListsAndChangesNothing() async throws {
        let host = schedulerHost([job("50", "vllmctl-sim")])
        let h = try CommandHarness(host: host)
        try await h.run(["teardown", "--all", "--dry-run"])
        #expect(h.terminal.stdout.hasPrefix("cancel    50  sim"), "\(h.terminal.stdout)")
        #expect(h.terminal.stdout.hasSuffix("Dry run: nothing was changed."))
        #expect(!host.programs.contains("scancel"))
        #expect(throws: (any Error).self) {
            try VLLMCtlCommand.parseAsRoot(["teardown", "--all", "--stale"])
        }
        #expect(throws: (any Error).self) {
            try VLLMCtlCommand.parseAsRoot(["teardown", "--stale", "--grace", "99999999999999999999:00"])
        }
    }

    @Test func templatesListsTheBuiltInOnes() async throws {
        let h = try CommandHarness()
        try await h.run(["templates"])
        #expect(
            h.terminal.stdout.contains("single-node\t" + repoRoot + "/templates/single-node.sbatch.mustache"))
    }

    @Test func configInitWritesOnceAndCheckReadsIt() async throws {
        let h = try CommandHarness()
        let path = h.dir + "/new/config.yaml"
        try await h.run(["config", "init", "--config", path])
        #expect(h.terminal.stdout.hasPrefix("Wrote \(path)."))
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        await #expect(throws: VLLMCtlError.self) { try await h.run(["config", "init", "--config", path]) }
        try await h.run(["config", "check"])
        #expect(h.terminal.stdout.contains("1 cluster(s), 1 model preset(s); default cluster: test"))
    }

    @Test func doctorReportsAMissingConfigAndFails() async throws {
        let h = try CommandHarness()
        await #expect(throws: ExitCode.self) {
            try await h.run(["doctor", "--json", "--config", h.dir + "/missing.yaml"])
        }
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(h.terminal.stdout.utf8)) as? [String: Any])
        #expect(report["checks"] != nil)
    }

    @Test func deployDryRunRendersWithoutSubmitting() async throws {
        let host = schedulerHost([])
        let h = try CommandHarness(host: host)
        try await h.run(["deploy", "sim", "--dry-run", "--name", "dry"])
        #expect(h.terminal.stdout.hasPrefix("#!/bin/bash"), "\(h.terminal.stdout.prefix(200))")
        #expect(h.terminal.stdout.contains("--job-name=vllmctl-dry"))
        #expect(!h.terminal.stdout.contains("sk-"))
        #expect(!host.programs.contains("sbatch"))
    }

    @Test func anUnsetPartFailsLoudly() async throws {
        var ctx = CLIContext.unset
        ctx.terminal = CapturedTerminal()
        let command = try #require(try VLLMCtlCommand.parseAsRoot(["status"]) as? StatusCommand)
        await #expect(throws: UnsetPart.self) { try await command.run(ctx) }
    }
}
