import Foundation

/// Whether the environment's proxies would catch requests to the cluster's servers.
public enum ProxyAdvice {
    /// The variables that send plain-HTTP requests through a proxy, in the order tools read
    /// them (curl reads only the lowercase `http_proxy`; Python and others read both).
    static let proxyVariables = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]

    /// Whether `no_proxy` (comma-separated: `*`, host names and domain suffixes with or without a
    /// leading dot, IPv4 addresses and CIDR ranges, as curl 7.86+ reads it) exempts `host`.
    public static func isExempt(_ host: String, noProxy: String) -> Bool {
        let host = host.lowercased()
        for raw in noProxy.split(separator: ",") {
            var entry = raw.trimmingCharacters(in: .whitespaces).lowercased()
            if entry.isEmpty { continue }
            if entry == "*" { return true }
            if entry.contains("/") {
                if let range = IPv4Range(entry), let ip = IPv4Range.address(host), range.contains(ip) {
                    return true
                }
                continue
            }
            if entry.hasPrefix(".") { entry.removeFirst() }
            if host == entry || host.hasSuffix("." + entry) { return true }
        }
        return false
    }

    /// The verdict for the environment `environment` and the cluster-internal hosts `targets`
    /// (the compute nodes' names and addresses, which servers' URLs carry).
    public static func verdict(environment: [String: String], targets: [String])
        -> (verdict: DoctorVerdict, detail: String, fix: String?)
    {
        let set = proxyVariables.compactMap { name in
            environment[name].flatMap { $0.isEmpty ? nil : (name, $0) }
        }
        guard let (name, proxy) = set.first else {
            return (.ok, "no http_proxy/all_proxy in the environment", nil)
        }
        let noProxyName = environment["no_proxy"]?.isEmpty == false ? "no_proxy" : "NO_PROXY"
        let noProxy = environment[noProxyName] ?? ""
        let caught = targets.filter { !isExempt($0, noProxy: noProxy) }
        let setText = set.map { "\($0.0)=\($0.1)" }.joined(separator: ", ")
        if targets.isEmpty {
            return (
                .warning,
                "\(setText) is set and the cluster's node addresses are unknown, so whether no_proxy exempts them was not checked",
                "Make sure no_proxy lists the compute nodes' names or addresses (e.g. `export no_proxy=$no_proxy,.cluster.example.org,10.0.0.0/8`)"
            )
        }
        guard !caught.isEmpty else {
            return (.ok, "\(setText) is set; \(noProxyName) exempts the cluster's nodes", nil)
        }
        let shown = caught.prefix(6).joined(separator: ", ") + (caught.count > 6 ? ", …" : "")
        let fixList = caught.prefix(8).joined(separator: ",")
        return (
            .warning,
            "\(name)=\(proxy) would catch requests to the compute nodes (\(shown)). vllmctl ignores the environment's proxies for its own requests (only a profile's `http_proxy:` is used), but the curl command in server_connection_info.txt, the openai client and other tools would go through the proxy",
            "`export no_proxy=\"${no_proxy:+$no_proxy,}\(fixList)\"` (and NO_PROXY for tools that read it) in the shell you use with the cluster, or `unset \(set.map(\.0).joined(separator: " "))` there"
        )
    }
}

/// An IPv4 CIDR range, `10.0.0.0/8`.
struct IPv4Range {
    var base: UInt32
    var bits: Int

    init?(_ text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let ip = Self.address(String(parts[0])), let bits = Int(parts[1]),
            (0...32).contains(bits)
        else { return nil }
        self.base = ip
        self.bits = bits
    }

    var mask: UInt32 { bits == 0 ? 0 : UInt32.max << (32 - UInt32(bits)) }

    func contains(_ ip: UInt32) -> Bool { ip & mask == base & mask }

    static func address(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard let n = UInt32(part), n < 256 else { return nil }
            value = value << 8 | n
        }
        return value
    }
}
