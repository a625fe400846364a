/// The names vllmctl gives the jobs it submits: a tag and the deployment's name. Teardown acts
/// only on tagged jobs; status lists them.
public enum JobName {
    /// The tag in front of every job name vllmctl submits.
    public static let prefix = "vllmctl-"

    /// The job name for the deployment `name`: `vllmctl-NAME`.
    public static func of(_ name: String) -> String { prefix + name }

    /// The deployment name in a tagged job name; the name itself when it has no tag.
    public static func deploymentName(_ jobName: String) -> String {
        jobName.hasPrefix(prefix) ? String(jobName.dropFirst(prefix.count)) : jobName
    }
}
