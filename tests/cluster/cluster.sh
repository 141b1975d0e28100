#!/bin/bash
# A one-node Slurm 22.05 cluster with real, enforced accounting (MariaDB + slurmdbd),
# for tests that must prove a SPANK plugin's behaviour on the real thing.
#
#   cluster.sh up [--nodes N] [--job-container] [--private-mounts | --shared-root] [--plugin /path/lib.so] [--plugin-args "k=v k=v"]
#   cluster.sh down | status | env | restart-slurmctld | kill-sshd | start-sshd
#   cluster.sh plugstack [--plugin /path/lib.so] [--plugin-args "k=v …"] [--no-restart]
#
# Everything (config, state, sockets, pid files, logs) lives under $BT_TEST_STATE
# (default /var/lib/spank-beamtime-test). Not under /tmp: job_container/tmpfs gives every job
# a private /tmp, so a spool or output folder there vanishes from the job's view.
# Every daemon is started and stopped by the pid this script recorded, never by name.
# --nodes N (N > 1): N hosts btnode1..N, one slurmd each in its own network and UTS
# namespace (hostname btnodeI, address <net>.(10+I) on a bridge the script creates, see
# net_up); the upper half of the nodes have Features=gpu, the others Features=cpu.
# --private-mounts: each slurmd (and so every slurmstepd and job) gets a mount namespace of
# its own, a slave of the host's: mounts added there (nsenter --mount --target <slurmd pid>)
# grow the node's mount table without touching the host's. --shared-root: the same, but
# every mount in it shared (as systemd makes a host's), for the proof that the plugin's
# mounts never propagate back (tests/scenarios/tests/step_namespace.rs).
# See tests/cluster/README.md for the measurements behind the choices made here.
set -Eeuo pipefail

STATE=${BT_TEST_STATE:-/var/lib/spank-beamtime-test}
# Non-default ports so that a distribution-configured Slurm or MariaDB on the same host
# cannot collide with (or be mistaken for) the test cluster.
CTLD_PORT=${BT_CTLD_PORT:-16817}
SLURMD_PORT=${BT_SLURMD_PORT:-16818}
DBD_PORT=${BT_DBD_PORT:-16819}
MYSQL_PORT=${BT_MYSQL_PORT:-16306}
# The reserved node's sshd for bt-submit --remote (loopback; see start_sshd).
SSHD_PORT=${BT_SSHD_PORT:-$((CTLD_PORT + 83))}
SLURM_DEBUG=${BT_SLURM_DEBUG:-info}
# Multi-node network: names and the /24 derive from the controller port, so clusters with
# their own ports never share a bridge, namespace or address. BT_NET overrides the /24
# (three octets, 10.x.y); only addresses inside it and namespaces named here are touched.
NET=${BT_NET:-10.$(((CTLD_PORT >> 8) & 255)).$((CTLD_PORT & 255))}
NET_TAG=bt$CTLD_PORT
BRIDGE=${NET_TAG}br
CTLD_ADDR=127.0.0.1
NODE_COUNT=1
NODES=(btnode1)
PRIVATE_MOUNTS=0
SHARED_ROOT=0
NAMESPACE_LINUX=0

CLUSTER_NAME=btcluster
# Cores each node advertises (SlurmdParameters=config_overrides; the machine has 2).
# Every beamtime a test starts keeps its reservation (1 core, some 2) until the cluster
# goes down, and a plain pass starts about 70 of them on one node: with 64 cores the
# last files' jobs outside any reservation waited for resources forever (measured:
# plugstack_probe's `srun -n1 true` queued after 70 reservations). 256 leaves room.
NODE_CPUS=256
PARTITIONS=(ponline_p11 ponline_p21 ponline_p07)
DEFAULT_ACCOUNT=btusers
TEST_USER=btalice
# Debian's Slurm, unless Slurm was built from source and installed outside dpkg
# (scripts/release-root.sh source: the releases Debian does not carry).
SLURM_PACKAGES=(slurm-wlm slurmctld slurmd slurm-client libslurm-dev slurmdbd)
PACKAGES=(munge libclang-dev mariadb-server python3 util-linux passwd openssh-client
    openssh-server gcc libc6-dev iproute2)

