import Foundation
import Testing

@testable import VLLMCtlKit

let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            return url.path
        }
    }
    fatalError("no Package.swift above \(#filePath)")
}()

/// The config `make cluster-up` writes. Integration tests need the local cluster; they fail
/// (not skip) without it, since CI always brings it up.
func localClusterConfig() throws -> Config {
    let path = repoRoot + "/.cluster/vllmctl.yaml"
    guard FileManager.default.fileExists(atPath: path) else {
        throw VLLMCtlError.file(
            path: path, message: "missing: run `make cluster-up` before the integration tests")
    }
    return try ConfigLocation.load(explicit: path, environment: [:])
}

func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "vllmctl-it-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func sh(_ argv: [String], input: String? = nil, timeout: Duration = .seconds(120)) async throws
    -> CommandResult
{
    try await LocalHost().run(argv, input: input, timeout: timeout)
}

/// A terminal that keeps what it is told.
final class RecordingTerminal: Terminal, @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var isInteractive: Bool { false }
    func print(_ text: String) { lock.withLock { lines.append(text) } }
    func note(_ text: String) { lock.withLock { lines.append(text) } }
    func progress(_ text: String?) {}
    var text: String { lock.withLock { lines.joined(separator: "\n") } }
}

/// A free TCP port on 127.0.0.1, from the kernel.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    try withUnsafeMutablePointer(to: &addr) { ptr in
        try ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            guard bind(fd, sa, len) == 0, getsockname(fd, sa, &len) == 0 else {
                throw VLLMCtlError.file(path: "socket", message: "cannot bind")
            }
        }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// The vLLM simulator as a local child process (not a Slurm job), for HTTP tests.
final class SimulatorProcess: @unchecked Sendable {
    let process = Process()
    let port: Int
    let key: String
    /// The simulator's log (a file: an undrained pipe would block it).
    let logPath: String

    let bindHost: String

    init(
        extraArgs: [String] = [], loadSeconds: Double = 0, key: String = APIKey.generate().value,
        bindHost: String = "127.0.0.1"
    ) throws {
        port = try freePort()
        self.key = key
        self.bindHost = bindHost
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments =
            [
                "python3", repoRoot + "/slurm/sim/vllm_sim.py", "serve", "sim-model", "--host", bindHost,
                "--port", String(port), "--sim-load-seconds", String(loadSeconds), "--sim-token-delay",
                "0.05",
            ] + extraArgs
        var env = ProcessInfo.processInfo.environment
        env["VLLM_API_KEY"] = key
        process.environment = env
        logPath = NSTemporaryDirectory() + "vllm-sim-\(port).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
    }

    var url: String { "http://\(bindHost):\(port)" }

    func waitHealthy(http: any HTTPClient, seconds: Double = 20) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let r = try? await http.send(HTTPRequest(url: url + "/health", connectTimeout: 1, timeout: 2)),
                r.status == 200
            {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw VLLMCtlError.http(url: url, message: "the simulator did not become healthy", hint: "")
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM, then SIGKILL after 5 s. Foundation's waitUntilExit spins on Linux and
    /// isRunning lags, so the child's state is read from /proc (gone or a zombie = exited).
    func stop() {
        let pid = process.processIdentifier
        func alive() -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else {
                return false
            }
            return
                !(stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? true)
        }
        guard pid > 0, alive() else { return }
        kill(pid, SIGTERM)
        for _ in 0..<100 where alive() { usleep(20_000) }
        if alive() { kill(pid, SIGKILL) }
    }

    deinit { stop() }
}

/// A TCP server on 127.0.0.1 that hands each connection to `serve`, one at a time on a thread
/// of its own, and then closes it; out of descriptors, it waits and accepts again. Stops with
/// the object.
final class LoopbackServer: @unchecked Sendable {
    let listener: Int32
    let port: Int
    var url: String { "http://127.0.0.1:\(port)/" }

    init(serve: @escaping @Sendable (Int32) -> Void) throws {
        let bound = try LocalListener.bind(address: "127.0.0.1", port: 0)
        listener = bound.fd
        port = bound.port
        let listener = self.listener
        Thread.detachNewThread {
            while true {
                let fd = accept(listener, nil, nil)
                if fd < 0 {
                    let retry = [EINTR, ECONNABORTED, EMFILE, ENFILE].contains(errno)
                    if retry { usleep(10_000) } else { return }  // else: the listener was shut down
                    continue
                }
                serve(fd)
                close(fd)
            }
        }
    }

    deinit {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }
}
