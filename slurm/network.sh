# shellcheck shell=bash
# Hosts of the local test cluster as Linux network namespaces (iproute2), sourced by
# cluster-up.sh, cluster-down.sh and cluster-status.sh after lib.sh.
#
#   laptop (netns vc-laptop)          login = root namespace              node1 (netns vc-node1)
#   eth0 10.78.0.2/30 ---- veth ---- vc-laptop-h 10.78.0.1/30
#   no default route                  bridge vcbr0 10.77.0.1/24 -- veth -- eth0 10.77.0.11/24
#   nft: only lo, established,        slurmctld slurmdbd mariadb            default via 10.77.0.1
#   tcp 10.78.0.1:2222-2224           munged sshd :2222-2224                slurmd -N node1
#                                                                  \-- veth -- node2 (vc-node2) 10.77.0.12
#
# Each namespace also gets its own UTS namespace (UTSNS_DIR/NAME), so `hostname` there says
# node1, node2 or laptop. Everything else (filesystem, users, munge's socket) is shared.
# Every function here creates only what is missing or wrong and leaves the rest alone.

NET_CHANGED=()   # what net_up created or fixed (for the summary and the sshd restart)

_net() { # _net DESCRIPTION CMD...: run an iproute2/nft command, die with a hint on failure
    local desc=$1 out
    shift
    out=$("$@" 2>&1) || die "network setup: $desc failed: $* -> $out (is iproute2 installed and are we root with CAP_NET_ADMIN? Remove everything with slurm/cluster-down.sh and rerun)"
}

