import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

/// A tunnel through the loopback sshd (127.0.0.1:2222) to a local target, as `vllmctl tunnel`
/// builds one, with the session's own TCP port for tests that kill it.
struct TestTunnel {
    let tunnel: Tunnel
    /// The local port of the SSH session's socket (sshd sees the connection from it).
    let sessionPort: Int
    let events: EventLog

    init(
        targetHost: String = "127.0.0.1", targetPort: Int, settings: ForwarderSettings? = nil,
        sshHost: String = "127.0.0.1", options: SSHConnectOptions? = nil
    ) async throws {
        let session = try await SSHSession.connect(options ?? LocalSSH.options(host: sshHost))
        sessionPort = Self.localPort(of: session.socket)
        let listener = try LocalListener.bind(address: "127.0.0.1", port: 0)
        let events = EventLog()
        self.events = events
        tunnel = try Tunnel(
            session: session, listener: listener, targetHost: targetHost, targetPort: targetPort,
            settings: settings, onEvent: { events.append($0) })
    }

    var port: Int { tunnel.listener.port }
    var url: String { tunnel.baseURL }

    static func localPort(of fd: Int32) -> Int {
        var addr = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

final class EventLog: Sendable {
    private let events = Mutex<[ForwarderEvent]>([])
    func append(_ e: ForwarderEvent) { events.withLock { $0.append(e) } }
    var all: [ForwarderEvent] { events.withLock { $0 } }
}

/// A TCP socket connected to 127.0.0.1:port (blocking), or nil.
func connectLoopback(_ port: Int) -> Int32? {
    let fd = socket(AF_INET, SocketType.stream, 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
    if connected { return fd }
    close(fd)
    return nil
}

/// Whether something accepts TCP connections on 127.0.0.1:port.
func isListening(_ port: Int) -> Bool {
    guard let fd = connectLoopback(port) else { return false }
    close(fd)
    return true
}

@Suite struct TunnelTests {
    @Test func requestsGoThroughAndStopClosesThePort() async throws {
        let http = CurlHTTPClient()
        let sim = try SimulatorProcess()
        defer { sim.stop() }
        try await sim.waitHealthy(http: http)
        let t = try await TestTunnel(targetPort: sim.port)
        try await t.tunnel.checkHealth(http: http, deployment: "sim")
        let key = try APIKey(sim.key)
        let models = try await http.send(HTTPRequest(url: t.url + "/v1/models").authorized(key))
        #expect(models.status == 200)
        #expect(ModelList.names(models.body) == ["sim-model"])
        // Without the key the server's own 401 comes back through the tunnel.
        #expect(try await http.send(HTTPRequest(url: t.url + "/v1/models")).status == 401)
        let started = Date()
        t.tunnel.stop()
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(!isListening(t.port))
    }

    @Test func twoHundredConcurrentStreamingChats() async throws {
        let http = CurlHTTPClient()
        let sim = try SimulatorProcess()
        defer { sim.stop() }
        try await sim.waitHealthy(http: http)
        let t = try await TestTunnel(targetPort: sim.port)
        defer { t.tunnel.stop() }
        let key = try APIKey(sim.key)
        let body = Data(
            #"{"model":"sim-model","messages":[{"role":"user","content":"hello"}],"max_tokens":8,"stream":true}"#
                .utf8)
        let completed = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    let chunks = ChunkCounter()
                    let response = try await http.stream(
                        HTTPRequest.postJSON(url: t.url + "/v1/chat/completions", json: body, timeout: 120)
                            .authorized(key)
                    ) { chunks.add($0) }
                    return response.status == 200 && chunks.text.contains("data: [DONE]")
                        && chunks.count > 1
                }
            }
            var n = 0
            for try await ok in group where ok { n += 1 }
            return n
        }
        #expect(completed == 200)
    }

    @Test func oneGiBEachWayArrivesIntact() async throws {
        try await bulkBothWays(options: LocalSSH.options())
    }

