import Foundation

/// A copy of a deployment's connection file in the profile's `share_dir`, for colleagues
/// (`vllmctl info --share`), and the notice that replaces it at teardown.
///
/// Its name carries the user and the job id (`alice-sim-4242-server_connection_info.txt`), so
/// two users' `sim` never collide, and teardown only ever touches a file that is the user's own
/// (its owner is checked on the cluster). `~` in `share_dir` is the cluster-side home.
public struct SharedConnectionFile: Sendable {
    public let context: Context
    public let profile: ClusterProfile

    public init(context: Context, profile: ClusterProfile) {
        self.context = context
        self.profile = profile
    }

    /// The shared file's name for `user`'s deployment `name` (job `jobID`).
    public static func fileName(user: String, name: String, jobID: String) -> String {
        "\(user)-\(name)-\(jobID)-" + DeploymentFiles.infoText
    }

    /// `share_dir` with `~` expanded, or nil when the profile has none.
    func directory() async throws -> String? {
        guard var dir = profile.shareDir, !dir.isEmpty else { return nil }
        if dir == "~" || dir.hasPrefix("~/") {
            dir = try await context.host.homeDirectory() + dir.dropFirst()
        }
        return dir
    }

    /// What sharing did: the path, and who can now read the key.
    public struct Shared: Sendable {
        public var path: String
        /// The file's group, and its members as `getent group` lists them (empty when the
        /// group is only some users' primary group).
        public var group: String
        public var members: [String]
    }

    /// Copies `info` into `share_dir` with mode 0640 and says which group can read it.
    public func share(_ info: ConnectionInfo, name: String, jobID: String) async throws -> Shared {
        guard let dir = try await directory() else {
            throw VLLMCtlError.invalidInput(
                "The cluster profile `\(profile.name)` has no share_dir",
                hint: "Add `share_dir: /path/your/group/can/read` to it in the configuration.")
        }
        let user = try await context.host.userName()
        let path = dir + "/" + Self.fileName(user: user, name: name, jobID: jobID)
        if let owner = try await owner(of: path), owner != user {
            throw VLLMCtlError.invalidInput(
                "\(path) exists and belongs to \(owner), not to you; vllmctl leaves it alone",
                hint: "Ask \(owner) why it is there, or pick another share_dir.")
        }
        try await context.host.writeFileAtomically(Data(info.text.utf8), to: path, mode: 0o640)
        let group = try await context.host.output(["stat", "-c", "%G", "--", path])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let entry = (try? await context.host.output(["getent", "group", "--", group])) ?? ""
        let members =
            entry.split(separator: ":", omittingEmptySubsequences: false).dropFirst(3).first?
            .split(separator: ",").map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { !$0.isEmpty } ?? []
        return Shared(path: path, group: group, members: members)
    }

    /// Replaces the user's own shared copy for job `jobID` with a one-line notice, so colleagues
    /// learn the server is gone. Returns its path, or nil when there is none (or it is not
    /// the user's, which is never touched).
    public func replaceWithNotice(name: String, jobID: String) async throws -> String? {
        guard let dir = try await directory() else { return nil }
        let user = try await context.host.userName()
        return try await replaceWithNotice(
            path: dir + "/" + Self.fileName(user: user, name: name, jobID: jobID), name: name, jobID: jobID)
    }

    /// The same for the shared copy at `path` (a renewing deployment's, which its jobs keep
    /// current: docs/RENEW.md).
    public func replaceWithNotice(path: String, name: String, jobID: String) async throws -> String? {
        let user = try await context.host.userName()
        guard let data = try await context.host.readFile(path) else { return nil }
        guard try await owner(of: path) == user else { return nil }
        if String(decoding: data, as: UTF8.self).hasPrefix(Self.stoppedPrefix) { return nil }
        let notice =
            "\(Self.stoppedPrefix)\(ISO8601DateFormatter().string(from: context.clock.now())): vllmctl teardown ended job \(jobID) (\(name)); this server is gone.\n"
        try await context.host.writeFileAtomically(Data(notice.utf8), to: path, mode: 0o644)
        return path
    }

    public static let stoppedPrefix = "Stopped at "

    /// The file in a deployment directory that names its shared copy (written by
    /// `info --share`), so that a renewing deployment's successors keep that copy current.
    public static let pointer = "shared_copy"

    /// The owner of `path` on the cluster, or nil when it does not exist.
    func owner(of path: String) async throws -> String? {
        let r = try await context.host.run(["stat", "-c", "%U", "--", path], timeout: .seconds(30))
        guard r.status == 0 else { return nil }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
