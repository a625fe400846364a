import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct LocalHostRunTests {
    @Test func aCommandPastItsLimitIsATimeout() async throws {
        let error = await #expect(throws: VLLMCtlError.self) {
            _ = try await LocalHost().run(["sleep", "30"], input: nil, timeout: .milliseconds(300))
        }
        guard case .commandTimedOut(let argv, _) = error else {
            Issue.record("not a timeout: \(String(describing: error))")
            return
        }
        #expect(argv == ["sleep", "30"])
        // Not a Slurm command: the words do not blame the controller.
        let text = "\(error.map { "\($0)" } ?? "")"
        #expect(
            text.contains("`sleep` did not answer within 0 s") && text.contains("hung filesystem"), "\(text)")
        #expect(!text.contains("Slurm controller"))
        let squeue = "\(VLLMCtlError.commandTimedOut(argv: ["/usr/bin/squeue", "--user=me"], seconds: 30))"
        #expect(
            squeue.contains("`/usr/bin/squeue` did not answer within 30 s. The Slurm controller"), "\(squeue)"
        )
    }

    @Test func aCommandWithinItsLimitAnswers() async throws {
        let r = try await LocalHost().run(
            ["sh", "-c", "printf out; printf err >&2; exit 3"], input: nil, timeout: .seconds(30))
        #expect(r.status == 3 && r.stdout == "out" && r.stderr == "err")
        let echoed = try await LocalHost().run(["cat"], input: "in", timeout: .seconds(30))
        #expect(echoed.stdout == "in")
    }
}
