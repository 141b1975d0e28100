# shellcheck shell=bash
# The nodes: names, addresses and features, and for --nodes N the bridge and one network
# namespace per node. Only names derived from this cluster's port are ever touched.

# set_nodes N: node names, daemon list and controller address for a cluster of N nodes.
# N = 1 is the fast default: btnode1 is slurmd on 127.0.0.1 in the host's namespaces.
set_nodes() {
    local i n
    NODE_COUNT=$1
    if ! [[ $NODE_COUNT =~ ^[1-9][0-9]?$ ]] || ((NODE_COUNT > 32)); then die "--nodes: want 1 to 32"; fi
    NODES=()
    for ((i = 1; i <= NODE_COUNT; i++)); do NODES+=("btnode$i"); done
    if ((NODE_COUNT == 1)); then
        CTLD_ADDR=127.0.0.1
        DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged sshd)
        return 0
    fi
    # The controller's own address, beside the bridge's: a test can cut a node off from
    # slurmctld (route to $NET.2 only) while srun and slurmctld still reach the node
    # from $NET.1, the address the host's connections come from.
    CTLD_ADDR=$NET.2
    DAEMONS=()
    for n in "${NODES[@]}"; do DAEMONS+=("slurmd-$n"); done
    DAEMONS+=(slurmctld slurmdbd mariadbd munged sshd)
    for n in "${NODES[@]}"; do DAEMONS+=("sshd-$n"); done
}
# The configured cluster's node count and slurmd namespaces (cluster.args), for
# down/status/plugstack: a slurmd restarted by plugstack must come back as it started.
load_nodes() {
    local n='' m='' r=''
    if [[ -f $ETC/cluster.args ]]; then
        n=$(sed -n 's/^nodes=//p' "$ETC/cluster.args")
        m=$(sed -n 's/^private_mounts=//p' "$ETC/cluster.args")
        r=$(sed -n 's/^shared_root=//p' "$ETC/cluster.args")
    fi
    set_nodes "${n:-1}"
    # shellcheck disable=SC2034 # read by start_slurmd (daemons.sh)
    PRIVATE_MOUNTS=${m:-0} SHARED_ROOT=${r:-0}
}
slurmd_name() { if ((NODE_COUNT == 1)); then echo slurmd; else echo "slurmd-$1"; fi; }
node_index() { echo "${1#btnode}"; }
node_addr() { if ((NODE_COUNT == 1)); then echo 127.0.0.1; else echo "$NET.$((10 + $(node_index "$1")))"; fi; }
node_ns() { echo "${NET_TAG}n$(node_index "$1")"; }
node_veth() { echo "${NET_TAG}v$(node_index "$1")"; }
# The upper half of the nodes carry the facility's "gpu" feature, the others "cpu".
node_features() { if (($(node_index "$1") > NODE_COUNT / 2)); then echo gpu; else echo cpu; fi; }

# Only namespaces and the bridge named after this cluster's port are ever touched.
our_netns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${NET_TAG}n[0-9]+\$" || true; }
net_down() {
    local ns
    for ns in $(our_netns); do
        say "removing network namespace $ns"
        ip netns del "$ns" 2>/dev/null || echo "cluster.sh: warning: ip netns del $ns failed" >&2
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        say "removing bridge $BRIDGE"
        ip link del "$BRIDGE" 2>/dev/null || echo "cluster.sh: warning: ip link del $BRIDGE failed" >&2
    fi
    return 0
}

# One bridge in the host namespace holds the controller's address <net>.1; each node gets
# a network namespace <tag>n<i> with a veth pair (host end <tag>v<i> on the bridge, eth0
# inside with <net>.(10+i)/24). Traffic never leaves the bridge: no route, no forwarding.
net_up() {
    local n ns v
    [[ $NET =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "BT_NET=$NET: want three octets, 10.x.y"
    command -v ip >/dev/null || die "ip (iproute2) not found"
    if ip -4 -o addr show | awk -v b="$BRIDGE" -v p="$NET." '$2 != b && index($4, p) == 1 {f=1} END {exit !f}'; then
        die "$NET.0/24 is already used on this host (ip -4 addr); set BT_NET=10.x.y to a free /24"
    fi
    say "network: bridge $BRIDGE $NET.1/24 (slurmctld $CTLD_ADDR), namespaces ${NET_TAG}n1..$NODE_COUNT"
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET.1/24" dev "$BRIDGE"
    ip addr add "$CTLD_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for n in "${NODES[@]}"; do
        ns=$(node_ns "$n") v=$(node_veth "$n")
        ip netns add "$ns"
        ip link add "$v" type veth peer name eth0 netns "$ns"
        ip link set "$v" master "$BRIDGE" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$(node_addr "$n")/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
}
