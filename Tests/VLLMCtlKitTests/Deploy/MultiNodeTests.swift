import Foundation
import TestSupport
import Testing

@testable import VLLMCtlCLI
@testable import VLLMCtlKit

/// `--nodes N` (docs/MULTINODE.md): the plan's defaults, its checks before submission, and the
/// multi-node script.
@Suite struct MultiNodeTests {
    static func settings(_ edit: (inout DeploySettings) -> Void = { _ in }) -> DeploySettings {
        var s = DeploySettings()
        s.model = "meta-llama/Llama-3.1-70B-Instruct"
        s.servedName = "llama-70b"
        s.partition = "gpu"
        s.nodes = 2
        s.gpus = 4
        s.setup = ["source ~/venvs/vllm/bin/activate"]
        edit(&s)
        return s
    }

    static func plan(_ s: DeploySettings) throws -> DeployPlan {
        try DeployPlan(
            name: "llama", cluster: "hpc", settings: s, workdir: "/scratch/alice/vllmctl",
            stamp: "20260101-000000-abcd")
    }

    static func error(_ s: DeploySettings) -> String {
        do {
            _ = try plan(s)
            return ""
        } catch {
            return "\(error)"
        }
    }

    static func value(after flag: String, in argv: [String]) -> String? {
        argv.firstIndex(of: flag).flatMap { $0 + 1 < argv.count ? argv[$0 + 1] : nil }
    }

    @Test func twoNodesDefaultToTensorParallelPerNodeAndPipelineAcrossNodes() throws {
        let plan = try Self.plan(Self.settings())
        #expect(plan.template == "multi-node")
        #expect(plan.isMultiNode && plan.nodes == 2)
        let argv = plan.serverArgv
        #expect(Self.value(after: "--tensor-parallel-size", in: argv) == "4")
        #expect(Self.value(after: "--pipeline-parallel-size", in: argv) == "2")
        #expect(Self.value(after: "--distributed-executor-backend", in: argv) == "ray")
        let c = plan.renderContext
        #expect(c["nodes"] as? String == "2")
        #expect(c["gpus"] as? String == "4")
        #expect(c["total_gpus"] as? String == "8")
        #expect(c["ray_port"] as? String == "6379")
    }

    @Test func flagsMayReshapeWithinTheJob() throws {
        let pp4 = try Self.plan(Self.settings { $0.tensorParallelSize = 2 })
        #expect(Self.value(after: "--pipeline-parallel-size", in: pp4.serverArgv) == "4")
        let tp1 = try Self.plan(Self.settings { $0.pipelineParallelSize = 8 })
        #expect(Self.value(after: "--tensor-parallel-size", in: tp1.serverArgv) == "1")
        // A backend the user already names is not added twice.
        let given = try Self.plan(Self.settings { $0.vllmArgs = ["--distributed-executor-backend", "ray"] })
        #expect(given.serverArgv.filter { $0 == "--distributed-executor-backend" }.count == 1)
    }

    @Test func tensorParallelLargerThanANodeIsRefusedWithWhatFits() {
        let text = Self.error(Self.settings { $0.tensorParallelSize = 8 })
        #expect(text.contains("Tensor parallel 8 does not fit in one node's 4 GPUs"), "\(text)")
        #expect(text.contains("--gpus is per node"), "\(text)")
        #expect(text.contains("-t 4 --pipeline-parallel-size 2"), "\(text)")
        #expect(text.contains("-t 2 --pipeline-parallel-size 4"), "\(text)")
        #expect(text.contains("-t 1 --pipeline-parallel-size 8"), "\(text)")
    }

    @Test func sizesThatDoNotFillTheJobAreRefused() {
        let text = Self.error(
            Self.settings {
                $0.tensorParallelSize = 2; $0.pipelineParallelSize = 2
            })
        #expect(text.contains("= 4 GPUs, but the job has 2 nodes × 4 GPUs = 8"), "\(text)")
        #expect(text.contains("-t 4 --pipeline-parallel-size 2"), "\(text)")
        let odd = Self.error(
            Self.settings {
                $0.gpus = 4; $0.tensorParallelSize = 3
            })
        #expect(odd.contains("Tensor parallel 3"), "\(odd)")
    }

    @Test func otherRefusals() {
        for (label, edit) in [
            ("no GPUs", { (s: inout DeploySettings) in s.gpus = 0 }),
            ("zero nodes", { $0.nodes = 0 }),
            ("single-node template", { $0.template = "single-node" }),
            ("another backend", { $0.vllmArgs = ["--distributed-executor-backend", "mp"] }),
            ("another backend with =", { $0.vllmArgs = ["--distributed-executor-backend=mp"] }),
        ] as [(String, (inout DeploySettings) -> Void)] {
            #expect(!Self.error(Self.settings(edit)).isEmpty, "\(label)")
        }
        #expect(Self.error(Self.settings { $0.gpus = 0 }).contains("needs GPUs on every node"))
    }

