import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct DeployPlanTests {
    static let templates = ScriptTemplates(directories: [repoRoot + "/templates"])

    static func settings(_ edit: (inout DeploySettings) -> Void = { _ in }) -> DeploySettings {
        var s = DeploySettings()
        s.model = "Qwen/Qwen2.5-14B-Instruct"
        s.servedName = "qwen2.5-14b"
        s.partition = "gpu"
        s.account = "proj-42"
        s.qos = "normal"
        s.time = "04:00:00"
        s.gpus = 2
        s.cpus = 16
        s.memory = "64G"
        s.tensorParallelSize = 2
        s.dtype = "bfloat16"
        s.maxModelLen = 32768
        s.gpuMemoryUtilization = 0.9
        s.guidedDecodingBackend = "outlines"
        s.uvicornLogLevel = "warning"
        s.maxLogLen = 100
        s.setup = ["module load cuda/12.1", "source ~/venvs/vllm/bin/activate"]
        s.vllmArgs = ["--enable-prefix-caching"]
        edit(&s)
        return s
    }

    static func plan(_ s: DeploySettings, name: String = "qwen2.5-14b") throws -> DeployPlan {
        try DeployPlan(
            name: name, cluster: "hpc", settings: s, workdir: "/scratch/alice/vllmctl",
            stamp: "20260101-000000-abcd")
    }

    static func checkGolden(_ rendered: String, _ file: String) throws {
        let path = fixtures + "/golden/" + file
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try FileManager.default.createDirectory(
                atPath: fixtures + "/golden", withIntermediateDirectories: true)
            try rendered.write(toFile: path, atomically: true, encoding: .utf8)
        }
        let golden = try String(contentsOfFile: path, encoding: .utf8)
        #expect(
            rendered == golden,
            "rendered script differs from \(path); rerun with UPDATE_GOLDEN=1 if the change is intended")
    }

    @Test func goldenGresScript() throws {
        let plan = try Self.plan(
            Self.settings {
                $0.exclusive = true; $0.constraint = "a100&ib"; $0.exclude = "gpu[01-03]"
            })
        try Self.checkGolden(
            try Self.templates.render("single-node", context: plan.renderContext), "single-node-gres.sbatch")
    }

    @Test func goldenGpusScriptWithApiServerForm() throws {
        let plan = try Self.plan(
            Self.settings {
                $0.gpuRequest = .gpus
                $0.nodelist = "gpu07"
                $0.serverCommand = ["python", "-m", "vllm.entrypoints.openai.api_server"]
                $0.port = 8001
                $0.host = "hostname"
            })
        try Self.checkGolden(
            try Self.templates.render("single-node", context: plan.renderContext), "single-node-gpus.sbatch")
    }

    @Test func serverArgvCarriesEveryOption() throws {
        let argv = try Self.plan(Self.settings { $0.pipelineParallelSize = 1 }).serverArgv
        #expect(
            argv.starts(with: [
                "vllm", "serve", "Qwen/Qwen2.5-14B-Instruct", "--host", "0.0.0.0", "--served-model-name",
                "qwen2.5-14b",
            ]))
        for flag in [
            "--dtype", "--tensor-parallel-size", "--pipeline-parallel-size", "--gpu-memory-utilization",
            "--max-model-len",
            "--guided-decoding-backend", "--uvicorn-log-level", "--max-log-len", "--enable-prefix-caching",
        ] {
            #expect(argv.contains(flag), "missing \(flag)")
        }
        #expect(!argv.contains("--api-key"))
        #expect(!argv.contains("--port"))
    }

    @Test func nonsenseIsRejectedBeforeSubmission() {
        let bad: [(String, (inout DeploySettings) -> Void)] = [
            (
                "tp2 with 0 GPUs",
                {
                    $0.gpus = 0; $0.tensorParallelSize = 2
                }
            ),
            (
                "tp4 with 2 GPUs",
                {
                    $0.gpus = 2; $0.tensorParallelSize = 4
                }
            ),
            ("malformed time", { $0.time = "4 hours" }),
            ("time with letters", { $0.time = "01:00:xx" }),
            ("bad memory", { $0.memory = "lots" }),
            ("utilization > 1", { $0.gpuMemoryUtilization = 1.5 }),
            ("port 0", { $0.port = 0 }),
            (
                "two nodes on single-node",
                {
                    $0.nodes = 2; $0.template = "single-node"
                }
            ),
            ("hostile partition", { $0.partition = "gpu\n#SBATCH --uid=0" }),
            ("partition with space", { $0.partition = "gpu x" }),
            ("key in vllm args", { $0.vllmArgs = ["--api-key", "sk-secret"] }),
            ("key= in vllm args", { $0.vllmArgs = ["--api-key=sk-secret"] }),
            // vLLM reads `_` as `-`, and argparse takes unambiguous prefixes.
            ("api_key= in vllm args", { $0.vllmArgs = ["--api_key=sk-leak"] }),
            ("API_KEY in vllm args", { $0.vllmArgs = ["--API_KEY", "sk-leak"] }),
            ("--api-k prefix in vllm args", { $0.vllmArgs = ["--api-k", "sk-leak"] }),
            ("--api prefix in vllm args", { $0.vllmArgs = ["--api=sk-leak"] }),
            ("port in vllm args", { $0.vllmArgs = ["--port", "9"] }),
            ("huge ready timeout", { $0.readyTimeout = 1e300 }),
            ("infinite ready timeout", { $0.readyTimeout = .infinity }),
            ("hostile host", { $0.host = "$(id)" }),
        ]
        for (label, edit) in bad {
            #expect(throws: VLLMCtlError.self, "\(label)") { try Self.plan(Self.settings(edit)) }
        }
        #expect(throws: VLLMCtlError.self) { try Self.plan(Self.settings(), name: "x; rm -rf ~") }
        #expect(throws: VLLMCtlError.self) {
            try DeployPlan(
                name: "ok", cluster: "c", settings: Self.settings(), workdir: "/scratch/with space",
                stamp: "s")
        }
    }

    @Test func otherFlagsNamedLikeTheKeyAreFine() {
        for flag in ["--api-server-count", "--api-server-count=2", "--enable-prefix-caching", "--a"] {
            #expect(
                !DeployPlan.namesTheAPIKey(flag.split(separator: "=").first.map(String.init) ?? flag),
                "\(flag)")
        }
    }

    @Test func errorsSayWhatToDo() {
        let error = #expect(throws: VLLMCtlError.self) {
            try Self.plan(
                Self.settings {
                    $0.gpus = 0; $0.tensorParallelSize = 2
                })
        }
        #expect("\(error.map { "\($0)" } ?? "no error")".contains("--gpus 2"))
    }

    @Test func derivedNames() {
        #expect(Validate.derivedName(from: "Qwen/Qwen2.5-14B-Instruct") == "qwen2.5-14b-instruct")
        #expect(Validate.derivedName(from: "/models/my model!") == "my-model")
        #expect(Validate.derivedName(from: "x; rm -rf ~") == "x-rm-rf")
    }
}

