import Foundation

/// Runs `work` with a time limit that holds even if `work` never ends.
///
/// A task group would not do: leaving a group's scope waits for every child, so a child that
/// ignores cancellation (a subprocess whose end is never reported) would hold the caller past
/// its limit forever. Here `work` runs in a task of its own; at the limit it is cancelled and
/// `onTimeout`'s error is thrown at once, and the task, if it never ends, is left behind.
/// Cancelling the caller cancels `work` too.
func withDeadline<T: Sendable>(
    _ limit: Duration, onTimeout: @escaping @Sendable () -> any Error,
    _ work: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = Outcome<T>()
    let task = Task {
        do { outcome.finish(.success(try await work())) } catch { outcome.finish(.failure(error)) }
    }
    let timer = Task {
        try? await Task.sleep(for: limit)
        guard !Task.isCancelled else { return }
        task.cancel()
        outcome.finish(.failure(onTimeout()))
    }
    defer { timer.cancel() }
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { outcome.wait($0) }
    } onCancel: {
        task.cancel()
        outcome.finish(.failure(CancellationError()))
    }
}

/// The first of several results, handed to one waiter whether it comes before or after it.
private final class Outcome<T: Sendable>: Sendable {
    private enum State {
        case empty
        case waiting(CheckedContinuation<T, any Error>)
        case finished(Result<T, any Error>)
        case delivered
    }
    private let state = Locked<State>(.empty)

    func finish(_ result: Result<T, any Error>) {
        let waiter: CheckedContinuation<T, any Error>? = state.withLock { state in
            switch state {
            case .empty:
                state = .finished(result)
                return nil
            case .waiting(let continuation):
                state = .delivered
                return continuation
            case .finished, .delivered:
                return nil
            }
        }
        waiter?.resume(with: result)
    }

    func wait(_ continuation: CheckedContinuation<T, any Error>) {
        let ready: Result<T, any Error>? = state.withLock { state in
            if case .finished(let result) = state {
                state = .delivered
                return result
            }
            state = .waiting(continuation)
            return nil
        }
        if let ready { continuation.resume(with: ready) }
    }
}
