#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stop the local test cluster started by cluster-up.sh: cancel all jobs, then stop each
# node's slurmd, slurmctld, slurmdbd, MariaDB, the three sshds and munged (only processes
# whose pid files or command lines/open files point into this clone's .cluster directory),
# and remove the network: the node and laptop namespaces (with the laptop's nft rules),
# their veths and the bridge (see network.sh).
# State stays on disk; cluster-up.sh brings everything back. Idempotent.
set -euo pipefail

# shellcheck source=lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
# shellcheck source=network.sh
. "$SLURM_DIR/network.sh"

((EUID == 0)) || die "cluster-down.sh must run as root"

if [[ -d $STATE ]]; then
    if is_running "$SLURMCTLD_PID" slurmctld; then
        cancel_all_jobs
    fi
    stop_cluster "$STATE"
else
    log "no $STATE; no daemons to stop"
fi
# The namespaces and bridge have fixed names: if another clone's cluster runs on them (its
# state dir is in /etc/slurm/slurm.conf's marker and its slurmctld is up), leave them.
other=$(sed -n 's|^# vllmctl-state: ||p' "$ETC_SLURM/slurm.conf" 2>/dev/null | head -n1)
if [[ -n $other && $other != "$STATE" ]] && is_running "$other/run/slurmctld.pid" slurmctld; then
    warn "the cluster of another clone ($other) runs on the network; left it in place (stop that one with its slurm/cluster-down.sh)"
    exit 0
fi
net_down
log "cluster stopped, network removed (state kept in $STATE)"
