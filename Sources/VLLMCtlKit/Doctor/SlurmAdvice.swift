import Foundation

/// Slurm's answers as `vllmctl doctor` reads them, and the verdicts drawn from them. Pure:
/// the commands run in `Doctor`.
public enum SlurmAdvice {
    /// The programs vllmctl runs, and those only doctor uses.
    public static let requiredPrograms = ["sbatch", "squeue", "sacct", "scancel"]
    public static let optionalPrograms = ["scontrol", "sacctmgr", "sinfo"]

    /// A shell script printing `NAME PATH` (empty PATH when missing) for each program.
    static var findProgramsScript: String {
        let names = (requiredPrograms + optionalPrograms).joined(separator: " ")
        return "for c in \(names); do printf '%s ' \"$c\"; command -v \"$c\" || echo; done"
    }

    /// `[name: path]` from the script's output; missing programs are absent.
    public static func parsePrograms(_ output: String) -> [String: String] {
        var found: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2, !parts[1].trimmingCharacters(in: .whitespaces).isEmpty {
                found[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces)
            }
        }
        return found
    }

    public static func programs(_ found: [String: String], remote: String?) -> (
        verdict: DoctorVerdict, detail: String, fix: String?
    ) {
        let missing = requiredPrograms.filter { found[$0] == nil }
        let place = remote.map { "on \($0)" } ?? "on this machine"
        if missing.isEmpty {
            let dir = found["sbatch"].map { ($0 as NSString).deletingLastPathComponent } ?? ""
            let optionalMissing = optionalPrograms.filter { found[$0] == nil }
            let note =
                optionalMissing.isEmpty
                ? "" : " (\(optionalMissing.joined(separator: ", ")) not found: fewer checks)"
            return (.ok, "\(requiredPrograms.joined(separator: ", ")) found \(place) in \(dir)\(note)", nil)
        }
        let fix =
            remote != nil
            ? "Non-interactive SSH sessions on \(remote!) do not have Slurm on PATH: set PATH (or `module load slurm`) in the remote ~/.bashrc before any `return` for non-interactive shells, or ask the cluster admins where Slurm lives"
            : "Run vllmctl on the cluster's login node, load Slurm (`module load slurm`) or add its bin directory to PATH; from a laptop, set `ssh_host:` in the cluster profile"
        return (.problem, "\(missing.joined(separator: ", ")) not found \(place)", fix)
    }

    // MARK: partitions

    /// `scontrol show partition --oneliner`: one `Key=Value …` line per partition.
    public static func parsePartitions(_ output: String) -> [[String: String]] {
        var out: [[String: String]] = []
        for line in output.split(separator: "\n") {
            var fields: [String: String] = [:]
            for word in line.split(separator: " ") {
                let parts = word.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            if fields["PartitionName"] != nil { out.append(fields) }
        }
        return out
    }

    /// Whether `value` passes an Allow list (`ALL` or comma-separated) and a Deny list.
    static func allowed(_ value: String?, allow: String?, deny: String?) -> Bool {
        guard let value else { return true }
        if let deny, deny.split(separator: ",").contains(Substring(value)) { return false }
        guard let allow, allow != "ALL" else { return true }
        return allow.split(separator: ",").contains(Substring(value))
    }

    public static func partition(
        named name: String?, account: String?, qos: String?, partitions: [[String: String]], profile: String,
        configFile: String
    ) -> (verdict: DoctorVerdict, detail: String, fix: String?) {
        let names = partitions.compactMap { $0["PartitionName"] }
        guard let name else {
            if let def = partitions.first(where: { $0["Default"] == "YES" })?["PartitionName"] {
                return (.ok, "none set: Slurm's default partition `\(def)` is used", nil)
            }
            return (
                .problem, "none set and the cluster has no default partition",
                "Set `partition:` in the profile `\(profile)` of \(configFile) to one of: \(names.joined(separator: ", "))"
            )
        }
        guard let p = partitions.first(where: { $0["PartitionName"] == name }) else {
            return (
                .problem,
                "`\(name)` does not exist on this cluster (it has: \(names.joined(separator: ", ")))",
                "Set `partition:` in the profile `\(profile)` of \(configFile) to one of: \(names.joined(separator: ", ")) (`sinfo -s` lists them)"
            )
        }
        let state = p["State"] ?? "UNKNOWN"
        if state != "UP" {
            return (
                .problem, "`\(name)` is \(state): jobs wait or are refused",
                "Pick another partition (`sinfo -s`), or ask the cluster admins when `\(name)` is back"
            )
        }
        if !allowed(account, allow: p["AllowAccounts"], deny: p["DenyAccounts"]) {
            return (
                .problem,
                "`\(name)` does not accept the account `\(account!)` (AllowAccounts=\(p["AllowAccounts"] ?? "?"))",
                "Use an account the partition allows (`scontrol show partition \(name)`), or another partition"
            )
        }
        if !allowed(qos, allow: p["AllowQos"], deny: p["DenyQos"]) {
            return (
                .problem, "`\(name)` does not accept the QOS `\(qos!)` (AllowQos=\(p["AllowQos"] ?? "?"))",
                "Use a QOS the partition allows (`scontrol show partition \(name)`), or another partition"
            )
        }
        var detail = "`\(name)` is UP: \(p["TotalNodes"] ?? "?") nodes, MaxTime \(p["MaxTime"] ?? "?")"
        if let tres = p["TRES"],
            let gpus = tres.split(separator: ",").first(where: { $0.hasPrefix("gres/gpu=") })
        {
            detail += ", \(gpus.dropFirst("gres/gpu=".count)) GPUs"
        }
        if let groups = p["AllowGroups"], groups != "ALL" { detail += ", AllowGroups=\(groups)" }
        return (.ok, detail, nil)
    }

    // MARK: associations

    public struct Association: Sendable, Equatable {
        public var account: String
        public var partition: String
        public var qos: [String]
    }

    /// `sacctmgr --noheader --parsable2 show assoc user=U format=account,partition,qos`.
    public static func parseAssociations(_ output: String) -> [Association] {
        output.split(separator: "\n").compactMap { line in
            let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 3, !f[0].isEmpty else { return nil }
            return Association(
                account: f[0], partition: f[1], qos: f[2].split(separator: ",").map(String.init))
        }
    }

    public static func associations(
        _ assocs: [Association], user: String, account: String?, qos: String?, partition: String?,
        profile: String, configFile: String
    ) -> (verdict: DoctorVerdict, detail: String, fix: String?) {
        let accounts = Array(Set(assocs.map(\.account))).sorted()
        if assocs.isEmpty {
            return (
                .problem, "`\(user)` has no association in Slurm's accounting: jobs will be refused",
                "Ask the cluster admins to add your user to an account (`sacctmgr show assoc user=\(user)` shows none)"
            )
        }
        // Rows for this partition, or for all partitions (empty).
        let rows = assocs.filter { $0.partition.isEmpty || partition == nil || $0.partition == partition }
        var usable = rows
        if let account {
            usable = rows.filter { $0.account == account }
            if usable.isEmpty {
                return (
                    .problem,
                    "`\(user)` may not charge the account `\(account)`\(partition.map { " on `\($0)`" } ?? "") (yours: \(accounts.joined(separator: ", ")))",
                    "Set `account:` in the profile `\(profile)` of \(configFile) to one of: \(accounts.joined(separator: ", "))"
                )
            }
        }
        if let qos {
            guard usable.contains(where: { $0.qos.contains(qos) }) else {
                let allowed = Array(Set(usable.flatMap(\.qos))).sorted()
                return (
                    .problem,
                    "the QOS `\(qos)` is not allowed for `\(user)` (allowed: \(allowed.joined(separator: ", ")))",
                    "Set `qos:` in the profile `\(profile)` of \(configFile) to one of: \(allowed.joined(separator: ", ")), or remove it"
                )
            }
        }
        let qosList = Array(Set(usable.flatMap(\.qos))).sorted().joined(separator: ", ")
        return (
            .ok,
            "`\(user)` may use account\(accounts.count == 1 ? "" : "s") \(accounts.joined(separator: ", ")); QOS \(qosList)",
            nil
        )
    }

    // MARK: sbatch --test-only

    /// `sbatch --test-only` arguments for the profile's request, GPUs asked the way the
    /// profile asks (`--gres=gpu:N` or `--gpus=N`).
    public static func testOnlyArgv(_ settings: DeploySettings) -> [String] {
        var argv = ["sbatch", "--test-only", "--job-name=vllmctl-doctor", "--output=/dev/null"]
        if let p = settings.partition { argv.append("--partition=\(p)") }
        if let a = settings.account { argv.append("--account=\(a)") }
        if let q = settings.qos { argv.append("--qos=\(q)") }
        if let t = settings.time { argv.append("--time=\(t)") }
        if let c = settings.constraint { argv.append("--constraint=\(c)") }
        if let n = settings.nodes { argv.append("--nodes=\(n)") }
        let gpus = settings.gpus ?? 1
        if gpus > 0 {
            argv.append(settings.gpuRequest == .gpus ? "--gpus=\(gpus)" : "--gres=gpu:\(gpus)")
        }
        return argv + ["--wrap=true"]
    }

    /// `sbatch: Job 101 to start at 2026-11-29T17:38:58 using 1 processors on nodes node1 in
    /// partition debug` → the nodes and start time.
    public static func parseTestOnly(_ text: String) -> (nodes: String, start: String)? {
        guard let line = text.split(separator: "\n").first(where: { $0.contains(" to start at ") }) else {
            return nil
        }
        let words = line.split(separator: " ").map(String.init)
        guard let at = words.firstIndex(of: "at"), at + 1 < words.count,
            let on = words.firstIndex(of: "nodes"), on + 1 < words.count
        else { return nil }
        return (words[on + 1], words[at + 1])
    }

    public static func request(_ settings: DeploySettings, result: CommandResult) -> (
        verdict: DoctorVerdict, detail: String, fix: String?
    ) {
        let gpus = settings.gpus ?? 1
        let asked =
            gpus == 0 ? "no GPU" : settings.gpuRequest == .gpus ? "--gpus=\(gpus)" : "--gres=gpu:\(gpus)"
        let output = result.stderr + "\n" + result.stdout
        if result.status == 0, let parsed = parseTestOnly(output) {
            return (.ok, "a job asking for \(asked) would start on \(parsed.nodes) (sbatch --test-only)", nil)
        }
        let explained = SlurmErrors.explain(
            sbatchStderr: output.trimmingCharacters(in: .whitespacesAndNewlines), status: result.status)
        guard case .slurm(let message, let explanation) = explained else {
            return (.problem, "sbatch --test-only with \(asked) failed", "\(explained)")
        }
        return (
            .problem,
            "a job asking for \(asked) is refused: \(message.replacingOccurrences(of: "\n", with: "; "))",
            explanation
        )
    }
}
