import Foundation
import Testing

@testable import VLLMCtlKit

@Suite struct SlurmParsingTests {
    @Test func squeueFixtureFromTheLocalCluster() throws {
        let jobs = Squeue.parse(try fixture("squeue-live.txt"))
        #expect(jobs.count == 3)
        let running = try #require(jobs.first { $0.name == "vllmctl-running" })
        #expect(running.state == .running)
        #expect(running.nodes == "vm")
        #expect(running.reason == "None")
        let held = try #require(jobs.first { $0.name == "vllmctl-held" })
        #expect(held.state == .pending)
        #expect(held.reason == "JobHeldUser")
        // A `|` in a job name does not shift the fields.
        let odd = try #require(jobs.first { $0.name == "vllmctl-wants|all" })
        #expect(odd.state == .pending)
        #expect(odd.reason == "BeginTime")
        #expect(odd.timeLeft == "UNLIMITED")
        #expect(jobs.allSatisfy { $0.workDir == "/tmp" })
    }

    @Test func slurmDurations() {
        #expect(SlurmTime.seconds("0:05") == 5)
        #expect(SlurmTime.seconds("12:34") == 754)
        #expect(SlurmTime.seconds("1:00:00") == 3600)
        #expect(SlurmTime.seconds("2-03:04:05") == 2 * 86400 + 3 * 3600 + 4 * 60 + 5)
        #expect(SlurmTime.seconds("1-02") == 86400 + 7200)
        #expect(SlurmTime.seconds("UNLIMITED") == nil)
        #expect(SlurmTime.seconds("INVALID") == nil)
        #expect(SlurmTime.short(9 * 60 + 5) == "9m05s")
        #expect(SlurmTime.short(2 * 3600 + 5 * 60) == "2h05m")
    }

    @Test func sacctForAUser() {
        let argv = Sacct(user: "alice", since: "now-7days").argv
        #expect(argv.contains("--user=alice"))
        #expect(argv.contains("--starttime=now-7days"))
        #expect(!argv.contains { $0.hasPrefix("--jobs") })
    }

    @Test func squeueInvalidJobMessage() throws {
        #expect(Squeue.isInvalidJobError(try fixture("squeue-invalid-job.txt")))
        #expect(!Squeue.isInvalidJobError("squeue: error: Unable to contact slurm controller"))
    }

    @Test func sacctFixtureFromTheLocalCluster() throws {
        let jobs = Sacct.parse(try fixture("sacct-ended.txt"))
        let states = Dictionary(uniqueKeysWithValues: jobs.map { ($0.name, $0.state) })
        #expect(states["vllmctl-done"] == .completed)
        #expect(states["vllmctl-failed"] == .failed)
        #expect(states["vllmctl-cancelled"] == .cancelled)
        #expect(jobs.first { $0.name == "vllmctl-failed" }?.exitCode == "3:0")
    }

    @Test func sacctNameWithSeparator() {
        let jobs = Sacct.parse("42|a|b|alice|TIMEOUT|TimeLimit|n1|01:00:00|0:15|/scratch/d\n")
        #expect(
            jobs == [
                JobSnapshot(
                    jobID: "42", name: "a|b", user: "alice", state: .timeout, reason: "TimeLimit",
                    nodes: "n1", elapsed: "01:00:00", exitCode: "0:15", workDir: "/scratch/d")
            ])
    }

    @Test(arguments: JobState.allCases.filter { $0 != .unknown })
    func everyLongStateParses(_ state: JobState) {
        #expect(JobState(slurm: state.rawValue) == state)
    }

    @Test func shortCodesAndDecorations() {
        let codes: [String: JobState] = [
            "PD": .pending, "R": .running, "CG": .completing, "CD": .completed, "CA": .cancelled,
            "F": .failed,
            "TO": .timeout, "OOM": .outOfMemory, "NF": .nodeFail, "BF": .bootFail, "PR": .preempted,
            "S": .suspended, "CF": .configuring, "DL": .deadline, "RQ": .requeued, "SE": .specialExit,
        ]
        for (code, state) in codes { #expect(JobState(slurm: code) == state) }
        #expect(JobState(slurm: "CANCELLED by 1000") == .cancelled)
        #expect(JobState(slurm: "COMPLETED+") == .completed)
        #expect(JobState(slurm: "WEIRD") == .unknown)
    }

    @Test func failureStatesEndADeployment() {
        for state in [JobState.failed, .cancelled, .timeout, .outOfMemory, .nodeFail, .bootFail, .deadline] {
            #expect(state.isFailure)
        }
        for state in [JobState.pending, .running, .configuring, .completing, .suspended] {
            #expect(!state.isFinal)
        }
    }

    @Test func sbatchOutput() throws {
        let argv = Sbatch(scriptPath: "/x").argv
        #expect(argv == ["sbatch", "--parsable", "/x"])
        #expect(
            try Sbatch.parseJobID(CommandResult(status: 0, stdout: "1234\n", stderr: ""), argv: argv)
                == "1234")
        #expect(
            try Sbatch.parseJobID(CommandResult(status: 0, stdout: "1234;cluster\n", stderr: ""), argv: argv)
                == "1234")
        // A warning on stderr with exit 0 is success.
        #expect(
            try Sbatch.parseJobID(
                CommandResult(
                    status: 0, stdout: "77\n", stderr: "sbatch: warning: can't honor --ntasks-per-node\n"),
                argv: argv) == "77")
    }

    @Test func sbatchErrorsInPlainWords() {
        let error = #expect(throws: VLLMCtlError.self) {
            try Sbatch.parseJobID(
                CommandResult(
                    status: 1, stdout: "",
                    stderr: "sbatch: error: Batch job submission failed: Invalid partition name specified\n"),
                argv: [])
        }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("Invalid partition name specified"))
        #expect(text.contains("sinfo -s"))
    }
}

@Suite struct MetricsParsingTests {
    static let text = """
        # HELP vllm:num_requests_running Number of requests in model execution batches.
        # TYPE vllm:num_requests_running gauge
        vllm:num_requests_running{model_name="sim"} 3.0
        vllm:num_requests_waiting{model_name="sim"} 1.0
        vllm:gpu_cache_usage_perc{model_name="sim"} 0.25
        vllm:prompt_tokens_total{model_name="sim"} 100.0
        vllm:generation_tokens_total{model_name="sim",engine="0"} 400.0
        weird_metric{a="x\\"y",b="z"} +Inf
        """

    @Test func parsesSamplesAndLabels() {
        let samples = PrometheusText.parse(Self.text)
        #expect(samples.count == 6)
        #expect(samples.first?.labels == ["model_name": "sim"])
        #expect(samples.last?.labels == ["a": "x\"y", "b": "z"])
        #expect(samples.last?.value == .infinity)
    }

    @Test func ratesBetweenTwoSamples() {
        let before = ServerMetrics(samples: PrometheusText.parse(Self.text))
        let after = ServerMetrics(
            samples: PrometheusText.parse(Self.text.replacingOccurrences(of: "400.0", with: "500.0")))
        #expect(before.running == 3)
        #expect(before.kvCacheUsage == 0.25)
        #expect(after.rates(since: before, seconds: 2).generation == 50)
        #expect(after.line(since: before, seconds: 2).contains("generation 50.0 tok/s"))
    }
}
