#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test of the local Slurm test cluster (slurm/cluster-up.sh).
# Prints "ok - ..." / "FAIL - ..." per check and finally "N passed, M failed".
# Leaves the cluster up.
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
        "slurmctld:$SLURMCTLD_PID" "slurmd:$SLURMD_PID" "sshd:$SSHD_PID" "sshd:$SSHD_LEGACY_PID" \
        "sshd:$SSHD_KBD_PID"; do
        out+="${d%%:*}=$(pid_of "${d#*:}" "${d%%:*}" ||
            { [[ $d == munged:* ]] && pgrep -x munged | head -n1; } || echo none) "
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

check "node $NODE is ready (state: $(node_state))" node_ready
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
gpu_job gres2 2 --gres=gpu:2
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

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
