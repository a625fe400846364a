#!/usr/bin/env bash
# vllmctl benchmarks on the local cluster (make bench). Prints figures with their goals.
#
# deploy readiness: the time from the simulator's first 200 on /health (it logs the instant)
#   to `vllmctl deploy` returning ready, median of 5; and the number of squeue/sacct/scontrol
#   calls one deploy makes, counted by a PATH shim, against the budget of 1 per 2 s of waiting.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${VLLMCTL_BENCH_BIN:-$repo/.build/release/vllmctl}"
export VLLMCTL_CONFIG="$repo/.cluster/vllmctl.yaml"
work="$(mktemp -d)"
export VLLMCTL_STATE_DIR="$work/state"
trap 'scancel --name=vllmctl-bench-deploy >/dev/null 2>&1 || true; scancel --name=vllmctl-bench-mn >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
# The laptop namespace gets the same state directory and config (a shared filesystem).

# Count scheduler calls: shims that log, then run the real command.
mkdir -p "$work/shim"
for cmd in squeue sacct scontrol sbatch; do
  real="$(command -v "$cmd")"
  printf '#!/bin/sh\necho %s >> %q\nexec %q "$@"\n' "$cmd" "$work/calls" "$real" > "$work/shim/$cmd"
  chmod +x "$work/shim/$cmd"
done

time_cmd() { # prints seconds for one run of "$@"
  local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); python3 -c "print($e - $s)"
}

# Sections: VLLMCTL_BENCH="deploy laptop status doctor tunnel multinode balancer renew" (default: all).
sections=" ${VLLMCTL_BENCH:-deploy laptop status doctor tunnel multinode balancer renew} "
want() { [[ $sections == *" $1 "* ]]; }
runs=5
if want deploy; then
echo "== deploy readiness ($runs runs, simulator load time 2 s)"
: > "$work/results"
for i in $(seq 1 "$runs"); do
  : > "$work/calls"
  start=$(date +%s.%N)
  out="$(PATH="$work/shim:$PATH" "$bin" deploy sim --name bench-deploy --json)"
  done_at=$(date +%s.%N)
  job=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
  dir=$(dirname "$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["info_file"])')")
  first=$(grep -ho 'first /health 200 at [0-9.]*' "$dir/slurm-$job.out" | awk '{print $NF}')
  scheduler=$(grep -cE '^(squeue|sacct|scontrol)$' "$work/calls" || true)
  scancel "$job"
  echo "$start $first $done_at $scheduler" >> "$work/results"
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
lat = [done - first for start, first, done, calls in rows]
total = [done - start for start, first, done, calls in rows]
calls = [calls for start, first, done, calls in rows]
for i, (l, t, c) in enumerate(zip(lat, total, calls), 1):
    print(f"  run {i}: first /health 200 -> ready {l*1000:7.0f} ms; deploy {t:5.1f} s; scheduler calls {int(c)}")
med = statistics.median(lat)
print(f"  median first-200 -> ready: {med*1000:.0f} ms (goal <= 1000 ms; ratio to goal {med:.2f})")
budget = [max(1, t / 2) for t in total]
worst = max(c / b for c, b in zip(calls, budget))
print(f"  scheduler calls per deploy: median {statistics.median(calls):.0f}; "
      f"worst ratio to budget (1 per 2 s of waiting) {worst:.2f} (goal <= 1.00)")
PY

fi

if want laptop; then
# The same from the laptop (issue 11): vllmctl in the vc-laptop namespace, which reaches only
# the login host's sshd; every Slurm call, file read and HTTP check goes over one SSH session.
echo
echo "== deploy readiness from the laptop ($runs runs, profile hpc, through the login node's sshd)"
laptop=(nsenter --net=/var/run/netns/vc-laptop env VLLMCTL_SSH_CONFIG="$repo/.cluster/ssh/ssh_config")
: > "$work/laptop"
for i in $(seq 1 "$runs"); do
  start=$(date +%s.%N)
  out="$("${laptop[@]}" "$bin" deploy sim --cluster hpc --name bench-deploy --json)"
  done_at=$(date +%s.%N)
  job=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
  dir=$(dirname "$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["info_file"])')")
  first=$(grep -ho 'first /health 200 at [0-9.]*' "$dir/slurm-$job.out" | awk '{print $NF}')
  if (( i == runs )); then
    # Keep the last one running for the status comparison below.
    keep=$job
  else
    scancel "$job"
  fi
  echo "$start $first $done_at" >> "$work/laptop"
done
python3 - "$work/laptop" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
lat = [done - first for start, first, done in rows]
for i, (start, first, done) in enumerate(rows, 1):
    print(f"  run {i}: first /health 200 -> ready {(done - first)*1000:7.0f} ms; deploy {done - start:5.1f} s")
