/// The file `vllmctl config init` writes.
public enum StarterConfig {
    public static let text = """
        # vllmctl configuration.
        # Flags on the command line override a model preset, which overrides the cluster profile.

        # The cluster used when --cluster is not given.
        default_cluster: mycluster

        clusters:
          mycluster:
            # Leave ssh_host out when vllmctl runs on the login node itself.
            # ssh_host: login.example.org     # a Host alias from ~/.ssh/config
            partition: gpu
            # account: my-project
            # qos: normal
            time: "04:00:00"
            # Where deployments keep their files on the cluster (shared filesystem).
            workdir: ~/vllmctl
            # How the cluster wants GPUs asked for: gres (--gres=gpu:N) or gpus (--gpus=N).
            gpu_request: gres
            # Lines run in the job before the server starts: modules, a venv or conda env, exports.
            setup:
              - module load cuda
              - source ~/venvs/vllm/bin/activate
            # The server program; the model and flags are added after it.
            server_command: ["vllm", "serve"]
            # The address put into URLs: ip (node's first IP), hostname, or a literal address.
            host: ip

        models:
          qwen2.5-14b:
            model: Qwen/Qwen2.5-14B-Instruct
            served_name: qwen2.5-14b
            gpus: 2
            tensor_parallel_size: 2
            max_model_len: 32768
            gpu_memory_utilization: 0.9
            dtype: bfloat16
            vllm_args: ["--enable-prefix-caching"]
          ui-tars-7b:
            model: bytedance-research/UI-TARS-7B-DPO
            served_name: UI-TARS-7B-DPO
            gpus: 1
            guided_decoding_backend: outlines

        """
}
