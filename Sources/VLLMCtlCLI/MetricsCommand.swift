import ArgumentParser
import Foundation
import VLLMCtlKit

struct MetricsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics", abstract: "Show a deployment's load from vLLM's /metrics.")

    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "A job id or deployment name.") var deployment: String
    @Flag(help: "Keep sampling.") var watch = false
    @Option(help: "Seconds between the two samples that rates come from.") var interval: Double = 2

    func validate() throws {
        guard interval.isFinite, (0.1...86400).contains(interval) else {
            throw ValidationError("--interval must be between 0.1 and 86400 seconds.")
        }
    }

    func run() async throws { try await run(.live) }

    func run(_ ctx: CLIContext) async throws {
        let env = try ctx.cluster(cluster)
        let resolved = try await DeploymentResolver(context: env.context, cluster: env.profile.name).resolve(
            deployment)
        guard let info = resolved.connection, resolved.isRunning else {
            throw VLLMCtlError.invalidInput(
                "Deployment \(resolved.name) (job \(resolved.jobID)) is not serving",
                hint: "See `vllmctl status \(resolved.name)`.")
        }
        let http = env.context.http
        let url = info.serverURL + "/metrics"
        @Sendable func sample() async throws -> ServerMetrics {
            let r = try await http.send(HTTPRequest(url: url, timeout: 10))
            guard r.status == 200 else {
                throw VLLMCtlError.http(url: url, message: "answered \(r.status)", hint: "")
            }
            return ServerMetrics(samples: PrometheusText.parse(r.text))
        }
        try await cancellingOnSignal {
            var earlier = try await sample()
            repeat {
                try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
                let later = try await sample()
                env.context.terminal.print(later.line(since: earlier, seconds: interval))
                earlier = later
            } while watch
        }
    }
}