ETC=$STATE/etc
RUN=$STATE/run
LOG=$STATE/log
SLURM_CONF_PATH=$ETC/slurm.conf
MUNGE_SOCKET=$RUN/munge/munge.socket
MYSQL_SOCKET=$RUN/mysqld/mysqld.sock
# Stop order: consumers before the services they depend on. set_nodes adds one slurmd
# per node in multi-node mode (slurmd-<node>).
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged sshd)
# Daemons get a minimal, known environment: slurmstepd inherits slurmd's, and the test
# runner's (CARGO_*, RUST_*, pyenv shims …) must not leak into jobs or plugins.
CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

T0=$(date +%s.%N)

# The parts, each sourced from lib/: common.sh (messages, waiting, first checks),
# network.sh (nodes, bridge, namespaces), config.sh (the files the daemons read),
# daemons.sh (start and stop by recorded pid), accounts.sh (slurmdbd's accounts),
# state.sh (the state folder), mntns.sh (a mount namespace for --private-mounts that
# can hold job containers), slurm_install.sh (Slurm from packages or from source). This file holds the settings (above) and
# the commands (below).
LIB=$(dirname "${BASH_SOURCE[0]}")/lib
# shellcheck source=lib/common.sh
source "$LIB/common.sh"
# shellcheck source=lib/network.sh
source "$LIB/network.sh"
# shellcheck source=lib/config.sh
source "$LIB/config.sh"
# shellcheck source=lib/daemons.sh
source "$LIB/daemons.sh"
# shellcheck source=lib/accounts.sh
source "$LIB/accounts.sh"
# shellcheck source=lib/state.sh
source "$LIB/state.sh"
# shellcheck source=lib/mntns.sh
source "$LIB/mntns.sh"
# shellcheck source=lib/slurm_install.sh
source "$LIB/slurm_install.sh"

# ---------------------------------------------------------------- commands