    /// Issue 12 item 9: through a ProxyJump session (the 2223 sshd as jump host, to the 2222
    /// one), whose pump made another libssh2 call after an outbound EAGAIN on write.
    @Test func oneGiBEachWayThroughAJumpHostArrivesIntact() async throws {
        var options = LocalSSH.options()
        options.jumpHosts = [LocalSSH.options(port: 2223)]
        let started = Date()
        try await bulkBothWays(options: options)
        print(
            "TunnelTests: 1 GiB each way through a jump host in \(Int(Date().timeIntervalSince(started))) s")
    }

    /// The same with a small send buffer toward the jump host, so that the pump's calls often
    /// block half-sent: before the fix the session broke within a second.
    @Test func halfSentPacketsToAJumpHostAreFinished() async throws {
        var options = LocalSSH.options()
        var jump = LocalSSH.options(port: 2223)
        jump.sendBufferSize = 16 * 1024
        options.jumpHosts = [jump]
        try await bulkBothWays(options: options, size: 64 << 20)
    }

    /// `size` bytes (1 GiB) each way at once through a tunnel over a session made with
    /// `options`, with equal SHA-256 on both ends (Tests/bench/bulk.py).
    func bulkBothWays(options: SSHConnectOptions, size: Int = 1 << 30) async throws {
        let server = try BulkServer()
        defer { server.stop() }
        let t = try await TestTunnel(targetPort: server.port, options: options)
        defer { t.tunnel.stop() }
        let client = try await sh(
            [
                "python3", repoRoot + "/Tests/bench/bulk.py", "client", "--port", String(t.port), "--size",
                String(size),
            ],
            timeout: .seconds(600))
        #expect(client.status == 0, "\(client.stderr)")
        let mine = try #require(
            try JSONSerialization.jsonObject(with: Data(client.stdout.utf8)) as? [String: Any])
        let theirs = try #require(try await server.result())
        #expect(mine["sent"] as? Int == size)
        #expect(mine["received"] as? Int == size)
        #expect(theirs["received"] as? Int == size)
        #expect(mine["sent_sha256"] as? String == theirs["received_sha256"] as? String)
        #expect(mine["received_sha256"] as? String == theirs["sent_sha256"] as? String)
        #expect(
            !t.events.all.contains { if case .sessionLost = $0 { true } else { false } }, "\(t.events.all)")
    }

    @Test func aKilledSessionIsReplacedAndThePortStaysBound() async throws {
        let http = CurlHTTPClient()
        let sim = try SimulatorProcess()
        defer { sim.stop() }
        try await sim.waitHealthy(http: http)
        let t = try await TestTunnel(targetPort: sim.port)
        defer { t.tunnel.stop() }
        try await t.tunnel.checkHealth(http: http, deployment: "sim")
        // sshd's process for this one connection (found by our end's port) is killed.
        let ss = try await sh(["ss", "-tnpH", "state", "established", "( dport = :\(t.sessionPort) )"])
        let pids = ss.stdout.matches(of: /pid=(\d+)/).map { String($0.1) }
        #expect(!pids.isEmpty, "ss: \(ss.stdout)")
        for pid in Set(pids) { kill(pid_t(pid)!, SIGKILL) }
        let killed = Date()
        #expect(isListening(t.port))
        var answered = false
        while Date().timeIntervalSince(killed) < 10 {
            if let r = try? await http.send(
                HTTPRequest(url: t.url + "/health", connectTimeout: 2, timeout: 3)), r.status == 200
            {
                answered = true
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(answered, "events: \(t.events.all)")
        #expect(t.events.all.contains { if case .sessionLost = $0 { true } else { false } })
        #expect(t.events.all.contains(.reconnected))
    }

    @Test func aSilentServerIsDetectedByKeepalivesAndReplaced() async throws {
        let http = CurlHTTPClient()
        let sim = try SimulatorProcess()
        defer { sim.stop() }
        try await sim.waitHealthy(http: http)
        var settings = ForwarderSettings()
        settings.keepaliveInterval = 2
        settings.keepaliveCountMax = 2
        let t = try await TestTunnel(targetPort: sim.port, settings: settings)
        defer { t.tunnel.stop() }
        try await t.tunnel.checkHealth(http: http, deployment: "sim")
        // sshd's process for this connection is frozen: the TCP connection stays up, nothing
        // answers. Only the keepalives and the dead-peer timer can tell.
        let ss = try await sh(["ss", "-tnpH", "state", "established", "( dport = :\(t.sessionPort) )"])
        let pids = Set(ss.stdout.matches(of: /pid=(\d+)/).compactMap { pid_t(String($0.1)) })
        #expect(!pids.isEmpty, "ss: \(ss.stdout)")
        for pid in pids { kill(pid, SIGSTOP) }
        defer { for pid in pids { kill(pid, SIGKILL) } }
        let frozen = Date()
        while !t.events.all.contains(.reconnected) && Date().timeIntervalSince(frozen) < 20 {
            try await Task.sleep(for: .milliseconds(100))
        }
        let lost = t.events.all.compactMap { event -> String? in
            if case .sessionLost(let reason) = event { reason } else { nil }
        }
        #expect(lost.first?.contains("no answer from the server") == true, "events: \(t.events.all)")
        #expect(t.events.all.contains(.reconnected))
        // 2 s × 2 of silence, plus up to one interval until the first keepalive.
        #expect(Date().timeIntervalSince(frozen) < 12)
        let health = try await http.send(HTTPRequest(url: t.url + "/health", connectTimeout: 2, timeout: 5))
        #expect(health.status == 200)
    }

    @Test func aGoneServerIsAClearError() async throws {
        let port = try freePort()  // nothing listens there
        let t = try await TestTunnel(targetPort: port)
        defer { t.tunnel.stop() }
        let started = Date()
        let text = await thrownText {
            try await t.tunnel.checkHealth(http: CurlHTTPClient(), deployment: "gone")
        }
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(text?.contains("connect failed") == true, "\(text ?? "no error")")
        #expect(text?.contains("is gone or no longer listening") == true)
        #expect(text?.contains("vllmctl status gone") == true)
    }

    @Test func aLoginNodeThatForbidsForwardingIsAClearError() async throws {
        // The sshd on 2224 says `AllowTcpForwarding no`.
        let password = try LocalSSH.kbdPassword()
        let session = try await SSHSession.connect(
            LocalSSH.kbdOptions { _, prompts in prompts.map { _ in password } })
        let listener = try LocalListener.bind(address: "127.0.0.1", port: 0)
        let tunnel = try Tunnel(session: session, listener: listener, targetHost: "127.0.0.1", targetPort: 9)
        defer { tunnel.stop() }
        let started = Date()
        let text = await thrownText {
            try await tunnel.checkHealth(http: CurlHTTPClient(), deployment: "sim")
        }
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(text?.contains("administratively prohibited") == true, "\(text ?? "no error")")
        #expect(text?.contains("AllowTcpForwarding") == true)
    }

    @Test func aPortInUseIsAClearError() throws {
        let first = try LocalListener.bind(address: "127.0.0.1", port: 0)
        defer { close(first.fd) }
        #expect(throws: VLLMCtlError.self) { try LocalListener.bind(address: "127.0.0.1", port: first.port) }
        do {
            _ = try LocalListener.bind(address: "127.0.0.1", port: first.port)
        } catch {
            #expect("\(error)".contains("already in use"))
            #expect("\(error)".contains("--local-port"))
        }
    }

    @Test func idleTunnelUsesNoCPU() async throws {
        let sim = try SimulatorProcess()
        defer { sim.stop() }
        let t = try await TestTunnel(targetPort: sim.port)
        defer { t.tunnel.stop() }
        try await Task.sleep(for: .milliseconds(300))
        let before = threadCPU(named: "vllmctl.tunnel")
        try await Task.sleep(for: .seconds(3))
        let after = threadCPU(named: "vllmctl.tunnel")
        // Clock ticks (1/100 s) over 3 s: a busy loop would show ~300.
        #expect(after - before <= 3, "\(after - before) ticks")
    }
}

/// CPU clock ticks (user + system) of this process's thread called `name`.
func threadCPU(named name: String) -> Int {
    let dir = "/proc/self/task"
    guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return 0 }
    for task in tasks {
        let comm = (try? String(contentsOfFile: "\(dir)/\(task)/comm", encoding: .utf8)) ?? ""
        guard comm.trimmingCharacters(in: .whitespacesAndNewlines) == String(name.prefix(15)),
            let stat = try? String(contentsOfFile: "\(dir)/\(task)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
    }
    return -1
}

final class ChunkCounter: Sendable {
    private let chunks = Mutex((data: Data(), count: 0))
    func add(_ d: Data) {
        chunks.withLock {
            $0.data.append(d)
            $0.count += 1
        }
    }
    var count: Int { chunks.withLock { $0.count } }
    var text: String { chunks.withLock { String(decoding: $0.data, as: UTF8.self) } }
}

/// Tests/bench/bulk.py's server as a child process.
final class BulkServer: @unchecked Sendable {
    let process = Process()
    let port: Int
    private let output: Pipe

    init() throws {
        output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repoRoot + "/Tests/bench/bulk.py", "server"]
        process.standardOutput = output
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5)) else {
            throw VLLMCtlError.invalidInput("bulk.py server said `\(text)`", hint: "")
        }
        self.port = port
    }

    /// The JSON line of the first finished connection.
    func result() async throws -> [String: Any]? {
        let handle = output.fileHandleForReading
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let byte = handle.readData(ofLength: 1)
            if byte.isEmpty { break }
            line.append(byte)
        }
        return try JSONSerialization.jsonObject(with: line) as? [String: Any]
    }

    func stop() {
        kill(process.processIdentifier, SIGKILL)
    }
}

