#!/usr/bin/env bash
# vllmctl tunnel vs OpenSSH's ssh -N -L (issue 4), through the same sshd (the local cluster's,
# 127.0.0.1:2222, alias vllmctl-local), in the same run. Prints figures, ratios and goals.
#
#   bash Tests/bench/tunnel.sh [VLLMCTL_BINARY]     (or VLLMCTL_BIN=…; make bench passes its own)
#
# Peers: "ours" = vllmctl tunnel --to; "ssh" = ssh -N -L with OpenSSH's defaults; "ssh-ctr" =
# ssh -c aes128-ctr -m hmac-sha2-256, the cipher/MAC libssh2 1.10 negotiates, as a same-cipher
# reference; "direct" = no tunnel. Variants alternate within every round (rotating who goes
# first) because this 2-core machine runs other work too; figures are medians.
#
# 1. bulk: Tests/bench/bulk.py, 1 GiB each way at once over one connection (no hashing, so that
#    the load generator costs little); one hashed 64 MiB transfer per tunnel checks the bytes.
# 2. latency: sequential GET /health against vllm-sim, a new TCP connection per request; the
#    requests are split into blocks that alternate between the variants (ssh-ctr left out: the
#    cipher does not matter for a few hundred bytes, and the run must stay short).
# 3. streams: 256 connections at once, each moving STREAM_SIZE each way; aggregate throughput.
#
# Knobs (environment): TUNNEL_BENCH_ROUNDS (3), TUNNEL_BENCH_SIZE (1 GiB), TUNNEL_BENCH_REQUESTS
# (10000), TUNNEL_BENCH_STREAMS (256), TUNNEL_BENCH_STREAM_SIZE (1 MiB), TUNNEL_BENCH_ONLY
# (any of "bulk latency streams"; default all).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:-${VLLMCTL_BIN:-$repo/.build/release/vllmctl}}"
rounds="${TUNNEL_BENCH_ROUNDS:-3}"
size="${TUNNEL_BENCH_SIZE:-$((1 << 30))}"
requests="${TUNNEL_BENCH_REQUESTS:-10000}"
streams="${TUNNEL_BENCH_STREAMS:-256}"
stream_size="${TUNNEL_BENCH_STREAM_SIZE:-$((1 << 20))}"
only="${TUNNEL_BENCH_ONLY:-bulk latency streams}"
ssh_config="$repo/.cluster/ssh/ssh_config"
ssh_host=vllmctl-local
bulk="$repo/Tests/bench/bulk.py"
export VLLMCTL_CONFIG="$repo/.cluster/vllmctl.yaml" VLLMCTL_SSH_CONFIG="$ssh_config"
[[ -x "$bin" ]] || { echo "tunnel.sh: no vllmctl binary at $bin (make bench builds it)" >&2; exit 1; }

work="$(mktemp -d)"
export VLLMCTL_STATE_DIR="$work/state"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listening() { [[ -n "$(ss -ltnH "sport = :$1")" ]]; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # user+system, all threads

# open_tunnel VARIANT TARGET_PORT: sets tpid and tport (direct: the target itself, no process).
open_tunnel() {
  local variant=$1 target=$2 i
  tpid=""
  case "$variant" in
    direct) tport=$target; return ;;
    ours)
      "$bin" tunnel --to "127.0.0.1:$target" --cluster local-ssh --local-port 0 \
        > "$work/ours.out" 2> "$work/ours.err" &
      tpid=$!
      for i in $(seq 1 200); do
        grep -q '^Forwarding' "$work/ours.out" 2>/dev/null && break
        kill -0 "$tpid" 2>/dev/null || break
        sleep 0.05
      done
      tport=$(grep -o '^Forwarding http://127.0.0.1:[0-9]*' "$work/ours.out" | grep -o '[0-9]*$' || true)
      [[ -n "$tport" ]] || { echo "vllmctl tunnel did not start:" >&2; cat "$work/ours.err" >&2; exit 1; }
      ;;
    ssh | ssh-ctr)
      local extra=()
      [[ $variant == ssh-ctr ]] && extra=(-c aes128-ctr -m hmac-sha2-256)
      tport=$(free_port)
      ssh -F "$ssh_config" "${extra[@]}" -N -o ExitOnForwardFailure=yes \
        -L "$tport:127.0.0.1:$target" "$ssh_host" 2> "$work/ssh.err" &
      tpid=$!
      for i in $(seq 1 200); do
        listening "$tport" && break
        kill -0 "$tpid" 2>/dev/null || break
        sleep 0.05
      done
      listening "$tport" || { echo "ssh -L did not start:" >&2; cat "$work/ssh.err" >&2; exit 1; }
      ;;
  esac
  pids+=("$tpid")
}

