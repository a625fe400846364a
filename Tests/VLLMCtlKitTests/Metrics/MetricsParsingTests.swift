import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct MetricsParsingTests {
    static let text = """
        # HELP vllm:num_requests_running Number of requests in model execution batches.
        # TYPE vllm:num_requests_running gauge
        vllm:num_requests_running{model_name="sim"} 3.0
        vllm:num_requests_waiting{model_name="sim"} 1.0
        vllm:gpu_cache_usage_perc{model_name="sim"} 0.25
        vllm:prompt_tokens_total{model_name="sim"} 100.0
        vllm:generation_tokens_total{model_name="sim",engine="0"} 400.0
        weird_metric{a="x\\"y",b="z"} +Inf
        """

    @Test func parsesSamplesAndLabels() {
        let samples = PrometheusText.parse(Self.text)
        #expect(samples.count == 6)
        #expect(samples.first?.labels == ["model_name": "sim"])
        #expect(samples.last?.labels == ["a": "x\"y", "b": "z"])
        #expect(samples.last?.value == .infinity)
    }

    @Test func ratesBetweenTwoSamples() {
        let before = ServerMetrics(samples: PrometheusText.parse(Self.text))
        let after = ServerMetrics(
            samples: PrometheusText.parse(Self.text.replacingOccurrences(of: "400.0", with: "500.0")))
        #expect(before.running == 3)
        #expect(before.kvCacheUsage == 0.25)
        #expect(after.rates(since: before, seconds: 2).generation == 50)
        #expect(after.line(since: before, seconds: 2).contains("generation 50.0 tok/s"))
    }
}
