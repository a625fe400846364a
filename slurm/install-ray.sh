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
# The real path: a venv's scripts name their python by the path it was made at, and .cluster
# may be reached through a symlink (a git worktree's) that does not outlive it.
RAY_VENV="$(cd -P "$STATE" && pwd)/ray-venv"
PYTHON="${PYTHON:-python3}"

installed() {
    [[ -x "$RAY_VENV/bin/python" && -x "$RAY_VENV/bin/ray" ]] \
        && [[ "$(head -n1 "$RAY_VENV/bin/ray")" == "#!$RAY_VENV/bin/python"* ]] \
        && [[ "$("$RAY_VENV/bin/python" -c 'import ray; print(ray.__version__)' 2>/dev/null)" == "$RAY_VERSION" ]]
}

if installed; then
    log "Ray $RAY_VERSION is installed in $RAY_VENV"
    exit 0
fi
start=$SECONDS
if [[ -d "$RAY_VENV" ]] && ! installed; then
    log "$RAY_VENV is incomplete, of another version or made at another path: making it again"
    rm -rf "$RAY_VENV"
fi
if [[ ! -x "$RAY_VENV/bin/python" ]]; then
    log "creating the virtual environment $RAY_VENV"
    # A venv's python is a symlink to the interpreter it was made with: resolve it, so that
    # the nodes (same filesystem, own namespaces) run the same binary.
    "$(readlink -f "$(command -v "$PYTHON")" 2>/dev/null || command -v "$PYTHON")" -m venv "$RAY_VENV" \
        || "$PYTHON" -m venv "$RAY_VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
fi
log "installing ray==$RAY_VERSION from PyPI into $RAY_VENV (about 285 MB, under a minute)"
"$RAY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "ray==$RAY_VERSION" \
    || die "pip install ray==$RAY_VERSION failed; see the lines above"
installed || die "ray $RAY_VERSION is not importable from $RAY_VENV after the install"
log "Ray $RAY_VERSION installed in $((SECONDS - start)) s; $(du -sh "$RAY_VENV" | cut -f1) in $RAY_VENV"
