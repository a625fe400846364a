import Foundation

@testable import VLLMCtlKit

/// Each parser that reads input from outside, as a function of raw bytes: the fuzz targets
/// (`make fuzz`, Tests/Fuzz, which links this file) and `FuzzRegressionTests`, which feeds
/// every committed input through the same function. A crash (a trap, an overflow, an index
/// out of range) is the failure; where a parser promises something about its result, the
/// target checks it and traps when it does not hold.
enum FuzzTargets {
    static let names = [
        "squeue", "sacct", "ssh_config", "known_hosts", "config", "sse", "prometheus", "connection_json",
    ]

    /// The token Fixtures/capture-slurm.sh used, so that the captured output parses.
    static let marks = SchedulerMarks(token: "fixture0token")

    /// Feeds `data` to the parser called `name`.
    static func run(_ name: String, _ data: Data) {
        let text = String(decoding: data, as: UTF8.self)
        switch name {
        case "squeue":
            for job in Squeue(marks: marks).parse(text) { precondition(isJobID(job.jobID)) }
        case "sacct":
            for job in Sacct(jobIDs: [], marks: marks).parse(text) { precondition(isJobID(job.jobID)) }
        case "ssh_config":
            for alias in ["vllmctl-local", "vllmctl-login", "other"] {
                guard
                    let config = try? SSHConfig.resolve(
                        alias: alias, text: text, file: "ssh_config", home: "/home/u", localUser: "u")
                else { continue }
                _ = config.proxyJump.map(SSHJumpHost.parse)
            }
        case "known_hosts":
            knownHosts(text)
        case "config":
            _ = try? ConfigParser(file: "config.yaml").parse(text)
        case "sse":
            sse(data)
        case "prometheus":
            let metrics = ServerMetrics(samples: PrometheusText.parse(text))
            _ = metrics.line(since: ServerMetrics(samples: []), seconds: 1)
        case "connection_json":
            if let record = try? JSONDecoder().decode(ConnectionRecord.self, from: data) {
                _ = record.isWellFormed
                _ = URLTarget(url: record.serverURL)
            }
        default:
            preconditionFailure("no fuzz target \(name); the targets are \(names)")
        }
    }

    /// The ed25519 host key of the test cluster's sshd, a key to check the lines against.
    static let hostKey =
        Data(
            base64Encoded: "AAAAC3NzaC1lZDI1NTE5AAAAIKLauKHyymfdO5HI/sLEoDc5rehYELA178ss/eyQDF4L") ?? Data()

    /// One libssh2 session for every input (libssh2's known-host parser needs one).
    nonisolated(unsafe) static let unconnected = KnownHosts(unconnectedWithFiles: ["known_hosts"])

    private static func knownHosts(_ text: String) {
        guard var known = unconnected else { preconditionFailure("libssh2 could not create a session") }
        known.read = { _ in text }
        for (host, port) in [("127.0.0.1", 2222), ("vllmctl-login", 22)] {
            for type in known.keyTypes(host: host, port: port) {
                _ = known.check(host: host, port: port, key: hostKey, keyType: type)
            }
        }
    }

    /// The SSE parser promises the same events however the body is split: the first byte
    /// picks the piece size.
    private static func sse(_ data: Data) {
        var whole = SSEParser()
        let expected = whole.feed(data) + whole.finish()
        let size = Int(data.first ?? 0) % 7 + 1
        var pieces = SSEParser()
        var events: [SSEEvent] = []
        var start = data.startIndex
        while start < data.endIndex {
            let end = data.index(start, offsetBy: size, limitedBy: data.endIndex) ?? data.endIndex
            events += pieces.feed(data[start..<end])
            start = end
        }
        events += pieces.finish()
        precondition(events == expected, "pieces of \(size) bytes gave other events")
    }
}
