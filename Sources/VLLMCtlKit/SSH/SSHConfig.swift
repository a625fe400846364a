import Foundation

/// What to do with a host whose key is not in known_hosts (OpenSSH's StrictHostKeyChecking).
/// A changed key is refused whatever this says.
public enum HostKeyPolicy: String, Sendable, Equatable {
    /// Refuse unknown hosts (`yes`, and `ask`, since vllmctl does not ask).
    case strict
    /// Append the key of an unknown host to known_hosts and go on (`accept-new`, `no`, `off`).
    case acceptNew
    /// Go on with an unknown host's key for this session only, recording nothing: for
    /// `vllmctl doctor`, which reports the unknown key and still tries the login. Public-key
    /// authentication signs the session, so a key never helps an impostor; keyboard-interactive
    /// (a password) is not offered to such a host.
    case acceptOnce
}

/// What the server showed of itself before authentication, as `vllmctl doctor` reports it.
public struct SSHHostKeyFinding: Sendable, Equatable {
    public enum Status: Sendable, Equatable {
        case known
        case unknown
        /// known_hosts holds another key of this type for the host, at `file:line`.
        case changed(file: String, line: Int)
        /// The key is marked `@revoked` at `file:line`.
        case revoked(file: String, line: Int)
    }
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, ...
    public var typeName: String
    /// `SHA256:…` as OpenSSH prints it.
    public var fingerprint: String
    public var status: Status
    /// The server's identification string, e.g. `SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3`.
    public var serverBanner: String?
    /// The name known_hosts uses for the host: `host` or `[host]:port`.
    public var hostPattern: String
}

/// The settings of one Host alias, resolved from an ssh_config file the way OpenSSH does:
/// for each keyword the first value found wins; IdentityFile accumulates.
public struct SSHHostConfig: Sendable, Equatable {
    /// The alias asked for.
    public var alias: String
    public var hostName: String
    public var user: String?
    public var port: Int = 22
    public var identityFiles: [String] = []
    public var identitiesOnly = false
    public var userKnownHostsFiles: [String] = []
    /// Read too, never written.
    public var globalKnownHostsFiles: [String] = []
    /// nil when the file did not say (OpenSSH's default, `ask`, which vllmctl treats as strict).
    public var strictHostKeyChecking: HostKeyPolicy?
    /// Seconds; nil for the default.
    public var connectTimeout: Int?
    public var serverAliveInterval: Int?
    public var serverAliveCountMax: Int?
    /// `ProxyJump` as written (`[user@]host[:port][,…]`), or nil for none.
    public var proxyJump: String?

    public init(alias: String) {
        self.alias = alias
        hostName = alias
    }
}

/// A reader for OpenSSH client configuration files (`~/.ssh/config`).
///
/// It understands `Host` blocks with `*`/`?` patterns and `!` negation, `Key value` and
/// `Key=value`, quoted values, `~` and the `%d %u %h %r %p %%` tokens. `Match` blocks are
/// skipped and `Include` is not followed.
public enum SSHConfig {
    /// The ssh_config file vllmctl reads: `$VLLMCTL_SSH_CONFIG`, else `~/.ssh/config`.
    public static func defaultPath(environment: [String: String]) -> String {
        if let path = environment["VLLMCTL_SSH_CONFIG"], !path.isEmpty { return path }
        let home = environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path
        return home + "/.ssh/config"
    }

