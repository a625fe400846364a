#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Bring up a Slurm cluster shaped like a real one, on one machine (see slurm/network.sh):
#  - login host = this machine's root network namespace: slurmctld, slurmdbd + MariaDB,
#    munged, the Slurm client commands, and three sshds (2222: OpenSSH defaults, 2223:
#    legacy ssh-rsa allowed, 2224: PAM keyboard-interactive only, for the user
#    vllmctl-kbd, no TCP forwarding) on 127.0.0.1 and on 10.78.0.1 (the laptop's side);
#  - compute nodes node1 and node2 = network namespaces vc-node1/vc-node2 on bridge vcbr0
#    (10.77.0.11, 10.77.0.12), each with its own slurmd and 2 fake GPUs;
#  - a "laptop" = namespace vc-laptop that reaches only the sshds at 10.78.0.1.
# Idempotent: a rerun on a healthy cluster changes nothing.
#
# Slurm config goes to /etc/slurm; every other piece of state lives in
# $REPO/.cluster (munge's socket stays at its default /run/munge).
set -euo pipefail

# shellcheck source=lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
# shellcheck source=network.sh
. "$SLURM_DIR/network.sh"

T0=$SECONDS

((EUID == 0)) || die "cluster-up.sh must run as root (it writes /etc/slurm and starts daemons)"

bash "$SLURM_DIR/install-deps.sh" || die "installing packages failed (see above); fix apt and rerun $0"

umask 022
mkdir -p "$RUN_DIR" "$LOG_DIR" "$SPOOL_DIR/slurmctld" "$GEN_DIR" \
    "$DEV_DIR" "$MUNGE_DIR" "$MYSQL_DIR" "$SSH_DIR" "$STATE/deployments" "$ETC_SLURM"
chmod 0700 "$MUNGE_DIR" "$MYSQL_DIR" "$SSH_DIR"

# fail MESSAGE LOGFILE...: print MESSAGE, the tails of the logs, and exit.
fail() {
    local msg=$1 f
    shift
    for f in "$@"; do show_log "$f" 25; done
    die "$msg (logs: $LOG_DIR; stop everything with slurm/cluster-down.sh, then rerun slurm/cluster-up.sh)"
}

# install_if_changed SRC DEST MODE: atomically copy SRC to DEST when they differ.
# Returns 0 when DEST changed, 1 when it was already identical.
install_if_changed() {
    local src=$1 dest=$2 mode=$3
    if [[ -f $dest ]] && cmp -s "$src" "$dest"; then
        chmod "$mode" "$dest"
        return 1
    fi
    local tmp
    tmp=$(mktemp "$dest.tmp.XXXXXX")
    cat "$src" >"$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$dest"
    return 0
}

# ---------------------------------------------------------------------------
# 0. A cluster started from another clone of the repo (another .cluster dir)?
# ---------------------------------------------------------------------------
MARKER='# vllmctl-state:'
if [[ -f $ETC_SLURM/slurm.conf ]]; then
    other=$(sed -n "s|^$MARKER ||p" "$ETC_SLURM/slurm.conf" | head -n1)
    if [[ -n $other && $other != "$STATE" ]]; then
        log "/etc/slurm belongs to another clone ($other); stopping that cluster first"
        stop_cluster "$other"
    fi
fi

# Slurm resolves the login host's own name; make sure it does (most machines already map
# their hostname in /etc/hosts). The nodes' names resolve to their addresses, as a
# cluster's DNS would do (`hostname -f` in a job, URLs with the node's name).
if ! getent hosts "$LOGIN_HOST" >/dev/null 2>&1; then
    log "hostname $LOGIN_HOST does not resolve; adding '127.0.0.1 $LOGIN_HOST' to /etc/hosts"
    printf '127.0.0.1\t%s\t# added by vllmctl slurm/cluster-up.sh\n' "$LOGIN_HOST" >>/etc/hosts
fi
for n in "${NODES[@]}"; do
    mkdir -p "$SPOOL_DIR/slurmd-$n"
    resolved=$(getent ahostsv4 "$n" 2>/dev/null | awk 'NR == 1 {print $1}') || resolved=""
    if [[ -z $resolved ]]; then
        log "adding '${NODE_ADDR[$n]} $n' to /etc/hosts"
        printf '%s\t%s\t# added by vllmctl slurm/cluster-up.sh\n' "${NODE_ADDR[$n]}" "$n" >>/etc/hosts
    elif [[ $resolved != "${NODE_ADDR[$n]}" ]]; then
        warn "node name $n resolves to $resolved, not ${NODE_ADDR[$n]}; fix /etc/hosts (Slurm itself uses NodeAddr)"
    fi
done

# ---------------------------------------------------------------------------
# 0b. Network: bridge, node and laptop namespaces (network.sh; kept if already right)
# ---------------------------------------------------------------------------
net_up

