import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct DoctorVerdictTests {
    // MARK: report

    @Test func exitStatusIsOneOnlyForProblems() {
        var report = DoctorReport(
            cluster: "c",
            checks: [
                .ok("a", "a", "fine"),
                DoctorCheck(id: "b", title: "b", verdict: .warning, detail: "hmm", fix: "do x"),
            ])
        #expect(report.exitStatus == 0)
        #expect(report.text.contains("warning  b  hmm"))
        #expect(report.text.contains("fix: do x"))
        report.checks.append(DoctorCheck(id: "c", title: "c", verdict: .problem, detail: "bad", fix: "do y"))
        #expect(report.exitStatus == 1)
        #expect(report.text.contains("1 problem, 1 warning"))
        let json = try? JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any]
        #expect(json?["ok"] as? Bool == false)
        #expect(json?["problems"] as? Int == 1)
        #expect((json?["checks"] as? [[String: Any]])?.last?["fix"] as? String == "do y")
    }

    @Test func anOkCheckHasNoFix() {
        #expect(DoctorCheck(id: "a", title: "a", verdict: .ok, detail: "d", fix: "ignored").fix == nil)
    }

    // MARK: SSH

    @Test func openSSHVersionFromTheBanner() {
        #expect(SSHAdvice.openSSHVersion(banner: "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")! == (9, 2))
        #expect(SSHAdvice.openSSHVersion(banner: "SSH-2.0-OpenSSH_7.4")! == (7, 4))
        #expect(SSHAdvice.openSSHVersion(banner: "SSH-2.0-dropbear_2022.83") == nil)
        #expect(SSHAdvice.refusesSHA1RSA(banner: "SSH-2.0-OpenSSH_8.8") == true)
        #expect(SSHAdvice.refusesSHA1RSA(banner: "SSH-2.0-OpenSSH_8.7") == false)
        #expect(SSHAdvice.libssh2SignsRSAWithSHA1("1.10.0"))
        #expect(!SSHAdvice.libssh2SignsRSAWithSHA1("1.11.0"))
    }

    let modern = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
    let rsa = SSHIdentity(name: "/k/id_rsa", type: "ssh-rsa")
    let ed = SSHIdentity(name: "/k/id_ed25519", type: "ssh-ed25519")

    @Test func onlyAnRSAKeyAgainstModernOpenSSHIsAProblem() {
        let v = SSHAdvice.identity(
            candidates: [rsa], banner: modern, libssh2Version: "1.10.0", loggedInWith: nil)
        #expect(v.verdict == .problem)
        #expect(v.detail.contains("OpenSSH 9.2 refuses"))
        #expect(v.fix?.contains("ssh-keygen -t ed25519") == true)
    }

    @Test func rsaIsFineWithANewerLibssh2OrAnOldServer() {
        #expect(
            SSHAdvice.identity(candidates: [rsa], banner: modern, libssh2Version: "1.11.0", loggedInWith: nil)
                .verdict
                == .ok)
        #expect(
            SSHAdvice.identity(
                candidates: [rsa], banner: "SSH-2.0-OpenSSH_7.4", libssh2Version: "1.10.0", loggedInWith: nil
            ).verdict == .ok)
    }

    @Test func rsaFirstThenEd25519IsAWarning() {
        let v = SSHAdvice.identity(
            candidates: [rsa, ed], banner: modern, libssh2Version: "1.10.0", loggedInWith: nil)
        #expect(v.verdict == .warning)
        #expect(v.detail.contains("next: /k/id_ed25519"))
    }

    @Test func aLoginWithRSAOnAServerThatStillAllowsItIsAWarning() {
        let v = SSHAdvice.identity(
            candidates: [rsa], banner: modern, libssh2Version: "1.10.0", loggedInWith: "/k/id_rsa")
        #expect(v.verdict == .warning)
        let ok = SSHAdvice.identity(
            candidates: [ed], banner: modern, libssh2Version: "1.10.0", loggedInWith: "/k/id_ed25519")
        #expect(ok.verdict == .ok)
    }

    @Test func noKeyAtAllIsAProblem() {
        let v = SSHAdvice.identity(
            candidates: [], banner: modern, libssh2Version: "1.10.0", loggedInWith: nil)
        #expect(v.verdict == .problem)
    }

    @Test func agentIdentitiesAnswer() {
        func string(_ bytes: [UInt8]) -> [UInt8] {
            let n = UInt32(bytes.count)
            return [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + bytes
        }
        let blob = string(Array("ssh-ed25519".utf8)) + string([1, 2, 3])
        let message: [UInt8] = [12, 0, 0, 0, 1] + string(blob) + string(Array("me@laptop".utf8))
        let ids = SSHAdvice.agentIdentities(Data(message))
        #expect(ids == [SSHIdentity(name: "ssh-agent key me@laptop", type: "ssh-ed25519", fromAgent: true)])
        #expect(SSHAdvice.agentIdentities(Data([5])) == nil)
    }

    // MARK: proxies

    @Test func noProxyMatchingAsCurlDoes() {
        #expect(ProxyAdvice.isExempt("node1.cluster.org", noProxy: "localhost, .cluster.org"))
        #expect(ProxyAdvice.isExempt("node1.cluster.org", noProxy: "cluster.org"))
        #expect(!ProxyAdvice.isExempt("node1.othercluster.org", noProxy: "cluster.org"))
        #expect(ProxyAdvice.isExempt("10.77.0.11", noProxy: "10.0.0.0/8"))
        #expect(!ProxyAdvice.isExempt("10.77.0.11", noProxy: "10.78.0.0/16"))
        #expect(ProxyAdvice.isExempt("anything", noProxy: "*"))
        #expect(ProxyAdvice.isExempt("10.77.0.11", noProxy: "10.77.0.11"))
    }

    @Test func aProxyThatWouldCatchTheNodesIsAWarningWithTheNoProxyLine() {
        let nodes = ["node1", "10.77.0.11"]
        let v = ProxyAdvice.verdict(environment: ["http_proxy": "http://p:3128"], targets: nodes)
        #expect(v.verdict == .warning)
        #expect(v.detail.contains("vllmctl ignores the environment's proxies"))
        #expect(v.fix?.contains("node1,10.77.0.11") == true)
        let exempt = ProxyAdvice.verdict(
            environment: ["http_proxy": "http://p:3128", "no_proxy": "node1,10.0.0.0/8"], targets: nodes)
        #expect(exempt.verdict == .ok)
        #expect(ProxyAdvice.verdict(environment: [:], targets: nodes).verdict == .ok)
        #expect(ProxyAdvice.verdict(environment: ["HTTPS_PROXY": "x"], targets: nodes).verdict == .ok)
    }

    // MARK: Slurm

    let partitions = SlurmAdvice.parsePartitions(
        """
        PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL Default=YES MaxTime=UNLIMITED State=UP TotalNodes=2 TRES=cpu=16,mem=32000M,node=2,billing=16,gres/gpu=4
        PartitionName=gpu AllowGroups=ALL AllowAccounts=proj1,proj2 AllowQos=ALL Default=NO State=UP TotalNodes=8
        PartitionName=old AllowAccounts=ALL AllowQos=ALL State=DOWN
        """)

    func partition(_ name: String?, account: String? = nil) -> DoctorVerdict {
        SlurmAdvice.partition(
            named: name, account: account, qos: nil, partitions: partitions, profile: "p", configFile: "c"
        ).verdict
    }

    @Test func partitionVerdicts() {
        #expect(partitions.count == 3)
        #expect(partition("debug") == .ok)
        #expect(partition(nil) == .ok)
        #expect(partition("nope") == .problem)
        #expect(partition("old") == .problem)
        #expect(partition("gpu", account: "proj1") == .ok)
        #expect(partition("gpu", account: "other") == .problem)
        let v = SlurmAdvice.partition(
            named: "nope", account: nil, qos: nil, partitions: partitions, profile: "p", configFile: "c.yaml")
        #expect(v.fix?.contains("debug, gpu, old") == true)
        #expect(v.fix?.contains("c.yaml") == true)
    }

    @Test func associationVerdicts() {
        let assocs = SlurmAdvice.parseAssociations("proj1||normal,high\nproj2|gpu|normal\n")
        #expect(assocs.count == 2)
        func verdict(_ account: String?, _ qos: String?) -> DoctorVerdict {
            SlurmAdvice.associations(
                assocs, user: "me", account: account, qos: qos, partition: "gpu", profile: "p",
                configFile: "c"
            ).verdict
        }
        #expect(verdict(nil, nil) == .ok)
        #expect(verdict("proj2", "normal") == .ok)
        #expect(verdict("proj3", nil) == .problem)
        #expect(verdict("proj2", "high") == .problem)
        #expect(verdict("proj1", "high") == .ok)
        #expect(
            SlurmAdvice.associations(
                [], user: "me", account: nil, qos: nil, partition: nil, profile: "p", configFile: "c"
            )
            .verdict == .problem)
    }

    @Test func programsFoundOrNot() {
        let found = SlurmAdvice.parsePrograms(
            "sbatch /usr/bin/sbatch\nsqueue /usr/bin/squeue\nsacct /usr/bin/sacct\nscancel /usr/bin/scancel\nscontrol \nsacctmgr \nsinfo \n"
        )
        #expect(found.count == 4)
        #expect(SlurmAdvice.programs(found, remote: nil).verdict == .ok)
        let missing = SlurmAdvice.programs(["squeue": "/x"], remote: "login")
        #expect(missing.verdict == .problem)
        #expect(missing.fix?.contains("~/.bashrc") == true)
    }

    @Test func testOnlyArgvAsksForGPUsTheWayTheProfileDoes() {
        var s = DeploySettings()
        s.partition = "gpu"
        s.gpus = 2
        s.gpuRequest = .gres
        #expect(SlurmAdvice.testOnlyArgv(s).contains("--gres=gpu:2"))
        s.gpuRequest = .gpus
        #expect(SlurmAdvice.testOnlyArgv(s).contains("--gpus=2"))
        #expect(SlurmAdvice.testOnlyArgv(s).contains("--partition=gpu"))
        let parsed = SlurmAdvice.parseTestOnly(
            "sbatch: Job 101 to start at 2026-11-29T17:38:58 using 1 processors on nodes node1 in partition debug"
        )
        #expect(parsed?.nodes == "node1")
        let refused = SlurmAdvice.request(
            s,
            result: CommandResult(
                status: 1, stdout: "", stderr: "sbatch: error: invalid partition specified: x"))
        #expect(refused.verdict == .problem)
        #expect(refused.fix?.contains("sinfo -s") == true)
    }

    // MARK: workdir

    @Test func workdirVerdicts() throws {
        let writable = try #require(WorkdirAdvice.parse("state=dir\nwritable=yes\nfstype=nfs\n"))
        #expect(
            WorkdirAdvice.verdict(path: "/w", probe: writable, profile: "p", configFile: "c").verdict == .ok)
        let readOnly = try #require(
            WorkdirAdvice.parse("state=dir\nwritable=no mktemp: Permission denied\nfstype=nfs"))
        let v = WorkdirAdvice.verdict(path: "/w", probe: readOnly, profile: "p", configFile: "c")
        #expect(v.verdict == .problem)
        #expect(v.detail.contains("Permission denied"))
        let blocked = try #require(
            WorkdirAdvice.parse("state=missing\nancestor=/f\nwritable=no\nfstype=ext2/ext3"))
        #expect(
            WorkdirAdvice.verdict(path: "/f/w", probe: blocked, profile: "p", configFile: "c").verdict
                == .problem)
        let creatable = try #require(
            WorkdirAdvice.parse("state=missing\nancestor=/home/me\nwritable=yes\nfstype=nfs"))
        #expect(
            WorkdirAdvice.verdict(path: "/home/me/w", probe: creatable, profile: "p", configFile: "c").verdict
                == .ok)
        let tmp = try #require(WorkdirAdvice.parse("state=dir\nwritable=yes\nfstype=tmpfs"))
        #expect(
            WorkdirAdvice.verdict(path: "/tmp/w", probe: tmp, profile: "p", configFile: "c").verdict
                == .warning)
    }

    @Test func gatherScriptRoundTrip() async throws {
        var s = DeploySettings()
        s.partition = "debug"
        let gather = DoctorGather(settings: s, workdir: "~/my dir")
        #expect(gather.script.contains("\"$HOME\"/'my dir'"))
        let parsed = DoctorGather.parse(
            "@@vllmctl-doctor user\nalice\n@@vllmctl-doctor-status 0\n@@vllmctl-doctor ping\nboom\nx\n@@vllmctl-doctor-status 1\n"
        )
        #expect(parsed["user"]?.stdout == "alice")
        #expect(parsed["ping"]?.status == 1)
        #expect(parsed["ping"]?.stdout == "boom\nx")
        // The real script, run by a local shell, reports every step.
        let dir = NSTemporaryDirectory() + "doctor-gather-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let result = try await LocalHost().run(
            ["sh", "-c", DoctorGather(settings: s, workdir: dir).script], input: nil, timeout: .seconds(30))
        let steps = DoctorGather.parse(result.stdout)
        #expect(Set(steps.keys) == Set(gather.steps.map(\.name)))
        #expect(steps["workdir"]?.stdout.contains("state=dir") == true)
        #expect(steps["workdir"]?.stdout.contains("writable=yes") == true)
    }
}
