import Foundation

/// `scontrol show partition [NAME] -o`: one partition per line, `Key=Value` pairs separated by
/// spaces. Read for renewal's mode (docs/RENEW.md): `AllocNodes` lists the hosts that may
/// submit jobs to the partition (`ALL`: any), `Nodes` its compute nodes.
public struct ScontrolPartition: Sendable, Equatable {
    /// The partition to show; nil for all (the default one is marked `Default=YES`).
    public var name: String?

    public init(name: String?) { self.name = name }

    public var argv: [String] {
        ["scontrol", "show", "partition"] + (name.map { [$0] } ?? []) + ["-o"]
    }

    /// One partition as scontrol shows it.
    public struct Partition: Sendable, Equatable {
        public var name: String
        public var isDefault: Bool
        /// `AllocNodes`: `ALL`, or the hosts allowed to submit (expanded).
        public var allocNodes: AllocNodes
        /// The compute nodes (expanded).
        public var nodes: [String]
    }

    public enum AllocNodes: Sendable, Equatable {
        case all
        case only([String])
    }

    /// The partitions in `output`. A line without a well-formed `PartitionName`, `AllocNodes`
    /// and `Nodes` is dropped (scontrol's output is read as untrusted: values are checked as
    /// host names).
    public static func parse(_ output: String) -> [Partition] {
        output.split(whereSeparator: \.isNewline).compactMap { line in
            let fields = ScontrolJob.parse(String(line))
            guard let name = fields["PartitionName"], isHostish(name), let alloc = fields["AllocNodes"],
                let nodes = fields["Nodes"], let expanded = hosts(nodes)
            else { return nil }
            let allocNodes: AllocNodes
            if alloc == "ALL" {
                allocNodes = .all
            } else {
                guard let list = hosts(alloc) else { return nil }
                allocNodes = .only(list)
            }
            return Partition(
                name: name, isDefault: fields["Default"] == "YES", allocNodes: allocNodes, nodes: expanded)
        }
    }

    /// A Slurm host list (`node[1-2],gpu07`) expanded; nil when a name is not a plain host
    /// name. `(null)` (no nodes) is empty.
    static func hosts(_ list: String) -> [String]? {
        if list == "(null)" || list.isEmpty { return [] }
        let names = Hostlist.expand(list)
        guard names.count <= 100_000, names.allSatisfy(isHostish) else { return nil }
        return names
    }

    static func isHostish(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 255
            && s.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0))
            }
    }
}

/// Where a renewing deployment's successors are submitted from (docs/RENEW.md): the
/// `renew_from` setting.
public enum RenewFrom: String, Sendable, CaseIterable {
    /// Decide from the partition's `AllocNodes`.
    case auto
    /// Each job submits its successor (sbatch on the compute node).
    case job
    /// A loop on the login node submits them.
    case login

    /// What deploy tells the user about the mode that runs.
    public var described: String {
        switch self {
        case .login: "from the login node (a renewal loop there submits each successor)"
        case .job, .auto: "from the job (each job submits its successor on its compute node)"
        }
    }
}

/// The mode a renewing deployment runs in, and why.
public struct RenewModeDecision: Sendable, Equatable {
    public var mode: RenewFrom
    public var reason: String

    /// `asked` (`job` and `login` are taken as they are); for `auto`, `partitions` (what
    /// `scontrol show partition` said, nil when it could not be asked) decides for the
    /// partition `partition` (nil: the default one): `AllocNodes=ALL`, or a list naming all its
    /// compute nodes, is job mode; a list that leaves any of them out is login mode; anything
    /// unclear is job mode (the job itself says in its chain file if sbatch fails there).
    public static func decide(
        asked: RenewFrom, partition: String?, partitions: [ScontrolPartition.Partition]?
    )
        -> RenewModeDecision
    {
        switch asked {
        case .job: return RenewModeDecision(mode: .job, reason: "renew_from: job")
        case .login: return RenewModeDecision(mode: .login, reason: "renew_from: login")
        case .auto: break
        }
        let label = partition.map { "partition \($0)" } ?? "the default partition"
        guard let partitions else {
            return RenewModeDecision(
                mode: .job,
                reason:
                    "`scontrol show partition` could not be asked, so it is not known whether compute nodes may submit jobs; if successors are never submitted, deploy again with --renew-from login"
            )
        }
        guard
            let p = partition.map({ name in partitions.first { $0.name == name } })
                ?? partitions.first(where: \.isDefault)
        else {
            return RenewModeDecision(
                mode: .job,
                reason:
                    "scontrol did not show \(label), so it is not known whether compute nodes may submit jobs; if successors are never submitted, deploy again with --renew-from login"
            )
        }
        switch p.allocNodes {
        case .all:
            return RenewModeDecision(mode: .job, reason: "\(label) has AllocNodes=ALL")
        case .only(let hosts):
            let allowed = Set(hosts)
            let missing = p.nodes.filter { !allowed.contains($0) }
            if missing.isEmpty, !p.nodes.isEmpty {
                return RenewModeDecision(
                    mode: .job, reason: "\(label)'s AllocNodes include its compute nodes")
            }
            return RenewModeDecision(
                mode: .login,
                reason:
                    "\(label)'s AllocNodes (\(hosts.joined(separator: ","))) do not include its compute nodes, so jobs there cannot submit jobs"
            )
        }
    }
}
