import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// A measurement, not a test: the resident memory of a process running a balancer with 256
/// streams open through it (the clients in a Python process of their own). Prints the
/// figures and asserts nothing; runs only with `VLLMCTL_MEASURE_BALANCER_RSS=1`:
///
///     VLLMCTL_MEASURE_BALANCER_RSS=1 swift test --skip-build --filter BalancerMemory
@Suite(.enabled(if: ProcessInfo.processInfo.environment["VLLMCTL_MEASURE_BALANCER_RSS"] != nil))
struct BalancerMemory {
    static let clients = #"""
        import http.client, json, sys, threading
        port, n = int(sys.argv[1]), int(sys.argv[3])
        key = open(sys.argv[2]).read().strip()
        opened = threading.Semaphore(0)
        def stream(i):
            c = http.client.HTTPConnection("127.0.0.1", port)
            body = json.dumps({"model": "sim-model", "prompt": "stream %d" % i, "max_tokens": 400, "stream": True, "ignore_eos": True})
            c.request("POST", "/v1/completions", body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
            r = c.getresponse()
            r.readline()
            opened.release()
            while r.readline():
                pass
        for i in range(n):
            threading.Thread(target=stream, args=(i,), daemon=True).start()
        for _ in range(n):
            opened.acquire()
        print("OPEN", n, flush=True)
        sys.stdin.readline()
        """#

    static func rssKiB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }

    @Test func residentMemoryWith256Streams() async throws {
        let key = APIKey.generate().value
        let a = try BalancerSim(key: key, tokenDelay: 0.25)
        let b = try BalancerSim(key: key, tokenDelay: 0.25)
        try await a.waitHealthy()
        try await b.waitHealthy()
        let before = Self.rssKiB()
        try await withBalancer(replicas: [a.replica, b.replica]) { balancer, port in
            let idle = Self.rssKiB()
            let python = Process()
            python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            python.arguments = ["python3", "-c", Self.clients, String(port), try writtenKeyFile(key), "256"]
            let out = Pipe()
            let input = Pipe()
            python.standardOutput = out
            python.standardInput = input
            try python.run()
            var seen = Data()
            while !String(decoding: seen, as: UTF8.self).contains("OPEN") {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                seen.append(chunk)
            }
            let open = Self.rssKiB()
            let inFlight = balancer.snapshot().map(\.inFlight).reduce(0, +)
            print(
                "balancer RSS: process before the balancer \(before / 1024) MiB, balancer idle \(idle / 1024) MiB, with \(inFlight) streams open \(open / 1024) MiB (\(open) KiB); the streams cost \((open - idle) / 1024) MiB"
            )
            kill(python.processIdentifier, SIGKILL)
        }
    }
}
