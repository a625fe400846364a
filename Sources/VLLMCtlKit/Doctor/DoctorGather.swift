import Foundation

/// Every question doctor asks the login node, in one shell script run over one command: over
/// SSH each command costs a round trip and a shell start (~0.1 s on the local cluster).
/// Commands are argv values joined with `Shell.join`, except the few lines that need the
/// remote shell (`$HOME`, `$(id -un)`).
public struct DoctorGather: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        case argv([String])
        case shell(String)
    }

    public var steps: [(name: String, step: Step)]

    public static func == (a: DoctorGather, b: DoctorGather) -> Bool {
        a.steps.map(\.name) == b.steps.map(\.name) && a.steps.map(\.step) == b.steps.map(\.step)
    }

    static let marker = "@@vllmctl-doctor"

    /// The steps for a profile's settings and workdir (`~` is the remote home).
    public init(settings: DeploySettings, workdir: String) {
        let dir: String
        if workdir == "~" {
            dir = "\"$HOME\""
        } else if workdir.hasPrefix("~/") {
            dir = "\"$HOME\"/" + Shell.quote(String(workdir.dropFirst(2)))
        } else {
            dir = Shell.quote(workdir)
        }
        // All nodes, not only the partition's: the proxy check wants every address a server
        // may have, and a wrong partition must not hide them.
        let nodes = ["sinfo", "--noheader", "--Node", "--format=%N %o"]
        steps = [
            ("programs", .shell(SlurmAdvice.findProgramsScript)),
            ("ping", .argv(["scontrol", "ping"])),
            ("partitions", .argv(["scontrol", "show", "partition", "--oneliner"])),
            ("user", .argv(["id", "-un"])),
            (
                "assoc",
                .shell(
                    "sacctmgr --noheader --parsable2 show assoc \"user=$(id -un)\" format=account,partition,qos"
                )
            ),
            ("request", .argv(SlurmAdvice.testOnlyArgv(settings))),
            ("nodes", .argv(nodes)),
            (
                "workdir",
                .shell("d=\(dir); echo \"path=$d\"; sh -c \(Shell.quote(WorkdirAdvice.script)) sh \"$d\"")
            ),
        ]
    }

    /// The script: each step's output (stderr merged) between a start and a status line.
    public var script: String {
        steps.map { name, step in
            let command =
                switch step {
                case .argv(let argv): Shell.join(argv)
                case .shell(let text): "(\(text))"
                }
            return
                "echo '\(Self.marker) \(name)'; \(command) </dev/null 2>&1; echo \"\(Self.marker)-status $?\""
        }.joined(separator: "\n")
    }

    /// Each step's exit status and output, by name. A step that did not finish is absent.
    public static func parse(_ output: String) -> [String: CommandResult] {
        var results: [String: CommandResult] = [:]
        var current: String?
        var lines: [Substring] = []
        for line in output.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix(marker + "-status "), let name = current {
                let status = Int32(line.dropFirst(marker.count + 8)) ?? -1
                results[name] = CommandResult(
                    status: status, stdout: lines.joined(separator: "\n"), stderr: "")
                current = nil
                lines = []
            } else if line.hasPrefix(marker + " ") {
                current = String(line.dropFirst(marker.count + 1))
                lines = []
            } else if current != nil {
                lines.append(line)
            }
        }
        return results
    }
}
