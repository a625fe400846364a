#!/usr/bin/env bash
# The balancing endpoint (issue 14) beside nginx and beside one replica, in the same run.
#
#   bash Tests/bench/balancer.sh [VLLMCTL_BINARY]   (make bench: VLLMCTL_BENCH=balancer)
#
# One deployment of the simulator with two replicas, one per node (--replicas 2 --gpus 2
# --wait-all, profile local), each with --max-num-seqs 128 and a token delay of 0.1 s, so a
# completion of T tokens takes T x 100 ms and a replica serves at most 128 at once.
# Variants, all over the same two replicas:
#   one      the direct URL of replica 1 (no proxy): the single-replica baseline
#   gateway  vllmctl gateway on 127.0.0.1 (login host, plain TCP)
#   nginx    Debian's nginx on 127.0.0.1: upstream least_conn over both replicas, keepalive 64,
#            proxy_http_version 1.1, Connection "", proxy_buffering off
# and from the laptop namespace (vc-laptop, through the login host's sshd):
#   tunnel   vllmctl tunnel NAME --cluster hpc: the balancing tunnel over the SSH session
#   tunnel@1 vllmctl tunnel NAME@1: a plain vllmctl tunnel to replica 1
#   ssh-L    OpenSSH's ssh -N -L to replica 1 through the same sshd
# Load (Tests/bench/load.py, one kept-alive connection per client thread), at concurrency
# 1, 32 and 256, variants rotated within each step:
#   small    GET /v1/models (answered at once): p50/p99 latency and req/s
#   tokens   POST /v1/completions, max_tokens 13, ignore_eos (1.3 s of simulated decoding):
#            req/s; one replica saturates at 128 in flight, so at 256 two replicas can do 2x
# Memory: the gateway's VmRSS (and nginx's master + workers, and the balancing tunnel's) while
# 256 streamed completions are open through it.
#
# Knobs: BAL_BENCH_SECONDS (small: 4), BAL_BENCH_TOKEN_SECONDS (tokens: 8),
# BAL_BENCH_CONCURRENCY ("1 32 256"), BAL_BENCH_LAPTOP (1; 0 skips the laptop variants),
# BAL_BENCH_PARTS ("load memory": either or both), BAL_BENCH_BASE_BIN (another vllmctl binary,
# e.g. main's: its gateway `gw-base` and balancing tunnel `tun-base` join the rotation, so a
# change is compared with its baseline within one run).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:-${VLLMCTL_BIN:-$repo/.build/release/vllmctl}}"
secs="${BAL_BENCH_SECONDS:-4}"
tsecs="${BAL_BENCH_TOKEN_SECONDS:-8}"
concs="${BAL_BENCH_CONCURRENCY:-1 32 256}"
laptop_too="${BAL_BENCH_LAPTOP:-1}"
parts=" ${BAL_BENCH_PARTS:-load memory} "
ssh_config="$repo/.cluster/ssh/ssh_config"
base_bin="${BAL_BENCH_BASE_BIN:-}"
load="$repo/Tests/bench/load.py"
name=bench-bal
export VLLMCTL_CONFIG="${VLLMCTL_CONFIG:-$repo/.cluster/vllmctl.yaml}"
[[ -x "$bin" ]] || { echo "balancer.sh: no vllmctl binary at $bin" >&2; exit 1; }
[[ -z "$base_bin" || -x "$base_bin" ]] || { echo "balancer.sh: no vllmctl binary at $base_bin (BAL_BENCH_BASE_BIN)" >&2; exit 1; }
command -v nginx >/dev/null || { echo "balancer.sh: no nginx (apt-get install nginx-light; slurm/install-deps.sh)" >&2; exit 1; }

