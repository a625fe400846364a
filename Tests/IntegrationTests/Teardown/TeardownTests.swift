import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

/// Runs Slurm's programs through LocalHost, optionally replacing some with other executables
/// (a failing `squeue`), and keeps every argv it ran.
struct ShimmedHost: ClusterHost {
    let base = LocalHost()
    var replacements: [String: String] = [:]
    let log = ArgvLog()

    var displayName: String { "local (shimmed)" }

    func run(_ argv: [String], input: String?, timeout: Duration) async throws -> CommandResult {
        var argv = argv
        if let first = argv.first, let replacement = replacements[first] { argv[0] = replacement }
        log.append(argv)
        return try await base.run(argv, input: input, timeout: timeout)
    }
    func readFile(_ path: String) async throws -> Data? { try await base.readFile(path) }
    func writeFileAtomically(_ data: Data, to path: String, mode: Int) async throws {
        try await base.writeFileAtomically(data, to: path, mode: mode)
    }
    func makeDirectory(_ path: String, mode: Int) async throws {
        try await base.makeDirectory(path, mode: mode)
    }
    func makeNewDirectory(_ path: String, mode: Int) async throws {
        try await base.makeNewDirectory(path, mode: mode)
    }
    func removeFile(_ path: String) async throws { try await base.removeFile(path) }
    func homeDirectory() async throws -> String { try await base.homeDirectory() }
}

final class ArgvLog: Sendable {
    private let argvs = Mutex<[[String]]>([])
    func append(_ argv: [String]) { argvs.withLock { $0.append(argv) } }
    var all: [[String]] { argvs.withLock { $0 } }
    var scancels: [[String]] { all.filter { ($0.first ?? "").hasSuffix("scancel") } }
}

extension LocalCluster {
    /// `vllmctl teardown` against the real local Slurm cluster. Other suites' and other
    /// people's jobs may be on the cluster meanwhile, so these tests only ever carry out plans
    /// restricted to their own jobs, and check that foreign jobs are never in a plan at all.
    @Suite(.serialized) struct TeardownTests {
        let config: Config
        let profile: ClusterProfile
        let terminal = CapturedTerminal()
        let store: DeploymentStore
        let templates = ScriptTemplates(directories: [repoRoot + "/templates"])
        static let otherUser = "vllmctl-other"

        init() throws {
            config = try localClusterConfig()
            profile = try config.cluster(named: "local")
            store = DeploymentStore(directory: try temporaryDirectory())
        }

        func context(_ host: any ClusterHost = LocalHost()) -> Context {
            Context(
                host: host, http: CurlHTTPClient(), clock: SystemClock(), terminal: terminal, records: store,
                environment: [:])
        }

        var deployer: Deployer {
            Deployer(context: context(), config: config, profile: profile, templates: templates)
        }

        func teardown(_ host: any ClusterHost = LocalHost()) -> Teardown {
            Teardown(context: context(host), profile: profile, user: LocalHost.currentUser())
        }

        /// A plain job of this user (no vllmctl tag).
        func plainJob(_ extra: JobList) async throws -> String {
            let out = try await sh([
                "sbatch", "--parsable", "--job-name=plain-sleep", "--output=/dev/null", "--wrap", "sleep 300",
            ])
            let id = try Sbatch.parseJobID(out, argv: [])
            extra.add(id)
            return id
        }

        /// A job of another user that carries vllmctl's tag.
        func otherUsersJob(_ extra: JobList) async throws -> String {
            if try await sh(["id", Self.otherUser]).status != 0 {
                let made = try await sh(["useradd", "-m", Self.otherUser])
                #expect(made.status == 0, "useradd: \(made.stderr)")
            }
            let out = try await sh([
                "su", "-s", "/bin/bash", Self.otherUser, "-c",
                "cd /tmp && sbatch --parsable --job-name=vllmctl-theirs --output=/dev/null --wrap 'sleep 300'",
            ])
            let id = try Sbatch.parseJobID(out, argv: [])
            extra.add(id)
            return id
        }

