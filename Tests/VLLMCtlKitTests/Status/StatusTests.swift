import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct StatusTableTests {
    @Test func columnsAlignByCharactersAlsoPastASCII() {
        var pending = DeploymentStatus(
            name: "ünï", jobID: "7", cluster: "local", user: me, model: nil, servedModelName: "sim",
            state: "PENDING", reason: "JobHeldUser", node: nil, url: nil, health: .unchecked,
            elapsedSeconds: nil, timeLeftSeconds: nil, walltimeLow: false, deployDir: nil, infoFile: nil,
            recorded: false)
        pending.healthDetail = nil
        let running = DeploymentStatus(
            name: "b", jobID: "12", cluster: "local", user: me, model: "m", servedModelName: nil,
            state: "RUNNING", reason: nil, node: "n1", url: "http://n1:8000", health: .healthy,
            elapsedSeconds: 65, timeLeftSeconds: 300, walltimeLow: true, deployDir: nil, infoFile: nil,
            recorded: true)
        #expect(
            StatusTable.render([pending, running]) == """
                NAME  JOB  MODEL  STATE                  NODE  URL                HEALTH   UPTIME  LEFT
                ünï   7    sim    PENDING (JobHeldUser)  -     -                  -        -       -
                b     12   m      RUNNING                n1    http://n1:8000/v1  healthy  1m05s   5m00s !
                ! less than 10 minutes of walltime left: deploy a replacement now.

                """)
    }
}

@Test func theTableListsOpenTunnelsUnlessAskedNotTo() {
    var row = DeploymentStatus(
        name: "qwen", jobID: "42", cluster: "hpc", user: me, model: "q", servedModelName: "q",
        state: "RUNNING", reason: nil, node: "gpu1", url: "http://gpu1:8000", health: .healthy,
        elapsedSeconds: 60, timeLeftSeconds: 3600, walltimeLow: false, deployDir: nil, infoFile: nil,
        recorded: true)
    #expect(!StatusTable.render([row]).contains("Tunnels:"))
    row.tunnelURL = "http://127.0.0.1:8000/v1"
    #expect(StatusTable.render([row]).contains("\nTunnels: qwen → http://127.0.0.1:8000/v1"))
    #expect(!StatusTable.render([row], listTunnels: false).contains("Tunnels:"))
}

@Suite struct StatusBuilderTests {
    @Test func oneSqueueAndRowsInJobOrder() async throws {
        let jobs = ["30", "10", "20"].map { job($0, "vllmctl-s\($0)", .pending, reason: "Priority") }
        let foreign = job("5", "sleep", .pending)
        let host = ScriptedHost { argv in
            if argv[0] == "id" { return CommandResult(status: 0, stdout: me + "\n", stderr: "") }
            return CommandResult(status: 0, stdout: squeueOutput([foreign] + jobs, for: argv), stderr: "")
        }
        let context = Context(
            host: host, http: FixedHTTP(status: 200), clock: SteppingClock(t0), terminal: QuietTerminal(),
            records: DeploymentStore(directory: try temporaryDirectory()), environment: [:])
        let rows = try await StatusBuilder(context: context, cluster: "local").build(includeEnded: false)
        #expect(rows.map(\.jobID) == ["10", "20", "30"])
        #expect(rows.map(\.name) == ["s10", "s20", "s30"])
        #expect(rows.allSatisfy { $0.state == "PENDING" && $0.reason == "Priority" })
        #expect(host.programs.filter { $0 != "id" } == ["squeue"])
    }
}

/// Issue 12 item 4: a record is marked ended only when the scheduler confirms its job ended.
@Suite struct StatusRecordEndingTests {
    func build(squeue: [JobSnapshot], sacct: [JobSnapshot], store: DeploymentStore) async throws
        -> ScriptedHost
    {
        let host = ScriptedHost { argv in
            switch argv[0] {
            case "id": return CommandResult(status: 0, stdout: me + "\n", stderr: "")
            case "squeue":
                return CommandResult(status: 0, stdout: squeueOutput(squeue, for: argv), stderr: "")
            case "sacct": return CommandResult(status: 0, stdout: sacctOutput(sacct, for: argv), stderr: "")
            default: return CommandResult(status: 1, stdout: "", stderr: "")
            }
        }
        let context = Context(
            host: host, http: FixedHTTP(status: 200), clock: SteppingClock(t0), terminal: QuietTerminal(),
            records: store, environment: [:])
        _ = try await StatusBuilder(context: context, cluster: "local").build(includeEnded: false)
        return host
    }

    @Test func anEmptySqueueEndsNothingWithoutSacctsWord() async throws {
        let store = DeploymentStore(directory: try temporaryDirectory())
        try store.save(record("10", "a"))
        // squeue says nothing (exit 0, empty); sacct still sees it running.
        let host = try await build(
            squeue: [], sacct: [job("10", "vllmctl-a", .running)], store: store)
        #expect(host.programs.contains("sacct"))
        #expect(store.find("10", cluster: "local")?.phase != .ended)
        // Once sacct reports a final state, the record ends.
        _ = try await build(squeue: [], sacct: [job("10", "vllmctl-a", .completed)], store: store)
        #expect(store.find("10", cluster: "local")?.phase == .ended)
    }

    @Test func aLiveJobCostsNoSacct() async throws {
        let store = DeploymentStore(directory: try temporaryDirectory())
        try store.save(record("10", "a"))
        let host = try await build(squeue: [job("10", "vllmctl-a", .running)], sacct: [], store: store)
        #expect(host.programs.filter { $0 != "id" } == ["squeue"])
        #expect(store.find("10", cluster: "local")?.phase != .ended)
    }
}

@Suite struct HealthClassificationTests {
    /// Only what the server was seen doing counts against it.
    @Test func onlyObservedFailuresCountAgainstTheServer() {
        typealias H = DeploymentStatus
        #expect(
            H.health(after: VLLMCtlError.http(url: "u", message: "connection refused (x)", hint: ""))
                == .unreachable)
        #expect(
            H.health(after: VLLMCtlError.http(url: "u", message: "the connection broke (x)", hint: ""))
                == .unhealthy)
        #expect(
            H.health(after: VLLMCtlError.unreachable(url: "u", message: "timed out", hint: "")) == .unknown)
        #expect(H.health(after: SSHError(host: "h", message: "down", hint: "")) == .unknown)
        #expect(H.health(after: CancellationError()) == .unknown)
    }

    @Test func urlTargetsAndLoopback() throws {
        let plain = try #require(URLTarget(url: "http://10.77.0.11:8000/health"))
        #expect(plain.host == "10.77.0.11" && plain.port == 8000 && !plain.isLoopback)
        let tls = try #require(URLTarget(url: "https://node7.cluster/v1"))
        #expect(tls.port == 443 && tls.isTLS && tls.hostPort == "node7.cluster:443")
        let v6 = try #require(URLTarget(url: "http://[fd00::5]:9000"))
        #expect(v6.host == "fd00::5" && v6.hostPort == "[fd00::5]:9000")
        for loop in ["http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:2", "http://127.5.0.1"] {
            #expect(try #require(URLTarget(url: loop)).isLoopback, "\(loop)")
        }
        #expect(URLTarget(url: "ftp://x/y") == nil)
        #expect(URLTarget(url: "not a url") == nil)
    }
}