# ---------------------------------------------------------------------------
# 1. Secrets, keys and fake GPU device nodes (created once, kept across runs)
# ---------------------------------------------------------------------------
if [[ ! -s $MUNGE_KEY ]]; then
    log "creating munge key"
    dd if=/dev/urandom of="$MUNGE_KEY.tmp" bs=1024 count=1 status=none
    chmod 0400 "$MUNGE_KEY.tmp"
    mv -f "$MUNGE_KEY.tmp" "$MUNGE_KEY"
fi
chmod 0400 "$MUNGE_KEY"

if [[ ! -s $MYSQL_PASS_FILE ]]; then
    (umask 077 && head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$MYSQL_PASS_FILE")
fi
DB_PASS=$(cat "$MYSQL_PASS_FILE")

# Slurm 22.05 drops GPUs whose File= does not exist, so give it NODE_GPUS character
# devices per node (same numbers as /dev/null): node1-nvidia0, node1-nvidia1, ...
# Fall back to /dev if mknod is refused here.
GPU_DIR=$DEV_DIR
make_gpu_nodes() {
    local dir=$1 i n f
    mkdir -p "$dir" || return 1
    for n in "${NODES[@]}"; do
        for ((i = 0; i < NODE_GPUS; i++)); do
            f="$dir/$n-nvidia$i"
            [[ -c $f ]] && continue
            rm -f "$f"
            mknod -m 0666 "$f" c 1 3 2>/dev/null || return 1
        done
    done
}
if ! make_gpu_nodes "$DEV_DIR"; then
    GPU_DIR=/dev/vllmctl-gpus
    warn "mknod refused in $DEV_DIR; using $GPU_DIR for the fake GPU device nodes"
    make_gpu_nodes "$GPU_DIR" || die "cannot create fake GPU device nodes (mknod c 1 3) in $DEV_DIR or $GPU_DIR"
fi

gen_key() { # gen_key FILE TYPE [PASSPHRASE]
    local file=$1 type=$2 pass=${3:-} bits=()
    [[ -s $file && -s $file.pub ]] && return 0
    rm -f "$file" "$file.pub"
    [[ $type == rsa ]] && bits=(-b 3072)
    ssh-keygen -q -t "$type" "${bits[@]}" -N "$pass" -C "vllmctl-local-$(basename "$file")" -f "$file" </dev/null
}
for t in ed25519 ecdsa rsa; do
    gen_key "$SSH_DIR/ssh_host_${t}_key" "$t"
    gen_key "$SSH_DIR/id_$t" "$t"
done
if [[ ! -s $SSH_DIR/passphrase.txt ]]; then
    (umask 077 && head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20 >"$SSH_DIR/passphrase.txt")
    rm -f "$SSH_DIR/id_ed25519_enc" "$SSH_DIR/id_ed25519_enc.pub"
fi
gen_key "$SSH_DIR/id_ed25519_enc" ed25519 "$(cat "$SSH_DIR/passphrase.txt")"
chmod 0600 "$SSH_DIR"/ssh_host_*_key "$SSH_DIR"/id_ed25519 "$SSH_DIR"/id_ecdsa "$SSH_DIR"/id_rsa "$SSH_DIR"/id_ed25519_enc

# The keyboard-interactive sshd's user: a local account whose password (random, made once,
# kept in kbd-password.txt) PAM's pam_unix checks. chpasswd runs only when /etc/shadow
# does not already hold that password.
if ! id -u "$SSH_KBD_USER" >/dev/null 2>&1; then
    log "creating user $SSH_KBD_USER (keyboard-interactive sshd on :$SSH_KBD_PORT)"
    useradd --create-home --shell /bin/bash --comment "vllmctl keyboard-interactive test user" \
        "$SSH_KBD_USER" || die "useradd $SSH_KBD_USER failed"
fi
if [[ ! -s $KBD_PASSWORD_FILE ]]; then
    (umask 077 && openssl rand -hex 16 | tr -d '\n' >"$KBD_PASSWORD_FILE.tmp") ||
        die "openssl rand failed"
    mv -f "$KBD_PASSWORD_FILE.tmp" "$KBD_PASSWORD_FILE"
fi
chmod 0600 "$KBD_PASSWORD_FILE"
kbd_password_set() { # the shadow hash is SHA-512 ($6$SALT$...) of the file's password
    local hash salt
    hash=$(getent shadow "$SSH_KBD_USER" | cut -d: -f2)
    [[ $hash == '$6$'* ]] || return 1
    salt=$(cut -d'$' -f3 <<<"$hash")
    [[ $(openssl passwd -6 -salt "$salt" -stdin <"$KBD_PASSWORD_FILE") == "$hash" ]]
}
if ! kbd_password_set; then
    log "setting the password of $SSH_KBD_USER (from $KBD_PASSWORD_FILE)"
    printf '%s:%s\n' "$SSH_KBD_USER" "$(cat "$KBD_PASSWORD_FILE")" | chpasswd -c SHA512 ||
        die "chpasswd for $SSH_KBD_USER failed"
fi
# ssh's askpass helper for ssh_kbd (lib.sh): prints the password file next to it.
# shellcheck disable=SC2016 # expanded by the helper
printf '#!/bin/sh\nexec cat "$(dirname "$0")/kbd-password.txt"\n' >"$KBD_ASKPASS.tmp"
install_if_changed "$KBD_ASKPASS.tmp" "$KBD_ASKPASS" 0700 || true
rm -f "$KBD_ASKPASS.tmp"

# ---------------------------------------------------------------------------
# 2. Render configuration
# ---------------------------------------------------------------------------
cat >"$GEN_DIR/slurm.conf" <<EOF
$MARKER $STATE
# Generated by slurm/cluster-up.sh -- do not edit; rerun cluster-up.sh instead.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$LOGIN_HOST($BRIDGE_ADDR)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$SPOOL_DIR/slurmctld
SlurmdSpoolDir=$SPOOL_DIR/slurmd-%n
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldTimeout=120
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
MinJobAge=10
Waittime=0
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$BRIDGE_ADDR
AccountingStoragePort=$SLURMDBD_PORT
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
$(for n in "${NODES[@]}"; do
    echo "NodeName=$n NodeHostname=$n NodeAddr=${NODE_ADDR[$n]} CPUs=$NODE_CPUS RealMemory=$NODE_MEM Gres=gpu:$NODE_GPUS State=UNKNOWN"
done)
PartitionName=$PARTITION Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP
# Like a cluster that takes jobs from its login node only (AllocNodes): vllmctl reads this
# and renews from the login node there (docs/RENEW.md). Slurm takes the submitting host from
# munge's credential, and the one munged here signs for every namespace as 127.0.0.1
# (localhost), so this cluster does not enforce the list: it is the configuration tested.
PartitionName=$LOGIN_ONLY_PARTITION Nodes=$(IFS=,; echo "${NODES[*]}") AllocNodes=$LOGIN_HOST,localhost MaxTime=INFINITE State=UP
EOF

cat >"$GEN_DIR/gres.conf" <<EOF
# Generated by slurm/cluster-up.sh. Fake GPUs: character devices c 1 3 (like /dev/null).
AutoDetect=off
$(for n in "${NODES[@]}"; do
    echo "NodeName=$n Name=gpu File=$GPU_DIR/$n-nvidia[0-$((NODE_GPUS - 1))]"
done)
EOF

cat >"$GEN_DIR/slurmdbd.conf" <<EOF
# Generated by slurm/cluster-up.sh -- do not edit; rerun cluster-up.sh instead.
AuthType=auth/munge
DbdHost=$LOGIN_HOST
DbdAddr=$BRIDGE_ADDR
DbdPort=$SLURMDBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$SLURMDBD_PID
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 0600 "$GEN_DIR/slurmdbd.conf"

SLURM_CHANGED=0
install_if_changed "$GEN_DIR/slurm.conf" "$ETC_SLURM/slurm.conf" 0644 && SLURM_CHANGED=1
install_if_changed "$GEN_DIR/gres.conf" "$ETC_SLURM/gres.conf" 0644 && SLURM_CHANGED=1
install_if_changed "$GEN_DIR/slurmdbd.conf" "$ETC_SLURM/slurmdbd.conf" 0600 && SLURM_CHANGED=1
chown root:root "$ETC_SLURM/slurmdbd.conf"

if ((SLURM_CHANGED)); then
    log "Slurm config in $ETC_SLURM changed; (re)starting the Slurm daemons with it"
    stop_slurmds "$STATE"
    stop_daemon slurmctld "$SLURMCTLD_PID" slurmctld "$STATE/" 30
    stop_daemon slurmdbd "$SLURMDBD_PID" slurmdbd "$STATE/" 30
fi

# sshd configs (three ports) ----------------------------------------------------
# write_sshd_config PORT PIDFILE LINE...: the common config; a LINE with the keyword of a
# common line replaces that line (sshd takes a keyword's first value), other LINEs are
# appended.
write_sshd_config() {
    local port=$1 pidfile=$2 out line i t
    shift 2
    local -a extra=("$@") common=(
        "# Generated by slurm/cluster-up.sh"
        "Port $port"
        "ListenAddress 127.0.0.1"
        "ListenAddress $LOGIN_ADDR"
        "AddressFamily inet"
    )
    for t in ed25519 ecdsa rsa; do common+=("HostKey $SSH_DIR/ssh_host_${t}_key"); done
    common+=(
        "PidFile $pidfile"
        "AuthorizedKeysFile $SSH_DIR/authorized_keys"
        "StrictModes no"
        "PermitRootLogin prohibit-password"
        "PubkeyAuthentication yes"
        "PasswordAuthentication no"
        "KbdInteractiveAuthentication no"
        "UsePAM no"
        "X11Forwarding no"
        "PrintMotd no"
        "UseDNS no"
        "MaxStartups 100:30:200"
        "MaxSessions 100"
        "AcceptEnv LANG LC_*"
        "Subsystem sftp /usr/lib/openssh/sftp-server"
        "LogLevel INFO"
    )
    out="$GEN_DIR/sshd_config.$port"
    {
        for line in "${common[@]}"; do
            for i in "${!extra[@]}"; do
                if [[ $line != "#"* && ${extra[i]%% *} == "${line%% *}" ]]; then
                    line=${extra[i]}
                    unset 'extra[i]'
                    break
                fi
            done
            echo "$line"
        done
        for line in "${extra[@]}"; do echo "$line"; done
    } >"$out"
}
write_sshd_config "$SSH_PORT" "$SSHD_PID"
write_sshd_config "$SSH_LEGACY_PORT" "$SSHD_LEGACY_PID" \
    "PubkeyAcceptedAlgorithms +ssh-rsa" "HostKeyAlgorithms +ssh-rsa"
# Keyboard-interactive through PAM (/etc/pam.d/sshd: pam_unix asks "Password: ") and
# nothing else, only for the test user. A locked-down login node: no TCP forwarding, so a
# tunnel through it meets "administratively prohibited".
write_sshd_config "$SSH_KBD_PORT" "$SSHD_KBD_PID" \
    "PermitRootLogin no" "PubkeyAuthentication no" "PasswordAuthentication no" \
    "KbdInteractiveAuthentication yes" "UsePAM yes" \
    "AuthenticationMethods keyboard-interactive" "AllowUsers $SSH_KBD_USER" \
    "AllowTcpForwarding no"
SSHD_CHANGED_MAIN=0
SSHD_CHANGED_LEGACY=0
SSHD_CHANGED_KBD=0
install_if_changed "$GEN_DIR/sshd_config.$SSH_PORT" "$SSH_DIR/sshd_config" 0644 && SSHD_CHANGED_MAIN=1
install_if_changed "$GEN_DIR/sshd_config.$SSH_LEGACY_PORT" "$SSH_DIR/sshd_config_legacy" 0644 && SSHD_CHANGED_LEGACY=1
install_if_changed "$GEN_DIR/sshd_config.$SSH_KBD_PORT" "$SSH_DIR/sshd_config_kbd" 0644 && SSHD_CHANGED_KBD=1
# The laptop's link was (re)made: restart the sshds so that they listen on $LOGIN_ADDR.
if net_laptop_changed; then
    SSHD_CHANGED_MAIN=1 SSHD_CHANGED_LEGACY=1 SSHD_CHANGED_KBD=1
fi

cat "$SSH_DIR"/id_ed25519.pub "$SSH_DIR"/id_ecdsa.pub "$SSH_DIR"/id_rsa.pub \
    "$SSH_DIR"/id_ed25519_enc.pub >"$GEN_DIR/authorized_keys"
install_if_changed "$GEN_DIR/authorized_keys" "$SSH_DIR/authorized_keys" 0600 || true

: >"$GEN_DIR/known_hosts"
for port in "$SSH_PORT" "$SSH_LEGACY_PORT" "$SSH_KBD_PORT"; do
    for t in ed25519 ecdsa rsa; do
        for a in 127.0.0.1 "$LOGIN_ADDR"; do
            printf '[%s]:%s %s\n' "$a" "$port" "$(cut -d' ' -f1,2 "$SSH_DIR/ssh_host_${t}_key.pub")" >>"$GEN_DIR/known_hosts"
        done
    done
done
install_if_changed "$GEN_DIR/known_hosts" "$SSH_DIR/known_hosts" 0644 || true

# ssh_alias NAME ADDRESS PORT USER LINE...: one Host block.
ssh_alias() {
    local name=$1 addr=$2 port=$3 user=$4 line
    shift 4
    printf 'Host %s\n    HostName %s\n    Port %s\n    User %s\n' "$name" "$addr" "$port" "$user"
    for line in "$@" "UserKnownHostsFile $SSH_DIR/known_hosts" "GlobalKnownHostsFile /dev/null" \
        "StrictHostKeyChecking yes" "LogLevel ERROR"; do
        printf '    %s\n' "$line"
    done
}
# ssh_aliases MAIN LEGACY KBD ADDRESS: the three sshds' aliases for one address.
ssh_aliases() {
    local main=$1 legacy=$2 kbd=$3 addr=$4
    ssh_alias "$main" "$addr" "$SSH_PORT" root "IdentityFile $SSH_DIR/id_ed25519" "IdentitiesOnly yes"
    echo
    echo "# sshd that also accepts legacy ssh-rsa (SHA-1) signatures and host keys."
    ssh_alias "$legacy" "$addr" "$SSH_LEGACY_PORT" root "IdentityFile $SSH_DIR/id_rsa" "IdentitiesOnly yes"
    echo
    echo "# sshd that accepts only keyboard-interactive, only for $SSH_KBD_USER: PAM asks for the"
    echo "# password in $KBD_PASSWORD_FILE."
    ssh_alias "$kbd" "$addr" "$SSH_KBD_PORT" "$SSH_KBD_USER" "PubkeyAuthentication no" \
        "PreferredAuthentications keyboard-interactive"
}
{
    echo "# Generated by slurm/cluster-up.sh. Use: ssh -F $SSH_CONFIG $SSH_ALIAS"
    echo "# On the login host (this machine's root namespace): the sshds on 127.0.0.1."
    ssh_aliases "$SSH_ALIAS" "$SSH_LEGACY_ALIAS" "$SSH_KBD_ALIAS" 127.0.0.1
    echo
    echo "# From the laptop (nsenter --net=$NETNS_DIR/$LAPTOP_NS ssh -F $SSH_CONFIG $SSH_LOGIN_ALIAS):"
    echo "# the same sshds at $LOGIN_ADDR, the login host's address on the laptop's network."
    ssh_aliases "$SSH_LOGIN_ALIAS" "$SSH_LOGIN_LEGACY_ALIAS" "$SSH_LOGIN_KBD_ALIAS" "$LOGIN_ADDR"
} >"$GEN_DIR/ssh_config"
install_if_changed "$GEN_DIR/ssh_config" "$SSH_CONFIG" 0644 || true

# ---------------------------------------------------------------------------
# 3. Daemons: munged -> mariadb -> slurmdbd -> slurmctld -> slurmd -> sshd
# ---------------------------------------------------------------------------
STARTED=()

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
if is_running "$MUNGE_PID" munged; then
    :
elif munge_works; then
    # Some other munged (e.g. a system one) serves the default socket. Any working
    # munged is fine for a single-node cluster; leave it alone and use it.
    warn "using a munged that is not ours on $MUNGE_SOCKET_DIR (pid $(pgrep -x munged | tr '\n' ' ')); cluster-down.sh will not stop it"
else
    log "starting munged"
    mkdir -p "$MUNGE_SOCKET_DIR"
    chmod 0755 "$MUNGE_SOCKET_DIR"
    setsid munged --force --key-file="$MUNGE_KEY" --pid-file="$MUNGE_PID" \
        --log-file="$LOG_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" \
        </dev/null >>"$LOG_DIR/munged.out" 2>&1 ||
        fail "munged failed to start" "$LOG_DIR/munged.out" "$LOG_DIR/munged.log"
    wait_for 15 "munge credentials to work" munge_works ||
        fail "munged is not answering" "$LOG_DIR/munged.log"
    STARTED+=(munged)
fi

mysql_root() { mariadb --no-defaults --socket="$MYSQL_SOCK" -uroot; }
mysql_ping() { mariadb-admin --no-defaults --socket="$MYSQL_SOCK" -uroot ping; }
if ! is_running "$MYSQL_PID" mariadbd; then
    if port_listening "$MYSQL_PORT"; then
        die "TCP port $MYSQL_PORT (our MariaDB) is taken by: $(port_owner "$MYSQL_PORT"); stop that process and rerun"
    fi
    if [[ ! -d $MYSQL_DATA/mysql ]]; then
        log "initialising MariaDB datadir $MYSQL_DATA"
        rm -rf "$MYSQL_DATA"
        mariadb-install-db --no-defaults --user=root --datadir="$MYSQL_DATA" \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$LOG_DIR/mariadb-install.log" 2>&1 ||
            fail "mariadb-install-db failed" "$LOG_DIR/mariadb-install.log"
    fi
    log "starting mariadbd"
    rm -f "$MYSQL_SOCK"
    setsid mariadbd --no-defaults --user=root --datadir="$MYSQL_DATA" \
        --socket="$MYSQL_SOCK" --pid-file="$MYSQL_PID" --port="$MYSQL_PORT" \
        --bind-address=127.0.0.1 --skip-name-resolve --log-error="$LOG_DIR/mariadb.log" \
        --innodb-buffer-pool-size=256M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
        --max-connections=100 </dev/null >>"$LOG_DIR/mariadb.out" 2>&1 &
    wait_for 90 "MariaDB to answer on $MYSQL_SOCK" mysql_ping ||
        fail "MariaDB did not come up" "$LOG_DIR/mariadb.log"
    wait_for 10 "MariaDB pid file" is_running "$MYSQL_PID" mariadbd ||
        fail "MariaDB wrote no pid file $MYSQL_PID" "$LOG_DIR/mariadb.log"
    STARTED+=(mariadbd)
fi
# Idempotent: (re)create the slurmdbd user with the current password.
mysql_root <<EOF || fail "creating the slurm database user failed" "$LOG_DIR/mariadb.log"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF

# start_slurm_daemon NAME PIDFILE PORT: start a self-daemonizing Slurm daemon.
start_slurm_daemon() {
    local name=$1 pidfile=$2 port=$3
    if port_listening "$port"; then
        die "TCP port $port ($name) is taken by: $(port_owner "$port"); stop that process (or run slurm/cluster-down.sh of the clone that started it) and rerun"
    fi
    log "starting $name"
    setsid "/usr/sbin/$name" </dev/null >>"$LOG_DIR/$name.out" 2>&1 ||
        fail "$name exited with an error at startup" "$LOG_DIR/$name.out" "$LOG_DIR/$name.log"
    wait_for 60 "$name pid file" is_running "$pidfile" "$name" ||
        fail "$name is not running" "$LOG_DIR/$name.out" "$LOG_DIR/$name.log"
    # Listening, or dead (then fail at once instead of waiting out the timeout).
    wait_for 60 "$name to listen on port $port" \
        eval "port_listening $port || ! is_running '$pidfile' $name" || true
    port_listening "$port" ||
        fail "$name is not listening on port $port ($(is_running "$pidfile" "$name" && echo 'still starting' || echo 'it exited'))" "$LOG_DIR/$name.log"
    STARTED+=("$name")
}

if ! is_running "$SLURMDBD_PID" slurmdbd; then
    start_slurm_daemon slurmdbd "$SLURMDBD_PID" "$SLURMDBD_PORT"
fi

cluster_registered() {
    sacctmgr -n -P list cluster format=Cluster 2>/dev/null | grep -qx "$CLUSTER_NAME"
}
if ! cluster_registered; then
    wait_for 60 "slurmdbd to answer sacctmgr" sacctmgr -n -P list cluster ||
        fail "slurmdbd does not answer sacctmgr" "$LOG_DIR/slurmdbd.log"
    if ! cluster_registered; then
        log "registering cluster $CLUSTER_NAME in slurmdbd"
        sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null ||
            fail "sacctmgr add cluster failed" "$LOG_DIR/slurmdbd.log"
    fi
fi

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
if ! is_running "$SLURMCTLD_PID" slurmctld; then
    start_slurm_daemon slurmctld "$SLURMCTLD_PID" "$SLURMCTLD_PORT"
fi
wait_for 60 "slurmctld to answer scontrol ping" ctld_up ||
    fail "slurmctld does not answer" "$LOG_DIR/slurmctld.log"

# One slurmd per node, inside the node's namespaces. nsenter, not `ip netns exec` (that
# remounts /sys and hides the cgroup mounts slurmd needs).
start_slurmd() { # start_slurmd NODE
    local n=$1 ns pidfile pid
    ns=$(node_ns "$n")
    pidfile=$(slurmd_pidfile "$n")
    if pid=$(pid_of "$pidfile" slurmd); then
        pid_in_netns "$pid" "$ns" && return 0
        log "slurmd $n (pid $pid) runs in an older namespace than $ns; restarting it"
        stop_pidfile "slurmd $n" "$pidfile" slurmd 30
    fi
    if port_listening_in "$ns" "$SLURMD_PORT"; then
        die "TCP port $SLURMD_PORT in namespace $ns is taken by: $(nsenter --net="$NETNS_DIR/$ns" ss -Hltnp "sport = :$SLURMD_PORT" | sed -n 's/.*users:((\(.*\)))/\1/p'); stop it (or run slurm/cluster-down.sh) and rerun"
    fi
    log "starting slurmd -N $n in namespace $ns (${NODE_ADDR[$n]})"
    on_node "$n" setsid /usr/sbin/slurmd -N "$n" </dev/null >>"$LOG_DIR/slurmd-$n.out" 2>&1 ||
        fail "slurmd $n exited with an error at startup" "$LOG_DIR/slurmd-$n.out" "$LOG_DIR/slurmd-$n.log"
    STARTED+=("slurmd:$n")
}
slurmd_listening() { # all started slurmds listen (or one died: then stop waiting)
    local n pidfile
    for n in "${NODES[@]}"; do
        pidfile=$(slurmd_pidfile "$n")
        is_running "$pidfile" slurmd || return 0
        port_listening_in "$(node_ns "$n")" "$SLURMD_PORT" || return 1
    done
}
for n in "${NODES[@]}"; do start_slurmd "$n"; done
wait_for 60 "slurmds to write pid files and listen" slurmd_listening || true
for n in "${NODES[@]}"; do
    is_running "$(slurmd_pidfile "$n")" slurmd && port_listening_in "$(node_ns "$n")" "$SLURMD_PORT" ||
        fail "slurmd $n is not running or not listening on ${NODE_ADDR[$n]}:$SLURMD_PORT" \
            "$LOG_DIR/slurmd-$n.out" "$LOG_DIR/slurmd-$n.log"
done

# Wait for the nodes; resume once each that registered DOWN/DRAIN.
node_settled() {
    case "$(node_state "$1")" in
        idle | mix | alloc | down | down~ | drain | drng | drained | fail) return 0 ;;
        *) return 1 ;;
    esac
}
nodes_settled() {
    local n
    for n in "${NODES[@]}"; do node_settled "$n" || return 1; done
}
if ! nodes_ready; then
    wait_for 60 "nodes ${NODES[*]} to register" nodes_settled || true
    for n in "${NODES[@]}"; do
        node_ready "$n" && continue
        st=$(node_state "$n")
        case "$st" in
            down* | drain* | drng* | fail*)
                log "node $n is '$st'; resuming it"
                scontrol update nodename="$n" state=resume 2>/dev/null || true
                ;;
        esac
    done
    wait_for 60 "nodes ${NODES[*]} to become idle" nodes_ready || {
        for n in "${NODES[@]}"; do
            node_ready "$n" && continue
            scontrol show node "$n" >&2 || true
            fail "node $n did not become idle (state: '$(node_state "$n")')" "$LOG_DIR/slurmd-$n.log" "$LOG_DIR/slurmctld.log"
        done
    }
