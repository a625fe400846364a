import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct DeadlineTests {
    struct TimedOut: Error {}
    struct Failed: Error {}

    @Test func aResultBeforeTheLimitIsReturned() async throws {
        let value = try await withDeadline(.seconds(30), onTimeout: { TimedOut() }) { 42 }
        #expect(value == 42)
        await #expect(throws: Failed.self) {
            _ = try await withDeadline(.seconds(30), onTimeout: { TimedOut() }) { () -> Int in throw Failed()
            }
        }
    }

    @Test func workThatNeverEndsDoesNotHoldTheCaller() async throws {
        // The work ignores cancellation and ends only when released, 10 s on: a task group
        // would return only then. withDeadline returns at its 0.2 s limit + 0.2 s of grace.
        let released = Locked(false)
        let releaser = Task {
            try? await Task.sleep(for: .seconds(10))
            released.withLock { $0 = true }
        }
        await #expect(throws: TimedOut.self) {
            _ = try await withDeadline(
                .milliseconds(200), grace: .milliseconds(200), onTimeout: { TimedOut() }
            ) {
                () -> Int in
                while !released.value { usleep(10_000) }
                return 1
            }
        }
        #expect(!released.value, "withDeadline waited for the work to end")
        releaser.cancel()
        released.withLock { $0 = true }
    }

    @Test func workThatEndsWhenCancelledIsWaitedForAndIsATimeout() async throws {
        // A subprocess killed at the limit: its end is awaited (nothing left running), and
        // what the caller sees is the timeout.
        let ended = Locked(false)
        await #expect(throws: TimedOut.self) {
            _ = try await withDeadline(.milliseconds(100), onTimeout: { TimedOut() }) { () -> Int in
                defer { ended.withLock { $0 = true } }
                try await Task.sleep(for: .seconds(60))
                return 1
            }
        }
        #expect(ended.value)
    }

    @Test func cancellingTheCallerCancelsTheWork() async throws {
        let task = Task {
            try await withDeadline(.seconds(60), onTimeout: { TimedOut() }) { () -> Int in
                try await Task.sleep(for: .seconds(60))
                return 1
            }
        }
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
    }
}
