import Foundation

@testable import VLLMCtlKit

/// The vLLM simulator as a local child process (not a Slurm job), for HTTP tests.
/// `@unchecked`: Foundation's `Process` is not `Sendable`; it is only started in `init`, and
/// `stop()` reads the child's state from /proc.
package final class SimulatorProcess: @unchecked Sendable {
    package let process = Process()
    package let port: Int
    package let key: String
    /// The simulator's log (a file: an undrained pipe would block it).
    package let logPath: String

    package let bindHost: String

    package init(
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

    package var url: String { "http://\(bindHost):\(port)" }

    package func waitHealthy(http: any HTTPClient, seconds: Double = 20) async throws {
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

    package var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM, then SIGKILL after 5 s. Foundation's waitUntilExit spins on Linux and
    /// isRunning lags, so the child's state is read from /proc (gone or a zombie = exited).
    package func stop() {
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
