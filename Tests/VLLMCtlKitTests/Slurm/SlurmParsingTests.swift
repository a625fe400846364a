import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct SlurmParsingTests {
    /// The token capture-slurm.sh used (vllmctl draws a fresh one for every call).
    static let marks = SchedulerMarks(token: "fixture0token")

    @Test func squeueFixtureFromTheLocalCluster() throws {
        let jobs = Squeue(marks: Self.marks).parse(try fixture("squeue-live.txt"))
        #expect(jobs.count == 5)
        let running = try #require(jobs.first { $0.name == "vllmctl-running" })
        #expect(running.state == .running)
        #expect(running.nodes == "node1")
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

    /// A job named `x\n<RS>guessed…<plain id><US>…vllmctl-forged\n<plain id><US>vllmctl-forged`
    /// tries to make the plain job read as vllmctl's (issue 12). Its name stays one field, the
    /// plain job keeps its own name, and neither is ours.
    @Test func aJobNameCannotForgeARow() throws {
        let me = Ownership(user: "root")
        for jobs in [
            Squeue(marks: Self.marks).parse(try fixture("squeue-live.txt")),
            Sacct(jobIDs: [], marks: Self.marks).parse(try fixture("sacct-ended.txt")),
        ] {
            let plain = try #require(jobs.first { $0.name == "plain" })
            #expect(jobs.filter { $0.jobID == plain.jobID }.count == 1)
            #expect(!me.isOurs(plain))
            let forger = try #require(jobs.first { $0.name.hasPrefix("x\n") })
            #expect(forger.name.hasSuffix("vllmctl-forged"))
            #expect(forger.user == "root" && forger.state == .pending)
            #expect(!me.isOurs(forger))
            #expect(!jobs.contains { $0.name == "vllmctl-forged" })
        }
        // Read with another call's token, nothing parses at all.
        #expect(
            Squeue(marks: SchedulerMarks(token: "guessed0token")).parse(try fixture("squeue-live.txt"))
                .isEmpty)
    }

    /// The scanner jumps from one mark's first byte to the next: those bytes inside a field, a
    /// mark cut short, and output that ends mid-row each leave the fields as Slurm printed them.
    @Test func markBytesInsideFieldsAndCutMarksStayInTheirField() {
        let m = Self.marks
        let r = "\u{1E}" + m.token
        let f = "\u{1F}" + m.token
        let stray = "a\u{1E}\u{1F}b\u{1F}fixture0toke"
        let output =
            r + "1" + f + stray + f + "x\n" + r + "2" + f + "\u{1E}" + f + "y\n" + r + "3" + f + "z" + f
        #expect(
            m.rows(output, count: 3, rowStart: true) == [
                ["1", stray, "x"], ["2", "\u{1E}", "y"], ["3", "z", ""],
            ])
        // A row with too few fields is dropped, the rest kept.
        #expect(
            m.rows(r + "1" + f + "2\n" + r + "4" + f + "5" + f + "6", count: 3, rowStart: true) == [
                ["4", "5", "6"]
            ])
        // sacct's rows end with the field mark and a newline.
        #expect(
            m.rows("1" + f + "a\u{1F}" + f + "\n2" + f + "b" + f + "\n", count: 2, rowStart: false) == [
                ["1", "a\u{1F}"], ["2", "b"],
            ])
        #expect(m.rows("", count: 2, rowStart: true).isEmpty)
        #expect(m.rows("\u{1E}\u{1F}", count: 1, rowStart: false).isEmpty)
    }

    @Test func namesWithControlCharactersAreNeverOurs() {
        let me = Ownership(user: "alice")
        func job(_ name: String) -> JobSnapshot {
            JobSnapshot(jobID: "7", name: name, user: "alice", state: .running)
        }
        #expect(me.isOurs(job("vllmctl-sim")))
        for name in ["vllmctl-a\nb", "vllmctl-a\u{1F}b", "vllmctl-a b", "vllmctl-\u{7}", "vllmctl-a\tb"] {
            #expect(!me.isOurs(job(name)), "\(name.debugDescription)")
            #expect(me.whyNotOurs(job(name)) != nil)
        }
    }

    @Test func scancelTakesOnlyJobIDs() throws {
        #expect(try Scancel(jobIDs: ["12", "345"]).checkedArgv() == ["scancel", "--", "12", "345"])
        for bad in ["-u", "--user=bob", "12_3", "12+1", "", "1 2", "１２"] {
            #expect(throws: VLLMCtlError.self, "\(bad)") { try Scancel(jobIDs: ["1", bad]).checkedArgv() }
        }
    }

    @Test func marksAreFreshPerCall() {
        let a = Squeue(user: "u"), b = Squeue(user: "u")
        #expect(a.marks != b.marks)
        #expect(a.argv.last == "--user=u")
        #expect(Sacct(jobIDs: ["1"]).argv.contains { $0.hasPrefix("--delimiter=\u{1F}") })
    }

    @Test func slurmDurations() {
        #expect(SlurmTime.seconds("0:05") == 5)
        #expect(SlurmTime.seconds("12:34") == 754)
        #expect(SlurmTime.seconds("1:00:00") == 3600)
        #expect(SlurmTime.seconds("2-03:04:05") == 2 * 86400 + 3 * 3600 + 4 * 60 + 5)
        #expect(SlurmTime.seconds("1-02") == 86400 + 7200)
        #expect(SlurmTime.seconds("UNLIMITED") == nil)
        #expect(SlurmTime.seconds("INVALID") == nil)
        for bad in ["", ":05", "1:2:3:4", "1-2:3:4:5", "1--2", "1:", "1234567890"] {
            #expect(SlurmTime.seconds(bad) == nil, "\(bad)")
        }
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
        let jobs = Sacct(jobIDs: [], marks: Self.marks).parse(try fixture("sacct-ended.txt"))
        let states = Dictionary(jobs.map { ($0.name, $0.state) }, uniquingKeysWith: { a, _ in a })
        #expect(states["vllmctl-done"] == .completed)
        #expect(states["vllmctl-failed"] == .failed)
        #expect(states["vllmctl-cancelled"] == .cancelled)
        #expect(jobs.first { $0.name == "vllmctl-failed" }?.exitCode == "3:0")
    }

    @Test func sacctNameWithSeparator() {
        let f = Self.marks.field
        let jobs = Sacct(jobIDs: [], marks: Self.marks).parse(
            ["42", "a|b", "alice", "TIMEOUT", "TimeLimit", "n1", "01:00:00", "0:15", "/scratch/d", ""]
                .joined(separator: f) + "\n")
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
