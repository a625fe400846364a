import Foundation
import Synchronization

@testable import VLLMCtlKit

/// A clock whose sleeps return at once and move its time on by the time slept.
package final class SteppingClock: Clock {
    private let time: Mutex<Date>
    package init(_ start: Date) { time = Mutex(start) }
    package func now() -> Date { time.withLock { $0 } }
    package func sleep(seconds: Double) async throws { time.withLock { $0 += seconds } }
}