fi

wait_for 60 "sacct to answer" sacct_answers ||
    fail "sacct does not answer (slurmdbd/accounting problem)" "$LOG_DIR/slurmdbd.log" "$LOG_DIR/slurmctld.log"

# sshd ----------------------------------------------------------------------------
mkdir -p /run/sshd
chmod 0755 /run/sshd
start_sshd() { # start_sshd PORT CONFIG PIDFILE CHANGED
    local port=$1 conf=$2 pidfile=$3 changed=$4
    if is_running "$pidfile" sshd; then
        ((changed)) || return 0
        stop_pidfile "sshd :$port" "$pidfile" sshd 10
    fi
    if port_listening "$port"; then
        die "TCP port $port is taken by: $(port_owner "$port"); stop that process and rerun"
    fi
    /usr/sbin/sshd -t -f "$conf" 2>"$LOG_DIR/sshd-$port.check" ||
        fail "sshd config $conf is invalid" "$LOG_DIR/sshd-$port.check"
    log "starting sshd on 127.0.0.1:$port and $LOGIN_ADDR:$port"
    # sshd re-execs itself, so the config path must be absolute ($conf is).
    setsid /usr/sbin/sshd -f "$conf" -E "$LOG_DIR/sshd-$port.log" </dev/null >/dev/null 2>&1 ||
        fail "sshd on port $port failed to start" "$LOG_DIR/sshd-$port.log"
    wait_for 15 "sshd on port $port" port_listening "$port" ||
        fail "sshd is not listening on port $port" "$LOG_DIR/sshd-$port.log"
    wait_for 5 "sshd pid file $pidfile" is_running "$pidfile" sshd ||
        fail "sshd on port $port wrote no pid file" "$LOG_DIR/sshd-$port.log"
    STARTED+=("sshd:$port")
}
start_sshd "$SSH_PORT" "$SSH_DIR/sshd_config" "$SSHD_PID" "$SSHD_CHANGED_MAIN"
start_sshd "$SSH_LEGACY_PORT" "$SSH_DIR/sshd_config_legacy" "$SSHD_LEGACY_PID" "$SSHD_CHANGED_LEGACY"
start_sshd "$SSH_KBD_PORT" "$SSH_DIR/sshd_config_kbd" "$SSHD_KBD_PID" "$SSHD_CHANGED_KBD"

