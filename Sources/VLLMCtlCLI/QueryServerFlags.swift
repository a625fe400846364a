import ArgumentParser
import VLLMCtlKit

/// `vllmctl query`'s server: a deployment's (its URL and key from the job's connection file),
/// or one given with --url or --host, and the time limits.
struct QueryServerFlags: ParsableArguments {
    @Option(help: "The server's URL, e.g. http://10.0.0.5:8000 (a trailing /v1 is fine).") var url: String?
    @Option(help: "The server's host (with --port, --ssl).") var host: String?
    @Option(help: "The server's port with --host.") var port: Int?
    @Flag(help: "Use HTTPS with --host.") var ssl = false
    @Option(help: "A CA bundle (PEM) to verify the server's certificate over HTTPS.") var cacert: String?
    @Option(
        help: ArgumentHelp(
            "The API key (default: the deployment's key, else $VLLMCTL_API_KEY).",
            discussion:
                "A key on the command line is visible to other users of this machine (ps, /proc); prefer VLLMCTL_API_KEY."
        ))
    var apiKey: String?
    @Option(help: "Seconds to wait for the connection.") var connectTimeout: Double = 5
    @Option(help: "Seconds for the whole exchange, streams included (0: no limit).") var timeout: Double = 120

    func validate() throws {
        if url != nil && host != nil { throw ValidationError("Give --url or --host, not both.") }
        if url != nil && (ssl || port != nil) {
            throw ValidationError("--ssl and --port go with --host; with --url, put them in the URL.")
        }
        if host == nil && port != nil { throw ValidationError("--port goes with --host.") }
        if let port, !(1...65535).contains(port) {
            throw ValidationError("--port must be between 1 and 65535.")
        }
        if let problem = QueryServer.problem(connectTimeout: connectTimeout, timeout: total) {
            throw ValidationError(problem)
        }
    }

    /// The time limit for the whole exchange; nil for none (`--timeout 0`).
    var total: Double? { timeout == 0 ? nil : timeout }

    /// The servers to ask: a deployment's replicas (HTTP through the profile's login node when
    /// it has `ssh_host`), or the one from --url / --host (HTTP straight from here).
    func resolve(_ deployment: String?, cluster options: ClusterOptions, _ ctx: CLIContext) async throws
        -> ([QueryServer], any HTTPClient)
    {
        if let deployment {
            let cluster = try ctx.cluster(options)
            let servers = try await QueryServer.candidates(
                deployment, context: cluster.context, cluster: cluster.profile.name, apiKey: apiKey, ssl: ssl,
                caCertificate: cacert, connectTimeout: connectTimeout, timeout: total)
            return (servers, cluster.context.http)
        }
        guard let url = url ?? host.map({ QueryServer.url(host: $0, port: port ?? 8000, ssl: ssl) }) else {
            throw ValidationError("Name a deployment (JOB|NAME), or give the server with --url or --host.")
        }
        let server = try QueryServer(
            url: url, apiKey: apiKey ?? ctx.environment["VLLMCTL_API_KEY"], caCertificate: cacert,
            connectTimeout: connectTimeout, timeout: total)
        return ([server], ctx.directHTTP)
    }
}
