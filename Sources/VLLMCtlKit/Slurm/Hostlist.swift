/// Slurm's compressed host lists (`node[1-2]`, `gpu[01-03,07],login1`), as squeue's `%N`
/// prints a job's nodes.
public enum Hostlist {
    /// The host names, in order: `node[1-2]` → `node1`, `node2`. Ranges keep their zero
    /// padding (`gpu[08-10]` → `gpu08`, `gpu09`, `gpu10`). Text that is not a host list comes
    /// back as it is, as one name.
    public static func expand(_ list: String) -> [String] {
        var names: [String] = []
        var depth = 0
        var current = ""
        for ch in list {
            if ch == "[" { depth += 1 } else if ch == "]" { depth -= 1 }
            if ch == "," && depth == 0 {
                names += expandOne(current)
                current = ""
            } else {
                current.append(ch)
            }
        }
        if !current.isEmpty { names += expandOne(current) }
        return names
    }

    /// One name with at most one bracket group (what Slurm prints); others as they are.
    private static func expandOne(_ name: String) -> [String] {
        guard let open = name.firstIndex(of: "["), let close = name.firstIndex(of: "]"), open < close
        else { return [name] }
        let prefix = String(name[..<open])
        let suffix = String(name[name.index(after: close)...])
        guard !suffix.contains("[") else { return [name] }
        var out: [String] = []
        for part in name[name.index(after: open)..<close].split(separator: ",") {
            let bounds = part.split(separator: "-", maxSplits: 1).map(String.init)
            guard let lo = Int(bounds[0]), let hi = Int(bounds.count == 2 ? bounds[1] : bounds[0]), lo <= hi,
                hi - lo < 100_000
            else { return [name] }
            let width = bounds[0].count
            for n in lo...hi {
                let digits = String(n)
                out.append(
                    prefix + String(repeating: "0", count: max(0, width - digits.count)) + digits + suffix)
            }
        }
        return out
    }
}
