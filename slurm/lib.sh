# shellcheck shell=bash disable=SC2034
# Shared helpers for the local test-cluster scripts (cluster-up/down/status, tests).
# Source it after setting nothing: every path is derived from this file's location.

# --- paths -------------------------------------------------------------------
SLURM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SLURM_DIR/.." && pwd)
STATE="$REPO/.cluster"

# Everything below lives under $STATE except the Slurm config (/etc/slurm) and
# munge's socket (its default, /run/munge/munge.socket.2).
ETC_SLURM=/etc/slurm
MUNGE_SOCKET_DIR=/run/munge

# state_paths DIR: (re)define every state path relative to a .cluster directory.
# cluster-up uses it to stop a cluster that a different clone started.
state_paths() {
    local s=$1
    RUN_DIR="$s/run"
    LOG_DIR="$s/log"
    SPOOL_DIR="$s/spool"
    GEN_DIR="$s/generated"
    DEV_DIR="$s/dev"
    MUNGE_DIR="$s/munge"
    MYSQL_DIR="$s/mysql"
    SSH_DIR="$s/ssh"
    MUNGE_KEY="$MUNGE_DIR/munge.key"
    MUNGE_PID="$RUN_DIR/munged.pid"
    MYSQL_DATA="$MYSQL_DIR/data"
    MYSQL_SOCK="$MYSQL_DIR/mysqld.sock"
    MYSQL_PID="$RUN_DIR/mariadbd.pid"
    MYSQL_PASS_FILE="$MYSQL_DIR/slurm-db-password"
    SLURMDBD_PID="$RUN_DIR/slurmdbd.pid"
    SLURMCTLD_PID="$RUN_DIR/slurmctld.pid"
    # One slurmd per node: slurmd_pidfile NODE ("%n" in SlurmdPidFile). slurmd.pid is where
    # the single-node cluster of earlier versions kept its only slurmd (stopped on sight).
    SLURMD_LEGACY_PID="$RUN_DIR/slurmd.pid"
    SSHD_PID="$SSH_DIR/sshd-$SSH_PORT.pid"
    SSHD_LEGACY_PID="$SSH_DIR/sshd-$SSH_LEGACY_PORT.pid"
    SSHD_KBD_PID="$SSH_DIR/sshd-$SSH_KBD_PORT.pid"
    KBD_PASSWORD_FILE="$SSH_DIR/kbd-password.txt"
    KBD_ASKPASS="$SSH_DIR/kbd-askpass.sh"
}

slurmd_pidfile() { printf '%s\n' "$RUN_DIR/slurmd-$1.pid"; }

# --- fixed cluster parameters -------------------------------------------------
CLUSTER_NAME=vllmctl-local
PARTITION=debug
LOGIN_ONLY_PARTITION=loginonly   # AllocNodes=the login node: no sbatch from jobs
# The login host is this machine's root network namespace: slurmctld, slurmdbd, MariaDB,
# munged, the sshds and the Slurm client commands. It is SlurmctldHost.
LOGIN_HOST=$(hostname -s)
# Compute nodes: one network namespace (and UTS namespace: its own hostname) each, with
# its own slurmd. NODE_ADDR[NODE] is its NodeAddr.
NODES=(node1 node2)
declare -A NODE_ADDR=([node1]=10.77.0.11 [node2]=10.77.0.12)
NODE_CPUS=8
NODE_MEM=16000
NODE_GPUS=2
SLURMCTLD_PORT=6817
SLURMD_PORT=6818
SLURMDBD_PORT=6819
MYSQL_PORT=16820
SSH_PORT=2222
SSH_LEGACY_PORT=2223
SSH_ALIAS=vllmctl-local
SSH_LEGACY_ALIAS=vllmctl-local-legacy
# Third sshd: PAM keyboard-interactive only (a password prompt), for one local user.
SSH_KBD_PORT=2224
SSH_KBD_ALIAS=vllmctl-local-kbd
SSH_KBD_USER=vllmctl-kbd

# Aliases for the same three sshds, reached from the laptop namespace at LOGIN_ADDR.
SSH_LOGIN_ALIAS=vllmctl-login
SSH_LOGIN_LEGACY_ALIAS=vllmctl-login-legacy
SSH_LOGIN_KBD_ALIAS=vllmctl-login-kbd

