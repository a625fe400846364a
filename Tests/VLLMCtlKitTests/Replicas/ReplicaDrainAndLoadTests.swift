import Foundation
import TestSupport
import Testing

@testable import VLLMCtlCLI
@testable import VLLMCtlKit

/// A running job `id` named `name` whose deployment directory (under `root`) holds the
/// connection file of a server on 10.77.0.11:`port`.
func servingJob(_ id: String, _ name: String, port: Int, root: String) throws -> JobSnapshot {
    let dir = root + "/work/" + name.replacingOccurrences(of: "@", with: "-r")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let info = ConnectionRecord(
        serverURL: "http://10.77.0.11:\(port)", apiKey: testKey, host: "10.77.0.11", port: port,
        model: "Qwen/Qwen2.5-0.5B-Instruct", servedModelName: "sim", jobID: id, node: "node1",
        startedAt: "2026-11-29T10:00:00Z", readyAt: nil, endedAt: nil)
    try JSONEncoder().encode(info).write(to: URL(fileURLWithPath: dir + "/" + DeploymentFiles.infoJSON))
    return JobSnapshot(
        jobID: id, name: name, user: me, state: .running, reason: "None", nodes: "node1", elapsed: "1:00",
        workDir: dir)
}

/// vLLM's /metrics with `running` and `waiting` requests.
func metricsBody(running: Int, waiting: Int) -> Data {
    Data(
        """
        # TYPE vllm:num_requests_running gauge
        vllm:num_requests_running{model_name="sim"} \(running).0
        vllm:num_requests_waiting{model_name="sim"} \(waiting).0

        """.utf8)
}

/// Scale-down tells running endpoints first: the `draining-JOBID` marker, read at each refresh.
@Suite struct ReplicaDrainTests {
    @Test func aReplicaMarkedDrainingLeavesTheSetAtTheNextRefresh() async throws {
        let root = try temporaryDirectory()
        let jobs = [
            try servingJob("51", "vllmctl-sim@1", port: 8001, root: root),
            try servingJob("52", "vllmctl-sim@2", port: 8002, root: root),
        ]
        let squeueFails = Locked(false)
        let host = ScriptedHost { argv in
            switch argv.first {
            case "id": return CommandResult(status: 0, stdout: me + "\n", stderr: "")
            case "squeue" where !squeueFails.value:
                return CommandResult(status: 0, stdout: squeueOutput(jobs, for: argv), stderr: "")
            default: return CommandResult(status: 1, stdout: "", stderr: "slurm_load_jobs error")
            }
        }
        let context = Context(
            host: host, http: FixedHTTP(status: 200), clock: SteppingClock(t0), terminal: QuietTerminal(),
            records: DeploymentStore(directory: root + "/state"), environment: [:])
        let set = ReplicaSet(context: context, cluster: "test", name: "sim")
        #expect(try await set.refresh().map(\.replica) == [1, 2])

        let marker = jobs[1].workDir + "/" + DeploymentFiles.draining(jobID: "52")
        // Another job's marker in the same directory (a renewal chain shares one) is not its.
        try Data("job 50 draining\n".utf8).write(
            to: URL(fileURLWithPath: jobs[1].workDir + "/" + DeploymentFiles.draining(jobID: "50")))
        #expect(try await set.refresh().map(\.replica) == [1, 2])
        try Data("job 52 draining\n".utf8).write(to: URL(fileURLWithPath: marker))
        #expect(try await set.refresh().map(\.replica) == [1])
        // The keeper still sees it in the queue: it is not a failure.
        #expect(await set.queued?.map(\.jobID) == ["51", "52"])

        // squeue failing changes nothing and tells the keeper nothing.
        squeueFails.withLock { $0 = true }
        await #expect(throws: VLLMCtlError.self) { try await set.refresh() }
        #expect(await set.queued == nil)
        squeueFails.withLock { $0 = false }

        // A scale-down that did not cancel takes the marker back: the replica returns.
        try FileManager.default.removeItem(atPath: marker)
        #expect(try await set.refresh().map(\.replica) == [1, 2])
    }