med = statistics.median(lat)
print(f"  median first-200 -> ready from the laptop: {med*1000:.0f} ms (goal <= 500 ms; ratio to goal {med/0.5:.2f})")
PY
echo
echo "== status with one deployment: from the laptop (SSH) beside the login node, and beside OpenSSH's ssh login squeue (the peer)"
: > "$work/st_login"; : > "$work/st_laptop"; : > "$work/st_ssh"
for r in $(seq 1 15); do
  time_cmd "$bin" status >> "$work/st_login"
  time_cmd "${laptop[@]}" "$bin" status --cluster hpc >> "$work/st_laptop"
  time_cmd nsenter --net=/var/run/netns/vc-laptop ssh -F "$repo/.cluster/ssh/ssh_config" vllmctl-login squeue --user="$(id -un)" >> "$work/st_ssh"
done
health=$("${laptop[@]}" "$bin" status --cluster hpc --json | python3 -c 'import json,sys; print([d["health"] for d in json.load(sys.stdin)["deployments"] if d["state"]=="RUNNING"])')
scancel "$keep"
python3 - "$work/st_login" "$work/st_laptop" "$work/st_ssh" "$health" <<'PY'
import statistics, sys
login = statistics.median(float(l) for l in open(sys.argv[1]))
laptop = statistics.median(float(l) for l in open(sys.argv[2]))
ssh = statistics.median(float(l) for l in open(sys.argv[3]))
print(f"  login node: median {login*1000:.0f} ms; laptop: median {laptop*1000:.0f} ms "
      f"(one SSH handshake, squeue, the connection file and /health over it); "
      f"health seen from the laptop: {sys.argv[4]}")
print(f"  peer: ssh login squeue from the laptop: median {ssh*1000:.0f} ms; "
      f"ratio laptop status / ssh squeue: {laptop/ssh:.2f}")
PY

fi

if want status; then
# status JOB (the detail view) of a running deployment, beside `squeue --jobs=ID` (the peer)
# and the server's own HTTP time (curl asking the same three URLs); plus its scheduler calls.
echo
echo "== status JOB (detail view) of a running deployment"
out="$("$bin" deploy sim --name bench-detail --json)"
job=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
url=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"][:-3])')
key_file="$(dirname "$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["info_file"])')")/api_key"
printf 'header = "Authorization: Bearer %s"\n' "$(cat "$key_file")" > "$work/curl-auth"
chmod 600 "$work/curl-auth"
: > "$work/dsq"; : > "$work/dst"; : > "$work/dhttp"
for r in $(seq 1 15); do
  time_cmd squeue --jobs="$job" >> "$work/dsq"
  time_cmd "$bin" status bench-detail >> "$work/dst"
  time_cmd curl -s -o /dev/null "$url/health" -o /dev/null "$url/version" -K "$work/curl-auth" -o /dev/null "$url/v1/models" >> "$work/dhttp"
done
: > "$work/calls"
PATH="$work/shim:$PATH" "$bin" status bench-detail >/dev/null
detail_calls=$(grep -cE '^(squeue|sacct|scontrol)$' "$work/calls" || true)
scancel "$job"
python3 - "$work/dsq" "$work/dst" "$work/dhttp" "$detail_calls" <<'PY'
import statistics, sys
sq, st, http = (statistics.median(float(l) for l in open(f)) for f in sys.argv[1:4])
print(f"  squeue --jobs: median {sq*1000:.0f} ms; vllmctl status JOB: median {st*1000:.0f} ms; "
      f"the server's three answers (curl): {http*1000:.0f} ms")
print(f"  status JOB without the server's HTTP time: {(st-http)*1000:.0f} ms (goal <= 50 ms); "
      f"scheduler calls: {sys.argv[4]} (goal 1)")
PY

# status with 1,000 jobs in the queue: held jobs carrying vllmctl's tag, timed beside squeue
# alone (the peer, same run); plus the number of scheduler calls status makes.
echo
echo "== status with 1000 held jobs"
n=1000
for i in $(seq 1 "$n"); do
  sbatch --hold --job-name=vllmctl-benchheld --output=/dev/null --wrap true >/dev/null
done
# Timed without the call-counting shims (they would add a shell to status's time only);
# the calls are counted in one separate run.
: > "$work/sq"; : > "$work/st"
for r in $(seq 1 30); do
  time_cmd squeue --user="$(id -un)" >> "$work/sq"
  time_cmd "$bin" status >> "$work/st"
done
: > "$work/calls"
PATH="$work/shim:$PATH" "$bin" status >/dev/null
status_calls=$(grep -cE '^(squeue|sacct|scontrol)$' "$work/calls" || true)
rows=$("$bin" status --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["deployments"]))')
scancel --name=vllmctl-benchheld
python3 - "$work/sq" "$work/st" "$status_calls" "$rows" <<'PY'
import statistics, sys
sq = [float(l) for l in open(sys.argv[1])]
st = [float(l) for l in open(sys.argv[2])]
ms, mt = statistics.median(sq), statistics.median(st)
print(f"  squeue alone: median {ms*1000:.0f} ms; vllmctl status: median {mt*1000:.0f} ms ({sys.argv[4]} rows)")
print(f"  ratio status/squeue: {mt/ms:.2f} (goal <= 2.00); scheduler calls per status: {sys.argv[3]} (goal 1)")
PY

