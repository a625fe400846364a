#!/usr/bin/env bash
# Renewal (issue 15): the gap a client sees during a handover, beside the naive way.
#
#   bash Tests/bench/renew.sh [VLLMCTL_BINARY]
#
# Both runs use the same client (Tests/bench/steady.py: a request every 100 ms, every fourth
# streamed) and report the longest time between two successful responses, with a simulator
# that loads in RENEW_BENCH_LOAD seconds (20).
# 1. renew: `deploy --renew` (3-minute limit), the client through `vllmctl gateway NAME` on the
#    login host, across one handover. Goal: gap <= 1 s, no failed request.
# 2. naive: a deployment without --renew (1-minute limit) whose end is followed at once by a
#    new `vllmctl deploy` (queue wait + load time); the client goes straight to the server's URL,
#    switched to the new one as soon as deploy returns. Expected: at least the load time.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:-${VLLMCTL_BIN:-$repo/.build/release/vllmctl}}"
load="${RENEW_BENCH_LOAD:-20}"
export VLLMCTL_CONFIG="$repo/.cluster/vllmctl.yaml"
work="$(mktemp -d)"
export VLLMCTL_STATE_DIR="$work/state"
name="bench-renew-$$"
naive="bench-naive-$$"
gateway=""
cleanup() {
  touch "$work/stop" "$work/stop2"
  [[ -n "$gateway" ]] && kill "$gateway" 2>/dev/null || true
  # This bench's own jobs, by their names (drawn from this shell's pid).
  scancel --name="vllmctl-$name" >/dev/null 2>&1 || true
  scancel --name="vllmctl-$naive" >/dev/null 2>&1 || true
  scancel --name="vllmctl-$naive-2" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
report() { # LABEL FILE
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
gap = r["max_gap"]
print(f"  {sys.argv[1]}: {r['ok']} ok, {r['failed']} failed; longest gap between two successes "
      f"{gap:.2f} s" + (f"; errors: {r['errors']}" if r["errors"] else ""))
PY
}

only="${RENEW_BENCH_ONLY:-renew naive}"
echo "== renewal handover (issue 15): simulator load ${load} s"
# One key for both runs: the naive resubmission is given the same key, so that only the URL
# changes, as with --renew.
umask 077
python3 -c 'import secrets, string; print("sk-" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(32)), end="")' > "$work/key"
key=$(cat "$work/key")

if [[ " $only " == *" renew "* ]]; then
# 1. renew
"$bin" deploy sim --name "$name" --port $((20000 + RANDOM % 9000)) --gpus 0 --renew --time 3 --timeout 50 --renew-margin 60 \
  --api-key-file "$work/key" --setup "export VLLM_SIM_LOAD_SECONDS=$load" --json > "$work/deploy.json"
first=$(field "$work/deploy.json" job_id)
dir=$(dirname "$(field "$work/deploy.json" info_file)")
port=$(free_port)
"$bin" gateway "$name" --port "$port" --bind 127.0.0.1 --host 127.0.0.1 > "$work/gw.out" 2> "$work/gw.err" &
gateway=$!
for _ in $(seq 1 100); do (exec 3<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
echo "http://127.0.0.1:$port" > "$work/url"
python3 "$repo/Tests/bench/steady.py" "$work/url" "$work/key" "$work/stop" > "$work/renew.json" &
client=$!
for _ in $(seq 1 300); do
  sleep 1
  now=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["job_id"])' "$dir/server_connection_info.json" 2>/dev/null || true)
  [[ -n "$now" && "$now" != "$first" ]] && ! squeue -h -j "$first" 2>/dev/null | grep -q . && break
done
sleep 3
touch "$work/stop"
wait "$client"
report "renew (through the gateway, one handover)" "$work/renew.json"
kill "$gateway" 2>/dev/null || true
wait "$gateway" 2>/dev/null || true
gateway=""
fi

if [[ " $only " == *" naive "* ]]; then
# 2. naive
"$bin" deploy sim --name "$naive" --port $((20000 + RANDOM % 9000)) --gpus 0 --time 1 --timeout 50 --api-key-file "$work/key" \
  --setup "export VLLM_SIM_LOAD_SECONDS=$load" --json > "$work/naive.json"
job=$(field "$work/naive.json" job_id)
field "$work/naive.json" url | sed 's#/v1$##' > "$work/url"
python3 "$repo/Tests/bench/steady.py" "$work/url" "$work/key" "$work/stop2" > "$work/naive-run.json" &
client=$!
while squeue -h -j "$job" 2>/dev/null | grep -q .; do sleep 0.2; done
start=$(date +%s.%N)
"$bin" deploy sim --name "$naive-2" --port $((20000 + RANDOM % 9000)) --gpus 0 --time 1 --timeout 50 --api-key-file "$work/key" \
  --setup "export VLLM_SIM_LOAD_SECONDS=$load" --json > "$work/naive2.json"
ready=$(date +%s.%N)
field "$work/naive2.json" url | sed 's#/v1$##' > "$work/url"
sleep 3
touch "$work/stop2"
wait "$client"
scancel --name="vllmctl-$naive-2" >/dev/null 2>&1 || true
echo "  naive: resubmitted when the job ended; deploy took $(python3 -c "print(f'{$ready - $start:.1f}')") s (queue wait + load)"
report "naive (resubmit after the end)" "$work/naive-run.json"
fi
echo "  goal: renew gap <= 1 s with no failed request; naive gap >= the load time (${load} s)"