# --- network: hosts as network namespaces (set up by network.sh) ---------------------
# Bridge in the root namespace ("login"), one veth per node into it; the laptop has a
# point-to-point /30 to the root namespace and reaches nothing but the sshds.
NETNS_DIR=/var/run/netns           # iproute2's (ip netns add/del)
UTSNS_DIR=/run/vllmctl-uts         # persistent UTS namespaces (hostnames node1, ...)
BRIDGE=vcbr0
BRIDGE_ADDR=10.77.0.1              # the login host as the nodes see it (SlurmctldHost)
NODE_PREFIX=24
LAPTOP=laptop
LAPTOP_NS=vc-laptop
LAPTOP_VETH=vc-laptop-h            # root-namespace end
LOGIN_ADDR=10.78.0.1               # the login host as the laptop sees it
LAPTOP_ADDR=10.78.0.2
LAPTOP_PREFIX=30
LAPTOP_NFT_TABLE=vllmctl_laptop    # inet table inside the laptop namespace
node_ns() { printf 'vc-%s\n' "$1"; }     # node1 -> vc-node1
node_veth() { printf 'vc-%s-h\n' "$1"; } # root-namespace end of its veth

state_paths "$STATE"
SSH_CONFIG="$SSH_DIR/ssh_config"
VLLMCTL_YAML="$STATE/vllmctl.yaml"