# Log in through every sshd, the four checks at once (each takes a few tenths of a second).
# ssh_check NAME CMD...: run CMD in the background, its output in $GEN_DIR/ssh-check.NAME.
declare -A SSH_CHECK_PID=()
ssh_check() {
    local name=$1
    shift
    "$@" >"$GEN_DIR/ssh-check.$name" 2>&1 </dev/null &
    SSH_CHECK_PID[$name]=$!
}
# ssh_check_ok NAME [EXPECTED]: the check exited 0 (and printed EXPECTED).
ssh_check_ok() {
    wait "${SSH_CHECK_PID[$1]}" || return 1
    [[ -z ${2:-} || $(cat "$GEN_DIR/ssh-check.$1") == "$2" ]]
}
ssh_check main ssh_local "$SSH_ALIAS" sinfo -h -o %P
ssh_check legacy ssh_local "$SSH_LEGACY_ALIAS" true
ssh_check kbd ssh_kbd id -un
# From the laptop, the way a user's laptop reaches the login node.
ssh_check laptop on_laptop ssh -n -F "$SSH_CONFIG" -o BatchMode=yes -o ConnectTimeout=5 "$SSH_LOGIN_ALIAS" true
ssh_check_ok main ||
    fail "ssh -F $SSH_CONFIG $SSH_ALIAS sinfo failed: $(cat "$GEN_DIR/ssh-check.main")" "$LOG_DIR/sshd-$SSH_PORT.log"