work="$(mktemp -d)"
export VLLMCTL_STATE_DIR="${VLLMCTL_STATE_DIR:-$work/state}"
laptop=(nsenter --net=/var/run/netns/vc-laptop env VLLMCTL_SSH_CONFIG="$ssh_config")
jobs_=() pids=() tunnel_pids=()
cleanup() {
  set +e
  if ((laptop_too)); then
    "${laptop[@]}" "$bin" tunnel --close "$name@1" --cluster hpc >/dev/null 2>&1
    "${laptop[@]}" "$bin" tunnel --close "$name" --cluster hpc >/dev/null 2>&1
    [[ -z "$base_bin" ]] || "${laptop[@]}" VLLMCTL_STATE_DIR="$work/state-base" "$base_bin" tunnel --close "$name" --cluster hpc >/dev/null 2>&1
  fi
  for p in "${tunnel_pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  # The replicas, by their plain job ids (what deploy printed), then by name as a fallback.
  if ((${#jobs_[@]})); then scancel "${jobs_[@]}" 2>/dev/null; fi
  scancel --name="vllmctl-$name@1" 2>/dev/null
  scancel --name="vllmctl-$name@2" 2>/dev/null
  scancel --name="vllmctl-$name" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listening() { [[ -n "$(ss -ltnH "sport = :$1")" ]]; }
wait_listening() { # PORT PID [NS...]: until something listens on PORT (in that namespace)
  local port=$1 pid=$2 i; shift 2
  for i in $(seq 1 200); do
    [[ -n "$("$@" ss -ltnH "sport = :$port")" ]] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

echo "== balancing endpoint (issue 14): gateway, laptop tunnel, nginx least_conn, one replica; binary $bin"
out="$("$bin" deploy sim --name "$name" --replicas 2 --gpus 2 --wait-all --uvicorn-log-level warning --json \
  -- --max-num-seqs 128 --sim-token-delay 0.1)"
printf '%s' "$out" > "$work/deploy.json"
eval "$(python3 - "$work/deploy.json" <<'PY'
import json, shlex, sys
d = json.load(open(sys.argv[1]))
reps = sorted(d.get("replicas") or [d], key=lambda r: r.get("replica", 1))
print("jobs_=(%s)" % " ".join(shlex.quote(str(r["job_id"])) for r in reps))
print("urls=(%s)" % " ".join(shlex.quote(r["url"].removesuffix("/v1")) for r in reps))
print("states=(%s)" % " ".join(shlex.quote(str(r.get("state", "ready"))) for r in reps))
print("info=%s" % shlex.quote(d["info_file"]))
PY
)"
[[ ${#urls[@]} == 2 && "${states[*]}" == "ready ready" ]] || { echo "balancer.sh: want 2 ready replicas, got: $out" >&2; exit 1; }
install -m 600 "$(dirname "$info")/api_key" "$work/key"
echo "  replicas: ${urls[*]} (jobs ${jobs_[*]})"

# The gateway on the login host.
gw_port=$(free_port)
"$bin" gateway "$name" --port "$gw_port" --bind 127.0.0.1 --host 127.0.0.1 > "$work/gw.out" 2>&1 &
gw_pid=$!; pids+=("$gw_pid")
wait_listening "$gw_port" "$gw_pid" || { echo "the gateway did not start:" >&2; cat "$work/gw.out" >&2; exit 1; }

# nginx: least_conn over the same replicas, in the foreground, everything under $work/nginx.
ng_port=$(free_port)
mkdir -p "$work/nginx/tmp"
cat > "$work/nginx/nginx.conf" <<EOF
user root;
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  upstream replicas {
    least_conn;
    server ${urls[0]#http://};
    server ${urls[1]#http://};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$ng_port;
    location / {
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' > "$work/nginx/out" 2>&1 &
ng_pid=$!; pids+=("$ng_pid")
wait_listening "$ng_port" "$ng_pid" || { echo "nginx did not start:" >&2; cat "$work/nginx/out" "$work/nginx/error.log" >&2; exit 1; }

declare -A url where
url[one]=${urls[0]}; where[one]=login
url[gateway]=http://127.0.0.1:$gw_port; where[gateway]=login
url[nginx]=http://127.0.0.1:$ng_port; where[nginx]=login
variants=(one gateway nginx)
if [[ -n "$base_bin" ]]; then
  gwb_port=$(free_port)
  "$base_bin" gateway "$name" --port "$gwb_port" --bind 127.0.0.1 --host 127.0.0.1 > "$work/gwb.out" 2>&1 &
  gwb_pid=$!; pids+=("$gwb_pid")
  wait_listening "$gwb_port" "$gwb_pid" || { echo "the baseline gateway did not start:" >&2; cat "$work/gwb.out" >&2; exit 1; }
  url[gw-base]=http://127.0.0.1:$gwb_port; where[gw-base]=login
  variants+=(gw-base)
fi
tun_pid=""
if ((laptop_too)); then
  t="$("${laptop[@]}" "$bin" tunnel "$name" --cluster hpc --background --local-port 0 2>&1)" ||
    { echo "the balancing tunnel did not open: $t" >&2; exit 1; }
  url[tunnel]=$(grep -o 'http://127\.0\.0\.1:[0-9]*' <<<"$t" | head -1); where[tunnel]=laptop
  tun_pid=$(grep -o 'pid [0-9]*' <<<"$t" | head -1 | awk '{print $2}' || true)
  [[ -z "$tun_pid" ]] || tunnel_pids+=("$tun_pid")
  t1="$("${laptop[@]}" "$bin" tunnel "$name@1" --cluster hpc --background --local-port 0 2>&1)" ||
    { echo "the tunnel to replica 1 did not open: $t1" >&2; exit 1; }
  url[tunnel@1]=$(grep -o 'http://127\.0\.0\.1:[0-9]*' <<<"$t1" | head -1); where[tunnel@1]=laptop
  p1=$(grep -o 'pid [0-9]*' <<<"$t1" | head -1 | awk '{print $2}' || true)
  [[ -z "$p1" ]] || tunnel_pids+=("$p1")
  ssh_port=$(free_port)
  "${laptop[@]}" ssh -F "$ssh_config" -N -o ExitOnForwardFailure=yes \
    -L "$ssh_port:${urls[0]#http://}" vllmctl-login 2> "$work/ssh.err" &
  ssh_pid=$!; pids+=("$ssh_pid")
  wait_listening "$ssh_port" "$ssh_pid" nsenter --net=/var/run/netns/vc-laptop ||
    { echo "ssh -L did not start:" >&2; cat "$work/ssh.err" >&2; exit 1; }
  url[ssh-L]=http://127.0.0.1:$ssh_port; where[ssh-L]=laptop
  variants+=(tunnel tunnel@1 ssh-L)
  if [[ -n "$base_bin" ]]; then
    # A state directory of its own: the baseline's background tunnel has the same name.
    cp -a "$VLLMCTL_STATE_DIR" "$work/state-base"
    tb="$("${laptop[@]}" VLLMCTL_STATE_DIR="$work/state-base" "$base_bin" tunnel "$name" --cluster hpc --background --local-port 0 2>&1)" ||
      { echo "the baseline balancing tunnel did not open: $tb" >&2; exit 1; }
    url[tun-base]=$(grep -o 'http://127\.0\.0\.1:[0-9]*' <<<"$tb" | head -1); where[tun-base]=laptop
    pb=$(grep -o 'pid [0-9]*' <<<"$tb" | head -1 | awk '{print $2}' || true)
    [[ -z "$pb" ]] || tunnel_pids+=("$pb")
    [[ -n "${url[tun-base]}" ]] || { echo "no tunnel URL in: $tb" >&2; exit 1; }
    variants+=(tun-base)
  fi
  [[ -n "${url[tunnel]}" && -n "${url[tunnel@1]}" ]] || { echo "no tunnel URL in: $t / $t1" >&2; exit 1; }
fi

run_load() { # VARIANT ARGS...: load.py against the variant, from where it listens
  local v=$1; shift
  if [[ ${where[$v]} == laptop ]]; then
    nsenter --net=/var/run/netns/vc-laptop python3 "$load" "$@" --url "${url[$v]}" --key-file "$work/key"
  else
    python3 "$load" "$@" --url "${url[$v]}" --key-file "$work/key"
  fi
}
order() { local r=$1; shift; local all=("$@") n=$# i; for ((i = 0; i < n; i++)); do printf '%s ' "${all[$(((i + r) % n))]}"; done; }

for v in "${variants[@]}"; do run_load "$v" small -c 4 --seconds 1 --warmup 0.5 > /dev/null; done # warm-up
: > "$work/results"
step=0
[[ $parts == *" load "* ]] || concs_run=""
for c in ${concs_run-$concs}; do
  for kind in small tokens; do
    step=$((step + 1))
    for v in $(order "$step" "${variants[@]}"); do
      if [[ $kind == small ]]; then
        r=$(run_load "$v" small -c "$c" --seconds "$secs")
      else
        r=$(run_load "$v" tokens -c "$c" --seconds "$tsecs" --warmup 1.5 --max-tokens 13)
      fi
      echo "$kind $c $v $r" >> "$work/results"
    done
  done
done

# Memory with 256 open streams (max_tokens 400: 40 s, so none ends on its own): once all 256 have
# their first event they stay open 3 s, then load.py closes them.
mem_run() { # VARIANT PIDS_CSV
  local v=$1 csv=$2
  echo "mem 256 $v $(run_load "$v" streams -c 256 --max-tokens 400 --seconds 3 --rss-pid "$csv")" >> "$work/results"
}
ng_all=$(printf '%s,' "$ng_pid" $(pgrep -P "$ng_pid" || true)); ng_all=${ng_all%,}
if [[ $parts == *" memory "* ]]; then
  mem_run gateway "$gw_pid"
  [[ -z "$base_bin" ]] || mem_run gw-base "$gwb_pid"
  mem_run nginx "$ng_all"
  if ((laptop_too)) && [[ -n "$tun_pid" ]]; then mem_run tunnel "$tun_pid"; fi
fi
curl -s "${url[gateway]}/vllmctl/replicas" > "$work/gw-replicas.json" || true

python3 - "$work/results" "$work/gw-replicas.json" "$concs" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    kind, c, v, j = line.split(" ", 3)
    rows[(kind, c, v)] = json.loads(j)
concs = sys.argv[3].split()
order = ["one", "gateway", "gw-base", "nginx", "tunnel", "tun-base", "tunnel@1", "ssh-L"]
vs = [v for v in order if any(k[2] == v for k in rows)]
def cell(kind, c, v, f, fmt="{:.2f}"):
    r = rows.get((kind, c, v))
    return "-" if r is None else fmt.format(r[f])
print("  small requests (GET /v1/models): p50 / p99 ms, req/s")
print("  " + f"{'conc':>5}" + "".join(f"{v:>24}" for v in vs))
for c in concs:
    print("  " + f"{c:>5}" + "".join(
        f"{cell('small', c, v, 'p50_ms') + ' / ' + cell('small', c, v, 'p99_ms') + ', ' + cell('small', c, v, 'req_per_s', '{:.0f}'):>24}"
        for v in vs))
print("  token-bound completions (max_tokens 13, 1.3 s of decoding each): req/s (p50 s)")
print("  " + f"{'conc':>5}" + "".join(f"{v:>24}" for v in vs))
for c in concs:
    print("  " + f"{c:>5}" + "".join(
        f"{cell('tokens', c, v, 'req_per_s', '{:.1f}') + ' (' + cell('tokens', c, v, 'p50_ms', '{:.0f}') + ')':>24}"
        for v in vs))
errs = sum(r.get("errors", 0) for k, r in rows.items())
print(f"  errors over all load runs: {errs}")
# Goals.
def g(kind, c, v, f):
    r = rows.get((kind, c, v)); return None if r is None else r[f]
for c in concs:
    base = g("small", c, "one", "p50_ms"); ng = g("small", c, "nginx", "p50_ms")
    if base is None:
        continue
    parts = []
    for v in ("gateway", "gw-base", "nginx"):
        x = g("small", c, v, "p50_ms")
        if x is not None and base is not None:
            parts.append(f"{v} {x - base:+.2f} ms")
    gw = g("small", c, "gateway", "p50_ms")
    ratio = (gw - base) / (ng - base) if None not in (gw, ng, base) and ng - base > 0 else float("nan")
    verdict = "met" if None not in (gw, ng) and gw <= ng else "not met"
    print(f"  c={c}: p50 overhead over one replica direct: {', '.join(parts)}; gateway p50 / nginx p50 "
          f"{(gw / ng) if gw and ng else float('nan'):.2f} (goal: overhead <= nginx's; {verdict})")
    t_one = g("small", c, "tunnel@1", "p50_ms"); t_bal = g("small", c, "tunnel", "p50_ms"); s = g("small", c, "ssh-L", "p50_ms")
    t_base = g("small", c, "tun-base", "p50_ms")
    if None not in (t_one, t_bal, s):
        print(f"        laptop: balancing tunnel p50 {t_bal:.2f} ms vs tunnel@1 {t_one:.2f} ms vs ssh -L {s:.2f} ms "
              f"(balancing/ssh {t_bal / s:.2f})" + ("" if t_base is None else f"; baseline's balancing tunnel {t_base:.2f} ms"))
for c in concs:
    one = g("tokens", c, "one", "req_per_s")
    if not one:
        continue
    parts = [f"{v} {g('tokens', c, v, 'req_per_s') / one:.2f}x" for v in ("gateway", "gw-base", "nginx", "tunnel", "tun-base")
             if g("tokens", c, v, "req_per_s") is not None]
    t1 = g("tokens", c, "tunnel@1", "req_per_s")
    if t1 and g("tokens", c, "tunnel", "req_per_s"):
        parts.append(f"tunnel/tunnel@1 {g('tokens', c, 'tunnel', 'req_per_s') / t1:.2f}x")
    note = " (goal >= 1.80x where one replica is saturated, i.e. c=256)" if c == concs[-1] else ""
    print(f"  c={c}: token-bound throughput over one replica: {', '.join(parts)}{note}")
for v in ("gateway", "gw-base", "nginx", "tunnel"):
    r = rows.get(("mem", "256", v)) or next((x for k, x in rows.items() if k[0] == "mem" and k[2] == v), None)
    if r is None:
        continue
    mib = r["rss_kib_max_all_open"] / 1024
    goal = f" (goal <= 64 MiB; ratio {mib / 64:.2f})" if v == "gateway" else ""
    print(f"  RSS of {v}{' (master + workers)' if v == 'nginx' else ''}: {mib:.1f} MiB max while all "
          f"{r['opened']} streams were open ({r['seconds_all_open']} s; {r['errors']} failed, "
          f"{r['seconds_to_open']} s to open them all); {r['rss_kib_before'] / 1024:.1f} MiB before, "
          f"{r['rss_kib_max'] / 1024:.1f} MiB max overall{goal}")
try:
    page = json.load(open(sys.argv[2]))
    print("  gateway's /vllmctl/replicas: " + ", ".join(
        f"{r['host']}:{r['port']} requests {r['requests']} failures {r['failures']}" for r in page["replicas"]))
except Exception:
    pass
PY