cmd_up() {
    local job_container=0 plugin='' plugin_args='' nodes=1 private_mounts=0 shared_root=0
    while (($#)); do
        case $1 in
        --nodes) nodes=${2:?--nodes needs a number}; shift ;;
        --job-container) job_container=1 ;;
        # 25.11's namespace/linux instead of namespace/tmpfs: a job container as well
        # (private /tmp, Contain), with its own pid and user namespaces.
        --namespace-linux) job_container=1 NAMESPACE_LINUX=1 ;;
        --private-mounts) private_mounts=1 ;;
        --shared-root) private_mounts=1 shared_root=1 ;;
        --plugin) plugin=${2:?--plugin needs a path}; shift ;;
        --plugin-args) plugin_args=${2?--plugin-args needs a value}; shift ;;
        *) die "up: unknown option $1" ;;
        esac
        shift
    done
    need_root
    check_state_path
    local d n running=()
    load_nodes
    for d in "${DAEMONS[@]}"; do alive "$d" && running+=("$d($(pid_of "$d"))"); done
    ((${#running[@]} == 0)) ||
        die "already up: ${running[*]} running; run '$0 down' first (up always starts from empty state)"
    set_nodes "$nodes"
    PRIVATE_MOUNTS=$private_mounts
    SHARED_ROOT=$shared_root
    ensure_packages
    export SLURM_CONF=$SLURM_CONF_PATH
    # A previous multi-node run that died without 'down' may have left its network.
    net_down

    reset_state "$job_container"

    DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    if [[ -n $plugin ]]; then
        plugin=$(install_plugin "$plugin")
    fi
    write_configs "$job_container"
    write_plugstack "$plugin" "$plugin_args"
    printf 'nodes=%s\njob_container=%s\nnamespace_linux=%s\nprivate_mounts=%s\nshared_root=%s\nplugin=%s\nplugin_args=%s\n' \
        "$NODE_COUNT" "$job_container" "$NAMESPACE_LINUX" "$PRIVATE_MOUNTS" "$SHARED_ROOT" "$plugin" "$plugin_args" >"$ETC/cluster.args"

    # shellcheck disable=SC2034 # read by the EXIT trap
    UP_DONE=0
    # BT_KEEP_ON_FAILURE=1 leaves a half-started cluster running, to inspect it.
    trap 'if ((!UP_DONE)) && [[ -z ${BT_KEEP_ON_FAILURE:-} ]]; then echo "cluster.sh: up failed, stopping what was started (logs kept in $LOG)" >&2; cmd_down; fi' EXIT
    say "starting munged"
    start_munged
    say "starting MariaDB on 127.0.0.1:$MYSQL_PORT"
    start_mariadb
    say "starting slurmdbd on 127.0.0.1:$DBD_PORT"
    start_slurmdbd
    register_cluster
    ((NODE_COUNT > 1)) && net_up
    say "starting slurmctld on $CTLD_ADDR:$CTLD_PORT"
    start_slurmctld
    if ((NODE_COUNT == 1)); then
        say "starting slurmd as btnode1 on 127.0.0.1:$SLURMD_PORT"
    else
        say "starting slurmd on ${NODES[*]} ($NET.11..$((10 + NODE_COUNT)):$SLURMD_PORT, features: $(for n in "${NODES[@]}"; do printf '%s=%s ' "$n" "$(node_features "$n")"; done))"
    fi
    start_slurmd
    say "starting sshd on 127.0.0.1:$SSHD_PORT (logins to the reserved node for bt-submit --remote)"
    start_sshd
    say "accounting: account $DEFAULT_ACCOUNT, user $TEST_USER"
    accounting_base
    # shellcheck disable=SC2034 # read by the EXIT trap
    UP_DONE=1
    say "up ($NODE_COUNT node(s), $( ((job_container)) && echo "$( ((NAMESPACE_LINUX)) && echo namespace/linux || echo job_container/tmpfs), ")$( ((PRIVATE_MOUNTS)) && echo 'private slurmd mount namespace, ')plugin: ${plugin:-none})"
    cat >&2 <<EOF
  config:  $SLURM_CONF_PATH   (plugstack: $ETC/plugstack.conf)
  logs:    $LOG/{slurmctld,slurmd$( ((NODE_COUNT > 1)) && echo '-<node>'),slurmdbd,mariadbd,munged,sshd}.log
  use:     eval "\$($0 env)"
EOF
}

cmd_down() {
    check_state_path
    export SLURM_CONF=$SLURM_CONF_PATH
    local pid i f name
    load_nodes
    # Jobs first, while the controller can still tell slurmd to end them cleanly.
    if alive slurmctld && alive "$(slurmd_name btnode1)"; then
        if [[ -n $(timeout 5 squeue -h -o %i 2>/dev/null) ]]; then
            say "cancelling jobs"
            local jobs
            mapfile -t jobs < <(timeout 5 squeue -h -o %i 2>/dev/null)
            if ((${#jobs[@]})); then timeout 10 scancel --full "${jobs[@]}" 2>/dev/null || true; fi
            for ((i = 0; i < 150; i++)); do
                [[ -z $(timeout 5 squeue -h -o %i 2>/dev/null) ]] && break
                sleep 0.1
            done
        fi
    fi
    for n in "${NODES[@]}"; do stop_daemon "$(slurmd_name "$n")" 20; done
    # Also any slurmd whose pid file another configuration left (cluster.args rewritten).
    for f in "$RUN"/slurmd.pid "$RUN"/slurmd-*.pid; do
        [[ -f $f ]] || continue
        name=$(basename "$f" .pid)
        [[ $name == *.daemon ]] || stop_daemon "$name" 20
    done
    # slurmstepd ignores SIGTERM, and killing it alone would orphan the job's processes:
    # kill each leftover step's process tree, the tasks first.
    local kids
    for pid in $(our_stepds); do
        kids=$(descendants "$pid")
        say "killing leftover slurmstepd (pid $pid) and its processes: ${kids//$'\n'/ }"
        for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    stop_daemon sshd 10
    for n in "${NODES[@]}"; do stop_daemon "sshd-$n" 10; done
    stop_daemon slurmctld 20
    stop_daemon slurmdbd 20
    stop_daemon mariadbd 60
    stop_daemon munged 10
    unmount_leftovers
    net_down
    # Runtime state only; logs and the generated configuration stay for post-mortems.
    rm -rf --one-file-system "$RUN"
    say "down (logs kept in $LOG)"
}

cmd_status() {
    check_state_path
    export SLURM_CONF=$SLURM_CONF_PATH
    local d all=0
    load_nodes
    for d in "${DAEMONS[@]}"; do
        if alive "$d"; then
            printf '%-10s pid %-7s alive\n' "$d" "$(pid_of "$d")"
        else
            printf '%-10s %-11s down\n' "$d" "${RUN:+$(pid_of "$d")}"
            all=3
        fi
    done
    [[ -f $ETC/cluster.args ]] && sed 's/^/  /' "$ETC/cluster.args"
    if alive slurmctld; then
        # One line per node (sinfo -N repeats a node for each of its partitions).
        timeout 5 sinfo -N -o '%N %T %E' | awk '!seen[$0]++' || true
    fi
    return $all
}

cmd_env() {
    check_state_path
    [[ -f $SLURM_CONF_PATH ]] || die "no test cluster configuration in $STATE (run '$0 up')"
    printf 'export SLURM_CONF=%q\n' "$SLURM_CONF_PATH"
    printf 'export BT_TEST_STATE=%q\n' "$STATE"
    printf 'export BT_SSHD_PORT=%q\n' "$SSHD_PORT"
}

cmd_plugstack() {
    local plugin='' plugin_args='' restart=1
    while (($#)); do
        case $1 in
        --plugin) plugin=${2:?--plugin needs a path}; shift ;;
        --plugin-args) plugin_args=${2?--plugin-args needs a value}; shift ;;
        --no-restart) restart=0 ;;
        *) die "plugstack: unknown option $1" ;;
        esac
        shift
    done
    need_root
    check_state_path
    [[ -f $SLURM_CONF_PATH ]] || die "no test cluster in $STATE (run '$0 up')"
    export SLURM_CONF=$SLURM_CONF_PATH
    load_nodes
    [[ -n $plugin ]] && plugin=$(install_plugin "$plugin")
    write_plugstack "$plugin" "$plugin_args"
    sed -i -e "s|^plugin=.*|plugin=$plugin|" -e "s|^plugin_args=.*|plugin_args=$plugin_args|" \
        "$ETC/cluster.args"
    say "plugstack.conf: $(cat "$ETC/plugstack.conf")"
    # Clients and slurmstepd read the file afresh for every command and step; only
    # slurmd holds it from its start (see restart_slurmd).
    ((restart)) && restart_slurmd
    return 0
}

# A controller restart under load (bt-submit watch's burst): slurmctld stopped by its pid
# (SIGTERM: it saves its state) and started again on the same state, jobs kept.
cmd_restart_slurmctld() {
    need_root
    check_state_path
    [[ -f $SLURM_CONF_PATH ]] || die "no test cluster in $STATE (run '$0 up')"
    export SLURM_CONF=$SLURM_CONF_PATH
    stop_daemon slurmctld 20
    start_slurmctld
}

# The reserved node's sshd (the loopback one) killed as in a crash, its connections with
# it, and started again later on the same configuration and host key (see kill_sshd).
cmd_kill_sshd() {
    need_root
    check_state_path
    kill_sshd
}

cmd_start_sshd() {
    need_root
    check_state_path
    [[ -f $ETC/sshd/sshd_config ]] || die "no test cluster sshd configuration in $ETC/sshd (run '$0 up')"
    alive sshd && die "sshd is running already (pid $(pid_of sshd))"
    run_sshd
}

case ${1:-} in
up | down | status | env | plugstack)
    c=$1
    shift
    "cmd_$c" "$@"
    ;;
restart-slurmctld)
    shift
    cmd_restart_slurmctld "$@"
    ;;
kill-sshd | start-sshd)
    c=${1//-/_}
    shift
    "cmd_$c" "$@"
    ;;
*)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
