import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// The OpenAI Python SDK (slurm/install-openai.sh) through an endpoint: one chat completion,
/// then one streamed. The base URL and the key are the SDK's own environment variables; the
/// key comes from a file (0600), so it is on no command line.
private let sdkClient = #"""
    import os, sys
    os.environ["OPENAI_BASE_URL"] = sys.argv[1]
    os.environ["OPENAI_API_KEY"] = open(sys.argv[2]).read().strip()
    from openai import OpenAI
    client = OpenAI()
    r = client.chat.completions.create(model="sim", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8)
    print("plain", r.choices[0].finish_reason, len(r.choices[0].message.content or ""))
    parts = 0
    for chunk in client.chat.completions.create(model="sim", messages=[{"role": "user", "content": "Say hi"}],
                                                max_tokens=8, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            parts += 1
    print("stream", parts)
    """#

/// The OpenAI SDK's venv, made by slurm/install-openai.sh (cluster-up runs it).
private let openAIPython = repoRoot + "/.cluster/openai-venv/bin/python"

extension LocalCluster {
    /// Issue 14 on the multi-host cluster: two replicas on two nodes, behind `vllmctl tunnel`
    /// from the laptop and `vllmctl gateway` on the login node, both at once. One deployment
    /// for every check: the split of 400 requests, a node's link going down and coming back,
    /// a server killed and its replica replaced, and the OpenAI SDK through the tunnel.
    @Suite struct ReplicaClusterTests {
        @Test func twoReplicasOnTwoNodesBehindTheTunnelAndTheGateway() async throws {
            let laptop = try CLI.laptop()
            let work = try temporaryDirectory()
            // Five of a node's 8 CPUs each: a node apiece, beside other jobs (no GPU: the
            // simulator needs none).
            let args = [
                "--cluster", "hpc", "--name", "balrc", "--replicas", "2", "--gpus", "0", "--cpus", "5",
                "--wait-all",
            ]
            try await laptop.withDeployment(args, timeout: .seconds(600)) { d in
                let keyFile = work + "/key"
                try LocalFiles.writeAtomically(Data(d.apiKey.utf8), to: keyFile, mode: 0o600)

                let opened = try await laptop.run([
                    "tunnel", "balrc", "--cluster", "hpc", "--background", "--local-port", "0",
                ])
                #expect(opened.status == 0, "stderr: \(opened.stderr)")
                let tunnelBase = try #require(
                    opened.stdout.firstMatch(of: /Tunnel open: (http:\/\/127\.0\.0\.1:\d+)/).map {
                        String($0.1)
                    },
                    "\(opened.stdout)")
                let gateway = try GatewayProcess(
                    name: "balrc", cli: try CLI(), port: try freePort(), log: work + "/gateway.log")
                let tunnel = EndpointUnderTest(label: "the tunnel", base: tunnelBase, host: .laptop)
                let viaGateway = EndpointUnderTest(label: "the gateway", base: gateway.base, host: nil)
                try await running(
                    {
                        let listening = try await viaGateway.waitForPage(seconds: 30) {
                            $0.replicas.count == 2
                        }
                        try #require(listening != nil, "the gateway did not serve its page")
                        let endpoints = [tunnel, viaGateway]
                        try await balancesEvenly(endpoints, keyFile: keyFile)
                        try await sdkThrough(tunnel, keyFile: keyFile)
                        try await survivesALinkDown(endpoints, keyFile: keyFile, work: work)
                        try await survivesAKillAndTakesTheReplacement(
                            endpoints, keyFile: keyFile, work: work, laptop: laptop)
                    }, thenAwaiting: gateway.stop)
                let log = (try? String(contentsOfFile: gateway.log, encoding: .utf8)) ?? ""
                print("gateway's log:\n\(log)")
            }
        }

        /// Runs `body` for every item at once; the results in the items' order.
        private func each<I: Sendable, T: Sendable>(
            _ items: [I], _ body: @escaping @Sendable (I) async throws -> T
        ) async throws -> [T] {
            try await withThrowingTaskGroup(of: (Int, T).self) { group in
                for (i, item) in items.enumerated() { group.addTask { (i, try await body(item)) } }
                var out: [(Int, T)] = []
                for try await r in group { out.append(r) }
                return out.sorted { $0.0 < $1.0 }.map(\.1)
            }
        }

        /// 400 chat requests, every third streamed, at concurrency 32 through each endpoint:
        /// all succeed, and each replica serves 30-70% of them.
        private func balancesEvenly(_ endpoints: [EndpointUnderTest], keyFile: String) async throws {
            let reports = try await each(endpoints) { e in
                try await e.load(keyFile: keyFile, count: 400, conc: 32, maxTokens: 8)
            }
            for (e, r) in zip(endpoints, reports) {
                print("split through \(e.label): \(r)")
                #expect(r.ok == 400, "\(e.label): \(r)")
                let counts = Array(r.served.values)
                #expect(counts.count == 2, "\(e.label): \(r.served)")
                let total = counts.reduce(0, +)
                #expect(total >= 400, "\(e.label): \(r.served)")
                for c in counts {
                    let share = Double(c) / Double(max(total, 1))
                    #expect((0.3...0.7).contains(share), "\(e.label): \(r.served)")
                }
            }
        }

        /// The OpenAI SDK with OPENAI_BASE_URL at the balancing tunnel: a completion, then a stream.
        private func sdkThrough(_ endpoint: EndpointUnderTest, keyFile: String) async throws {
            try #require(
                FileManager.default.isExecutableFile(atPath: openAIPython),
                "no OpenAI SDK venv: run `bash slurm/install-openai.sh` (cluster-up does)")
            let run = try await sh(
                endpoint.argv([openAIPython, "-c", sdkClient, endpoint.base + "/v1", keyFile]),
                timeout: .seconds(120))
            print("the OpenAI SDK through \(endpoint.label): \(run.stdout)")
            #expect(run.status == 0, "\(run.stderr)")
            let plain = run.stdout.firstMatch(of: /plain (\w+) (\d+)/)
            #expect(plain.map { Int($0.2) ?? 0 } ?? 0 > 0, "\(run.stdout)")
            let parts = run.stdout.firstMatch(of: /stream (\d+)/).flatMap { Int($0.1) } ?? 0
            #expect(parts > 0, "\(run.stdout)")
        }

        /// The harm both fault phases share: `count` requests through every endpoint at once;
        /// once each has seen 60 of them end, `harm` runs (its start is the time the leave is
        /// measured from), then the test waits until every endpoint's page shows `victim` out
        /// of rotation (at most `outWithin` s) and runs `afterOut`.
        private func loadWithHarm(
            _ endpoints: [EndpointUnderTest], victim: String, keyFile: String, work: String, tag: String,
            harm: () async throws -> Void, afterOut: () async throws -> Void
        ) async throws -> (reports: [ReplicaLoadReport], harmedAt: Double) {
            let triggers = endpoints.indices.map { work + "/\(tag)-trigger-\($0)" }
            async let loads = each(Array(zip(endpoints, triggers))) { e, trigger in
                try await e.load(
                    keyFile: keyFile, count: 300, conc: 32, maxTokens: 16, trigger: (60, trigger))
            }
            let deadline = Date().addingTimeInterval(120)
            while !triggers.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) && Date() < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            let harmedAt = Date().timeIntervalSince1970
            try await harm()
            let seenOut = try await each(endpoints) { e in
                try await e.waitForPage(seconds: 30) { $0.state(of: victim) != "in_rotation" } != nil
            }
            #expect(seenOut.allSatisfy { $0 }, "\(tag): \(victim) stayed in rotation: \(seenOut)")
            try await afterOut()
            return (try await loads, harmedAt)
        }

        /// What every fault phase expects of each endpoint's load: no request failed that had
        /// not started its response; the victim left rotation within `leaveWithin` s (one
        /// bound per endpoint, as seen on its page every 50 ms).
        private func expectSurvived(
            _ endpoints: [EndpointUnderTest], _ reports: [ReplicaLoadReport], victim: String,
            harmedAt: Double, leaveWithin: [Double], tag: String
        ) {
            for ((e, r), leaveWithin) in zip(zip(endpoints, reports), leaveWithin) {
                let left = r.secondsToLeave(victim, since: harmedAt)
                print(
                    "\(tag) through \(e.label): \(victim) left rotation after "
                        + "\(left.map { String(format: "%.2f s", $0) } ?? "never") "
                        + "(\(r.leaving(victim, since: harmedAt)?.why ?? "-")); \(r)")
                #expect(r.failedUnstarted == 0, "\(tag), \(e.label): \(r)")
                #expect(r.ok + r.failedStarted == 300, "\(tag), \(e.label): \(r)")
                #expect(
                    left != nil && left! <= leaveWithin,
                    "\(tag), \(e.label): left after \(String(describing: left))")
            }
        }

        /// After a fault: every endpoint shows `replicas` replicas in rotation (at most 60 s),
        /// and a short load reaches each of them.
        private func servesAgain(_ endpoints: [EndpointUnderTest], keyFile: String, tag: String) async throws
        {
            let back = try await each(endpoints) { e in
                try await e.waitForPage(seconds: 60) { $0.inRotation == 2 && $0.replicas.count == 2 }
            }
            for (e, page) in zip(endpoints, back) {
                #expect(page != nil, "\(tag): \(e.label) did not get both replicas back")
            }
            let reports = try await each(endpoints) { e in
                try await e.load(keyFile: keyFile, count: 60, conc: 8, maxTokens: 8)
            }
            for ((e, r), page) in zip(zip(endpoints, reports), back) {
                let before = Dictionary(
                    (page?.replicas ?? []).map { ("\($0.host):\($0.port)", $0.requests) }, uniquingKeysWith: +
                )
                let grew = r.served.filter { $0.value > (before[$0.key] ?? 0) }
                print("\(tag), back through \(e.label): \(r)")
                // Through SSH, an open to a node that was gone can stay pending at sshd for up to
                // a minute after the node is back (libssh2 opens one channel at a time): new
                // connections held up behind it move to the spare session, so none fails (502
                // here once in seven runs before that).
                #expect(r.ok == 60, "\(tag), \(e.label): \(r)")
                #expect(grew.count == 2, "\(tag), \(e.label): before \(before), after \(r.served)")
            }
        }

        /// Mid-run, one replica's node loses its link (`vc-nodeN-h` down on the login host)
        /// until both endpoints show it out of rotation; then it comes back (in awaited
        /// clean-up too, pass or fail). No request that had not started its response fails;
        /// it rejoins and serves again.
        private func survivesALinkDown(_ endpoints: [EndpointUnderTest], keyFile: String, work: String)
            async throws
        {
            let before = try #require(await endpoints[0].page())
            let victim = try #require(before.replicas.last.map { "\($0.host):\($0.port)" })
            let link = "vc-node\(try #require(nodeOf(victim), "\(victim)"))-h"
            let linkUp = { _ = try? await sh(["ip", "link", "set", link, "up"]) }
            let (reports, harmedAt) = try await running(
                {
                    try await loadWithHarm(
                        endpoints, victim: victim, keyFile: keyFile, work: work, tag: "link down",
                        harm: {
                            let down = try await sh(["ip", "link", "set", link, "down"])
                            #expect(down.status == 0, "\(down.stderr)")
                        },
                        afterOut: {
                            let up = try await sh(["ip", "link", "set", link, "up"])
                            #expect(up.status == 0, "\(up.stderr)")
                        })
                }, thenAwaiting: linkUp)
            expectSurvived(
                endpoints, reports, victim: victim, harmedAt: harmedAt,
                // The gateway: its connections to the node (requests stalled there, idle pooled
                // ones) send a keepalive probe after 1 s without traffic and fail 1.5 s later
                // unacknowledged: 2.5 s (1.8-1.9 s seen), + 2 s for load. The tunnel cannot see
                // the node's TCP (the login node's sshd holds it): its requests stall, so the
                // replica is checked within 0.5 s, and a check whose channel open is not
                // answered within 1 s fails, the re-check at once behind it: the issue's 2 s
                // (1.1-1.6 s in 15 of 16 runs, one of 2.64 s with other builds on the cores),
                // + 1 s for a loaded machine as for the kill; the figures are printed.
                leaveWithin: endpoints.map { $0.host == nil ? 4.5 : 3 }, tag: "link down")
            try await servesAgain(endpoints, keyFile: keyFile, tag: "link down")
        }

        /// Mid-run, one replica's server is killed (its job then ends): no request that had not
        /// started its response fails, it leaves rotation at once (the refusal is seen), and
        /// `scale NAME 2` brings a replacement that joins both endpoints without a restart.
        private func survivesAKillAndTakesTheReplacement(
            _ endpoints: [EndpointUnderTest], keyFile: String, work: String, laptop: CLI
        ) async throws {
            let before = try #require(await endpoints[0].page())
            let victim = try #require(before.replicas.first)
            let name = "\(victim.host):\(victim.port)"
            let node = try #require(nodeOf(name), "\(name)")
            let (reports, harmedAt) = try await loadWithHarm(
                endpoints, victim: name, keyFile: keyFile, work: work, tag: "kill",
                harm: {
                    let pids = try await killServer(node: node, port: victim.port)
                    #expect(!pids.isEmpty, "no server listened on \(name)")
                }, afterOut: {})
            expectSurvived(
                endpoints, reports, victim: name, harmedAt: harmedAt,
                // Seen at once (a refused connection, a reset): 2 s, + 1 s for a loaded machine.
                leaveWithin: endpoints.map { _ in 3 }, tag: "kill")
            // Its job ends with its server: the endpoints drop it, and a new replica replaces it.
            let gone = try await each(endpoints) { e in
                try await e.waitForPage(seconds: 30) { $0.state(of: name) == "absent" } != nil
            }
            #expect(gone.allSatisfy { $0 }, "the killed replica stayed: \(gone)")
            // (Waits for the new replica to be ready: on a shared cluster, for its node too.)
            let scale = try await laptop.run(
                ["scale", "balrc", "2", "--cluster", "hpc"], timeout: .seconds(600))
            print("scale: \(scale.stdout)")
            #expect(scale.status == 0, "\(scale.stdout) \(scale.stderr)")
            #expect(scale.stdout.contains("Added balrc@3"), "\(scale.stdout) \(scale.stderr)")
            try await servesAgain(endpoints, keyFile: keyFile, tag: "kill")
        }
    }
}
