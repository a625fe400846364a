"""vllm-sim shim package: NOT vLLM. Only `vllm.entrypoints.openai.api_server` exists, and it
runs the simulator (slurm/sim/vllm_sim.py)."""
__version__ = "0.0.0+vllm-sim"
