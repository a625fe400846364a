import CCurl
import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What `vllmctl doctor` is asked to check.
public struct DoctorOptions: Sendable {
    /// `--config`; nil: `$VLLMCTL_CONFIG`, else the default location.
    public var configPath: String?
    /// `--cluster`; nil: the configuration's default.
    public var cluster: String?
    public var environment: [String: String]
    /// Submit a small job that writes a file in the workdir, to see that the compute nodes
    /// share it with the login node (uses the queue, so off by default).
    public var submitProbe: Bool
    /// The local port `vllmctl tunnel` would listen on.
    public var tunnelPort: Int
    /// How long the probe job may take, queueing included.
    public var probeTimeout: Double

    public init(
        configPath: String? = nil, cluster: String? = nil, environment: [String: String],
        submitProbe: Bool = false, tunnelPort: Int = 8000, probeTimeout: Double = 120
    ) {
        self.configPath = configPath
        self.cluster = cluster
        self.environment = environment
        self.submitProbe = submitProbe
        self.tunnelPort = tunnelPort
        self.probeTimeout = probeTimeout
    }
}

/// `vllmctl doctor`: checks the configuration, SSH, Slurm, the workdir, proxies, libcurl and
/// the tunnel's port, and says for each what to do when it is not ok. The verdicts are drawn
/// by the pure functions in `SSHAdvice`, `SlurmAdvice`, `WorkdirAdvice` and `ProxyAdvice`;
/// this type only runs the commands.
///
/// Nothing it does changes anything kept: known_hosts is not written (an unknown host key is
/// accepted for this one session, and no password is sent to such a host), the workdir is
/// tested with a temporary file, and `sbatch --test-only` submits nothing. Only
/// `submitProbe` runs a job.
public struct Doctor: Sendable {
    public let options: DoctorOptions

    public init(options: DoctorOptions) {
        self.options = options
    }

    public func run() async -> DoctorReport {
        let start = Date()
        var run = Run(options: options)
        await run.all()
        return DoctorReport(
            cluster: run.profile?.name, checks: run.checks, seconds: Date().timeIntervalSince(start))
    }
}

/// One run's state: the checks so far and what later checks need.
private struct Run {
    let options: DoctorOptions
    var checks: [DoctorCheck] = []
    var profile: ClusterProfile?
    var configFile = "the configuration"
    var host: (any ClusterHost)?
    var remoteName: String?
    var programs: [String: String] = [:]
    var nodeTargets: [String] = []

    init(options: DoctorOptions) { self.options = options }

    var environment: [String: String] { options.environment }

    mutating func add(
        _ id: String, _ title: String, _ result: (verdict: DoctorVerdict, detail: String, fix: String?)
    ) {
        checks.append(
            DoctorCheck(id: id, title: title, verdict: result.verdict, detail: result.detail, fix: result.fix)
        )
    }

    mutating func all() async {
        config()
        if let profile {
            if let alias = profile.sshHost {
                await ssh(alias: alias)
            } else {
                host = LocalHost()
            }
            if let host {
                await cluster(host, profile)
            }
        }
        proxies()
        libcurl()
        tunnelPort()
    }

    // MARK: configuration

    mutating func config() {
        let (path, explicit) = ConfigLocation.resolve(explicit: options.configPath, environment: environment)
        configFile = path
        let config: Config
        do {
            config = try ConfigLocation.load(explicit: options.configPath, environment: environment)
        } catch {
            add(
                "config", "config file",
                (.problem, "\(error)", "Fix the file, or write a commented one with `vllmctl config init`"))
            return
        }
        let found = FileManager.default.fileExists(atPath: path)
        do {
            let profile = try config.cluster(named: options.cluster)
            self.profile = profile
            let summary =
                "profile `\(profile.name)`\(profile.sshHost.map { " (ssh_host \($0))" } ?? " (Slurm on this machine)")"
            if found {
                let source = explicit ? "" : " (the default location)"
                add("config", "config file", (.ok, "\(path)\(source) parses; \(summary)", nil))
            } else {
                add(
                    "config", "config file",
                    (
                        .warning, "no file at \(path): built-in defaults, Slurm on this machine",
                        "Write one with `vllmctl config init` and set the cluster profile (partition, account, workdir)"
                    ))
            }
        } catch {
            add(
                "config", "config file",
                (
                    .problem, "\(path) parses, but \(error)",
                    "Pass --cluster NAME, or set `default_cluster` in \(path)"
                ))
        }
    }

    // MARK: SSH