extension LocalCluster {
    /// `vllmctl tunnel` and `deploy --tunnel` through the `local-ssh` profile, end to end.
    @Suite struct TunnelCLITests {
        func sshCLI() throws -> CLI {
            var cli = try CLI()
            cli.configPath = try renderedClusterConfig()
            cli.extraEnvironment["VLLMCTL_SSH_CONFIG"] = LocalSSH.config
            cli.clusters = ["local-ssh", "local"]
            return cli
        }

        @Test func deployWithTunnelThenStatusQueryAndTeardown() async throws {
            let cli = try sshCLI()
            try await cli.withDeployment([
                "--cluster", "local-ssh", "--name", "tun-e2e", "--tunnel", "--tunnel-port", "0",
            ]) { deploy in
                let object = deploy.object
                let tunnelURL = try #require(object["tunnel_url"] as? String)
                let key = try #require(object["api_key"] as? String)
                #expect(tunnelURL.hasPrefix("http://127.0.0.1:") && tunnelURL.hasSuffix("/v1"))
                let models = try await CurlHTTPClient().send(
                    HTTPRequest(url: tunnelURL + "/models").authorized(try APIKey(key)))
                #expect(models.status == 200)
                let tunnels = TunnelStore(records: DeploymentStore(directory: cli.stateDir))
                let record = try #require(tunnels.open(cluster: "local-ssh").first)
                #expect(record.background)
                // The tunnel's log never holds the key.
                let log = try String(contentsOfFile: try #require(record.logFile), encoding: .utf8)
                #expect(log.contains("Tunnel open"))
                #expect(!log.contains(key))

                let status = try await cli.run(["status", "--cluster", "local-ssh", "--json"])
                #expect(status.status == 0, "stderr: \(status.stderr)")
                let report = try #require(
                    try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
                let row = try #require(
                    (report["deployments"] as? [[String: Any]])?.first { $0["name"] as? String == "tun-e2e" })
                #expect(row["tunnel_url"] as? String == tunnelURL)
                #expect(row["health"] as? String == "healthy")
                let detail = try await cli.run(["status", "tun-e2e", "--cluster", "local-ssh"])
                #expect(detail.stdout.contains("Tunnel:      \(tunnelURL)"))

                let query = try await cli.run([
                    "query", "tun-e2e", "--cluster", "local-ssh", "--prompt", "hello", "--max-tokens", "4",
                ])
                #expect(query.status == 0, "stderr: \(query.stderr)")
                #expect(!query.stdout.isEmpty)

                let down = try await cli.run(["teardown", "tun-e2e", "--cluster", "local-ssh", "--yes"])
                #expect(down.status == 0, "stderr: \(down.stderr)")
                #expect(down.stdout.contains("closed the tunnel \(tunnelURL)"))
                #expect(!FileManager.default.fileExists(atPath: record.logFile ?? "/"))
                #expect(!TunnelStore.isRunning(record))
                #expect(tunnels.open(cluster: "local-ssh").isEmpty)
                #expect(!isListening(record.localPort))

                // The job is gone: a new tunnel says so instead of hanging.
                let late = try await cli.run([
                    "tunnel", "tun-e2e", "--cluster", "local-ssh", "--local-port", "0",
                ])
                #expect(late.status != 0)
                #expect(late.stderr.contains("has ended"), "\(late.stderr)")
            }
        }

