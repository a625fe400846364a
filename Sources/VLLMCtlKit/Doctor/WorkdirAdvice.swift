import Foundation

/// The workdir as the login node sees it, and the verdict on it.
public enum WorkdirAdvice {
    /// A script that looks at `$1` without changing anything it keeps: a directory is tested
    /// by creating and removing a temporary file in it; a missing one by its nearest existing
    /// ancestor. Prints `state=dir|notdir|missing`, `writable=yes|no [why]`, `ancestor=PATH`,
    /// `fstype=TYPE`.
    static let script = """
        d=$1
        if [ -d "$d" ]; then
          echo state=dir; p=$d
          if f=$(mktemp -p "$d" .vllmctl-doctor.XXXXXX 2>&1); then rm -f "$f"; echo writable=yes
          else echo "writable=no $f"; fi
        elif [ -e "$d" ]; then
          echo state=notdir; p=$d
        else
          echo state=missing; p=$d
          while [ ! -e "$p" ]; do p=$(dirname "$p"); done
          echo "ancestor=$p"
          if [ -d "$p" ] && [ -w "$p" ]; then echo writable=yes; else echo writable=no; fi
        fi
        echo "fstype=$(stat -f -c %T "$p" 2>/dev/null)"
        """

    public struct Probe: Sendable, Equatable {
        public enum State: String, Sendable { case dir, notdir, missing }
        public var state: State
        public var writable: Bool
        public var why: String?
        public var ancestor: String?
        public var filesystem: String?
    }

    public static func parse(_ output: String) -> Probe? {
        var values: [String: String] = [:]
        for line in output.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        guard let state = values["state"].flatMap(Probe.State.init(rawValue:)) else { return nil }
        let writable = values["writable"] ?? "no"
        let why = writable.hasPrefix("no ") ? String(writable.dropFirst(3)) : nil
        return Probe(
            state: state, writable: writable == "yes", why: why, ancestor: values["ancestor"],
            filesystem: values["fstype"].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// Filesystems that are shared between machines by construction.
    static let sharedFilesystems = [
        "nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb2", "smb3", "ceph", "cephfs", "glusterfs",
        "panfs", "wekafs", "fuse.glusterfs", "fuse.ceph", "fuse.sshfs", "afs", "9p",
    ]

    public static func verdict(path: String, probe: Probe, profile: String, configFile: String) -> (
        verdict: DoctorVerdict, detail: String, fix: String?
    ) {
        let setIt =
            "set `workdir:` in the profile `\(profile)` of \(configFile) to a directory on a shared filesystem you can write (your home, /scratch/$USER, …)"
        switch probe.state {
        case .notdir:
            return (.problem, "\(path) exists and is not a directory", "Remove it, or " + setIt)
        case .missing:
            guard probe.writable else {
                let blocker = probe.ancestor ?? "?"
                return (
                    .problem,
                    "\(path) does not exist and cannot be created: \(blocker) is \(blocker == path ? "missing" : "not a writable directory")",
                    "Create it yourself (`mkdir -p \(Shell.quote(path))`) or " + setIt
                )
            }
        case .dir:
            guard probe.writable else {
                return (
                    .problem, "\(path) is not writable\(probe.why.map { ": \($0)" } ?? "")",
                    "Fix its permissions (`chmod u+w \(Shell.quote(path))`), or " + setIt
                )
            }
        }
        let fs = probe.filesystem ?? "unknown"
        let exists =
            probe.state == .missing
            ? "does not exist yet; deploy creates it (\(probe.ancestor ?? "its parent") is writable)"
            : "is writable"
        if fs == "tmpfs" || fs == "ramfs" || path.hasPrefix("/tmp/") || path.hasPrefix("/var/tmp/") {
            return (
                .warning,
                "\(path) \(exists), on \(fs == "tmpfs" ? "tmpfs" : "a temporary directory") of the login node: compute nodes usually cannot see it",
                "Check with `vllmctl doctor --submit-probe`, or " + setIt
            )
        }
        let shared = sharedFilesystems.contains(fs) || fs.hasPrefix("fuse.")
        return (
            .ok,
            "\(path) \(exists) (\(fs)\(shared ? ", a network filesystem" : ""); `--submit-probe` checks the compute nodes see it)",
            nil
        )
    }
}
