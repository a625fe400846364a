#!/usr/bin/env bash
# make demo: the main job on the built-in default, the local Slurm cluster plus the vLLM
# simulator. Deploys, shows the connection file, uses it, and tears the deployment down.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="$repo/.build/debug/vllmctl"
export VLLMCTL_CONFIG="${VLLMCTL_CONFIG:-$repo/.cluster/vllmctl.yaml}"

echo "+ vllmctl deploy qwen2.5-14b    (on the local cluster, served by the vLLM simulator)"
out="$("$bin" deploy qwen2.5-14b --json)"
job=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
info=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["info_file"])')
trap 'echo; echo "+ vllmctl teardown $job"; "$bin" teardown "$job"' EXIT

echo
echo "+ cat $info"
cat "$info"
echo
echo "+ the curl command from that file, run as it is:"
sed -n '/^curl/,$p' "$info" | sed 's/^curl /curl -sS /' | bash | python3 -m json.tool
echo
echo "+ vllmctl status"
"$bin" status
echo
echo "+ vllmctl query qwen2.5-14b --chat --prompt 'Say hello' --max-tokens 8"
"$bin" query qwen2.5-14b --chat --prompt 'Say hello' --max-tokens 8