        func snapshot(_ id: String) async throws -> JobSnapshot? {
            let squeue = Squeue(jobIDs: [id])
            return squeue.parse(try await sh(squeue.argv).stdout).first { $0.jobID == id }
        }

        func waitForState(_ id: String, _ wanted: JobState, seconds: Double = 30) async throws -> JobSnapshot?
        {
            let deadline = Date().addingTimeInterval(seconds)
            var last: JobSnapshot?
            while Date() < deadline {
                last = try await snapshot(id)
                if last?.state == wanted { return last }
                try await Task.sleep(for: .milliseconds(250))
            }
            return last
        }

        /// Alive means squeue still lists it as pending or running.
        func isAlive(_ id: String) async throws -> Bool {
            guard let state = try await snapshot(id)?.state else { return false }
            return state == .running || state == .pending
        }

        @Test func tearsDownARunningAndAPendingDeploymentTwiceHarmlessly() async throws {
            try await cancellingJobs(recordedIn: store) { extra in
                let plain = try await plainJob(extra)
                #expect(try await waitForState(plain, .running)?.state == .running)
                // All on node1 (the plain job may have landed anywhere; node1 is busy either way).
                var onNode1 = DeploySettings()
                onNode1.nodelist = "node1"
                let running = try #require(
                    try await deployer.deploy(
                        DeployRequest(modelOrPreset: "sim", name: "td-running", flags: onNode1)
                    ).record)
                // Exclusive use of the node cannot start while another job runs there: it stays pending.
                var exclusive = onNode1
                exclusive.exclusive = true
                let pending = try #require(
                    try await deployer.deploy(
                        DeployRequest(modelOrPreset: "sim", name: "td-pending", flags: exclusive, wait: false)
                    ).record)
                try await Task.sleep(for: .seconds(1))
                #expect(try await snapshot(pending.jobID)?.state == .pending)
                #expect(FileManager.default.fileExists(atPath: running.infoFile))

                let host = ShimmedHost()
                let t = teardown(host)
                let plan = try await t.plan(.named(["td-running", pending.jobID]))
                #expect(plan.actions.map(\.kind) == [.cancel, .cancel])
                #expect(plan.actions.map(\.jobID) == [running.jobID, pending.jobID])
                let outcomes = await t.execute(plan)
                for outcome in outcomes { #expect(outcome.succeeded, "\(outcome.message)") }
                #expect(host.log.scancels == [["scancel", "--", running.jobID, pending.jobID]])

                // Slurm confirms; the records are ended; the connection files are gone.
                #expect(try await !isAlive(running.jobID))
                #expect(try await !isAlive(pending.jobID))
                for id in [running.jobID, pending.jobID] {
                    #expect(store.find(id, cluster: "local")?.phase == .ended)
                }
                #expect(!FileManager.default.fileExists(atPath: running.infoFile))
                #expect(
                    !FileManager.default.fileExists(
                        atPath: running.deployDir + "/" + DeploymentFiles.infoJSON))
                // The job's own files stay (logs, script).
                #expect(
                    FileManager.default.fileExists(atPath: running.deployDir + "/" + DeploymentFiles.script))
                // The plain job of the same user runs on.
                #expect(try await snapshot(plain)?.state == .running)

