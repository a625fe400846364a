import Foundation

/// The numbers `vllmctl metrics` shows, from one `/metrics` sample.
public struct ServerMetrics: Sendable, Equatable {
    public var running: Double
    public var waiting: Double
    /// 0...1
    public var kvCacheUsage: Double?
    public var promptTokens: Double
    public var generationTokens: Double

    public init(samples: [MetricSample]) {
        running = PrometheusText.total(samples, "vllm:num_requests_running") ?? 0
        waiting = PrometheusText.total(samples, "vllm:num_requests_waiting") ?? 0
        // vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc; read either.
        kvCacheUsage =
            PrometheusText.total(samples, "vllm:gpu_cache_usage_perc")
            ?? PrometheusText.total(samples, "vllm:kv_cache_usage_perc")
        promptTokens = PrometheusText.total(samples, "vllm:prompt_tokens_total") ?? 0
        generationTokens = PrometheusText.total(samples, "vllm:generation_tokens_total") ?? 0
    }

    /// Tokens per second between `earlier` and `self`, taken `seconds` apart.
    public func rates(since earlier: ServerMetrics, seconds: Double) -> (prompt: Double, generation: Double) {
        guard seconds > 0 else { return (0, 0) }
        return (
            max(0, promptTokens - earlier.promptTokens) / seconds,
            max(0, generationTokens - earlier.generationTokens) / seconds
        )
    }

    /// A count as a whole number; the server's text may say anything (`+Inf`, `NaN`, `1e300`),
    /// which is shown as it is rather than converted to an Int (a trap).
    static func count(_ value: Double) -> String {
        value.isFinite && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    public func line(since earlier: ServerMetrics, seconds: Double) -> String {
        let r = rates(since: earlier, seconds: seconds)
        let kv = kvCacheUsage.map { String(format: "%.1f%%", $0 * 100) } ?? "n/a"
        let f = { (v: Double) in String(format: "%.1f", v) }
        return
            "running \(Self.count(running))  waiting \(Self.count(waiting))  kv-cache \(kv)  prompt \(f(r.prompt)) tok/s  generation \(f(r.generation)) tok/s"
    }
}
