#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test of the local Slurm test cluster (slurm/cluster-up.sh).
# Prints "ok - ..." / "FAIL - ..." per check and finally "N passed, M failed".
# Leaves the cluster up. The topology checks (section 5) fail if the cluster silently
# degrades to one host: jobs must run on node1/node2 at 10.77.0.x, their servers must be
# reachable from the login host and not from the laptop namespace.
set -euo pipefail

# shellcheck source=../lib.sh
. "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"

PASSED=0
FAILED=0
ok()   { PASSED=$((PASSED + 1)); echo "ok - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }
check() { # check DESCRIPTION CMD...
    local desc=$1
    shift
    if "$@"; then ok "$desc"; else fail "$desc"; fi
}

WORK="$STATE/test-cluster"
rm -rf "$WORK"
mkdir -p "$WORK"

daemon_pids() {
    local out="" d
    for d in "munged:$MUNGE_PID" "mariadbd:$MYSQL_PID" "slurmdbd:$SLURMDBD_PID" \
        "slurmctld:$SLURMCTLD_PID" "sshd:$SSHD_PID" "sshd:$SSHD_LEGACY_PID" \
        "sshd:$SSHD_KBD_PID"; do
        out+="${d%%:*}=$(pid_of "${d#*:}" "${d%%:*}" ||
            { [[ $d == munged:* ]] && pgrep -x munged | head -n1; } || echo none) "
    done
    for n in "${NODES[@]}"; do
        out+="slurmd-$n=$(pid_of "$(slurmd_pidfile "$n")" slurmd || echo none) "
    done
    # The namespaces too: a rerun must reuse them, not make new ones.
    for ns in "${NODES[@]/#/vc-}" "$LAPTOP_NS"; do
        out+="$ns=$(ns_inode "$NETNS_DIR/$ns" || echo none) "
    done
    echo "${out% }"
}

# 1. cluster-up twice --------------------------------------------------------------
t=$SECONDS
if bash "$SLURM_DIR/cluster-up.sh" >"$WORK/up1.log" 2>&1; then
    ok "cluster-up.sh (first run) exits 0 ($((SECONDS - t))s)"
else
    fail "cluster-up.sh (first run) exits 0"
    tail -n 30 "$WORK/up1.log" | sed 's/^/# /'
fi
pids1=$(daemon_pids)
t=$SECONDS
if bash "$SLURM_DIR/cluster-up.sh" >"$WORK/up2.log" 2>&1; then
    ok "cluster-up.sh (second run) exits 0 ($((SECONDS - t))s)"
else
    fail "cluster-up.sh (second run) exits 0"
    tail -n 30 "$WORK/up2.log" | sed 's/^/# /'
fi
pids2=$(daemon_pids)
if [[ $pids1 == "$pids2" && $pids1 != *none* ]]; then
    ok "second cluster-up leaves the same daemons ($pids2)"
else
    fail "second cluster-up leaves the same daemons (before: $pids1; after: $pids2)"
fi

# Both nodes idle, each with its own 2 GPUs (sinfo: "NODE STATE GRES").
nodes_idle_gpus() {
    local want="node1 idle gpu:2,node2 idle gpu:2"
    [[ $(sinfo -h -N -o '%N %t %G' 2>/dev/null | sort -u | paste -sd, -) == "$want" ]]
}
if wait_for 30 "both nodes idle" nodes_idle_gpus; then
    ok "nodes ${NODES[*]} are idle with gpu:2 each"
else
    fail "nodes ${NODES[*]} are idle with gpu:2 each (sinfo: $(sinfo -h -N -o '%N %t %G' | paste -sd, -); jobs: $(squeue -h -o '%A:%j:%N' | paste -sd' ' -))"
fi
for n in "${NODES[@]}"; do
    slurmd_in_ns() { local p; p=$(pid_of "$(slurmd_pidfile "$1")" slurmd) && pid_in_netns "$p" "$(node_ns "$1")"; }
    check "slurmd of $n runs in namespace $(node_ns "$n")" slurmd_in_ns "$n"
done
check "cluster-status.sh exits 0" bash -c "'$SLURM_DIR/cluster-status.sh' >'$WORK/status.log' 2>&1"
check "vllmctl.yaml rendered without placeholders" \
    bash -c "[[ -s '$VLLMCTL_YAML' ]] && ! grep -q '@[A-Z]*@' '$VLLMCTL_YAML' && grep -qF '$STATE/deployments' '$VLLMCTL_YAML'"

# 2. a plain job: squeue, then sacct COMPLETED ------------------------------------------
job=$(sbatch --parsable -J test-plain -D "$WORK" -o "$WORK/plain.out" --wrap 'echo hello; sleep 4' 2>"$WORK/sbatch.err") || job=""
job=${job%%;*}
if [[ $job =~ ^[0-9]+$ ]]; then
    ok "sbatch --parsable returns a job id ($job)"
    check "job $job appears in squeue" bash -c "squeue -h -j '$job' -o %A 2>/dev/null | grep -qx '$job'"
    sacct_completed() { [[ "$(sacct -n -X -P -j "$job" -o State 2>/dev/null | head -n1)" == COMPLETED ]]; }
    check "job $job appears in sacct with state COMPLETED" wait_for 90 "sacct COMPLETED" sacct_completed
    not_in_squeue() { [[ -z "$(squeue -h -j "$job" -o %A 2>/dev/null)" ]]; }
    check "job $job leaves squeue after it ends (MinJobAge)" wait_for 60 "job to leave squeue" not_in_squeue
    check "job $job wrote its output" grep -qx hello "$WORK/plain.out"
else
    fail "sbatch --parsable returns a job id (got '$job': $(cat "$WORK/sbatch.err"))"
fi

# 3. GPU jobs ---------------------------------------------------------------------------
# gpu_job NAME EXPECTED_COUNT SBATCH_GPU_ARGS...
gpu_job() {
    local name=$1 want=$2
    shift 2
    local id out="$WORK/$name.out"
    # shellcheck disable=SC2016 # expanded by the job, not here
    id=$(sbatch --parsable -J "$name" -D "$WORK" -o "$out" "$@" \
        --wrap 'echo "CVD=${CUDA_VISIBLE_DEVICES:-}"' 2>&1) || {
        fail "$name: sbatch $* failed: $id"
        return
    }
    id=${id%%;*}
    done_ok() { [[ "$(sacct -n -X -P -j "$1" -o State 2>/dev/null | head -n1)" == COMPLETED ]]; }
    if ! wait_for 90 "$name job $id" done_ok "$id"; then
        fail "$name: job $id ($*) did not complete (state: $(sacct -n -X -P -j "$id" -o State | head -n1))"
        return
    fi
    local cvd n
    cvd=$(sed -n 's/^CVD=//p' "$out" | head -n1)
    n=0
    [[ -n $cvd ]] && n=$(awk -F, '{print NF}' <<<"$cvd")
    if ((n == want)); then
        ok "$name: job $id ($*) sees CUDA_VISIBLE_DEVICES=$cvd"
    else
        fail "$name: job $id ($*) sees CUDA_VISIBLE_DEVICES='$cvd', want $want entries"
    fi
}
gpu_job gres2-node1 2 -w node1 --gres=gpu:2
gpu_job gres2-node2 2 -w node2 --gres=gpu:2
gpu_job gpus1 1 --gpus=1

# 4. ssh ----------------------------------------------------------------------------------
if out=$(ssh_local "$SSH_ALIAS" squeue 2>&1) && [[ $out == *JOBID* ]]; then
    ok "ssh -F .cluster/ssh/ssh_config $SSH_ALIAS squeue works"
else
    fail "ssh -F .cluster/ssh/ssh_config $SSH_ALIAS squeue works (output: $out)"
fi
if out=$(ssh_local "$SSH_ALIAS" sbatch --parsable -D /tmp -o /dev/null --wrap true 2>&1) && [[ $out =~ ^[0-9]+ ]]; then
    ok "sbatch over ssh works (job ${out%%;*})"
else
    fail "sbatch over ssh works (output: $out)"
fi
# ssh_key KEY PORT [SSH OPTIONS...]: log in with exactly one key, no ssh_config.
ssh_key() {
    local key=$1 port=$2
    shift 2
    ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=5 -o IdentitiesOnly=yes \
        -o UserKnownHostsFile="$SSH_DIR/known_hosts" -o GlobalKnownHostsFile=/dev/null \
        -o StrictHostKeyChecking=yes -i "$SSH_DIR/$key" -p "$port" "$@" root@127.0.0.1 true 2>/dev/null
}
for k in id_ed25519 id_ecdsa id_rsa; do
    check "port $SSH_PORT accepts $k" ssh_key "$k" "$SSH_PORT"
done
for t in ssh-ed25519 ecdsa-sha2-nistp256 rsa-sha2-512; do
    check "known_hosts verifies the $t host key on port $SSH_PORT" ssh_key id_ed25519 "$SSH_PORT" -o HostKeyAlgorithms="$t"
done
rejects_sha1() { ! ssh_key id_rsa "$SSH_PORT" -o PubkeyAcceptedAlgorithms=ssh-rsa; }
check "port $SSH_PORT rejects ssh-rsa (SHA-1) signatures" rejects_sha1
check "port $SSH_LEGACY_PORT accepts ssh-rsa (SHA-1) signatures and host key" \
    ssh_key id_rsa "$SSH_LEGACY_PORT" -o PubkeyAcceptedAlgorithms=ssh-rsa -o HostKeyAlgorithms=ssh-rsa
check "ssh -F .cluster/ssh/ssh_config $SSH_LEGACY_ALIAS works" ssh_local "$SSH_LEGACY_ALIAS" true
# The keyboard-interactive sshd: refuses publickey (id_ed25519 is in the AuthorizedKeysFile
# all three sshds share), and the password in kbd-password.txt works (PAM's prompt answered
# by the askpass helper).
kbd_refuses_keys() {
    local out
    out=$(ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=5 -o IdentitiesOnly=yes \
        -o UserKnownHostsFile="$SSH_DIR/known_hosts" -o GlobalKnownHostsFile=/dev/null \
        -o StrictHostKeyChecking=yes -i "$SSH_DIR/id_ed25519" -p "$SSH_KBD_PORT" \
        "$SSH_KBD_USER@127.0.0.1" true 2>&1 </dev/null) && return 1
    [[ $out == *"Permission denied (keyboard-interactive)"* ]] || { echo "# $out"; return 1; }
}
check "port $SSH_KBD_PORT refuses publickey and offers only keyboard-interactive" kbd_refuses_keys
kbd_password_login() { [[ $(ssh_kbd id -un 2>/dev/null) == "$SSH_KBD_USER" ]]; }
check "ssh -F .cluster/ssh/ssh_config $SSH_KBD_ALIAS works with kbd-password.txt" kbd_password_login
kbd_password_mode() { [[ $(stat -c %a "$KBD_PASSWORD_FILE") == 600 ]]; }
check "kbd-password.txt is 0600" kbd_password_mode
check "id_ed25519_enc opens with passphrase.txt" \
    bash -c "ssh-keygen -y -P \"\$(cat '$SSH_DIR/passphrase.txt')\" -f '$SSH_DIR/id_ed25519_enc' >/dev/null 2>&1"

# 5. topology: login host, two nodes, a laptop --------------------------------------------
# job_done ID: the job COMPLETED (sacct).
job_done() { [[ "$(sacct -n -X -P -j "$1" -o State 2>/dev/null | head -n1)" == COMPLETED ]]; }

# A job on each node sees that node's address and name, not the login host's.
for n in "${NODES[@]}"; do
    # shellcheck disable=SC2016 # expanded by the job
    id=$(sbatch --parsable -J "where-$n" -w "$n" -D "$WORK" -o "$WORK/where-$n.out" \
        --wrap 'echo "ADDR=$(hostname -I)"; echo "HOST=$(hostname)"; echo "NODENAME=$SLURMD_NODENAME"' 2>&1) || id=""
    id=${id%%;*}
    if [[ $id =~ ^[0-9]+$ ]] && wait_for 90 "job $id on $n" job_done "$id"; then
        addr=$(sed -n 's/^ADDR=//p' "$WORK/where-$n.out" | awk '{print $1}')
        host=$(sed -n 's/^HOST=//p' "$WORK/where-$n.out")
        if [[ $addr == "${NODE_ADDR[$n]}" ]]; then
            ok "a job on $n: hostname -I is $addr"
        else
            fail "a job on $n: hostname -I is '$addr', want ${NODE_ADDR[$n]} (not 127.0.0.1 or the login host's: is slurmd running in $(node_ns "$n")?)"
        fi
        check "a job on $n: hostname is $n (got '$host')" test "$host" == "$n"
    else
        fail "a job on $n (sbatch -w $n) completes (job '$id')"
    fi
done

# A 2-node job: srun reaches both nodes.
# shellcheck disable=SC2016
id=$(sbatch --parsable -J two-nodes -N 2 -D "$WORK" -o "$WORK/two-nodes.out" --wrap 'srun hostname -I' 2>&1) || id=""
id=${id%%;*}
if [[ $id =~ ^[0-9]+$ ]] && wait_for 90 "2-node job $id" job_done "$id"; then
    got=$(awk '{print $1}' "$WORK/two-nodes.out" | sort | paste -sd' ' -)
    want=$(for n in "${NODES[@]}"; do echo "${NODE_ADDR[$n]}"; done | sort | paste -sd' ' -)
    check "a 2-node job (sbatch -N 2, srun hostname -I) runs on both nodes (got: $got)" test "$got" == "$want"
else
    fail "a 2-node job (sbatch -N 2) completes (job '$id', state: $(sacct -n -X -P -j "${id:-0}" -o State 2>/dev/null | head -n1))"
fi

# A server started by a job on node2 (the vLLM simulator on 0.0.0.0:PORT): reachable from
# the login host at node2's address only, not from the laptop.
SIM_PORT=18123
SIM_NODE=node2
SIM_ADDR=${NODE_ADDR[$SIM_NODE]}
http_ok() { [[ $("$@" -s -o /dev/null -w '%{http_code}' 2>/dev/null) == 200 ]]; }
id=$(sbatch --parsable -J topo-sim -w "$SIM_NODE" -D "$WORK" -o "$WORK/topo-sim.out" \
    --export=ALL,VLLM_SIM_LOAD_SECONDS=0 \
    --wrap "exec '$SLURM_DIR/sim/bin/vllm' serve topo-test --host 0.0.0.0 --port $SIM_PORT" 2>&1) || id=""
id=${id%%;*}
if [[ $id =~ ^[0-9]+$ ]]; then
    if wait_for 60 "the simulator on $SIM_ADDR:$SIM_PORT" http_ok curl --max-time 2 "http://$SIM_ADDR:$SIM_PORT/health"; then
        ok "from the login host, a job's server answers at $SIM_NODE's address ($SIM_ADDR:$SIM_PORT)"
    else
        fail "from the login host, a job's server answers at $SIM_NODE's address ($SIM_ADDR:$SIM_PORT) (job $id; log: $(tail -n 3 "$WORK/topo-sim.out" 2>/dev/null | tr '\n' ' '))"
    fi
    if ! port_listening "$SIM_PORT"; then
        not_on_login() { ! curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$SIM_PORT/health"; }
        check "the server is not on the login host (127.0.0.1:$SIM_PORT refuses)" not_on_login
    fi
    laptop_cannot() { ! on_laptop curl -s --max-time 3 -o /dev/null "http://$SIM_ADDR:$SIM_PORT/health"; }
    check "from the laptop, the node's server port ($SIM_ADDR:$SIM_PORT) is unreachable" laptop_cannot
    scancel "$id" 2>/dev/null || true
else
    fail "sbatch of the simulator on $SIM_NODE (got '$id')"
fi

# The laptop reaches the login host's sshds and nothing else.
ssh_banner() { on_laptop timeout 5 bash -c "exec 3<>/dev/tcp/$LOGIN_ADDR/$1 && head -c 7 <&3" 2>/dev/null | grep -qx 'SSH-2.0'; }
for port in "$SSH_PORT" "$SSH_LEGACY_PORT" "$SSH_KBD_PORT"; do
    check "from the laptop, $LOGIN_ADDR:$port (sshd) is reachable" ssh_banner "$port"
done
if out=$(on_laptop ssh -n -F "$SSH_CONFIG" -o BatchMode=yes -o ConnectTimeout=5 "$SSH_LOGIN_ALIAS" squeue 2>&1) && [[ $out == *JOBID* ]]; then
    ok "from the laptop, ssh -F .cluster/ssh/ssh_config $SSH_LOGIN_ALIAS squeue works"
else
    fail "from the laptop, ssh -F .cluster/ssh/ssh_config $SSH_LOGIN_ALIAS squeue works (output: $out)"
fi
laptop_no_route() { ! on_laptop curl -s --max-time 3 -o /dev/null "http://$BRIDGE_ADDR:$SLURMCTLD_PORT/"; }
check "from the laptop, the cluster network ($BRIDGE_ADDR) is unreachable" laptop_no_route
if on_laptop nft list table inet "$LAPTOP_NFT_TABLE" >/dev/null 2>&1; then
    # slurmctld listens on all addresses, LOGIN_ADDR included: only the nft filter stops it.
    laptop_no_ctld() { ! on_laptop curl -s --max-time 3 -o /dev/null "http://$LOGIN_ADDR:$SLURMCTLD_PORT/"; }
    check "from the laptop, $LOGIN_ADDR:$SLURMCTLD_PORT (slurmctld) is filtered" laptop_no_ctld
else
    echo "# no nft table in $LAPTOP_NS: the laptop is isolated by routing only (filter checks skipped)"
fi

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
