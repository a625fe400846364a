import Synchronization

/// A value shared between threads, behind a `Mutex`: a class, so that escaping closures
/// (libcurl's callbacks, task groups) can hold it where a `Mutex` itself cannot go.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    public init(_ value: Value) { mutex = Mutex(value) }

    /// Runs `body` with the value, alone.
    public func withLock<R>(_ body: (inout sending Value) throws -> sending R) rethrows -> sending R {
        try mutex.withLock(body)
    }

    /// The value now.
    public var value: Value { mutex.withLock { $0 } }
}
