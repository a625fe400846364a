import Foundation
import Synchronization
import TestSupport
import Testing

@testable import VLLMCtlKit

/// The simulator's HTTP behaviour, through vllmctl's libcurl client.
@Suite(.serialized) struct SimulatorHTTPTests {
    let http = CurlHTTPClient()

    @Test func refusedWhileLoadingThenHealthy() async throws {
        // A load far longer than any scheduling delay of the sleep below on a busy machine
        // (the check must land while it loads).
        let sim = try SimulatorProcess(loadSeconds: 15)
        defer { sim.stop() }
        try await Task.sleep(for: .milliseconds(300))
        let error = await #expect(throws: VLLMCtlError.self) {
            try await http.send(HTTPRequest(url: sim.url + "/health", connectTimeout: 1, timeout: 2))
        }
        #expect("\(error.map { "\($0)" } ?? "no error")".contains("connection refused"))
        try await sim.waitHealthy(http: http, seconds: 60)
        let health = try await http.send(HTTPRequest(url: sim.url + "/health"))
        #expect(health.status == 200)
    }

    @Test func keyIsRequiredOnV1() async throws {
        let sim = try SimulatorProcess()
        defer { sim.stop() }
        try await sim.waitHealthy(http: http)
        let anonymous = try await http.send(HTTPRequest(url: sim.url + "/v1/models"))
        #expect(anonymous.status == 401)
        #expect(anonymous.text.contains("Unauthorized"))
        let wrong = try await http.send(
            HTTPRequest(url: sim.url + "/v1/models").authorized(APIKey.generate()))
        #expect(wrong.status == 401)
        let right = try await http.send(
            HTTPRequest(url: sim.url + "/v1/models").authorized(try APIKey(sim.key)))
        #expect(right.status == 200)
        #expect(ModelList.names(right.body) == ["sim-model"])
        // Like vLLM, /health and /metrics need no key.
        #expect(try await http.send(HTTPRequest(url: sim.url + "/metrics")).status == 200)
    }

    @Test func streamingArrivesAsSeparateChunks() async throws {
        let sim = try SimulatorProcess()
        defer { sim.stop() }
        try await sim.waitHealthy(http: http)
        let body =
            #"{"model":"sim-model","messages":[{"role":"user","content":"hi"}],"max_tokens":8,"stream":true}"#
        let arrivals = Arrivals()
        let response = try await http.stream(
            HTTPRequest.postJSON(url: sim.url + "/v1/chat/completions", json: Data(body.utf8)).authorized(
                try APIKey(sim.key))
        ) { arrivals.add($0) }
        #expect(response.status == 200)
        let chunks = arrivals.all
        #expect(chunks.count >= 4, "expected several chunks, got \(chunks.count)")
        let first = try #require(chunks.first?.time)
        let last = try #require(chunks.last?.time)
        #expect(last.timeIntervalSince(first) > 0.1, "chunks arrived together")
        let text = String(decoding: chunks.reduce(Data()) { $0 + $1.data }, as: UTF8.self)
        #expect(text.hasSuffix("data: [DONE]\n\n"))
        #expect(text.components(separatedBy: "data: {").count - 1 >= 8)
    }

    @Test func metricsParse() async throws {
        let sim = try SimulatorProcess()
        defer { sim.stop() }
        try await sim.waitHealthy(http: http)
        let key = try APIKey(sim.key)
        let body = #"{"model":"sim-model","prompt":"one two three","max_tokens":5}"#
        let completion = try await http.send(
            HTTPRequest.postJSON(url: sim.url + "/v1/completions", json: Data(body.utf8)).authorized(key))
        #expect(completion.status == 200)
        let samples = PrometheusText.parse(try await http.send(HTTPRequest(url: sim.url + "/metrics")).text)
        #expect(PrometheusText.total(samples, "vllm:num_requests_running") == 0)
        #expect(PrometheusText.total(samples, "vllm:num_requests_waiting") == 0)
        #expect(PrometheusText.total(samples, "vllm:gpu_cache_usage_perc") != nil)
        #expect(PrometheusText.total(samples, "vllm:generation_tokens_total") == 5)
        #expect((PrometheusText.total(samples, "vllm:prompt_tokens_total") ?? 0) > 0)
        #expect(samples.first { $0.name == "vllm:num_requests_running" }?.labels["model_name"] == "sim-model")
    }
}

final class Arrivals: Sendable {
    struct Chunk { var time: Date; var data: Data }
    private let chunks = Mutex<[Chunk]>([])
    func add(_ data: Data) { chunks.withLock { $0.append(Chunk(time: Date(), data: data)) } }
    var all: [Chunk] { chunks.withLock { $0 } }
}