    mutating func ssh(alias: String) async {
        let sshConfigPath = SSHConfig.defaultPath(environment: environment)
        let home = environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path
        let localUser = environment["USER"] ?? ProcessInfo.processInfo.userName
        let text = (try? String(contentsOfFile: sshConfigPath, encoding: .utf8)) ?? ""
        var connect: SSHConnectOptions
        do {
            connect = try SSHConnectOptions.resolve(
                alias: alias, configText: text, file: sshConfigPath, environment: environment, home: home,
                localUser: localUser)
        } catch {
            add(
                "ssh.alias", "ssh alias",
                (.problem, "\(error)", "Fix the entry for `\(alias)` in \(sshConfigPath)"))
            return
        }
        let sshCommand = sshConfigPath == home + "/.ssh/config" ? "ssh" : "ssh -F \(sshConfigPath)"
        let first = connect.jumpHosts.first ?? connect
        let via = connect.jumpHosts.first.map { ", via ProxyJump \($0.user)@\($0.host):\($0.port)" } ?? ""
        let resolved = "`\(alias)` → \(connect.user)@\(connect.host):\(connect.port)\(via)"
        if let problem = Self.lookUp(first.host) {
            let noEntry = first.host == alias && !text.contains(alias)
            add(
                "ssh.alias", "ssh alias",
                (
                    .problem,
                    noEntry
                        ? "no `Host \(alias)` entry in \(sshConfigPath), and `\(alias)` is not a host name (\(problem))"
                        : "\(resolved): `\(first.host)` does not resolve (\(problem))",
                    noEntry
                        ? "Add a `Host \(alias)` block with HostName, User and IdentityFile to \(sshConfigPath), or set `ssh_host:` in the profile to an alias that exists"
                        : "Correct HostName for `\(alias)` in \(sshConfigPath), or connect the VPN the cluster needs"
                ))
            return
        }
        add("ssh.alias", "ssh alias", (.ok, "\(resolved) (from \(sshConfigPath))", nil))

        // Identities: the agent's (unless IdentitiesOnly), then the key files that exist.
        var candidates: [SSHIdentity] = []
        if let socket = connect.agentSocket {
            switch AgentProbe.identities(socketPath: socket) {
            case .success(let keys):
                let types = keys.map { SSHIdentity(name: "", type: $0.type).shortType }
                add(
                    "ssh.agent", "ssh-agent",
                    (
                        .ok,
                        "\(socket): \(keys.count) key\(keys.count == 1 ? "" : "s")\(types.isEmpty ? "" : " (" + types.joined(separator: ", ") + ")")\(connect.identitiesOnly ? "; IdentitiesOnly: only those matching an IdentityFile are offered" : "")",
                        nil
                    ))
                if !connect.identitiesOnly { candidates += keys }
            case .failure(let error):
                add(
                    "ssh.agent", "ssh-agent",
                    (
                        .warning,
                        "SSH_AUTH_SOCK=\(socket) does not answer (\(error.message)); key files are tried without it",
                        "Start an agent (`eval \"$(ssh-agent)\"` then `ssh-add`), or unset SSH_AUTH_SOCK"
                    ))
            }
        } else {
            add("ssh.agent", "ssh-agent", (.ok, "no SSH_AUTH_SOCK: key files are used", nil))
        }
        for file in connect.identityFiles where FileManager.default.fileExists(atPath: file) {
            let info = PrivateKeyInfo(path: file)
            candidates.append(SSHIdentity(name: file, type: info.type, encrypted: info.encrypted))
        }

        // One login, recording the host key on the way; known_hosts is not written.
        let finding = Locked<SSHHostKeyFinding?>(nil)
        connect.hostKeyPolicy = .acceptOnce
        connect.onHostKey = { seen in finding.withLock { $0 = seen } }
        connect.connectTimeout = min(connect.connectTimeout, 10)
        for i in connect.jumpHosts.indices { connect.jumpHosts[i].hostKeyPolicy = .acceptOnce }
        let remote = RemoteHost(options: connect)
        let started = Date()
        var session: SSHSession?
        var loginError: (any Error)?
        do {
            session = try await remote.session()
        } catch {
            loginError = error
        }
        let loginSeconds = Date().timeIntervalSince(started)

        if let found = finding.value {
            let files = connect.knownHostsFiles.joined(separator: ", ")
            switch found.status {
            case .known:
                add(
                    "ssh.hostkey", "host key",
                    (.ok, "\(found.typeName) \(found.fingerprint) is in known_hosts", nil))
            case .unknown:
                add(
                    "ssh.hostkey", "host key",
                    (
                        .problem,
                        "\(found.hostPattern) is not in \(files.isEmpty ? "known_hosts" : files) (its \(found.typeName) key is \(found.fingerprint))",
                        "Check the fingerprint with the cluster admins, then record it: `\(sshCommand) \(alias) true` and answer yes, or run a vllmctl command once with `--accept-new-host-key`"
                    ))
            case .changed(let file, let line):
                add(
                    "ssh.hostkey", "host key",
                    (
                        .problem,
                        "CHANGED: the server shows a different \(found.typeName) key (\(found.fingerprint)) than \(file):\(line)",
                        "Ask the cluster admins for the new key's fingerprint; once confirmed, `ssh-keygen -R '\(found.hostPattern)' -f \(file)` and record the new one"
                    ))
            case .revoked(let file, let line):
                add(
                    "ssh.hostkey", "host key",
                    (
                        .problem,
                        "REVOKED: the server's \(found.typeName) key (\(found.fingerprint)) is marked @revoked at \(file):\(line)",
                        "Ask the cluster admins for the host's current key; do not remove the @revoked line unless they confirm the key is safe again"
                    ))
            }
        }
        let libssh2 = LibSSH2.problem == nil ? String(cString: libssh2_version(0)) : "not loaded"
        add(
            "ssh.identity", "ssh identity",
            SSHAdvice.identity(
                candidates: candidates, banner: finding.value?.serverBanner, libssh2Version: libssh2,
                loggedInWith: session?.authenticatedWith))

        guard let session else {
            let (detail, fix) = Self.split(loginError)
            add(
                "ssh.login", "ssh login", (.problem, detail + " (Slurm and workdir checks need a login)", fix)
            )
            return
        }
        let unknownNote =
            finding.value?.status == .unknown ? ", accepting the unknown host key for this check only" : ""
        add(
            "ssh.login", "ssh login",
            (
                .ok,
                "logged in as \(session.options.user) in \(Self.ms(loginSeconds))\(unknownNote) (\(finding.value?.serverBanner ?? "server"), libssh2 \(libssh2))",
                nil
            ))
        let rtStart = Date()
        do {
            _ = try await remote.run(["true"], timeout: .seconds(10))
            let rt = Date().timeIntervalSince(rtStart)
            if rt > 1 {
                add(
                    "ssh.latency", "round trip",
                    (
                        .warning, "one command took \(Self.ms(rt)): every vllmctl command makes several",
                        "Run vllmctl closer to the cluster (on the login node), or check the network path (VPN)"
                    ))
            } else {
                add("ssh.latency", "round trip", (.ok, "one command (`true`) took \(Self.ms(rt))", nil))
            }
        } catch {
            add(
                "ssh.latency", "round trip",
                (
                    .problem, "running `true` failed: \(error)",
                    "Check that the account has a working shell on \(alias)"
                ))
            return
        }
        host = remote
        remoteName = alias
    }

