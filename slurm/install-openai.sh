#!/usr/bin/env bash
# Installs the official OpenAI Python SDK from PyPI into a virtual environment of the test
# cluster's own, .cluster/openai-venv, for the test that sends an SDK client (OPENAI_BASE_URL,
# OPENAI_API_KEY) through the balancing tunnel (docs/REPLICAS.md, "Tests"). Idempotent: a
# venv that already has the pinned version is left alone (~0.5 s). Restarts nothing;
# cluster-up.sh calls it, and it can be run on its own on a running cluster.
#   slurm/install-openai.sh           # install or check
#   OPENAI_VERSION=3.51.0 (default)   # the pinned version
set -euo pipefail
# shellcheck source=slurm/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

OPENAI_VERSION="${OPENAI_VERSION:-3.51.0}"
mkdir -p "$STATE"
# The real path: a venv's scripts name their python by the path it was made at, and .cluster
# may be reached through a symlink (a git worktree's) that does not outlive it.
OPENAI_VENV="$(cd -P "$STATE" && pwd)/openai-venv"
PYTHON="${PYTHON:-python3}"

installed() {
    [[ -x "$OPENAI_VENV/bin/python" ]] \
        && [[ "$("$OPENAI_VENV/bin/python" -c 'import openai; print(openai.__version__)' 2>/dev/null)" == "$OPENAI_VERSION" ]]
}

if installed; then
    log "openai $OPENAI_VERSION is installed in $OPENAI_VENV"
    exit 0
fi
start=$SECONDS
if [[ -d "$OPENAI_VENV" ]]; then
    log "$OPENAI_VENV is incomplete or of another version: making it again"
    rm -rf "$OPENAI_VENV"
fi
log "creating the virtual environment $OPENAI_VENV"
"$(readlink -f "$(command -v "$PYTHON")" 2>/dev/null || command -v "$PYTHON")" -m venv "$OPENAI_VENV" \
    || "$PYTHON" -m venv "$OPENAI_VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
log "installing openai==$OPENAI_VERSION from PyPI into $OPENAI_VENV"
"$OPENAI_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION" \
    || die "pip install openai==$OPENAI_VERSION failed; see the lines above"
installed || die "openai $OPENAI_VERSION is not importable from $OPENAI_VENV after the install"
log "openai $OPENAI_VERSION installed in $((SECONDS - start)) s; $(du -sh "$OPENAI_VENV" | cut -f1) in $OPENAI_VENV"
