import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct ConfigTests {
    func parse(_ text: String) throws -> Config {
        try ConfigParser(file: "/home/u/.config/vllmctl/config.yaml").parse(text)
    }

    @Test func readsProfilesAndPresets() throws {
        let config = try parse(
            """
            default_cluster: hpc
            clusters:
              hpc:
                ssh_host: login
                http_proxy: http://proxy.cluster:3128
                partition: gpu
                account: proj
                workdir: ~/vllm
                gpu_request: gpus
                setup: ["module load cuda"]
                server_command: vllm serve
            models:
              qwen:
                model: Qwen/Qwen2.5-14B-Instruct
                gpus: 2
                tensor_parallel_size: 2
                gpu_memory_utilization: 0.85
                vllm_args: ["--enable-prefix-caching"]
            """)
        let hpc = try config.cluster(named: nil)
        #expect(hpc.sshHost == "login")
        #expect(hpc.httpProxy == "http://proxy.cluster:3128")
        #expect(hpc.defaults.gpuRequest == .gpus)
        #expect(hpc.defaults.serverCommand == ["vllm", "serve"])
        #expect(config.models["qwen"]?.settings.tensorParallelSize == 2)
        #expect(config.models["qwen"]?.settings.gpuMemoryUtilization == 0.85)
    }

    @Test func unknownKeyNamesFileLineAndKey() throws {
        let error = #expect(throws: VLLMCtlError.self) {
            try parse(
                """
                clusters:
                  hpc:
                    partition: gpu
                    partiton: typo
                """)
        }
        guard case .config(let file, let line, let key, let problem) = error else {
            Issue.record("wrong error"); return
        }
        #expect(file == "/home/u/.config/vllmctl/config.yaml")
        #expect(line == 4)
        #expect(key == "clusters.hpc.partiton")
        #expect(problem.contains("unknown key"))
        let text = "\(error.map { "\($0)" } ?? "no error")"
        #expect(text.contains("config.yaml:4"))
        #expect(text.contains("clusters.hpc.partiton"))
    }

    @Test func wrongTypesAreReported() {
        let cases: [(String, Int, String)] = [
            ("models:\n  m:\n    model: x\n    gpus: two\n", 4, "models.m.gpus"),
            ("clusters:\n  c:\n    exclusive: maybe\n", 3, "clusters.c.exclusive"),
            ("clusters:\n  c:\n    gpu_request: cards\n", 3, "clusters.c.gpu_request"),
            ("clusters:\n  c:\n    setup: module load x\n", 3, "clusters.c.setup"),
        ]
        for (text, line, key) in cases {
            let error = #expect(throws: VLLMCtlError.self) { try parse(text) }
            guard case .config(_, let l, let k, _) = error else {
                Issue.record("no config error for \(key)"); continue
            }
            #expect(l == line)
            #expect(k == key)
        }
    }

    @Test func scalarsReadAsYAMLSaysWithoutTagResolution() throws {
        let config = try parse(
            """
            clusters:
              c:
                exclusive: yes
                port: 8000
                nodes: 0x2
                cpus: 1_6
                time: 01:00:00
                partition: 123
                gpus: 010
            models:
              m:
                model: x
                gpu_memory_utilization: 0.85
                ready_timeout: 1e3
                exclusive: Off
            """)
        let c = try config.cluster(named: "c").defaults
        #expect(c.exclusive == true)
        #expect(c.port == 8000)
        #expect(c.nodes == 2)
        #expect(c.cpus == 16)
        #expect(c.time == "01:00:00")
        #expect(c.partition == "123")
        #expect(c.gpus == 8)  // a leading 0 is octal in YAML 1.1
        let m = try #require(config.models["m"]).settings
        #expect(m.gpuMemoryUtilization == 0.85)
        #expect(m.readyTimeout == 1000)
        #expect(m.exclusive == false)
        for text in [
            "clusters:\n  c:\n    exclusive: \"true\"\n", "clusters:\n  c:\n    port: \"8000\"\n",
            "clusters:\n  c:\n    port: 80.5\n", "clusters:\n  c:\n    gpus: 1.2.3\n",
        ] {
            #expect(throws: VLLMCtlError.self) { try parse(text) }
        }
    }

    @Test func invalidYAMLHasALine() {
        let error = #expect(throws: VLLMCtlError.self) { try parse("clusters:\n  c:\n    partition: [gpu\n") }
        guard case .config(_, let line, _, let problem) = error else { Issue.record("wrong error"); return }
        #expect(line != nil)
        #expect(problem.contains("YAML"))
    }

    @Test func presetWithoutModelAndBadDefault() {
        #expect(throws: VLLMCtlError.self) { try parse("models:\n  m:\n    gpus: 1\n") }
        let error = #expect(throws: VLLMCtlError.self) {
            try parse("default_cluster: nope\nclusters:\n  c: {partition: x}\n")
        }
        guard case .config(_, let line, let key, _) = error else { Issue.record("wrong error"); return }
        #expect(line == 1)
        #expect(key == "default_cluster")
    }

    @Test func starterConfigParses() throws {
        let config = try parse(StarterConfig.text)
        #expect(config.defaultCluster == "mycluster")
        #expect(config.models["qwen2.5-14b"]?.settings.gpus == 2)
    }

    @Test func flagsOverPresetOverProfile() {
        var profile = DeploySettings()
        profile.partition = "gpu"
        profile.time = "01:00:00"
        profile.gpus = 1
        profile.vllmArgs = ["--a"]
        var preset = DeploySettings()
        preset.gpus = 2
        preset.time = "02:00:00"
        preset.vllmArgs = ["--b"]
        var flags = DeploySettings()
        flags.time = "00:30:00"
        let merged = flags.merged(over: preset.merged(over: profile))
        #expect(merged.partition == "gpu")
        #expect(merged.gpus == 2)
        #expect(merged.time == "00:30:00")
        #expect(merged.vllmArgs == ["--a", "--b"])
    }

    @Test func configLocation() {
        #expect(
            ConfigLocation.resolve(explicit: nil, environment: ["HOME": "/h"]).path
                == "/h/.config/vllmctl/config.yaml")
        #expect(
            ConfigLocation.resolve(explicit: nil, environment: ["HOME": "/h", "XDG_CONFIG_HOME": "/x"]).path
                == "/x/vllmctl/config.yaml")
        #expect(
            ConfigLocation.resolve(explicit: nil, environment: ["VLLMCTL_CONFIG": "/c.yaml"]).path
                == "/c.yaml")
        #expect(
            ConfigLocation.resolve(explicit: "/f.yaml", environment: ["VLLMCTL_CONFIG": "/c.yaml"]).path
                == "/f.yaml")
    }
}
