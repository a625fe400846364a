import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// The load of the replica cluster tests: chat completions from a Python process on the test
/// host of a client (the laptop namespace for a tunnel, the login host for a gateway), while a
/// second thread reads the endpoint's `/vllmctl/replicas` page every 50 ms and notes each
/// replica's state changes with the wall clock (`time.time()`, the clock the test's `Date()`
/// reads). The key is read from a file (0600), so it is on no command line.
///
/// The argument is a JSON object: `base`, `key_file`, `count`, `conc`, `max_tokens`, and
/// optionally `trigger_after` + `trigger_file` (the file is created once that many requests
/// have ended: the test's signal to do its harm mid-run). Each client thread keeps its
/// connection alive and opens a new one after any failure. A failure before the response's
/// status line (including an error status from the endpoint itself) is `failed_unstarted`; a
/// break after it (a stream without `[DONE]`, a cut body) is `failed_started`. Every third
/// request is streamed. Prints one JSON line.
let replicaLoadScript = #"""
    import http.client, json, os, sys, threading, time, urllib.parse, concurrent.futures
    a = json.loads(sys.argv[1])
    key = open(a["key_file"]).read().strip()
    u = urllib.parse.urlsplit(a["base"])
    host, port = u.hostname, u.port
    local = threading.local()
    lock = threading.Lock()
    done = [0]
    errors = []

    def conn():
        if getattr(local, "c", None) is None:
            local.c = http.client.HTTPConnection(host, port, timeout=90)
        return local.c

    def drop():
        try:
            local.c.close()
        except Exception:
            pass
        local.c = None

    def one(i):
        stream = i % 3 == 0
        body = json.dumps({"model": "sim", "messages": [{"role": "user", "content": "hi %d" % i}],
                           "max_tokens": a["max_tokens"], "stream": stream})
        started = False
        result = "ok"
        try:
            c = conn()
            c.request("POST", "/v1/chat/completions", body=body,
                      headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                text = r.read().decode(errors="replace")
                raise RuntimeError("status %d: %s" % (r.status, text[:600]))
            started = True
            text = r.read().decode(errors="replace")
            if stream and "[DONE]" not in text:
                raise RuntimeError("a stream without [DONE]")
            if not stream and '"choices"' not in text:
                raise RuntimeError("an answer without choices")
            if r.will_close:
                drop()
        except Exception as e:
            drop()
            result = "started" if started else "unstarted"
            with lock:
                if len(errors) < 10:
                    errors.append("%s: %s: %r" % (result, type(e).__name__, e))
        with lock:
            done[0] += 1
            if a.get("trigger_after") and done[0] == a["trigger_after"]:
                open(a["trigger_file"], "w").close()
        return result

    transitions = []
    last = {}
    page = [None]
    finished = threading.Event()

    def poll():
        while True:
            try:
                p = http.client.HTTPConnection(host, port, timeout=2)
                p.request("GET", "/vllmctl/replicas")
                obj = json.loads(p.getresponse().read())
                p.close()
                now = time.time()
                page[0] = obj
                seen = {}
                why = {}
                for r in obj["replicas"]:
                    seen["%s:%d" % (r["host"], r["port"])] = r["state"]
                    why["%s:%d" % (r["host"], r["port"])] = r.get("last_error")
                for name in set(seen) | set(last):
                    state = seen.get(name, "absent")
                    if last.get(name) != state:
                        transitions.append({"t": now, "replica": name, "state": state, "why": why.get(name)})
                        last[name] = state
            except Exception:
                pass
            if finished.is_set():
                return
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(a["conc"]) as pool:
        results = list(pool.map(one, range(a["count"])))
    finished.set()
    poller.join()
    print(json.dumps({
        "ok": results.count("ok"), "failed_unstarted": results.count("unstarted"),
        "failed_started": results.count("started"), "errors": errors, "seconds": time.time() - start,
        "transitions": transitions, "page": page[0]}))
    """#

/// What one run of ``replicaLoadScript`` saw.
struct ReplicaLoadReport: Decodable, CustomStringConvertible {
    struct Transition: Decodable {
        var t: Double
        var replica: String
        var state: String
        /// The replica's `last_error` on the page that showed the change.
        var why: String?
    }
    var ok: Int
    var failedUnstarted: Int
    var failedStarted: Int
    var errors: [String]
    var seconds: Double
    var transitions: [Transition]
    var page: ReplicasPage?

    enum CodingKeys: String, CodingKey {
        case ok, errors, seconds, transitions, page
        case failedUnstarted = "failed_unstarted"
        case failedStarted = "failed_started"
    }

    /// Requests per replica (`host:port`), from the endpoint's page at the end.
    var served: [String: Int] {
        Dictionary(
            (page?.replicas ?? []).map { ("\($0.host):\($0.port)", $0.requests) }, uniquingKeysWith: +)
    }

    /// Seconds from `since` (wall clock) until `replica` was first seen out of rotation (or
    /// gone from the page); nil if it never was.
    func secondsToLeave(_ replica: String, since: Double) -> Double? {
        leaving(replica, since: since).map { $0.t - since }
    }

    /// The first change of `replica` out of rotation after `since`.
    func leaving(_ replica: String, since: Double) -> Transition? {
        transitions.first { $0.replica == replica && $0.t >= since && $0.state != "in_rotation" }
    }

    var description: String {
        "ok \(ok), failed before the response \(failedUnstarted), broken after it \(failedStarted), "
            + "\(String(format: "%.1f", seconds)) s, served \(served), errors \(errors)"
    }
}

/// One balancing endpoint under test and the host its clients run on.
struct EndpointUnderTest: Sendable {
    var label: String
    var base: String
    /// nil: the login host (this one).
    var host: TestHost?

    func argv(_ args: [String]) -> [String] { (host?.prefix ?? []) + args }

    /// Runs ``replicaLoadScript`` against this endpoint.
    func load(
        keyFile: String, count: Int, conc: Int, maxTokens: Int, trigger: (after: Int, file: String)? = nil
    ) async throws -> ReplicaLoadReport {
        var spec: [String: Any] = [
            "base": base, "key_file": keyFile, "count": count, "conc": conc, "max_tokens": maxTokens,
        ]
        if let trigger {
            spec["trigger_after"] = trigger.after
            spec["trigger_file"] = trigger.file
        }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: spec), as: UTF8.self)
        let run = try await sh(argv(["python3", "-c", replicaLoadScript, json]), timeout: .seconds(300))
        guard run.status == 0, let line = run.stdout.split(separator: "\n").last else {
            throw VLLMCtlError.invalidInput(
                "the load against \(label) failed (status \(run.status)): \(run.stderr)", hint: "")
        }
        return try JSONDecoder().decode(ReplicaLoadReport.self, from: Data(line.utf8))
    }

    /// The endpoint's `/vllmctl/replicas` page; nil when it does not answer.
    func page() async -> ReplicasPage? {
        guard
            let r = try? await sh(
                argv(["curl", "-sS", "-m", "3", base + "/vllmctl/replicas"]), timeout: .seconds(10)),
            r.status == 0
        else { return nil }
        return try? JSONDecoder().decode(ReplicasPage.self, from: Data(r.stdout.utf8))
    }

    /// Polls the page (every 200 ms, at most `seconds`) until `condition` holds; the page then.
    func waitForPage(seconds: Double, _ condition: (ReplicasPage) -> Bool) async throws -> ReplicasPage? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let p = await page(), condition(p) { return p }
            try await Task.sleep(for: .milliseconds(200))
        }
        return nil
    }
}

extension ReplicasPage {
    func state(of replica: String) -> String {
        replicas.first { "\($0.host):\($0.port)" == replica }?.state ?? "absent"
    }
}

/// `vllmctl gateway NAME` run on the login host as a user would (`nohup vllmctl gateway …`),
/// its notes (events) in a log file.
final class GatewayProcess: Sendable {
    let process: Process
    let port: Int
    let log: String

    init(name: String, cli: CLI, port: Int, log: String) throws {
        self.port = port
        self.log = log
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments =
            cli.environment.map { "\($0)=\($1)" } + [
                vllmctlBinary, "gateway", name, "--port", String(port), "--bind", "127.0.0.1", "--host",
                "127.0.0.1",
            ]
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = FileHandle.nullDevice
        p.standardError = handle
        try p.run()
        process = p
    }

    var base: String { "http://127.0.0.1:\(port)" }

    /// Stops it as Ctrl-C would, and kills it if it has not stopped within 5 s.
    func stop() async {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGINT)
        for _ in 0..<50 where process.isRunning { try? await Task.sleep(for: .milliseconds(100)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Kills the server listening on `port` on compute node `node` (its job then ends).
func killServer(node: Int, port: Int) async throws -> [pid_t] {
    let ss = try await sh(TestHost.node(node).prefix + ["ss", "-ltnpH", "( sport = :\(port) )"])
    let pids = Set(ss.stdout.matches(of: /pid=(\d+)/).compactMap { pid_t(String($0.1)) })
    for pid in pids { kill(pid, SIGKILL) }
    return Array(pids)
}

/// The compute node (1 or 2) whose address `replica` (`host:port`) has.
func nodeOf(_ replica: String) -> Int? {
    (1...2).first { replica.hasPrefix(TestHost.nodeAddress($0) + ":") }
}