                // Twice: harmless, says so, sends no scancel.
                let again = try await t.plan(.named(["td-running", pending.jobID]))
                #expect(again.actions.map(\.kind) == [.alreadyDone, .alreadyDone])
                let repeated = await t.execute(again)
                #expect(repeated.allSatisfy { $0.succeeded })
                #expect(repeated.allSatisfy { $0.message.contains("already torn down") })
                #expect(host.log.scancels.count == 1)
            }
        }

        @Test func jobsThatAreNotOursAreNeverTouched() async throws {
            try await cancellingJobs(recordedIn: store) { extra in
                let plain = try await plainJob(extra)
                let theirs = try await otherUsersJob(extra)
                #expect(try await waitForState(theirs, .running)?.user == Self.otherUser)
                let host = ShimmedHost()
                let t = teardown(host)

                // Asked for by id: a clear refusal, and nothing cancelled.
                for (id, words) in [
                    (plain, "not started by vllmctl"), (theirs, "belongs to \(Self.otherUser)"),
                ] {
                    let error = await #expect(throws: VLLMCtlError.self) {
                        _ = try await t.plan(.named([id]))
                    }
                    #expect("\(error.map { "\($0)" } ?? "")".contains(words))
                    #expect("\(error.map { "\($0)" } ?? "")".contains("Nothing was cancelled"))
                }
                // Not in any plan, whatever the criteria (these plans are not carried out: other
                // suites' jobs may be on the cluster).
                for scope in [
                    TeardownScope.all, .stale(StaleCriteria(grace: 0, olderThan: 0, pendingLongerThan: 0)),
                ] {
                    let plan = try await t.plan(scope)
                    #expect(!plan.actions.contains { $0.jobID == plain || $0.jobID == theirs }, "\(scope)")
                }
                #expect(host.log.scancels.isEmpty)
                #expect(try await isAlive(plain))
                #expect(try await isAlive(theirs))
            }
        }

        @Test func staleByUnhealthyWaitsOutTheGrace() async throws {
            try await cancellingJobs(recordedIn: store) { _ in
                var flags = DeploySettings()
                flags.vllmArgs = ["--sim-unhealthy-after", "3"]
                let record = try #require(
                    try await deployer.deploy(
                        DeployRequest(modelOrPreset: "sim", name: "td-sick", flags: flags)
                    ).record)
                let url = try #require(record.url)
                // Wait for the simulator's engine to "die": the process lives, /health says 503.
                var status = 200
                for _ in 0..<100 where status != 503 {
                    try await Task.sleep(for: .milliseconds(100))
                    status =
                        (try? await CurlHTTPClient().send(
                            HTTPRequest(url: url + "/health", connectTimeout: 1, timeout: 2)))?.status ?? 0
                }
                #expect(status == 503)

                let host = ShimmedHost()
                let t = teardown(host)
                let criteria = StaleCriteria(grace: 4)
                let first = try await t.plan(.stale(criteria))
                let mine = try #require(first.actions.first { $0.jobID == record.jobID })
                #expect(mine.kind == .keep)
                #expect(mine.reason.contains("503"))
                #expect(HealthMarks(records: store, cluster: "local").all()[record.jobID] != nil)
                _ = await t.execute(
                    TeardownPlan(
                        scope: first.scope, actions: first.actions.filter { $0.jobID == record.jobID }))
                #expect(host.log.scancels.isEmpty)
                #expect(try await snapshot(record.jobID)?.state == .running)

                try await Task.sleep(for: .seconds(4.5))
                let second = try await t.plan(.stale(criteria))
                let due = try #require(second.actions.first { $0.jobID == record.jobID })
                #expect(due.kind == .cancel, "\(due.reason)")
                #expect(due.reason.contains("unhealthy for"))
                let outcomes = await t.execute(TeardownPlan(scope: second.scope, actions: [due]))
                #expect(outcomes.allSatisfy { $0.succeeded }, "\(outcomes.map(\.message))")
                #expect(host.log.scancels == [["scancel", "--", record.jobID]])
                #expect(try await !isAlive(record.jobID))
                #expect(store.find(record.jobID, cluster: "local")?.phase == .ended)
                #expect(!FileManager.default.fileExists(atPath: record.infoFile))
                #expect(HealthMarks(records: store, cluster: "local").all()[record.jobID] == nil)
            }
        }

        @Test func orphanRecordsAndInfoFilesAreCleanedUp() async throws {
            let dir = try temporaryDirectory()
            for file in [DeploymentFiles.infoText, DeploymentFiles.infoJSON] {
                try "stale".write(toFile: dir + "/" + file, atomically: true, encoding: .utf8)
            }
            // A job id this cluster has never used.
            let orphan = DeploymentRecord(
                name: "td-orphan", cluster: "local", jobID: "987654321", model: "m", servedModelName: "m",
                deployDir: dir,
                phase: .ready, createdAt: Date().addingTimeInterval(-3600), url: "http://127.0.0.1:9",
                apiKey: "sk-x")
            try store.save(orphan)
            let host = ShimmedHost()
            let t = teardown(host)
            let plan = try await t.plan(.stale(StaleCriteria()))
            let action = try #require(plan.actions.first { $0.jobID == orphan.jobID })
            #expect(action.kind == .cleanUp)
            #expect(action.reason.contains("neither squeue nor sacct"))
            let outcomes = await t.execute(TeardownPlan(scope: plan.scope, actions: [action]))
            #expect(outcomes.allSatisfy { $0.succeeded })
            #expect(host.log.scancels.isEmpty)
            #expect(store.find(orphan.jobID, cluster: "local")?.phase == .ended)
            #expect(!FileManager.default.fileExists(atPath: orphan.infoFile))
            #expect(!FileManager.default.fileExists(atPath: dir + "/" + DeploymentFiles.infoJSON))
            // Once ended it is no longer an orphan to report.
            #expect(
                try await t.plan(.stale(StaleCriteria())).actions.contains { $0.jobID == orphan.jobID }
                    == false)
        }

        @Test func aFailingSqueueCancelsNothing() async throws {
            try await cancellingJobs(recordedIn: store) { _ in
                let record = try #require(
                    try await deployer.deploy(
                        DeployRequest(modelOrPreset: "sim", name: "td-shim", wait: false)
                    ).record)
                let shimDir = try temporaryDirectory()
                let shim = shimDir + "/squeue"
                try
                    "#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller (connect failure)' >&2\nexit 1\n"
                    .write(toFile: shim, atomically: true, encoding: .utf8)
                chmod(shim, 0o755)

                var host = ShimmedHost()
                host.replacements["squeue"] = shim
                let t = teardown(host)
                for scope in [
                    TeardownScope.named([record.jobID]), .all, .stale(StaleCriteria(grace: 0, olderThan: 0)),
                ] {
                    let error = await #expect(throws: VLLMCtlError.self) { _ = try await t.plan(scope) }
                    #expect("\(error.map { "\($0)" } ?? "")".contains("Unable to contact slurm controller"))
                    #expect("\(error.map { "\($0)" } ?? "")".contains("Nothing was cancelled"))
                }
                #expect(host.log.scancels.isEmpty)

                // The CLI the same way, with the shim first on PATH: non-zero, nothing cancelled.
                var cli = try CLI()
                cli.extraEnvironment["PATH"] =
                    shimDir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
                let result = try await cli.run(["teardown", "--all", "--yes"])
                #expect(result.status != 0)
                #expect(result.stderr.contains("Nothing was cancelled"), "\(result.stderr)")
                #expect(try await isAlive(record.jobID))
            }
        }

        @Test func theCLITearsDownByNameAndSaysSoTwice() async throws {
            let cli = try CLI()
            try await cli.cleaningUp {
                let deploy = try await cli.run(["deploy", "sim", "--name", "td-cli", "--no-wait"])
                #expect(deploy.status == 0, "stderr: \(deploy.stderr)")
                let first = try await cli.run(["teardown", "td-cli"])
                #expect(first.status == 0, "stderr: \(first.stderr)")
                #expect(first.stdout.contains("Cancelled job"))
                let second = try await cli.run(["teardown", "td-cli"])
                #expect(second.status == 0, "stderr: \(second.stderr)")
                #expect(second.stdout.contains("already torn down"))
                let unknown = try await cli.run(["teardown", "no-such-deployment"])
                #expect(unknown.status != 0)
                #expect(unknown.stderr.contains("no-such-deployment"))
                // A duration it cannot read is refused before anything runs.
                let flags = try await cli.run(["teardown", "--stale", "--grace", "soon"])
                #expect(flags.status != 0)
                #expect(flags.stderr.contains("HH:MM:SS"))
            }
        }
    }
}