@Suite struct HostileValueTests {
    static let hostileModel = "x; rm -rf ~; touch CANARY_model $(touch CANARY_subst) `touch CANARY_tick`"

    func hostilePlan(dir: String) throws -> DeployPlan {
        let settings = DeployPlanTests.settings {
            $0.model = Self.hostileModel
            $0.servedName = "it's \"$(touch CANARY_served)\""
            $0.vllmArgs = ["--chat-template", "; touch CANARY_arg", "$(touch CANARY_arg2)"]
            $0.dtype = "bfloat16' ; touch CANARY_dtype; '"
            $0.guidedDecodingBackend = "`touch CANARY_backend`"
            $0.setup = []
            $0.serverCommand = ["/bin/true", "$(touch CANARY_cmd)"]
        }
        return try DeployPlan(name: "hostile", cluster: "c", settings: settings, workdir: dir, stamp: "s")
    }

    @Test func renderedScriptParsesWithBashN() async throws {
        let dir = try temporaryDirectory()
        let script = try DeployPlanTests.templates.render(
            "single-node", context: try hostilePlan(dir: dir).renderContext)
        let path = dir + "/job.sbatch"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try await sh(["bash", "-n", path])
        #expect(result.status == 0, "bash -n: \(result.stderr)")
        #expect(script.contains(Shell.quote(Self.hostileModel)))
    }

    @Test func nothingHostileExecutes() async throws {
        let dir = try temporaryDirectory()
        let plan = try hostilePlan(dir: dir)
        try FileManager.default.createDirectory(atPath: plan.deployDir, withIntermediateDirectories: true)
        let script = try DeployPlanTests.templates.render("single-node", context: plan.renderContext)
        let path = plan.deployDir + "/job.sbatch"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        // No api_key file: the runtime stops right after every assignment has run.
        let result = try await sh(["bash", "-c", "cd \(Shell.quote(plan.deployDir)) && bash ./job.sbatch"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("api_key is missing"))
        let left = try FileManager.default.contentsOfDirectory(atPath: plan.deployDir).filter {
            $0.contains("CANARY")
        }
        #expect(left.isEmpty, "executed: \(left)")
        // And the values arrive intact: print the server array the script built.
        let probe =
            script.replacingOccurrences(of: "{{> vllmctl-runtime}}", with: "")
            .components(separatedBy: "# ---- vllmctl runtime")[0]
            + "\nprintf '%s\\n' \"${VLLMCTL_SERVER[@]}\"\n"
        let printed = try await sh(["bash", "-c", probe])
        let words = printed.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(words.contains(Self.hostileModel))
        #expect(words.contains("; touch CANARY_arg"))
        #expect(words.contains("bfloat16' ; touch CANARY_dtype; '"))
    }
}