    @Test func oneNodeIsUnchanged() throws {
        let plan = try Self.plan(
            Self.settings {
                $0.nodes = 1; $0.gpus = 2; $0.tensorParallelSize = 2
            })
        #expect(plan.template == "single-node")
        #expect(!plan.serverArgv.contains("--distributed-executor-backend"))
        #expect(!plan.serverArgv.contains("--pipeline-parallel-size"))
        #expect(plan.renderContext["ray_port"] == nil)
        // On one node --gpus is still the job's GPUs, and TP × PP may not exceed it.
        #expect(
            !Self.error(
                Self.settings {
                    $0.nodes = 1; $0.gpus = 4; $0.tensorParallelSize = 8
                }
            ).isEmpty)
    }

    @Test func fittingShapes() {
        #expect(
            DeployPlan.fittingShapes(nodes: 2, perNode: 4).map { "\($0.tp)x\($0.pp)" } == [
                "4x2", "2x4", "1x8",
            ])
        #expect(DeployPlan.fittingShapes(nodes: 3, perNode: 2).map { "\($0.tp)x\($0.pp)" } == ["2x3", "1x6"])
        #expect(DeployPlan.fittingShapes(nodes: 2, perNode: 0).isEmpty)
    }

    @Test func theScriptStartsRayOnEveryNodeAndKeepsTheRuntime() throws {
        let templates = ScriptTemplates(directories: [repoRoot + "/templates"])
        let plan = try Self.plan(Self.settings { $0.gpuRequest = .gpus })
        let script = try templates.render(plan.template, context: plan.renderContext)
        #expect(script.contains("#SBATCH --nodes=2\n"))
        #expect(script.contains("#SBATCH --ntasks-per-node=1\n"))
        #expect(script.contains("#SBATCH --gpus-per-node=4\n"))
        #expect(!script.contains("#SBATCH --gpus=4"))
        #expect(script.contains("VLLMCTL_GPUS_PER_NODE=4\n"))
        #expect(script.contains("srun --nodes=1 --ntasks=1"))
        #expect(script.contains("--distributed-executor-backend ray"))
        // The runtime partial: key from the file into the environment, readiness, connection files.
        #expect(script.contains("VLLM_API_KEY=\"$(< \"$VLLMCTL_DEPLOY_DIR/api_key\")\""))
        #expect(script.contains("server_connection_info.json"))
        #expect(!script.contains("--api-key"))
        let gres = try templates.render(plan.template, context: try Self.plan(Self.settings()).renderContext)
        #expect(gres.contains("#SBATCH --gres=gpu:4\n"))
        // bash reads it.
        let path = NSTemporaryDirectory() + "vllmctl-multinode-\(UUID().uuidString).sbatch"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let bash = Process()
        bash.executableURL = URL(fileURLWithPath: "/bin/bash")
        bash.arguments = ["-n", path]
        try bash.run()
        bash.waitUntilExit()
        #expect(bash.terminationStatus == 0)
    }

    @Test func hostlists() {
        #expect(Hostlist.expand("node[1-2]") == ["node1", "node2"])
        #expect(Hostlist.expand("node1") == ["node1"])
        #expect(Hostlist.expand("gpu[08-10,12],login1") == ["gpu08", "gpu09", "gpu10", "gpu12", "login1"])
        #expect(Hostlist.expand("a[1-2]-ib") == ["a1-ib", "a2-ib"])
        #expect(Hostlist.expand("weird[x]") == ["weird[x]"])
        #expect(Hostlist.expand("") == [])
    }
}

/// `vllmctl logs NAME --node NODE`, in process over a scripted cluster.
@Suite struct MultiNodeLogsTests {
    @Test func logsNodeShowsThatNodesRayLog() async throws {
        var twoNodes = job("60", "vllmctl-big")
        twoNodes.nodes = "node[1-2]"
        let h = try CommandHarness(host: schedulerHost([twoNodes]))
        let record = try h.deployment("big", id: "60")
        try "vllmctl: Ray worker on node2\n".write(
            toFile: record.deployDir + "/" + DeploymentFiles.rayLog(node: "node2", jobID: "60"),
            atomically: true,
            encoding: .utf8)
        try await h.run(["logs", "big", "--node", "node2"])
        #expect(h.written.value == "vllmctl: Ray worker on node2\n")
        let error = await #expect(throws: VLLMCtlError.self) {
            try await h.run(["logs", "big", "--node", "node3"])
        }
        #expect("\(error!)".contains("no Ray log for node3"), "\(error!)")
        #expect("\(error!)".contains("Its nodes are node1, node2"), "\(error!)")
        #expect(throws: (any Error).self) {
            try VLLMCtlCommand.parseAsRoot(["logs", "big", "--node", "../x"])
        }
        #expect(throws: (any Error).self) {
            try VLLMCtlCommand.parseAsRoot(["logs", "big", "--node", "node2", "--stderr"])
        }
    }
}
