"""vllm-sim shim for `python3 -m vllm.entrypoints.openai.api_server --model MODEL ...`.

This is the vLLM SIMULATOR (slurm/sim/vllm_sim.py), not vLLM."""
import os
import sys

_SIM_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
if _SIM_DIR not in sys.path:
    sys.path.insert(0, _SIM_DIR)

import vllm_sim  # noqa: E402


def main():
    return vllm_sim.main(sys.argv[1:], form="api_server")


if __name__ == "__main__":
    sys.exit(main())