        @Test func aJobWhoseServerDiedIsAClearError() async throws {
            let cli = try sshCLI()
            try await cli.withDeployment(["--name", "tun-dead"]) { deploy in
                let url = try #require(deploy.object["url"] as? String)
                let address = try #require(url.firstMatch(of: /\/\/([0-9.]+):(\d+)\/v1/))
                let node = try #require((1...2).first { TestHost.nodeAddress($0) == String(address.1) })
                // The process listening on that node's port: this job's server, and no other
                // test's (a server on the other node may have the same port).
                let ss = try await sh(
                    TestHost.node(node).prefix + ["ss", "-ltnpH", "( sport = :\(address.2) )"])
                let pids = ss.stdout.matches(of: /pid=(\d+)/).compactMap { pid_t(String($0.1)) }
                #expect(!pids.isEmpty, "no server process on \(url): \(ss.stdout)")
                for pid in Set(pids) { kill(pid, SIGKILL) }
                let started = Date()
                let tunnel = try await cli.run(
                    ["tunnel", "tun-dead", "--cluster", "local-ssh", "--local-port", "0"],
                    timeout: .seconds(60))
                #expect(tunnel.status != 0)
                // Depending on how far the job got in noticing: the login node's refusal, or the end.
                #expect(
                    tunnel.stderr.contains("connect failed") || tunnel.stderr.contains("has ended"),
                    "\(tunnel.stderr)")
                #expect(Date().timeIntervalSince(started) < 10)
            }
        }

