import Foundation

@testable import VLLMCtlKit

/// The config `make cluster-up` writes. Integration tests need the local cluster; they fail
/// (not skip) without it, since CI always brings it up.
package func localClusterConfig() throws -> Config {
    let path = repoRoot + "/.cluster/vllmctl.yaml"
    guard FileManager.default.fileExists(atPath: path) else {
        throw VLLMCtlError.file(
            path: path, message: "missing: run `make cluster-up` before the integration tests")
    }
    return try ConfigLocation.load(explicit: path, environment: [:])
}

/// The cluster's config rendered from the template, so that tests have `local-ssh` even if
/// `.cluster/vllmctl.yaml` predates it.
package func renderedClusterConfig() throws -> String {
    let template = try String(contentsOfFile: repoRoot + "/slurm/vllmctl.yaml.in", encoding: .utf8)
    let text = template.replacingOccurrences(of: "@REPO@", with: repoRoot)
        .replacingOccurrences(of: "@STATE@", with: repoRoot + "/.cluster")
    let path = try temporaryDirectory() + "/vllmctl.yaml"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}