    /// nil when `host` resolves, else getaddrinfo's message.
    static func lookUp(_ host: String) -> String? {
        var hints = addrinfo()
        hints.ai_socktype = SocketType.stream
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &list)
        if rc == 0 {
            freeaddrinfo(list)
            return nil
        }
        return String(cString: gai_strerror(rc))
    }

    static func ms(_ seconds: Double) -> String { "\(Int((seconds * 1000).rounded())) ms" }

    /// An error's message and hint, for SSH errors that carry them.
    static func split(_ error: (any Error)?) -> (String, String?) {
        if let ssh = error as? SSHError { return ("\(ssh.host): \(ssh.message)", ssh.hint) }
        return (error.map { "\($0)" } ?? "unknown error", nil)
    }

    // MARK: Slurm and the workdir

    mutating func cluster(_ host: any ClusterHost, _ profile: ClusterProfile) async {
        let settings = profile.defaults
        let gather = DoctorGather(settings: settings, workdir: profile.workdir ?? "~/vllmctl")
        let steps: [String: CommandResult]
        do {
            let r = try await host.run(["sh", "-c", gather.script], timeout: .seconds(30))
            steps = DoctorGather.parse(r.stdout)
        } catch {
            add(
                "slurm.commands", "Slurm commands",
                (.problem, "cannot run `sh` on \(host.displayName): \(error)", "Check the account's shell"))
            return
        }
        let output = { (name: String) -> String in steps[name]?.stdout ?? "" }
        let succeeded = { (name: String) -> Bool in steps[name]?.status == 0 }

        programs = SlurmAdvice.parsePrograms(output("programs"))
        let programsVerdict = SlurmAdvice.programs(programs, remote: remoteName)
        add("slurm.commands", "Slurm commands", programsVerdict)
        if programsVerdict.verdict == .ok {
            slurm(settings: settings, profile: profile, output: output, succeeded: succeeded)
        }

        let path =
            output("workdir").split(separator: "\n").first { $0.hasPrefix("path=") }
            .map { String($0.dropFirst(5)) } ?? profile.workdir ?? "~/vllmctl"
        guard let probe = WorkdirAdvice.parse(output("workdir")) else {
            add(
                "workdir", "workdir",
                (.problem, "could not look at \(path): \(output("workdir"))", "Check the path"))
            return
        }
        let verdict = WorkdirAdvice.verdict(
            path: path, probe: probe, profile: profile.name, configFile: configFile)
        add("workdir", "workdir", verdict)
        guard options.submitProbe else { return }
        guard verdict.verdict != .problem, probe.state == .dir, programsVerdict.verdict == .ok else {
            add(
                "workdir.shared", "shared workdir",
                (
                    .problem, "not checked: Slurm and \(path) must work first",
                    "Fix the problems above (`mkdir -p \(Shell.quote(path))` if it is missing), then run `vllmctl doctor --submit-probe` again"
                ))
            return
        }
        add("workdir.shared", "shared workdir", await sharedProbe(host, profile, path: path))
    }

    mutating func slurm(
        settings: DeploySettings, profile: ClusterProfile, output: (String) -> String,
        succeeded: (String) -> Bool
    ) {
        let ping = output("ping").trimmingCharacters(in: .whitespacesAndNewlines)
        if programs["scontrol"] != nil {
            guard succeeded("ping") && ping.contains("UP") else {
                add(
                    "slurm.controller", "controller",
                    (
                        .problem, "`scontrol ping`: \(ping.replacingOccurrences(of: "\n", with: "; "))",
                        "The Slurm controller is not answering: try again in a minute; if it persists, ask the cluster admins"
                    ))
                return
            }
            add("slurm.controller", "controller", (.ok, ping, nil))
        }

        var blocked = false
        if succeeded("partitions") {
            let verdict = SlurmAdvice.partition(
                named: settings.partition, account: settings.account, qos: settings.qos,
                partitions: SlurmAdvice.parsePartitions(output("partitions")), profile: profile.name,
                configFile: configFile)
            add("slurm.partition", "partition", verdict)
            blocked = verdict.verdict == .problem
        }

        let user = output("user").trimmingCharacters(in: .whitespacesAndNewlines)
        if programs["sacctmgr"] != nil {
            if succeeded("assoc") {
                let verdict = SlurmAdvice.associations(
                    SlurmAdvice.parseAssociations(output("assoc")), user: user, account: settings.account,
                    qos: settings.qos, partition: settings.partition, profile: profile.name,
                    configFile: configFile)
                add("slurm.account", "account, QOS", verdict)
                blocked = blocked || verdict.verdict == .problem
            } else if settings.account != nil || settings.qos != nil {
                let said = output("assoc").trimmingCharacters(in: .whitespacesAndNewlines)
                add(
                    "slurm.account", "account, QOS",
                    (
                        .warning,
                        "cannot read your associations (`sacctmgr`: \(said)); the GPU request check below tries them",
                        "Ask the cluster admins which account and QOS you may use"
                    ))
            }
        }

        if !blocked {
            let request = CommandResult(
                status: succeeded("request") ? 0 : 1, stdout: "", stderr: output("request"))
            add("slurm.request", "GPU request", SlurmAdvice.request(settings, result: request))
        }

        // The nodes' names and addresses, for the proxy check.
        if succeeded("nodes") {
            var seen = Set<String>()
            for line in output("nodes").split(separator: "\n") {
                let f = line.split(separator: " ").map(String.init)
                guard f.count == 2 else { continue }
                for h in [f[0], f[1]] where seen.insert(h).inserted { nodeTargets.append(h) }
            }
        }
    }

    /// A job writes a file in the workdir on a compute node; the login node reads it.
    func sharedProbe(_ host: any ClusterHost, _ profile: ClusterProfile, path: String) async -> (
        verdict: DoctorVerdict, detail: String, fix: String?
    ) {
        let name = ".vllmctl-doctor-probe-\(UUID().uuidString.prefix(8).lowercased())"
        let file = path + "/" + name
        let settings = profile.defaults
        var argv = [
            "sbatch", "--parsable", "--job-name=vllmctl-doctor-probe", "--output=/dev/null",
            "--time=00:05:00", "--chdir=\(path)",
        ]
        if let p = settings.partition { argv.append("--partition=\(p)") }
        if let a = settings.account { argv.append("--account=\(a)") }
        if let q = settings.qos { argv.append("--qos=\(q)") }
        argv.append("--wrap=hostname > \(Shell.quote(file))")
        let jobID: String
        do {
            let r = try await host.run(argv, timeout: .seconds(30))
            jobID = try Sbatch.parseJobID(r, argv: argv)
        } catch {
            return (
                .problem, "the probe job was refused: \(error)", "Fix the Slurm settings above and try again"
            )
        }
        defer { Task { [host] in try? await host.removeFile(file) } }
        let deadline = Date().addingTimeInterval(options.probeTimeout)
        var last = "PENDING"
        while Date() < deadline {
            let r = try? await host.run(
                ["squeue", "--noheader", "--jobs=\(jobID)", "--format=%T %r"], timeout: .seconds(15))
            let line = r?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            if r?.status == 0 && line.isEmpty || r.map({ Squeue.isInvalidJobError($0.stderr) }) == true {
                break
            }
            if !line.isEmpty { last = line }
            try? await Task.sleep(for: .milliseconds(300))
        }
        if Date() >= deadline {
            _ = try? await host.run(Scancel(jobIDs: [jobID]).argv)
            return (
                .warning,
                "not checked: probe job \(jobID) was still \(last) after \(Int(options.probeTimeout)) s (cancelled)",
                "Try `vllmctl doctor --submit-probe` again when the queue is shorter"
            )
        }
        // The job has left the queue; its file should be here now.
        for _ in 0..<20 {
            if let data = try? await host.readFile(file) {
                let node = String(decoding: data, as: UTF8.self).trimmingCharacters(
                    in: .whitespacesAndNewlines)
                try? await host.removeFile(file)
                return (.ok, "probe job \(jobID) on \(node) wrote \(file); the login node read it", nil)
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        let accounting = Sacct(jobIDs: [jobID])
        let sacct = try? await host.run(accounting.argv)
        let job = sacct.flatMap { accounting.parse($0.stdout).first }
        let ended = job.map { " ended \($0.state.rawValue.uppercased()) on \($0.nodes)" } ?? " ended"
        return (
            .problem,
            "probe job \(jobID)\(ended), but \(file) is not visible on the login node: \(path) is not shared with the compute nodes (or they cannot write it)",
            "Set `workdir:` in the profile `\(profile.name)` of \(configFile) to a directory on a filesystem the compute nodes share (your home, /scratch/$USER, …)"
        )
    }

    // MARK: this machine

    mutating func proxies() {
        add("proxy", "proxies", ProxyAdvice.verdict(environment: environment, targets: nodeTargets))
    }

    mutating func libcurl() {
        if let problem = vc_load() {
            add(
                "libcurl", "libcurl",
                (
                    .problem, String(cString: problem),
                    "Install libcurl (Debian/Ubuntu: `apt install libcurl4`; RHEL: `dnf install libcurl`)"
                ))
        } else {
            add("libcurl", "libcurl", (.ok, "libcurl.so.4 loads", nil))
        }
    }

    mutating func tunnelPort() {
        let port = options.tunnelPort
        do {
            let listener = try LocalListener.bind(address: "127.0.0.1", port: port)
            close(listener.fd)
            add("tunnel.port", "tunnel port", (.ok, "127.0.0.1:\(port) is free for `vllmctl tunnel`", nil))
        } catch {
            let store = TunnelStore(
                records: DeploymentStore(
                    directory: DeploymentStore.defaultDirectory(environment: environment)))
            if let profile,
                let tunnel = store.open(cluster: profile.name).first(where: {
                    $0.localPort == port && TunnelStore.isRunning($0)
                })
            {
                add(
                    "tunnel.port", "tunnel port",
                    (
                        .ok, "127.0.0.1:\(port) is vllmctl's tunnel to \(tunnel.name) (job \(tunnel.jobID))",
                        nil
                    ))
                return
            }
            add(
                "tunnel.port", "tunnel port",
                (
                    .warning,
                    "127.0.0.1:\(port) is taken by another program: `vllmctl tunnel` needs another port",
                    "Use `vllmctl tunnel NAME --local-port 0` (any free port) or another port; `ss -ltnp 'sport = :\(port)'` shows who listens"
                ))
        }
    }
}