    /// The config for `alias` from the file at `path`; a missing file gives the defaults.
    public static func resolve(alias: String, path: String, home: String, localUser: String) throws
        -> SSHHostConfig
    {
        guard FileManager.default.fileExists(atPath: path) else { return SSHHostConfig(alias: alias) }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw VLLMCtlError.file(path: path, message: "cannot be read: \(error.localizedDescription)")
        }
        return try resolve(alias: alias, text: text, file: path, home: home, localUser: localUser)
    }

    /// The config for `alias` from `text` (named `file` in errors).
    public static func resolve(alias: String, text: String, file: String, home: String, localUser: String)
        throws
        -> SSHHostConfig
    {
        var config = SSHHostConfig(alias: alias)
        var seen: Set<String> = []
        var active = true
        var rawIdentityFiles: [String] = []
        var rawKnownHosts: [String]?
        var rawGlobalKnownHosts: [String]?
        var hostName: String?
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let (keyword, args) = split(line)
            let key = keyword.lowercased()
            func bad(_ problem: String) -> VLLMCtlError {
                .config(file: file, line: index + 1, key: keyword, problem: problem)
            }
            if key == "host" {
                active = hostMatches(alias, patterns: args)
                continue
            }
            if key == "match" {
                active = false
                continue
            }
            guard active, let value = args.first else { continue }
            func int() throws -> Int {
                guard let n = Int(value), n >= 0 else { throw bad("`\(value)` is not a whole number") }
                return n
            }
            if key == "identityfile" {
                rawIdentityFiles.append(value)
                continue
            }
            guard !seen.contains(key) else { continue }
            seen.insert(key)
            switch key {
            case "hostname": hostName = value
            case "user": config.user = value
            case "port":
                let n = try int()
                guard (1...65535).contains(n) else { throw bad("port \(value) is out of range") }
                config.port = n
            case "identitiesonly": config.identitiesOnly = try yesNo(value, bad)
            case "userknownhostsfile": rawKnownHosts = args
            case "globalknownhostsfile": rawGlobalKnownHosts = args
            case "stricthostkeychecking":
                switch value.lowercased() {
                case "yes", "ask": config.strictHostKeyChecking = .strict
                case "accept-new", "no", "off": config.strictHostKeyChecking = .acceptNew
                default: throw bad("`\(value)` is not yes, ask, accept-new or no")
                }
            case "connecttimeout":
                // 0 is OpenSSH's "no timeout of its own": vllmctl then uses its default.
                let n = try int()
                guard (0...3600).contains(n) else {
                    throw bad("ConnectTimeout \(value) is out of range (0 to 3600 seconds)")
                }
                config.connectTimeout = n == 0 ? nil : n
            case "serveraliveinterval":
                let n = try int()
                guard (0...86400).contains(n) else {
                    throw bad("ServerAliveInterval \(value) is out of range (0 to 86400 seconds)")
                }
                config.serverAliveInterval = n
            case "serveralivecountmax":
                let n = try int()
                guard (1...1000).contains(n) else {
                    throw bad("ServerAliveCountMax \(value) is out of range (1 to 1000)")
                }
                config.serverAliveCountMax = n
            case "proxyjump": config.proxyJump = value.lowercased() == "none" ? nil : value
            default: break
            }
        }
        config.hostName = expand(
            hostName ?? alias, home: home, localUser: localUser, host: alias, remoteUser: nil, port: nil)
        let remoteUser = config.user ?? localUser
        let tokens = { (s: String) in
            expand(
                s, home: home, localUser: localUser, host: config.hostName, remoteUser: remoteUser,
                port: config.port)
        }
        config.identityFiles = rawIdentityFiles.map(tokens)
        config.userKnownHostsFiles = (rawKnownHosts ?? ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"])
            .filter { $0.lowercased() != "none" }.map(tokens)
        config.globalKnownHostsFiles =
            (rawGlobalKnownHosts ?? ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"])
            .filter { $0.lowercased() != "none" }.map(tokens)
        return config
    }

    /// Whether `host` matches a `Host` line's patterns: some pattern matches and no negated one.
    public static func hostMatches(_ host: String, patterns: [String]) -> Bool {
        var matched = false
        for pattern in patterns {
            if pattern.hasPrefix("!") {
                if glob(String(pattern.dropFirst()), host) { return false }
            } else if glob(pattern, host) {
                matched = true
            }
        }
        return matched
    }

    /// `*` and `?` wildcard matching, case-insensitive like OpenSSH's host patterns.
    static func glob(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.lowercased()), t = Array(text.lowercased())
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == "?" || p[pi] == t[ti]) {
                pi += 1
                ti += 1
            } else if pi < p.count && p[pi] == "*" {
                star = pi
                mark = ti
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }

    /// A line's keyword and its arguments (`Key value…`, `Key=value`, "quoted words").
    static func split(_ line: String) -> (String, [String]) {
        var words: [String] = []
        var current = ""
        var inQuote = false
        var hasWord = false
        var keywordDone = false
        for ch in line {
            if ch == "\"" {
                inQuote.toggle()
                hasWord = true
            } else if !inQuote && (ch == " " || ch == "\t" || (ch == "=" && !keywordDone)) {
                if hasWord {
                    words.append(current)
                    current = ""
                    hasWord = false
                    keywordDone = true
                }
                if ch == "=" { keywordDone = true }
            } else {
                current.append(ch)
                hasWord = true
            }
        }
        if hasWord { words.append(current) }
        guard let first = words.first else { return ("", []) }
        return (first, Array(words.dropFirst()))
    }

    static func yesNo(_ value: String, _ bad: (String) -> VLLMCtlError) throws -> Bool {
        switch value.lowercased() {
        case "yes", "true": return true
        case "no", "false": return false
        default: throw bad("`\(value)` is not yes or no")
        }
    }

    /// `~` and OpenSSH's `%` tokens.
    static func expand(
        _ value: String, home: String, localUser: String, host: String, remoteUser: String?, port: Int?
    )
        -> String
    {
        var s = value
        if s == "~" {
            s = home
        } else if s.hasPrefix("~/") {
            s = home + s.dropFirst()
        }
        guard s.contains("%") else { return s }
        var out = ""
        var it = s.makeIterator()
        while let ch = it.next() {
            guard ch == "%", let t = it.next() else {
                out.append(ch)
                continue
            }
            switch t {
            case "%": out += "%"
            case "d": out += home
            case "u": out += localUser
            case "h": out += host
            case "r": out += remoteUser ?? localUser
            case "p": out += port.map(String.init) ?? "22"
            default: out += "%" + String(t)
            }
        }
        return out
    }
}

/// One hop of a ProxyJump: `[user@]host[:port]`.
public struct SSHJumpHost: Sendable, Equatable {
    public var user: String?
    public var host: String
    public var port: Int?

    /// The hops of a ProxyJump value, in order.
    public static func parse(_ value: String) -> [SSHJumpHost] {
        value.split(separator: ",").map { part in
            var rest = Substring(part.trimmingCharacters(in: .whitespaces))
            if rest.hasPrefix("ssh://") { rest = rest.dropFirst(6) }
            var user: String?
            if let at = rest.lastIndex(of: "@") {
                user = String(rest[..<at])
                rest = rest[rest.index(after: at)...]
            }
            var port: Int?
            if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
                let host = String(rest[rest.index(after: rest.startIndex)..<close])
                let after = rest[rest.index(after: close)...]
                if after.hasPrefix(":") { port = Int(after.dropFirst()) }
                return SSHJumpHost(user: user, host: host, port: port)
            }
            if let colon = rest.lastIndex(of: ":"), let p = Int(rest[rest.index(after: colon)...]) {
                port = p
                rest = rest[..<colon]
            }
            return SSHJumpHost(user: user, host: String(rest), port: port)
        }
    }
}