fi

if want doctor; then
echo
echo "== vllmctl doctor (no --submit-probe), 5 runs each; goal: under 2 s"
for cluster in local local-ssh; do
  : > "$work/doctor"
  for r in $(seq 1 5); do
    VLLMCTL_SSH_CONFIG="$repo/.cluster/ssh/ssh_config" time_cmd "$bin" doctor --cluster "$cluster" >> "$work/doctor" || true
  done
  python3 - "$work/doctor" "$cluster" <<'PY'
import statistics, sys
t = [float(l) for l in open(sys.argv[1])]
print(f"  {sys.argv[2]}: median {statistics.median(t)*1000:.0f} ms, worst {max(t)*1000:.0f} ms (goal < 2000 ms)")
PY
done
fi

if want tunnel; then
# vllmctl tunnel vs ssh -L through the same sshd (issue 4): Tests/bench/tunnel.sh.
echo
bash "$repo/Tests/bench/tunnel.sh" "$bin"
fi

if want multinode; then
# One server on one node (TP 2) and across two (TP 2 x PP 2 on Ray), the same simulated load
# (the profile's 2 s): from RUNNING (squeue polled every 0.2 s by name) to `deploy` returning
# ready, and the part of it that is the Ray cluster forming (the job's own log line). The
# simulator is this checkout's (its Ray mode), Ray the test cluster's venv (slurm/install-ray.sh).
echo
echo "== multi-node: RUNNING -> ready, one node vs. two with Ray ($runs runs each, simulator load 2 s)"
sim=(--server-command "$repo/slurm/sim/bin/vllm serve")
ray_setup=(--setup "export PATH=$(cd -P "$repo/.cluster" && pwd)/ray-venv/bin:\$PATH")
: > "$work/mn"
for nodes in 1 2; do
  for i in $(seq 1 "$runs"); do
    : > "$work/running"
    ( while :; do
        if [[ "$(squeue -h -n vllmctl-bench-mn -o %T 2>/dev/null)" == RUNNING* ]]; then date +%s.%N > "$work/running"; break; fi
        sleep 0.2
      done ) &
    poller=$!
    if (( nodes == 1 )); then
      out="$("$bin" deploy sim --name bench-mn --gpus 2 -t 2 "${sim[@]}" --json)"
    else
      out="$("$bin" deploy sim --name bench-mn --nodes 2 --gpus 2 "${sim[@]}" "${ray_setup[@]}" --json)"
    fi
    done_at=$(date +%s.%N)
    kill "$poller" 2>/dev/null || true; wait "$poller" 2>/dev/null || true
    job=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
    dir=$(dirname "$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["info_file"])')")
    ray=$(grep -ho 'Ray cluster formed: .* in [0-9.]* s' "$dir/slurm-$job.err" | awk '{print $(NF-1)}' || true)
    scancel "$job"
    echo "$nodes $(cat "$work/running") $done_at ${ray:-0}" >> "$work/mn"
    # Let Slurm release the nodes before the next run.
    for _ in $(seq 1 50); do [[ -z "$(squeue -h -j "$job" 2>/dev/null)" ]] && break; sleep 0.2; done
  done
done
python3 - "$work/mn" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for nodes, running, done, ray in rows:
    by.setdefault(int(nodes), []).append((float(done) - float(running), float(ray)))
for nodes, runs in sorted(by.items()):
    for i, (t, r) in enumerate(runs, 1):
        print(f"  {nodes} node(s) run {i}: RUNNING -> ready {t:5.1f} s" + (f" (Ray cluster formed in {r:.1f} s)" if nodes > 1 else ""))
one = statistics.median(t for t, _ in by.get(1, [(0, 0)]))
two = statistics.median(t for t, _ in by.get(2, [(0, 0)]))
ray = statistics.median(r for _, r in by.get(2, [(0, 0)]))
print(f"  median RUNNING -> ready: 1 node {one:.1f} s, 2 nodes {two:.1f} s (+{two - one:.1f} s; ratio {two / one if one else 0:.2f}); "
      f"of the 2-node time, Ray start-up (head + worker joined) {ray:.1f} s; the rest is the simulator joining "
      f"Ray and placing its 4 ranks, then the same 2 s load")
PY
fi

if want balancer; then
# The balancing endpoint (issue 14): vllmctl gateway and the laptop's balancing tunnel beside
# nginx (least_conn) over the same two replicas and beside one replica: Tests/bench/balancer.sh.
echo
bash "$repo/Tests/bench/balancer.sh" "$bin"
fi

if want renew; then
# Renewal (issue 15): the longest gap between two successful responses during a handover,
# beside resubmitting after the end: Tests/bench/renew.sh.
echo
bash "$repo/Tests/bench/renew.sh" "$bin"
fi
