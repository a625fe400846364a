import Foundation

/// The seed's multi-server client for one question: ask a deployment's servers (its replicas,
/// from ``QueryServer/candidates(_:context:cluster:apiKey:ssl:caCertificate:connectTimeout:timeout:)``)
/// in turn, moving on only when one could not be reached at all (``QueryServer/mayTryAnother(after:)``)
/// and nothing of its answer has been delivered yet. An answer that started and then broke is
/// never retried elsewhere: the caller has already shown part of it.
public struct QueryFailover: Sendable {
    /// The servers in the order they are tried.
    public let servers: [QueryServer]
    public let http: any HTTPClient
    /// Told about each server that is skipped, with the reason, before the next is tried.
    public var onSkip: @Sendable (QueryServer, any Error) -> Void

    public init(
        servers: [QueryServer], http: any HTTPClient,
        onSkip: @escaping @Sendable (QueryServer, any Error) -> Void = { _, _ in }
    ) {
        self.servers = servers
        self.http = http
        self.onSkip = onSkip
    }

    /// `QueryClient.run` on the first server that answers. `onText` and `onEvent` are passed
    /// through; once either has been called, a failure ends the question.
    public func run(
        _ options: QueryOptions, onText: @escaping @Sendable (String) -> Void = { _ in },
        onEvent: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws -> (result: QueryResult, server: QueryServer) {
        try await firstAnswering { server in
            let delivered = Locked(false)
            do {
                let result = try await QueryClient(http: http, server: server).run(
                    options,
                    onText: { piece in
                        delivered.withLock { $0 = true }
                        onText(piece)
                    },
                    onEvent: { event in
                        delivered.withLock { $0 = true }
                        onEvent(event)
                    })
                return result
            } catch {
                throw Attempt(error: error, delivered: delivered.value)
            }
        }
    }

    /// `QueryClient.info` (health, version, models) of the first server that answers.
    public func info() async throws -> (info: ServerInfo, server: QueryServer) {
        try await firstAnswering { server in
            do { return try await QueryClient(http: http, server: server).info() } catch {
                throw Attempt(error: error, delivered: false)
            }
        }
    }

    /// One server's failure, and whether any of its answer had been passed on.
    struct Attempt: Error {
        let error: any Error
        let delivered: Bool
    }

    func firstAnswering<T>(_ ask: (QueryServer) async throws -> T) async throws -> (T, QueryServer) {
        guard !servers.isEmpty else {
            throw VLLMCtlError.invalidInput(
                "There is no server to ask.",
                hint: "`vllmctl status` shows whether the deployment has a serving replica.")
        }
        for (i, server) in servers.enumerated() {
            do {
                return (try await ask(server), server)
            } catch let failed as Attempt {
                guard !failed.delivered, i + 1 < servers.count, QueryServer.mayTryAnother(after: failed.error)
                else { throw failed.error }
                onSkip(server, failed.error)
            }
        }
        preconditionFailure("the last server's failure is thrown above")
    }
}
