/// The names vllmctl gives the jobs it submits: a tag and the deployment's name, and for a
/// replica of a replicated deployment `@` and its number (`vllmctl-sim@2`). Deployment names
/// never hold `@`, so the number cannot be mistaken for part of a name. Teardown acts only on
/// tagged jobs; status lists them.
public enum JobName {
    /// The tag in front of every job name vllmctl submits.
    public static let prefix = "vllmctl-"
    /// Between a deployment's name and a replica's number.
    public static let replicaMark: Character = "@"

    /// The job name for the deployment `name` (`vllmctl-NAME`), or for its replica `replica`
    /// (`vllmctl-NAME@K`).
    public static func of(_ name: String, replica: Int? = nil) -> String {
        prefix + name + (replica.map { "\(replicaMark)\($0)" } ?? "")
    }

    /// The deployment name in a tagged job name (a replica's without its number); the name
    /// itself when it has no tag.
    public static func deploymentName(_ jobName: String) -> String {
        split(jobName).name
    }

    /// The deployment name and the replica number (nil: not a replica) in a job name, or in a
    /// `NAME@K` a user typed.
    public static func split(_ jobName: String) -> (name: String, replica: Int?) {
        let name =
            jobName.hasPrefix(prefix) ? String(Substring(jobName.utf8.dropFirst(prefix.utf8.count))) : jobName
        // On the UTF-8 bytes (`@` is ASCII, so it never splits a character): `status` splits
        // every job's name, thousands in a busy queue.
        let bytes = name.utf8
        guard let mark = bytes.lastIndex(of: UInt8(ascii: "@")),
            let number = Int(Substring(bytes[bytes.index(after: mark)...])), number >= 1, number <= 999
        else { return (name, nil) }
        return (String(Substring(bytes[..<mark])), number)
    }

    /// Whether `jobName` is the deployment `name`'s job, or one of its replicas'.
    public static func belongs(_ jobName: String, to name: String) -> Bool {
        jobName.hasPrefix(prefix) && split(jobName).name == name
    }
}
