import Foundation

/// Runs `work` with a time limit that holds even if `work` never ends.
///
/// At the limit `work` is cancelled and given `grace` to end by itself (a subprocess killed
/// and reaped: nothing is left running behind the caller's back); its ending then throws
/// `onTimeout`'s error, whatever it returned. If it has not ended by then, the error is thrown all the same and the
/// work is left behind: a task group would wait for it forever (leaving a group's scope waits
/// for every child), and so would anything that waits on a subprocess whose end is never
/// reported. Cancelling the caller cancels `work` and waits for it the same way.
func withDeadline<T: Sendable>(
    _ limit: Duration, grace: Duration = .seconds(5), onTimeout: @escaping @Sendable () -> any Error,
    _ work: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = Outcome<T>()
    let timedOut = Locked(false)
    let task = Task {
        let result: Result<T, any Error>
        do { result = .success(try await work()) } catch { result = .failure(error) }
        // Past the limit, whatever the cancelled work made of it (a killed command's status)
        // is the timeout.
        outcome.finish(timedOut.value ? .failure(onTimeout()) : result)
    }
    let timer = Task {
        try? await Task.sleep(for: limit)
        guard !Task.isCancelled else { return }
        timedOut.withLock { $0 = true }
        task.cancel()
        try? await Task.sleep(for: grace)
        outcome.finish(.failure(onTimeout()))
    }
    defer { timer.cancel() }
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { outcome.wait($0) }
    } onCancel: {
        task.cancel()
        Task {
            try? await Task.sleep(for: grace)
            outcome.finish(.failure(CancellationError()))
        }
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