# --- logging -----------------------------------------------------------------
_ts() { date +%H:%M:%S; }
log()  { printf '[%s] %s\n' "$(_ts)" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "$(_ts)" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$(_ts)" "$*" >&2; exit 1; }

# show_log FILE [N]: print the last N lines of a log file to stderr.
show_log() {
    local f=$1 n=${2:-30}
    if [[ -s $f ]]; then
        printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
        tail -n "$n" "$f" >&2
        printf -- '-----\n' >&2
    else
        printf -- '----- %s is empty or missing -----\n' "$f" >&2
    fi
}

# --- waiting -----------------------------------------------------------------
# wait_for TIMEOUT_SECONDS DESCRIPTION CMD [ARGS...]
# Polls CMD every 0.5 s until it succeeds; returns 1 after TIMEOUT seconds.
wait_for() {
    local timeout=$1 desc=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    while ! "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            warn "timed out after ${timeout}s waiting for: $desc"
            return 1
        fi
        sleep 0.5
    done
    return 0
}

# --- pid handling ----------------------------------------------------------------
# proc_alive PID COMM: PID exists, is named COMM and is not a zombie (pid 1 on this
# kind of machine may reap orphans only every few seconds).
proc_alive() {
    local pid=$1 comm=$2 stat
    read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1
    [[ $stat == "$pid ($comm) "* ]] || return 1
    [[ ${stat#"$pid ($comm) "} != Z* ]]
}

# pid_of PIDFILE COMM: print the pid recorded in PIDFILE if that process is alive
# and its command name is COMM (so a recycled pid is never mistaken for ours).
pid_of() {
    local pidfile=$1 comm=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(tr -dc '0-9' <"$pidfile" 2>/dev/null) || return 1
    [[ -n $pid ]] || return 1
    proc_alive "$pid" "$comm" || return 1
    printf '%s\n' "$pid"
}

is_running() { pid_of "$1" "$2" >/dev/null; }

# stop_pidfile NAME PIDFILE COMM [TIMEOUT]: SIGTERM the process from PIDFILE (only
# if it is COMM), wait for it to exit, SIGKILL after TIMEOUT seconds.
stop_pidfile() {
    local name=$1 pidfile=$2 comm=$3 timeout=${4:-20} pid
    if ! pid=$(pid_of "$pidfile" "$comm"); then
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while proc_alive "$pid" "$comm"; do
        if ((SECONDS >= deadline)); then
            warn "$name (pid $pid) did not exit after ${timeout}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
    done
    rm -f "$pidfile"
}

# port_listening PORT: true if something listens on TCP 127.0.0.1:PORT (or *:PORT).
port_listening() {
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

# port_owner PORT: describe the process listening on PORT (for error messages).
port_owner() {
    ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n1
}

# --- running commands "on" a host ---------------------------------------------------
# on_node NODE CMD...: run CMD in NODE's network and UTS namespaces (the rest, e.g. the
# filesystem, is shared: like a cluster's shared filesystem). nsenter, not `ip netns
# exec`: that also remounts /sys, which hides /sys/fs/cgroup from slurmd.
on_node() {
    local node=$1 ns
    shift
    ns=$(node_ns "$node")
    [[ -e $NETNS_DIR/$ns ]] || { warn "no namespace $ns (node $node); run slurm/cluster-up.sh"; return 127; }
    nsenter --net="$NETNS_DIR/$ns" --uts="$UTSNS_DIR/$ns" -- "$@"
}

# on_laptop CMD...: run CMD on the "laptop": a namespace that reaches only the login host's
# sshds (LOGIN_ADDR ports 2222-2224).
on_laptop() {
    [[ -e $NETNS_DIR/$LAPTOP_NS ]] || { warn "no namespace $LAPTOP_NS; run slurm/cluster-up.sh"; return 127; }
    nsenter --net="$NETNS_DIR/$LAPTOP_NS" --uts="$UTSNS_DIR/$LAPTOP_NS" -- "$@"
}

# ns_exists NS: NS is a live network namespace under NETNS_DIR.
ns_exists() { nsenter --net="$NETNS_DIR/$1" true 2>/dev/null; }

# ns_inode FILE: the namespace inode of a namespace file or /proc/PID/ns/net.
ns_inode() { stat -L -c %i "$1" 2>/dev/null; }

# pid_in_netns PID NS: process PID runs in network namespace NS (not in an older one).
pid_in_netns() {
    local a b
    a=$(ns_inode "/proc/$1/ns/net") && b=$(ns_inode "$NETNS_DIR/$2") && [[ $a == "$b" ]]
}

# port_listening_in NS PORT: like port_listening, inside network namespace NS.
port_listening_in() {
    nsenter --net="$NETNS_DIR/$1" ss -Hltn "sport = :$2" 2>/dev/null | grep -q .
}

# --- slurm queries -------------------------------------------------------------
# node_state NODE: compact state of NODE as sinfo reports it (idle, mix, down*, ...).
node_state() {
    sinfo -h -N -n "$1" -o '%t' 2>/dev/null | head -n1
}

node_ready() {
    case "$(node_state "$1")" in
        idle | mix | alloc) return 0 ;;
        *) return 1 ;;
    esac
}

# nodes_ready: every node is idle/mix/alloc.
nodes_ready() {
    local n
    for n in "${NODES[@]}"; do node_ready "$n" || return 1; done
}

sacct_answers() {
    sacct -n -X -S now-1minutes -o JobID >/dev/null 2>&1
}

ssh_local() {
    ssh -n -F "$SSH_CONFIG" -o BatchMode=yes -o ConnectTimeout=5 "$@"
}

# ssh_kbd CMD...: run CMD as $SSH_KBD_USER through the keyboard-interactive sshd. ssh's
# prompts (only PAM's "Password: " there) are answered from kbd-password.txt by the askpass
# helper cluster-up.sh writes (SSH_ASKPASS_REQUIRE=force, OpenSSH 8.4+): no terminal needed.
ssh_kbd() {
    SSH_ASKPASS=$KBD_ASKPASS SSH_ASKPASS_REQUIRE=force DISPLAY=${DISPLAY:-:0} \
        ssh -n -F "$SSH_CONFIG" -o ConnectTimeout=5 -o NumberOfPasswordPrompts=1 "$SSH_KBD_ALIAS" "$@"
}

# --- stopping ------------------------------------------------------------------
# pids_of_state COMM NEEDLE: pids of processes named COMM whose command line (args
# joined by spaces, with a trailing space) or open files contain NEEDLE (usually a
# .cluster directory + "/"). Used to find daemons of a cluster whose pid files are
# gone (e.g. the clone that started them was deleted); a process that does not
# reference NEEDLE is never returned, so nothing that isn't ours is ever killed.
pids_of_state() {
    local comm=$1 needle=$2 p c args
    for p in /proc/[0-9]*; do
        proc_alive "${p#/proc/}" "$comm" || continue
        args=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
        if [[ $args == *"$needle"* ]] ||
            find "$p/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | grep -qF -- "$needle"; then
            echo "${p#/proc/}"
        fi
    done
}

# stop_daemon NAME PIDFILE COMM NEEDLE [TIMEOUT]: stop via the pid file, then any
# leftover COMM process that references NEEDLE (see pids_of_state).
stop_daemon() {
    local name=$1 pidfile=$2 comm=$3 needle=$4 timeout=${5:-20} pid tmp
    stop_pidfile "$name" "$pidfile" "$comm" "$timeout"
    for pid in $(pids_of_state "$comm" "$needle"); do
        tmp=$(mktemp)
        echo "$pid" >"$tmp"
        stop_pidfile "$name (pid file was missing)" "$tmp" "$comm" "$timeout"
        rm -f "$tmp"
    done
}

no_running_jobs() {
    local out
    out=$(squeue -h -t PD,R,CG,S -o %A 2>/dev/null) || return 1
    [[ -z $out ]]
}

# cancel_all_jobs: scancel every job in the queue (only if slurmctld answers).
cancel_all_jobs() {
    local ids
    timeout 5 scontrol ping 2>/dev/null | grep -q 'UP' || return 0
    ids=$(timeout 10 squeue -h -o '%A' 2>/dev/null | tr '\n' ' ') || return 0
    if [[ -n ${ids// /} ]]; then
        log "cancelling jobs: $ids"
        # shellcheck disable=SC2086
        timeout 20 scancel $ids 2>/dev/null || true
        wait_for 30 "cancelled jobs to finish" no_running_jobs || true
    fi
}

# stop_slurmds DIR: stop every slurmd of the cluster whose state lives in DIR: each node's
# (pid files slurmd-NODE.pid, also those of nodes no longer configured), the single slurmd
# of earlier versions, then any other slurmd that references DIR (its log file).
stop_slurmds() {
    local dir=$1 f n
    state_paths "$dir"
    for f in "$RUN_DIR"/slurmd-*.pid; do
        [[ -e $f ]] || continue
        n=${f##*/slurmd-}
        stop_pidfile "slurmd ${n%.pid}" "$f" slurmd 30
    done
    stop_daemon slurmd "$SLURMD_LEGACY_PID" slurmd "$dir/" 30
    state_paths "$STATE"
}

# stop_cluster DIR: stop every daemon of the cluster whose state lives in DIR.
# Leaves all state on disk, and the network namespaces (cluster-down.sh removes them).
stop_cluster() {
    local dir=$1
    stop_slurmds "$dir"
    state_paths "$dir"
    stop_daemon slurmctld "$SLURMCTLD_PID" slurmctld "$dir/" 30
    stop_daemon slurmdbd "$SLURMDBD_PID" slurmdbd "$dir/" 30
    stop_daemon mariadbd "$MYSQL_PID" mariadbd "$dir/" 60
    stop_daemon "sshd :$SSH_PORT" "$SSHD_PID" sshd "-f $SSH_DIR/sshd_config " 10
    stop_daemon "sshd :$SSH_LEGACY_PORT" "$SSHD_LEGACY_PID" sshd "-f $SSH_DIR/sshd_config_legacy " 10
    stop_daemon "sshd :$SSH_KBD_PORT" "$SSHD_KBD_PID" sshd "-f $SSH_DIR/sshd_config_kbd " 10
    stop_daemon munged "$MUNGE_PID" munged "$dir/" 10
    state_paths "$STATE"
}

# --- pinned Python packages from PyPI (install-ray.sh, install-openai.sh) ---------------

# _pinned_venv_has DIR MODULE VERSION: DIR is a venv made at DIR (its scripts name DIR's
# python) in which MODULE imports with __version__ VERSION.
_pinned_venv_has() {
    local dir=$1 module=$2 version=$3
    [[ -x "$dir/bin/python" ]] \
        && [[ "$(head -n1 "$dir/bin/pip" 2>/dev/null)" == "#!$dir/bin/python"* ]] \
        && [[ "$("$dir/bin/python" -c "import $module; print($module.__version__)" 2>/dev/null)" == "$version" ]]
}

# install_pinned_venv DIR PACKAGE VERSION MODULE [NOTE]: the virtual environment DIR with
# PACKAGE==VERSION from PyPI (importable as MODULE). Idempotent: a venv that already has the
# pinned version, made at DIR, is left alone (~0.5 s); one that is incomplete, of another
# version or made at another path is made again. DIR should be a real path: a venv's scripts
# name their python by the path it was made at, and .cluster may be reached through a
# symlink (a git worktree's) that does not outlive it. PYTHON picks the interpreter.
install_pinned_venv() {
    local dir=$1 package=$2 version=$3 module=$4 note=${5:-}
    local python=${PYTHON:-python3} start=$SECONDS
    if _pinned_venv_has "$dir" "$module" "$version"; then
        log "$package $version is installed in $dir"
        return 0
    fi
    if [[ -d "$dir" ]]; then
        log "$dir is incomplete, of another version or made at another path: making it again"
        rm -rf "$dir"
    fi
    log "creating the virtual environment $dir"
    # A venv's python is a symlink to the interpreter it was made with: resolve it, so that
    # the nodes (same filesystem, own namespaces) run the same binary.
    "$(readlink -f "$(command -v "$python")" 2>/dev/null || command -v "$python")" -m venv "$dir" \
        || "$python" -m venv "$dir" || die "python3 -m venv failed (apt-get install python3-venv)"
    log "installing $package==$version from PyPI into $dir${note:+ ($note)}"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$package==$version" \
        || die "pip install $package==$version failed; see the lines above"
    _pinned_venv_has "$dir" "$module" "$version" \
        || die "$package $version is not importable from $dir after the install"
    log "$package $version installed in $((SECONDS - start)) s; $(du -sh "$dir" | cut -f1) in $dir"
}