close_tunnel() {
  [[ -n "$tpid" ]] || return 0
  kill -TERM "$tpid" 2>/dev/null || true
  wait "$tpid" 2>/dev/null || true
  local keep=() p
  for p in "${pids[@]}"; do [[ $p == "$tpid" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}

# Variants of round r, rotated so that none always goes first.
order() {
  local r=$1; shift
  local all=("$@") n=$# i
  for ((i = 0; i < n; i++)); do printf '%s ' "${all[$(((i + r) % n))]}"; done
}

echo "== vllmctl tunnel vs ssh -L (issue 4): $rounds rounds, medians; binary $bin"

# Negotiated algorithms. OpenSSH: ssh -v. vllmctl: libssh2 (the same shared library vllmctl
# links) with its default preferences, which vllmctl keeps for ciphers and MACs.
for variant in ssh ssh-ctr; do
  extra=()
  [[ $variant == ssh-ctr ]] && extra=(-c aes128-ctr -m hmac-sha2-256)
  algs=$(ssh -F "$ssh_config" "${extra[@]}" -o LogLevel=DEBUG1 "$ssh_host" true 2>&1 |
    sed -n 's/.*kex: client->server cipher: \([^ ]*\) MAC: \([^ ]*\).*/\1 + \2/p' | head -1)
  printf '  %-8s %s\n' "$variant:" "${algs:-unknown}"
done
ours_algs=$(python3 - <<'PY' 2>/dev/null || echo unknown
import ctypes, socket
lib = ctypes.CDLL("libssh2.so.1")
lib.libssh2_init(0)
lib.libssh2_session_init_ex.restype = ctypes.c_void_p
lib.libssh2_session_init_ex.argtypes = [ctypes.c_void_p] * 4
lib.libssh2_session_handshake.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.libssh2_session_methods.restype = ctypes.c_char_p
lib.libssh2_session_methods.argtypes = [ctypes.c_void_p, ctypes.c_int]
s = lib.libssh2_session_init_ex(None, None, None, None)
sock = socket.create_connection(("127.0.0.1", 2222))
assert lib.libssh2_session_handshake(s, sock.fileno()) == 0
print(f"{lib.libssh2_session_methods(s, 2).decode()} + {lib.libssh2_session_methods(s, 4).decode()}")
PY
)
printf '  %-8s %s (libssh2 %s)\n' "ours:" "$ours_algs" "$(dpkg-query -W -f='${Version}' libssh2-1 2>/dev/null || echo '?')"

results="$work/results"
: > "$results"
tunnel_variants=(ours ssh ssh-ctr)

# The bulk server (bulk transfers and streams).
python3 "$bulk" server > "$work/bulk.out" 2> "$work/bulk.err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^PORT' "$work/bulk.out" && break; sleep 0.05; done
bulk_port=$(awk '/^PORT/ {print $2}' "$work/bulk.out")

# check_bytes VARIANT PORT: a hashed transfer; its digests must equal the server's.
check_bytes() {
  local before after
  before=$(wc -l < "$work/bulk.out")
  python3 "$bulk" client --port "$2" --size $((64 << 20)) > "$work/check.json"
  for _ in $(seq 1 100); do
    after=$(wc -l < "$work/bulk.out")
    ((after > before)) && break
    sleep 0.05
  done
  python3 - "$work/check.json" "$work/bulk.out" "$1" <<'PY'
import json, sys
mine = json.load(open(sys.argv[1]))
theirs = json.loads(open(sys.argv[2]).read().splitlines()[-1])
ok = (mine["sent_sha256"] == theirs["received_sha256"] and mine["received_sha256"] == theirs["sent_sha256"]
      and mine["received"] == theirs["sent"] == mine["sent"] == theirs["received"])
if not ok:
    sys.exit(f"{sys.argv[3]}: the bytes differ: {mine} vs {theirs}")
PY
}

if [[ " $only " == *" bulk "* || " $only " == *" streams "* ]]; then
  for r in $(seq 1 "$rounds"); do
    for variant in direct $(order "$r" "${tunnel_variants[@]}"); do
      open_tunnel "$variant" "$bulk_port"
      if ((r == 1)) && [[ $variant != direct ]]; then check_bytes "$variant" "$tport"; fi
      if [[ " $only " == *" bulk "* ]]; then
        t0=$([[ -n "$tpid" ]] && ticks "$tpid" || echo 0)
        python3 "$bulk" client --port "$tport" --size "$size" --no-hash > "$work/run.json"
        t1=$([[ -n "$tpid" ]] && ticks "$tpid" || echo 0)
        python3 - "$work/run.json" "$variant" "$size" "$((t1 - t0))" "$(getconf CLK_TCK)" >> "$results" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
size, ticks, hz = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
assert j["sent"] == j["received"] == size, j
print("bulk", sys.argv[2], (j["sent"] + j["received"]) / j["seconds"] / 1e6, ticks / hz / ((j["sent"] + j["received"]) / 2**30))
PY
      fi
      if [[ " $only " == *" streams "* ]]; then
        python3 "$bulk" client --port "$tport" --size "$stream_size" --streams "$streams" --no-hash > "$work/run.json"
        python3 - "$work/run.json" "$variant" "$((stream_size * streams))" >> "$results" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["sent"] == j["received"] == int(sys.argv[3]), j
print("streams", sys.argv[2], (j["sent"] + j["received"]) / j["seconds"] / 1e6)
PY
      fi
      close_tunnel
    done
  done
fi

if [[ " $only " == *" latency "* ]]; then
  sim_port=$(free_port)
  VLLM_API_KEY="sk-bench$RANDOM$RANDOM" python3 "$repo/slurm/sim/vllm_sim.py" serve sim-model \
    --host 127.0.0.1 --port "$sim_port" --sim-load-seconds 0 > "$work/sim.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do
    curl -fs -o /dev/null "http://127.0.0.1:$sim_port/health" && break
    sleep 0.05
  done
  cat > "$work/latency.py" <<'PY'
import http.client, sys, time
port, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
times = []
for _ in range(n):
    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/health")
    r = c.getresponse()
    r.read()
    c.close()
    if r.status != 200:
        sys.exit(f"/health answered {r.status}")
    times.append(time.perf_counter() - t)
with open(out, "a") as f:
    f.write("".join(f"{x}\n" for x in times))
PY
  latency_variants=(direct ours ssh)
  declare -A lport lpid
  for variant in "${latency_variants[@]}"; do
    open_tunnel "$variant" "$sim_port"
    lport[$variant]=$tport
    lpid[$variant]=$tpid
    : > "$work/lat-$variant"
    python3 "$work/latency.py" "$tport" 50 /dev/null # warm-up
  done
  blocks=10
  for b in $(seq 1 "$blocks"); do
    for variant in $(order "$b" "${latency_variants[@]}"); do
      n=$((requests / blocks + (b <= requests % blocks ? 1 : 0)))
      python3 "$work/latency.py" "${lport[$variant]}" "$n" "$work/lat-$variant"
    done
  done
  for variant in ours ssh; do
    tpid=${lpid[$variant]}
    close_tunnel
  done
  for variant in "${latency_variants[@]}"; do
    python3 - "$work/lat-$variant" "$variant" >> "$results" <<'PY'
import sys
xs = sorted(float(l) for l in open(sys.argv[1]))
q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
print("latency", sys.argv[2], q(0.50) * 1000, q(0.99) * 1000, len(xs))
PY
  done
fi

python3 - "$results" "$rounds" "$size" "$streams" "$stream_size" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
rounds, size, streams, stream_size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
variants = ["direct", "ours", "ssh", "ssh-ctr"]

def med(kind, variant, col=2):
    xs = [float(r[col]) for r in rows if r[0] == kind and r[1] == variant]
    return statistics.median(xs) if xs else None

table = []  # (label, {variant: value}, higher_is_better, goal)
if any(r[0] == "bulk" for r in rows):
    table.append((f"bulk {size / 2**30:g} GiB each way, MB/s", {v: med("bulk", v) for v in variants}, True,
                  ">= 1.00"))
    table.append(("  tunnel CPU, s per GiB moved", {v: med("bulk", v, 3) for v in variants[1:]}, False, ""))
if any(r[0] == "streams" for r in rows):
    table.append((f"{streams} streams x {stream_size / 2**20:g} MiB each way, MB/s",
                  {v: med("streams", v) for v in variants}, True, ">= 1.00"))
if any(r[0] == "latency" for r in rows):
    n = next(r[4] for r in rows if r[0] == "latency")
    table.append((f"GET /health p50, ms ({n} requests)", {v: med("latency", v) for v in variants}, False,
                  "<= 1.10"))
    table.append((f"GET /health p99, ms", {v: med("latency", v, 3) for v in variants}, False, ""))

fmt = lambda x: "-" if x is None else (f"{x:.0f}" if x >= 100 else f"{x:.3g}")
ratio = lambda a, b: "-" if a is None or b is None else f"{a / b:.2f}"
print(f"  {'(medians)':<42}{'direct':>9}{'ours':>9}{'ssh':>9}{'ssh-ctr':>9}"
      f"{'ours/ssh':>10}{'ours/ctr':>10}  goal (ours/ssh)")
for label, values, higher, goal in table:
    cells = "".join(f"{fmt(values.get(v)):>9}" for v in variants)
    print(f"  {label:<42}{cells}{ratio(values['ours'], values['ssh']):>10}"
          f"{ratio(values['ours'], values['ssh-ctr']):>10}  {goal}")
print(f"  throughput ratios: ours / ssh (higher is better); latency and CPU ratios: ours / ssh (lower is "
      f"better); bulk and streams over {rounds} rounds")
PY
