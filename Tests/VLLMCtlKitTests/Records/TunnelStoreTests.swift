import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct TunnelStoreTests {
    @Test func aForwardTargetIsHostAndPort() throws {
        let plain = try ForwardTarget(parsing: "gpu017:8000")
        #expect(plain.host == "gpu017" && plain.port == 8000)
        let v6 = try ForwardTarget(parsing: "[fd00::5]:8001")
        #expect(v6.host == "fd00::5" && v6.port == 8001)
        for bad in ["gpu017", ":8000", "gpu017:", "gpu017:0", "gpu017:65536", "gpu017:x"] {
            let error = #expect(throws: VLLMCtlError.self) { try ForwardTarget(parsing: bad) }
            #expect("\(error.map { "\($0)" } ?? "")".contains("HOST:PORT"), "\(bad)")
        }
    }

    @Test func forgettingARecordRemovesItAndItsLog() throws {
        let dir = try temporaryDirectory()
        let store = TunnelStore(records: DeploymentStore(directory: dir))
        try store.prepareDirectory(cluster: "c")
        let log = store.logPath(cluster: "c", jobID: "tunnel-1")
        #expect(FileManager.default.createFile(atPath: log, contents: Data("log".utf8)))
        let record = TunnelRecord(
            cluster: "c", jobID: "7", name: "sim", pid: getpid(), bind: "127.0.0.1", localPort: 8000,
            target: "10.0.0.5:8000", startedAt: Date(), background: true, logFile: log)
        try store.save(record)
        store.forget(record)
        #expect(!FileManager.default.fileExists(atPath: log))
        // This process is no tunnel, so nothing is open either way; the record file is gone.
        #expect(store.closeAll("sim", cluster: "c").isEmpty)
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: dir + "/c/tunnels").allSatisfy {
                !$0.hasSuffix(".json")
            })
    }
}
