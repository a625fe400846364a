#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# One-screen status of the local test cluster. Exits non-zero if anything is down.
set -euo pipefail

# shellcheck source=lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
# shellcheck source=network.sh
. "$SLURM_DIR/network.sh"

down=0
row() { printf '  %-22s %s\n' "$1" "$2"; }

echo "vllmctl local cluster ($STATE)"
echo "daemons on the login host (root namespace):"
for d in "munged:$MUNGE_PID" "mariadbd:$MYSQL_PID" "slurmdbd:$SLURMDBD_PID" \
    "slurmctld:$SLURMCTLD_PID" \
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
echo "daemons on the nodes:"
for n in "${NODES[@]}"; do
    ns=$(node_ns "$n")
    if pid=$(pid_of "$(slurmd_pidfile "$n")" slurmd); then
        if pid_in_netns "$pid" "$ns"; then
            row "slurmd $n" "running (pid $pid, in $ns)"
        else
            row "slurmd $n" "running (pid $pid) but NOT in namespace $ns (rerun cluster-up.sh)"
            down=1
        fi
    else
        row "slurmd $n" "NOT RUNNING"
        down=1
    fi
done

echo "network (slurm/network.sh):"
if _has_addr "$BRIDGE" "$BRIDGE_ADDR/$NODE_PREFIX" && _link_up "$BRIDGE"; then
    row "bridge $BRIDGE" "$BRIDGE_ADDR/$NODE_PREFIX (login host on the cluster network)"
else
    row "bridge $BRIDGE" "MISSING or down"
    down=1
fi
# ns_row HOST NS CIDR: the namespace, its address and hostname.
ns_row() {
    local host=$1 ns=$2 cidr=$3 h
    if ! ns_exists "$ns"; then
        row "$host" "namespace $ns MISSING"
        down=1
        return
    fi
    h=$(nsenter --uts="$UTSNS_DIR/$ns" hostname 2>/dev/null) || h="?"
    if _has_addr eth0 "$cidr" "$ns" && _link_up eth0 "$ns"; then
        row "$host" "namespace $ns, eth0 $cidr, hostname $h, routes: $(ip -n "$ns" -4 route show | cut -d' ' -f1-3 | paste -sd, -)"
    else
        row "$host" "namespace $ns, eth0 NOT $cidr or down"
        down=1
    fi
}
for n in "${NODES[@]}"; do ns_row "$n" "$(node_ns "$n")" "${NODE_ADDR[$n]}/$NODE_PREFIX"; done
ns_row "$LAPTOP" "$LAPTOP_NS" "$LAPTOP_ADDR/$LAPTOP_PREFIX"
if ns_exists "$LAPTOP_NS"; then
    if on_laptop nft list table inet "$LAPTOP_NFT_TABLE" >/dev/null 2>&1; then
        row "laptop filter" "nft table inet $LAPTOP_NFT_TABLE (only tcp $LOGIN_ADDR:$SSH_PORT-$SSH_KBD_PORT)"
    else
        row "laptop filter" "no nft table (routing alone isolates the laptop)"
    fi
fi

echo "slurm:"
if timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    row slurmctld "answers scontrol ping"
    timeout 10 sinfo -N -o '%N %P %t %c %m %G' 2>/dev/null | sed 's/^/    /' || true
    for n in "${NODES[@]}"; do
        state=$(node_state "$n")
        if node_ready "$n"; then
            row "node $n" "$state"
        else
            row "node $n" "${state:-unknown} (NOT READY; try: scontrol update nodename=$n state=resume)"
            down=1
        fi
    done
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
if [[ -f $SSH_CONFIG ]] && on_laptop ssh -n -F "$SSH_CONFIG" -o BatchMode=yes -o ConnectTimeout=5 "$SSH_LOGIN_ALIAS" true >/dev/null 2>&1; then
    row "$SSH_LOGIN_ALIAS" "reachable from the laptop ($LOGIN_ADDR:$SSH_PORT)"
else
    row "$SSH_LOGIN_ALIAS" "NOT REACHABLE from the laptop"
    down=1
fi

if ((down)); then
    echo "status: DOWN (start it with: $SLURM_DIR/cluster-up.sh)"
    exit 1
fi
echo "status: UP"
