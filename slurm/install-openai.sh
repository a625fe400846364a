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
install_pinned_venv "$(cd -P "$STATE" && pwd)/openai-venv" openai "$OPENAI_VERSION" openai
