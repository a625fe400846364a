#!/usr/bin/env bash
# Install the Debian 12 packages the local Slurm test cluster needs.
# Idempotent: does nothing (and never touches apt) when everything is installed.
set -euo pipefail

PACKAGES=(
    slurm-wlm slurmctld slurmd slurm-client slurmdbd
    munge
    mariadb-server
    openssh-server openssh-client
    libpam-modules passwd
    libcurl4-openssl-dev libssh2-1-dev pkg-config
    curl python3 python3-venv iproute2 nftables util-linux openssl
    man-db groff-base
    nginx-light # the peer of the balancing endpoint in make bench (Tests/bench/balancer.sh)
)

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
    exit 0
fi

if ((EUID != 0)); then
    echo "install-deps.sh: missing packages: ${missing[*]}; rerun as root (or: sudo $0)" >&2
    exit 1
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Package postinst scripts must not try to start daemons (there is no init system
# here, and cluster-up.sh starts everything itself with its own config). If the
# machine has no policy-rc.d, use a temporary one for this install only.
cleanup_policy=""
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    cleanup_policy=/usr/sbin/policy-rc.d
    trap 'rm -f "$cleanup_policy"' EXIT
fi

log=$(mktemp /tmp/vllmctl-install-deps.XXXXXX.log)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    echo "install-deps.sh: apt-get failed; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
fi
rm -f "$log"
echo "install-deps.sh: done"