# _link_up IF [NS]: interface IF exists and is administratively up.
_link_up() {
    local out
    if [[ -n ${2:-} ]]; then out=$(ip -n "$2" -o link show dev "$1" 2>/dev/null); else out=$(ip -o link show dev "$1" 2>/dev/null); fi
    [[ $out == *"<"*">"* ]] || return 1
    out=${out#*<}
    [[ ,${out%%>*}, == *,UP,* ]]
}

# _has_addr IF CIDR [NS]
_has_addr() {
    local out
    if [[ -n ${3:-} ]]; then out=$(ip -n "$3" -o -4 addr show dev "$1" 2>/dev/null); else out=$(ip -o -4 addr show dev "$1" 2>/dev/null); fi
    [[ $out == *" inet $2 "* ]]
}

# _ensure_uts NS HOSTNAME: a persistent UTS namespace UTSNS_DIR/NS whose hostname is HOSTNAME.
_ensure_uts() {
    local ns=$1 host=$2 f="$UTSNS_DIR/$1"
    mkdir -p "$UTSNS_DIR"
    if ! nsenter --uts="$f" true 2>/dev/null; then
        umount "$f" 2>/dev/null || true
        touch "$f"
        _net "UTS namespace for $ns" unshare --uts="$f" hostname "$host"
        NET_CHANGED+=("uts:$ns")
    elif [[ $(nsenter --uts="$f" hostname) != "$host" ]]; then
        _net "hostname $host in $ns" nsenter --uts="$f" hostname "$host"
        NET_CHANGED+=("hostname:$ns")
    fi
}

# _ensure_ns NS HOSTNAME VETH CIDR GATEWAY|-: namespace NS with lo up and eth0 = CIDR, the
# peer of VETH in the root namespace; a default route via GATEWAY (none for -). The root
# side of VETH (bridge port or address) is the caller's.
_ensure_ns() {
    local ns=$1 host=$2 veth=$3 cidr=$4 gw=$5
    if ! ns_exists "$ns"; then
        [[ -e $NETNS_DIR/$ns ]] && { ip netns del "$ns" 2>/dev/null || rm -f "$NETNS_DIR/$ns"; }
        log "network: creating namespace $ns ($host, ${cidr%/*})"
        _net "ip netns add $ns" ip netns add "$ns"
        NET_CHANGED+=("netns:$ns")
    fi
    _ensure_uts "$ns" "$host"
    # The veth pair: root end VETH, namespace end eth0. If either end is missing (or the
    # root end's peer is in a namespace that was deleted), make the pair again.
    if ! ip -n "$ns" -o link show dev eth0 >/dev/null 2>&1 || ! ip -o link show dev "$veth" >/dev/null 2>&1; then
        ip link del "$veth" 2>/dev/null || true
        ip -n "$ns" link del eth0 2>/dev/null || true
        _net "veth $veth <-> $ns:eth0" ip link add "$veth" type veth peer name eth0 netns "$ns"
        NET_CHANGED+=("veth:$veth")
    fi
    _link_up lo "$ns" || { _net "lo up in $ns" ip -n "$ns" link set lo up; NET_CHANGED+=("lo:$ns"); }
    if ! _has_addr eth0 "$cidr" "$ns"; then
        _net "address $cidr in $ns" ip -n "$ns" addr replace "$cidr" dev eth0
        NET_CHANGED+=("addr:$ns")
    fi
    # IPv4 only: no IPv6 link-local path around the addresses and filters here.
    if [[ $(nsenter --net="$NETNS_DIR/$ns" cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null) == 0 ]]; then
        nsenter --net="$NETNS_DIR/$ns" sh -c 'for f in all default eth0; do echo 1 >/proc/sys/net/ipv6/conf/$f/disable_ipv6; done' 2>/dev/null ||
            warn "cannot disable IPv6 in $ns; continuing (IPv4 is what the cluster uses)"
        NET_CHANGED+=("noipv6:$ns")
    fi
    _link_up eth0 "$ns" || { _net "eth0 up in $ns" ip -n "$ns" link set eth0 up; NET_CHANGED+=("eth0:$ns"); }
    local routes
    routes=$(ip -n "$ns" -4 route show default 2>/dev/null)
    if [[ $gw == - ]]; then
        if [[ -n $routes ]]; then
            _net "removing the default route in $ns" ip -n "$ns" route del default
            NET_CHANGED+=("route:$ns")
        fi
    elif [[ $routes != "default via $gw dev eth0"* ]]; then
        _net "default route via $gw in $ns" ip -n "$ns" route replace default via "$gw" dev eth0
        NET_CHANGED+=("route:$ns")
    fi
}

# _ensure_laptop_nft: the laptop's output filter (only lo, replies, and tcp to the sshds).
# Loaded when the table is missing or differs from what was loaded last time.
# Returns 1 (and warns) if netfilter does not work here; routing alone then isolates it.
LAPTOP_NFT_OK=0
_ensure_laptop_nft() {
    local rules="$GEN_DIR/laptop.nft" listing="$GEN_DIR/laptop.nft.list" cur
    cat >"$rules" <<EOF
# Generated by slurm/cluster-up.sh: the laptop reaches only the login host's sshds.
table inet $LAPTOP_NFT_TABLE
delete table inet $LAPTOP_NFT_TABLE
table inet $LAPTOP_NFT_TABLE {
    chain output {
        type filter hook output priority 0; policy drop;
        oifname "lo" accept
        ct state established,related accept
        ip daddr $LOGIN_ADDR tcp dport $SSH_PORT-$SSH_KBD_PORT accept
        reject with icmpx type admin-prohibited
    }
}
EOF
    if ! command -v nft >/dev/null 2>&1; then
        warn "nft not found (install nftables: slurm/install-deps.sh); the laptop is isolated by routing only"
        return 1
    fi
    cur=$(on_laptop nft list table inet "$LAPTOP_NFT_TABLE" 2>/dev/null) || cur=""
    if [[ -n $cur && -f $listing ]] && [[ $cur == "$(cat "$listing")" ]]; then
        LAPTOP_NFT_OK=1
        return 0
    fi
    local out
    if ! out=$(on_laptop nft -f "$rules" 2>&1); then
        warn "nftables does not work in $LAPTOP_NS ($out); the laptop is isolated by routing only"
        return 1
    fi
    on_laptop nft list table inet "$LAPTOP_NFT_TABLE" >"$listing"
    NET_CHANGED+=("nft:$LAPTOP_NS")
    LAPTOP_NFT_OK=1
}

# net_up: bridge, node namespaces, laptop namespace (+ its nft filter). Fills NET_CHANGED.
net_up() {
    NET_CHANGED=()
    command -v ip >/dev/null || die "ip (iproute2) not found; run slurm/install-deps.sh"
    mkdir -p "$NETNS_DIR"
    # The bridge: the login host's address on the cluster network.
    if ! ip -o -d link show dev "$BRIDGE" 2>/dev/null | grep -q ' bridge '; then
        ip link del "$BRIDGE" 2>/dev/null || true
        log "network: creating bridge $BRIDGE ($BRIDGE_ADDR/$NODE_PREFIX)"
        _net "bridge $BRIDGE" ip link add "$BRIDGE" type bridge
        NET_CHANGED+=("bridge:$BRIDGE")
    fi
    if ! _has_addr "$BRIDGE" "$BRIDGE_ADDR/$NODE_PREFIX"; then
        _net "address on $BRIDGE" ip addr replace "$BRIDGE_ADDR/$NODE_PREFIX" dev "$BRIDGE"
        NET_CHANGED+=("addr:$BRIDGE")
    fi
    _link_up "$BRIDGE" || { _net "$BRIDGE up" ip link set "$BRIDGE" up; NET_CHANGED+=("up:$BRIDGE"); }

    local n ns veth
    for n in "${NODES[@]}"; do
        ns=$(node_ns "$n")
        veth=$(node_veth "$n")
        _ensure_ns "$ns" "$n" "$veth" "${NODE_ADDR[$n]}/$NODE_PREFIX" "$BRIDGE_ADDR"
        if [[ $(ip -o link show dev "$veth" 2>/dev/null) != *" master $BRIDGE "* ]]; then
            _net "$veth into $BRIDGE" ip link set "$veth" master "$BRIDGE"
            NET_CHANGED+=("port:$veth")
        fi
        _link_up "$veth" || { _net "$veth up" ip link set "$veth" up; NET_CHANGED+=("up:$veth"); }
    done

    _ensure_ns "$LAPTOP_NS" "$LAPTOP" "$LAPTOP_VETH" "$LAPTOP_ADDR/$LAPTOP_PREFIX" -
    if ! _has_addr "$LAPTOP_VETH" "$LOGIN_ADDR/$LAPTOP_PREFIX"; then
        _net "address $LOGIN_ADDR on $LAPTOP_VETH" ip addr replace "$LOGIN_ADDR/$LAPTOP_PREFIX" dev "$LAPTOP_VETH"
        NET_CHANGED+=("addr:$LAPTOP_VETH")
    fi
    _link_up "$LAPTOP_VETH" || { _net "$LAPTOP_VETH up" ip link set "$LAPTOP_VETH" up; NET_CHANGED+=("up:$LAPTOP_VETH"); }
    _ensure_laptop_nft || true
    if ((${#NET_CHANGED[@]})); then
        log "network: set up (${NET_CHANGED[*]})"
    fi
}

# net_laptop_changed: net_up (re)made the laptop's link or address (the sshds then restart
# so that they listen on LOGIN_ADDR).
net_laptop_changed() {
    local c
    for c in "${NET_CHANGED[@]}"; do
        [[ $c == *":$LAPTOP_NS" || $c == *":$LAPTOP_VETH" ]] &&
            [[ $c != nft:* && $c != uts:* && $c != hostname:* && $c != noipv6:* ]] && return 0
    done
    return 1
}

# _del_ns NS VETH: remove a namespace, its veth and its UTS namespace.
_del_ns() {
    local ns=$1 veth=$2 pids
    if [[ -e $NETNS_DIR/$ns ]]; then
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        if [[ -n ${pids// /} ]]; then
            warn "processes still run in $ns (pids $pids); the namespace lives on until they exit (kill them, e.g. kill $pids)"
        fi
    fi
    if ip -o link show dev "$veth" >/dev/null 2>&1; then
        log "network: removing veth $veth"
        ip link del "$veth" 2>/dev/null || warn "ip link del $veth failed"
    fi
    if [[ -e $NETNS_DIR/$ns ]]; then
        log "network: removing namespace $ns"
        ip netns del "$ns" 2>/dev/null || warn "ip netns del $ns failed"
    fi
    if [[ -e $UTSNS_DIR/$ns ]]; then
        umount "$UTSNS_DIR/$ns" 2>/dev/null || true
        rm -f "$UTSNS_DIR/$ns" 2>/dev/null || warn "cannot remove $UTSNS_DIR/$ns (still mounted?)"
    fi
}

# net_down: remove the namespaces (and with the laptop's, its nft rules), veths and bridge.
net_down() {
    local n
    for n in "${NODES[@]}"; do
        _del_ns "$(node_ns "$n")" "$(node_veth "$n")"
    done
    _del_ns "$LAPTOP_NS" "$LAPTOP_VETH"
    # Namespaces of nodes no longer configured: every UTS namespace file is one of ours.
    local f
    for f in "$UTSNS_DIR"/*; do
        [[ -e $f ]] || continue
        _del_ns "${f##*/}" "${f##*/}-h"
    done
    if ip -o link show dev "$BRIDGE" >/dev/null 2>&1; then
        log "network: removing bridge $BRIDGE"
        ip link del "$BRIDGE" 2>/dev/null || warn "ip link del $BRIDGE failed"
    fi
    rmdir "$UTSNS_DIR" 2>/dev/null || true
}