        @Test func foregroundTunnelServesAndClosesOnSignals() async throws {
            let cli = try sshCLI()
            try await cli.withDeployment(["--name", "tun-fg"]) { deploy in
                let key = try #require(deploy.object["api_key"] as? String)
                for sig in [SIGINT, SIGTERM] {
                    // The job was deployed with `local`; through `local-ssh` it is found by its tag.
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: vllmctlBinary)
                    process.arguments = ["tunnel", "tun-fg", "--cluster", "local-ssh", "--local-port", "0"]
                    process.environment = cli.environment
                    let out = Pipe()
                    process.standardOutput = out
                    let errPath = try temporaryDirectory() + "/stderr"
                    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
                    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
                    try process.run()
                    var text = ""
                    while !text.contains("export OPENAI_BASE_URL=") {
                        let data = out.fileHandleForReading.availableData
                        if data.isEmpty { break }
                        text += String(decoding: data, as: UTF8.self)
                    }
                    let base = try #require(
                        text.firstMatch(of: /OPENAI_BASE_URL=(\S+)/).map { String($0.1) },
                        "stdout: \(text) stderr: \((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")"
                    )
                    #expect(text.contains("OPENAI_API_KEY=\(key)"))
                    let models = try await CurlHTTPClient().send(
                        HTTPRequest(url: base + "/models").authorized(try APIKey(key)))
                    #expect(models.status == 200)
                    let port = Int(base.split(separator: ":").last!.split(separator: "/").first!)!
                    let pid = process.processIdentifier
                    let sent = Date()
                    kill(pid, sig)
                    while !TunnelStore.hasEnded(pid) && Date().timeIntervalSince(sent) < 5 {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    #expect(Date().timeIntervalSince(sent) < 2, "signal \(sig)")
                    #expect(!isListening(port))
                    #expect(
                        TunnelStore(records: DeploymentStore(directory: cli.stateDir)).open(
                            cluster: "local-ssh"
                        ).isEmpty)
                }
                let local = try await cli.run(["tunnel", "tun-fg"])
                #expect(local.status != 0)
                #expect(local.stderr.contains("ssh_host"))
            }
        }
    }
}