ssh_check_ok legacy ||
    fail "ssh -F $SSH_CONFIG $SSH_LEGACY_ALIAS failed: $(cat "$GEN_DIR/ssh-check.legacy")" "$LOG_DIR/sshd-$SSH_LEGACY_PORT.log"
ssh_check_ok kbd "$SSH_KBD_USER" ||
    fail "ssh -F $SSH_CONFIG $SSH_KBD_ALIAS id -un (password from $KBD_PASSWORD_FILE) failed: $(cat "$GEN_DIR/ssh-check.kbd")" \
        "$LOG_DIR/sshd-$SSH_KBD_PORT.log"
ssh_check_ok laptop ||
    fail "from the laptop namespace: ssh -F $SSH_CONFIG $SSH_LOGIN_ALIAS ($LOGIN_ADDR:$SSH_PORT) failed: $(cat "$GEN_DIR/ssh-check.laptop")" \
        "$LOG_DIR/sshd-$SSH_PORT.log"

# ---------------------------------------------------------------------------
# 4. vllmctl config for this clone
# ---------------------------------------------------------------------------
TEMPLATE="$SLURM_DIR/vllmctl.yaml.in"
[[ -f $TEMPLATE ]] || die "missing $TEMPLATE (it is part of the repository; is the clone complete?)"
tmp=$(mktemp "$VLLMCTL_YAML.tmp.XXXXXX")
sed -e "s|@REPO@|$REPO|g" -e "s|@STATE@|$STATE|g" "$TEMPLATE" >"$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$VLLMCTL_YAML"
mkdir -p "$STATE/deployments"

