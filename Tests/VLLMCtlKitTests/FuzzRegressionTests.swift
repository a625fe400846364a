import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// Every input `make fuzz` found crashing a parser (Fixtures/fuzz/TARGET/, one file each) and
/// the fuzz seeds (Fixtures/fuzz-seeds/TARGET/), through the fuzz targets' own code: a parser
/// that crashes again fails the run.
@Suite struct FuzzRegressionTests {
    @Test(arguments: FuzzTargets.names) func committedInputsParse(target: String) throws {
        var files: [String] = []
        for folder in ["fuzz-seeds", "fuzz"] {
            let dir = fixtures + "/" + folder + "/" + target
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            files += names.sorted().map { dir + "/" + $0 }
        }
        #expect(!files.filter { $0.contains("/fuzz-seeds/") }.isEmpty, "no seeds for \(target)")
        for file in files {
            FuzzTargets.run(target, try Data(contentsOf: URL(fileURLWithPath: file)))
        }
    }
}

/// What `make fuzz` found in the metrics path, in words.
@Suite struct FuzzFoundMetricsTests {
    /// A `}` before the line's `{` is not a label set (it trapped on a reversed range).
    @Test func aClosingBraceBeforeTheOpeningOneIsNoLabelSet() {
        let samples = PrometheusText.parse("x}y{ 1\nvllm:num_requests_running 2")
        #expect(samples.map(\.name) == ["x}y{", "vllm:num_requests_running"])
        #expect(samples.allSatisfy { $0.labels.isEmpty })
    }

    /// Counts the server sends as `+Inf`, `NaN` or huge are shown, not converted to Int (a trap).
    @Test func countsThatAreNoIntsAreShownAsTheyAre() {
        let samples = PrometheusText.parse(
            "vllm:num_requests_running +Inf\nvllm:num_requests_waiting NaN\nvllm:prompt_tokens_total 1e300")
        let line = ServerMetrics(samples: samples).line(since: ServerMetrics(samples: []), seconds: 1)
        #expect(line.contains("running inf  waiting nan"), "\(line)")
    }
}
