import Foundation

@testable import VLLMCtlKit

/// The hosts of the test cluster (slurm/README.md): the login host is this one (the root
/// network namespace); the laptop and the compute nodes are network namespaces.
package enum TestHost: Sendable {
    case laptop
    case node(Int)

    package var namespace: String {
        switch self {
        case .laptop: "vc-laptop"
        case .node(let n): "vc-node\(n)"
        }
    }

    /// argv prefix that runs a command on this host.
    package var prefix: [String] { ["nsenter", "--net=/var/run/netns/\(namespace)"] }

    /// The login host's sshd as the laptop sees it, and the nodes' addresses.
    package static let loginFromLaptop = "10.78.0.1"
    package static let laptopAddress = "10.78.0.2"
    package static func nodeAddress(_ n: Int) -> String { "10.77.0.\(10 + n)" }

    /// Whether a TCP connection to `host:port` from this host completes within 3 s.
    package func canConnect(_ host: String, _ port: Int) async throws -> Bool {
        let r = try await sh(
            prefix + ["timeout", "3", "bash", "-c", "exec 3<>/dev/tcp/\(host)/\(port)"], timeout: .seconds(10)
        )
        return r.status == 0
    }
}
