#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# One-screen status of the local test cluster. Exits non-zero if anything is down.
set -euo pipefail

# shellcheck source=lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

down=0
row() { printf '  %-22s %s\n' "$1" "$2"; }

echo "vllmctl local cluster ($STATE)"
echo "daemons:"
for d in "munged:$MUNGE_PID" "mariadbd:$MYSQL_PID" "slurmdbd:$SLURMDBD_PID" \
    "slurmctld:$SLURMCTLD_PID" "slurmd:$SLURMD_PID" \
    "sshd:$SSHD_PID:$SSH_PORT" "sshd:$SSHD_LEGACY_PID:$SSH_LEGACY_PORT" "sshd:$SSHD_KBD_PID:$SSH_KBD_PORT"; do
    IFS=: read -r comm pidfile port <<<"$d"
    label=$comm
    [[ -n $port ]] && label="$comm :$port"
    if pid=$(pid_of "$pidfile" "$comm"); then
        row "$label" "running (pid $pid)"
    elif [[ $comm == munged ]] && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        row "$label" "not ours, but munge works (pid $(pgrep -x munged | tr '\n' ' '))"
    else
        row "$label" "NOT RUNNING"
        down=1
    fi
done

echo "slurm:"
if timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    row slurmctld "answers scontrol ping"
    timeout 10 sinfo -N -o '%N %P %t %c %m %G' 2>/dev/null | sed 's/^/    /' || true
    state=$(node_state)
    if node_ready; then
        row "node $NODE" "$state"
    else
        row "node $NODE" "${state:-unknown} (NOT READY; try: scontrol update nodename=$NODE state=resume)"
        down=1
    fi
    row "jobs in squeue" "$(timeout 10 squeue -h -o %A 2>/dev/null | wc -l)"
else
    row slurmctld "NOT ANSWERING"
    down=1
fi
if timeout 15 sacct -n -X -S now-1minutes -o JobID >/dev/null 2>&1; then
    row sacct "answers"
else
    row sacct "NOT ANSWERING"
    down=1
fi

echo "ssh:"
for alias in "$SSH_ALIAS" "$SSH_LEGACY_ALIAS"; do
    if [[ -f $SSH_CONFIG ]] && ssh_local "$alias" true >/dev/null 2>&1; then
        row "$alias" "reachable (ssh -F $SSH_CONFIG $alias)"
    else
        row "$alias" "NOT REACHABLE"
        down=1
    fi
done
if [[ -f $SSH_CONFIG ]] && ssh_kbd true >/dev/null 2>&1; then
    row "$SSH_KBD_ALIAS" "reachable (keyboard-interactive, password in $KBD_PASSWORD_FILE)"
else
    row "$SSH_KBD_ALIAS" "NOT REACHABLE"
    down=1
fi

if ((down)); then
    echo "status: DOWN (start it with: $SLURM_DIR/cluster-up.sh)"
    exit 1
fi
echo "status: UP"