    @Test func scaleDownMarksTheReplicaDrainingBeforeItIsCancelled() async throws {
        let root = try temporaryDirectory()
        let jobs = [
            try servingJob("51", "vllmctl-sim@1", port: 8001, root: root),
            try servingJob("52", "vllmctl-sim@2", port: 8002, root: root),
        ]
        let scheduler = schedulerHost(jobs)
        let markedAtCancel = Locked<[String: Bool]>([:])
        let host = ScriptedHost { argv in
            if argv.first == "scancel" {
                for job in jobs {
                    let marked = FileManager.default.fileExists(
                        atPath: job.workDir + "/" + DeploymentFiles.draining(jobID: job.jobID))
                    markedAtCancel.withLock { $0[job.jobID] = marked }
                }
            }
            return try scheduler.answer(argv)
        }
        let http = ScriptedHTTP { request in
            let body = request.url.hasSuffix("/metrics") ? metricsBody(running: 0, waiting: 0) : Data()
            return HTTPResponse(status: 200, headers: [:], body: body)
        }
        let h = try CommandHarness(host: host, http: http)
        try await h.run(["scale", "sim", "1", "--drain-timeout", "5"])
        #expect(h.terminal.stdout.contains("Cancelled job 52"), "\(h.terminal.stdout)\(h.terminal.stderr)")
        // Both idle: the newest went, and it was marked before scancel; the other was not.
        #expect(markedAtCancel.value == ["51": false, "52": true])
    }
}

/// `status` shows each replica's requests (running/waiting) from /metrics, read beside the
/// health check; a deployment of one server costs no /metrics request.
@Suite struct StatusRequestsTests {
    @Test func replicasShowTheirRequestsAndUnknownWhenUnreadable() async throws {
        let h0 = try CommandHarness()
        let jobs = [
            try servingJob("51", "vllmctl-sim@1", port: 8001, root: h0.dir),
            try servingJob("52", "vllmctl-sim@2", port: 8002, root: h0.dir),
            try servingJob("60", "vllmctl-solo", port: 8003, root: h0.dir),
            // A deployment of one server scaled up: its unnumbered job is replica 1.
            try servingJob("70", "vllmctl-grown", port: 8004, root: h0.dir),
            try servingJob("71", "vllmctl-grown@2", port: 8005, root: h0.dir),
        ]
        let asked = Locked<[String]>([])
        let http = ScriptedHTTP { request in
            asked.withLock { $0.append(request.url) }
            switch request.url {
            case "http://10.77.0.11:8001/metrics":
                return HTTPResponse(status: 200, headers: [:], body: metricsBody(running: 2, waiting: 1))
            case "http://10.77.0.11:8002/metrics":
                return HTTPResponse(status: 500, headers: [:], body: Data())
            default: return HTTPResponse(status: 200, headers: [:], body: Data())
            }
        }
        let h = try CommandHarness(host: schedulerHost(jobs), http: http)
        try await h.run(["status"])
        let table = h.terminal.stdout
        let lines = table.split(separator: "\n").map(String.init)
        #expect(lines.first?.contains("RUN/WAIT") == true, "\(table)")
        let one = try #require(lines.first { $0.hasPrefix("sim@1") })
        let two = try #require(lines.first { $0.hasPrefix("sim@2") })
        let solo = try #require(lines.first { $0.hasPrefix("solo") })
        #expect(one.contains(" 2/1 "), "\(one)")
        #expect(two.contains(" unknown "), "\(two)")
        #expect(!solo.contains("/1 ") && solo.contains(" - "), "\(solo)")
        #expect(!asked.value.contains("http://10.77.0.11:8003/metrics"))
        #expect(asked.value.contains("http://10.77.0.11:8004/metrics"))
        #expect(asked.value.contains("http://10.77.0.11:8005/metrics"))

        try await h.run(["status", "--json"])
        let json = try #require(h.terminal.printed.last)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let rows = try #require(object["deployments"] as? [[String: Any]])
        let byJob = Dictionary(uniqueKeysWithValues: rows.map { ($0["job_id"] as? String ?? "", $0) })
        #expect(byJob["51"]?["requests_running"] as? Int == 2)
        #expect(byJob["51"]?["requests_waiting"] as? Int == 1)
        #expect(byJob["51"]?["requests_detail"] == nil)
        #expect(byJob["52"]?["requests_running"] == nil)
        #expect((byJob["52"]?["requests_detail"] as? String)?.contains("500") == true)
        #expect(byJob["60"]?["requests_running"] == nil && byJob["60"]?["requests_detail"] == nil)
    }

    @Test func withoutReplicasStatusAsksNoMetricsAndHasNoColumn() async throws {
        let h0 = try CommandHarness()
        let jobs = [try servingJob("60", "vllmctl-solo", port: 8003, root: h0.dir)]
        let asked = Locked<[String]>([])
        let http = ScriptedHTTP { request in
            asked.withLock { $0.append(request.url) }
            return HTTPResponse(status: 200, headers: [:], body: Data())
        }
        let h = try CommandHarness(host: schedulerHost(jobs), http: http)
        try await h.run(["status"])
        #expect(!h.terminal.stdout.contains("RUN/WAIT"), "\(h.terminal.stdout)")
        #expect(asked.value == ["http://10.77.0.11:8003/health"])
    }
}
