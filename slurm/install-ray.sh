#!/usr/bin/env bash
# Installs Ray from PyPI into the test cluster's own virtual environment, .cluster/ray-venv,
# for the multi-node tests (docs/MULTINODE.md): the jobs' `ray start` and the simulator's Ray
# mode use it. Idempotent: a venv that already has the pinned version is left alone (~0.5 s).
# Restarts nothing; cluster-up.sh calls it, and it can be run on its own on a running cluster.
#   slurm/install-ray.sh            # install or check
#   RAY_VERSION=2.60.0 (default)    # the pinned version (CHECKED.md)
set -euo pipefail
# shellcheck source=slurm/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

RAY_VERSION="${RAY_VERSION:-2.60.0}"
mkdir -p "$STATE"
install_pinned_venv "$(cd -P "$STATE" && pwd)/ray-venv" ray "$RAY_VERSION" ray "about 285 MB, under a minute"
