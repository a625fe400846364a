import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct DeployReportTests {
    static let record = DeploymentRecord(
        name: "qwen", cluster: "hpc", jobID: "42", model: "Qwen/Qwen2.5-14B-Instruct",
        servedModelName: "qwen",
        deployDir: "/scratch/u/vllmctl/qwen-1", phase: .ready, createdAt: Date(timeIntervalSince1970: 0),
        url: "http://10.0.0.5:8000", node: "gpu07", port: 8000,
        apiKey: "sk-" + String(repeating: "a", count: 32))
    static let connection = ConnectionInfo(
        host: "10.0.0.5", port: 8000, apiKey: record.apiKey, servedModelName: "qwen")

    @Test func jsonHasTheDocumentedKeys() throws {
        let report = DeployReport(record: Self.record, connection: Self.connection)
        let object = try JSONSerialization.jsonObject(with: Data(try report.json().utf8)) as? [String: Any]
        #expect(
            Set(object?.keys.map { $0 } ?? []) == [
                "job_id", "name", "cluster", "url", "api_key", "model", "served_model_name", "node",
                "info_file",
                "state",
            ])
        #expect(object?["url"] as? String == "http://10.0.0.5:8000/v1")
        #expect(object?["info_file"] as? String == "/scratch/u/vllmctl/qwen-1/server_connection_info.txt")
        #expect(!(try report.json()).contains("\n"))
    }

    @Test func textSaysWhereAndHow() throws {
        let ready = DeployReport(record: Self.record, connection: Self.connection).text
        #expect(
            ready.hasPrefix("Ready: qwen (job 42 on gpu07)\nServer URL: http://10.0.0.5:8000\nAPI Key: sk-"))
        #expect(ready.contains(Self.connection.curlCommand))
        #expect(ready.hasSuffix("Connection info: /scratch/u/vllmctl/qwen-1/server_connection_info.txt"))
        var submitted = Self.record
        submitted.phase = .submitted
        #expect(
            DeployReport(record: submitted, connection: nil).text
                == "Job 42 submitted; not waiting. Its connection file will be /scratch/u/vllmctl/qwen-1/server_connection_info.txt"
        )
        let tunnel = TunnelRecord(
            cluster: "hpc", jobID: "42", name: "qwen", pid: 99, bind: "127.0.0.1", localPort: 8001,
            target: "10.0.0.5:8000", startedAt: Date(), background: true, logFile: nil)
        let tunnelled = DeployReport(record: Self.record, connection: Self.connection, tunnel: tunnel)
        #expect(
            tunnelled.text.hasPrefix(
                ready + "\nTunnel: http://127.0.0.1:8001/v1 → 10.0.0.5:8000 (background, pid 99;"))
        #expect(
            tunnelled.text.hasSuffix(
                "export OPENAI_BASE_URL=http://127.0.0.1:8001/v1 OPENAI_API_KEY=\(Self.record.apiKey)"))
        #expect(try tunnelled.json().contains("\"tunnel_url\":\"http://127.0.0.1:8001/v1\""))
    }
}
