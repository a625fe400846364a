import Foundation
import Synchronization

@testable import VLLMCtlKit

/// A terminal that keeps what it is told: results (stdout) and notes (stderr) apart, and all of
/// it in order.
package final class CapturedTerminal: Terminal {
    private let lines = Mutex<[(isNote: Bool, text: String)]>([])
    package init() {}
    package var isInteractive: Bool { false }
    package func print(_ text: String) { lines.withLock { $0.append((false, text)) } }
    package func note(_ text: String) { lines.withLock { $0.append((true, text)) } }
    package func progress(_ text: String?) {}
    /// The results, one entry a `print`.
    package var printed: [String] { lines.withLock { $0.filter { !$0.isNote }.map(\.text) } }
    /// What was printed as results.
    package var stdout: String {
        lines.withLock { $0.filter { !$0.isNote }.map(\.text) }.joined(separator: "\n")
    }
    /// What was printed as notes.
    package var stderr: String { lines.withLock { $0.filter(\.isNote).map(\.text) }.joined(separator: "\n") }
    /// Results and notes, in the order they came.
    package var text: String { lines.withLock { $0.map(\.text) }.joined(separator: "\n") }
}

/// A terminal that drops everything.
package final class QuietTerminal: Terminal {
    package init() {}
    package var isInteractive: Bool { false }
    package func print(_ text: String) {}
    package func note(_ text: String) {}
    package func progress(_ text: String?) {}
}
