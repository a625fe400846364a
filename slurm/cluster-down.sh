#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stop the local test cluster started by cluster-up.sh: cancel all jobs, then stop
# slurmd, slurmctld, slurmdbd, MariaDB, both sshds and munged (only processes whose
# pid files or command lines/open files point into this clone's .cluster directory).
# State stays on disk; cluster-up.sh brings everything back. Idempotent.
set -euo pipefail

# shellcheck source=lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

((EUID == 0)) || die "cluster-down.sh must run as root"

if [[ ! -d $STATE ]]; then
    log "no $STATE; nothing to stop"
    exit 0
fi

if is_running "$SLURMCTLD_PID" slurmctld; then
    cancel_all_jobs
fi
stop_cluster "$STATE"
log "cluster stopped (state kept in $STATE)"