# ---------------------------------------------------------------------------
# 4b. Ray for the multi-node tests (docs/MULTINODE.md): its own venv, .cluster/ray-venv
# ---------------------------------------------------------------------------
bash "$SLURM_DIR/install-ray.sh" || die "installing Ray failed (slurm/install-ray.sh; see above)"

# ---------------------------------------------------------------------------
# 4c. The OpenAI Python SDK for the balancing tunnel's SDK test: its own venv, .cluster/openai-venv
# ---------------------------------------------------------------------------
bash "$SLURM_DIR/install-openai.sh" || die "installing the OpenAI SDK failed (slurm/install-openai.sh; see above)"

# ---------------------------------------------------------------------------
# 5. Summary
# ---------------------------------------------------------------------------
if ((${#STARTED[@]})); then
    started="started: ${STARTED[*]}"
else
    started="everything was already running"
fi
nodes_line=""
for n in "${NODES[@]}"; do
    nodes_line+="$n ${NODE_ADDR[$n]} ($(node_state "$n"), $(sinfo -h -N -n "$n" -o '%G' | head -n1)); "
done
if ((LAPTOP_NFT_OK)); then
    laptop_filter="nft table inet $LAPTOP_NFT_TABLE: only tcp $LOGIN_ADDR:$SSH_PORT-$SSH_KBD_PORT"
else
    laptop_filter="NO nft filter (netfilter unavailable): isolated by routing only"
fi
cat <<EOF
vllmctl local Slurm cluster is up ($((SECONDS - T0))s; $started)
  cluster    $CLUSTER_NAME (slurmctld $LOGIN_HOST $BRIDGE_ADDR:$SLURMCTLD_PORT, slurmdbd :$SLURMDBD_PORT)
  partition  $PARTITION (default): ${NODES[*]}
  nodes      ${nodes_line%; }
             each CPUs=$NODE_CPUS RealMemory=$NODE_MEM, GPUs $GPU_DIR/NODE-nvidia*; netns vc-NODE on bridge $BRIDGE $BRIDGE_ADDR/$NODE_PREFIX
             run on a node: nsenter --net=$NETNS_DIR/vc-node1 --uts=$UTSNS_DIR/vc-node1 CMD
  laptop     netns $LAPTOP_NS $LAPTOP_ADDR/$LAPTOP_PREFIX, no default route; $laptop_filter
             run on it: nsenter --net=$NETNS_DIR/$LAPTOP_NS CMD   e.g. ssh -F $SSH_CONFIG $SSH_LOGIN_ALIAS
  ssh        ssh -F $SSH_CONFIG $SSH_ALIAS   (127.0.0.1:$SSH_PORT; legacy ssh-rsa: $SSH_LEGACY_ALIAS on :$SSH_LEGACY_PORT;
             keyboard-interactive: $SSH_KBD_ALIAS on :$SSH_KBD_PORT, password in $KBD_PASSWORD_FILE)
             from the laptop: $SSH_LOGIN_ALIAS, $SSH_LOGIN_LEGACY_ALIAS, $SSH_LOGIN_KBD_ALIAS ($LOGIN_ADDR)
  config     $VLLMCTL_YAML (clusters: local, local-ssh, hpc)
  ray        $(cd -P "$STATE" && pwd)/ray-venv (ray start on the nodes; the simulator's Ray mode)
  state      $STATE (logs in $LOG_DIR)
EOF
