#!/bin/bash
# A one-node Slurm 22.05 cluster with real, enforced accounting (MariaDB + slurmdbd),
# for tests that must prove a SPANK plugin's behaviour on the real thing.
#
#   cluster.sh up [--nodes N] [--job-container] [--private-mounts] [--plugin /path/lib.so] [--plugin-args "k=v k=v"]
#   cluster.sh down | status | env
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
# grow the node's mount table without touching the host's.
# See tests/cluster/README.md for the measurements behind the choices made here.
set -Eeuo pipefail

STATE=${BT_TEST_STATE:-/var/lib/spank-beamtime-test}
# Non-default ports so that a distribution-configured Slurm or MariaDB on the same host
# cannot collide with (or be mistaken for) the test cluster.
CTLD_PORT=${BT_CTLD_PORT:-16817}
SLURMD_PORT=${BT_SLURMD_PORT:-16818}
DBD_PORT=${BT_DBD_PORT:-16819}
MYSQL_PORT=${BT_MYSQL_PORT:-16306}
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

CLUSTER_NAME=btcluster
NODE_CPUS=64
PARTITIONS=(ponline_p11 ponline_p21 ponline_p07)
DEFAULT_ACCOUNT=btusers
TEST_USER=btalice
PACKAGES=(slurm-wlm slurmctld slurmd slurm-client libslurm-dev munge libclang-dev
    mariadb-server slurmdbd python3 util-linux passwd openssh-client gcc libc6-dev iproute2)

ETC=$STATE/etc
RUN=$STATE/run
LOG=$STATE/log
SLURM_CONF_PATH=$ETC/slurm.conf
MUNGE_SOCKET=$RUN/munge/munge.socket
MYSQL_SOCKET=$RUN/mysqld/mysqld.sock
# Stop order: consumers before the services they depend on. set_nodes adds one slurmd
# per node in multi-node mode (slurmd-<node>).
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)
# Daemons get a minimal, known environment: slurmstepd inherits slurmd's, and the test
# runner's (CARGO_*, RUST_*, pyenv shims …) must not leak into jobs or plugins.
CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

T0=$(date +%s.%N)
die() { echo "cluster.sh: error: $*" >&2; exit 1; }

elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }
say() { printf '[cluster %6ss] %s\n' "$(elapsed)" "$*" >&2; }

need_root() { [[ $(id -u) == 0 ]] || die "must run as root (it starts daemons and creates users)"; }

# rm -rf on a path from the environment: refuse anything that is not clearly ours.
check_state_path() {
    [[ $STATE == /* && $STATE != *..* && $(tr -cd / <<<"$STATE" | wc -c) -ge 2 ]] ||
        die "BT_TEST_STATE=$STATE: want an absolute path at least two levels deep"
    case $STATE in /tmp/* | /dev/shm/*)
        die "BT_TEST_STATE=$STATE is under /tmp or /dev/shm: job_container/tmpfs hides those from jobs" ;;
    esac
}

ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    say "installing ${missing[*]}"
    # policy-rc.d keeps package scripts from starting distribution-configured daemons,
    # which would hold the default sockets and ports behind our back.
    local policy=/usr/sbin/policy-rc.d created_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    [[ -n $created_policy ]] && rm -f "$policy"
    return 0
}

# A zombie has exited: it only waits for init to reap it, which takes a second or more
# here (the sandbox's pid 1 reaps slowly), and it must not count as running.
running() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

pid_of() { if [[ -s $RUN/$1.pid ]]; then cat "$RUN/$1.pid"; fi; }

# A pid counts as ours only while it still runs the program we started under it: pids
# are reused, and a stale pid file must never make us signal a stranger.
alive() {
    local name=$1 pid
    pid=$(pid_of "$name")
    [[ -n $pid && -s $RUN/$name.exe ]] && running "$pid" || return 1
    [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$(cat "$RUN/$name.exe")" ]]
}

log_tail() {
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        echo "---- last lines of $f ----" >&2
        tail -n 30 "$f" >&2
    done
}

# wait_for SECONDS WHAT LOGFILE -- command…: poll until the command succeeds.
wait_for() {
    local secs=$1 what=$2 logf=$3 deadline
    shift 4
    deadline=$(($(date +%s) + secs))
    until "$@" >/dev/null 2>&1; do
        if (($(date +%s) >= deadline)); then
            echo "cluster.sh: error: $what not ready after ${secs}s" >&2
            log_tail "$logf" "$LOG/$(basename "$logf" .log).stdout"
            return 1
        fi
        sleep 0.2
    done
}

# start_daemon NAME BINARY -- argv…: run in its own session (so the caller's process group
# can be killed without taking the daemon along), in foreground mode, pid recorded by us.
# BINARY is what the pid must be running for alive() (Debian's daemons are symlinks).
start_daemon() {
    local name=$1 binary
    binary=$(readlink -f "$(command -v "$2")")
    shift 3
    echo "$binary" >"$RUN/$name.exe"
    setsid env -i PATH=$CLEAN_PATH SLURM_CONF="$SLURM_CONF_PATH" LANG=C.UTF-8 "$@" \
        </dev/null >>"$LOG/$name.stdout" 2>&1 &
    # setsid and env exec in place (we are not a process group leader), so $! is the daemon.
    echo $! >"$RUN/$name.pid"
    # Through nsenter/unshare/sh the pid runs the daemon only after a few exec()s.
    local i
    for ((i = 0; i < 30; i++)); do
        sleep 0.1
        alive "$name" && return 0
        running "$(pid_of "$name")" || break
    done
    log_tail "$LOG/$name.log" "$LOG/$name.stdout"
    die "$name exited at once (or never became $binary)"
}

stop_pid() {
    local name=$1 pid=$2 secs=$3 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < secs * 10; i++)); do
        running "$pid" || return 0
        sleep 0.1
    done
    echo "cluster.sh: $name (pid $pid) ignored TERM for ${secs}s, sending KILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do running "$pid" || return 0; sleep 0.1; done
    echo "cluster.sh: warning: $name (pid $pid) still present after KILL" >&2
}

stop_daemon() {
    local name=$1 secs=$2
    if alive "$name"; then
        say "stopping $name (pid $(pid_of "$name"))"
        stop_pid "$name" "$(pid_of "$name")" "$secs"
    fi
    rm -f "$RUN/$name.pid" "$RUN/$name.exe"
}

# slurmstepd outlives slurmd by design. Ours are recognised by the SLURM_CONF that
# slurmd passed down to them (start_daemon sets it), so other clusters' steps are safe.
our_stepds() {
    local d pid stepd
    stepd=$(readlink -f "$(command -v slurmstepd)")
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [[ $(readlink "$d/exe" 2>/dev/null) == "$stepd" ]] || continue
        tr '\0' '\n' <"$d/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF_PATH" && echo "$pid"
    done
    return 0
}

# All processes below pid, deepest first. Read from /proc/*/stat: the 4th field is the
# parent (the 2nd, the command name, has no spaces for the programs that matter here,
# and the parse skips past its closing parenthesis anyway).
descendants() {
    local parent=$1 d pid ppid
    for d in /proc/[0-9]*; do
        ppid=$(sed 's/^.*) [A-Za-z] \([0-9]*\).*$/\1/' "$d/stat" 2>/dev/null) || continue
        if [[ $ppid == "$parent" ]]; then
            pid=${d#/proc/}
            descendants "$pid"
            echo "$pid"
        fi
    done
}

unmount_leftovers() {
    local mp
    # Deepest first, so nested mounts come off before their parents.
    awk -v s="$STATE/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r mp; do umount -l "$mp" 2>/dev/null || true; done
}

# ---------------------------------------------------------------- nodes and network

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
        DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)
        return 0
    fi
    # The controller's own address, beside the bridge's: a test can cut a node off from
    # slurmctld (route to $NET.2 only) while srun and slurmctld still reach the node
    # from $NET.1, the address the host's connections come from.
    CTLD_ADDR=$NET.2
    DAEMONS=()
    for n in "${NODES[@]}"; do DAEMONS+=("slurmd-$n"); done
    DAEMONS+=(slurmctld slurmdbd mariadbd munged)
}
# The configured cluster's node count and slurmd namespaces (cluster.args), for
# down/status/plugstack: a slurmd restarted by plugstack must come back as it started.
load_nodes() {
    local n='' m=''
    if [[ -f $ETC/cluster.args ]]; then
        n=$(sed -n 's/^nodes=//p' "$ETC/cluster.args")
        m=$(sed -n 's/^private_mounts=//p' "$ETC/cluster.args")
    fi
    set_nodes "${n:-1}"
    PRIVATE_MOUNTS=${m:-0}
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

# ---------------------------------------------------------------- configuration files

write_plugstack() {
    local plugin=$1 args=$2 f=$ETC/plugstack.conf
    if [[ -z $plugin ]]; then
        echo "# no SPANK plugin configured (tests/cluster/cluster.sh)" >"$f.new"
    else
        echo "required $plugin${args:+ $args}" >"$f.new"
    fi
    chmod 644 "$f.new"
    mv -f "$f.new" "$f"
}

# The plugin is copied into the state folder: slurmstepd maps it while jobs run (a cargo
# rebuild rewriting it in place would pull it from under them), and the users' own
# sbatch/srun load it too, so it must be readable by them wherever the build put it.
install_plugin() {
    local src=$1 dst
    [[ -f $src ]] || die "plugin $src: no such file"
    src=$(realpath "$src")
    mkdir -p "$STATE/plugins"
    chmod 755 "$STATE/plugins"
    dst=$STATE/plugins/$(basename "$src")
    install -m 755 -o root -g root "$src" "$dst.new"
    mv -f "$dst.new" "$dst"
    echo "$dst"
}

write_configs() {
    local job_container=$1 p n node_list
    local NODE_SUFFIX=''
    ((NODE_COUNT > 1)) && NODE_SUFFIX=-%n
    node_list=$(IFS=,; echo "${NODES[*]}")
    # One node: slurmctld binds to the address of its host name (loopback) instead of all
    # interfaces. (NoInAddrAny, the same for slurmd/srun, made the node never register.)
    # Several: NoCtldInAddrAny would still bind to the host name's address (gethostname(),
    # not SlurmctldHost's), which the namespaces cannot reach, so slurmctld listens on all
    # addresses like slurmd and slurmdbd; the nodes reach it on the bridge's address.
    local CTLD_BIND='# slurmctld listens on all addresses: the nodes reach it on the bridge.'
    ((NODE_COUNT == 1)) && CTLD_BIND='CommunicationParameters=NoCtldInAddrAny'
    cat >"$SLURM_CONF_PATH" <<EOF
# Generated by tests/cluster/cluster.sh — the spank-beamtime test cluster.
ClusterName=$CLUSTER_NAME
SlurmctldHost=localhost($CTLD_ADDR)
SlurmctldPort=$CTLD_PORT
$CTLD_BIND
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/slurmd$NODE_SUFFIX
SlurmctldPidFile=$RUN/slurmctld.daemon.pid
# Per node with --nodes (%n): slurmd kills whatever pid its pid file names at start.
SlurmdPidFile=$RUN/slurmd$NODE_SUFFIX.daemon.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd$NODE_SUFFIX.log
SlurmctldDebug=$SLURM_DEBUG
SlurmdDebug=$SLURM_DEBUG
# Explicit, so that the clients (sbatch/srun/salloc) and slurmstepd never fall back to
# the distribution's /etc/slurm/plugstack.conf and its plugstack.conf.d/ include.
PlugStackConfig=$ETC/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# The node advertises more CPUs than the machine has: tests run several one-CPU jobs and
# core-based reservations side by side.
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# With slurmdbd this names the munge socket used towards it (AuthInfo does not cover that link).
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageEnforce=associations,limits,qos
JobCompType=jobcomp/none
# Finished jobs stay visible to scontrol for this long; test helpers fall back to sacct.
MinJobAge=600
KillWait=5
EOF
    if [[ $job_container == 1 ]]; then
        cat >>"$SLURM_CONF_PATH" <<EOF
JobContainerType=job_container/tmpfs
PrologFlags=Contain
EOF
        if ((NODE_COUNT == 1)); then
            printf 'AutoBasePath=true\nBasePath=%s\n' "$STATE/jobcontainer" >"$ETC/job_container.conf"
        else
            # The nodes share one file system: each needs its own BasePath.
            echo "AutoBasePath=true" >"$ETC/job_container.conf"
            for n in "${NODES[@]}"; do
                echo "NodeName=$n BasePath=$STATE/jobcontainer/$n" >>"$ETC/job_container.conf"
            done
        fi
        chmod 644 "$ETC/job_container.conf"
    else
        rm -f "$ETC/job_container.conf"
    fi
    cat >>"$SLURM_CONF_PATH" <<EOF
EOF
    if ((NODE_COUNT == 1)); then
        echo "NodeName=btnode1 NodeHostname=127.0.0.1 NodeAddr=127.0.0.1 Sockets=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=8192 State=UNKNOWN" >>"$SLURM_CONF_PATH"
    else
        for n in "${NODES[@]}"; do
            echo "NodeName=$n NodeHostname=$n NodeAddr=$(node_addr "$n") Sockets=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=8192 Features=$(node_features "$n") State=UNKNOWN" >>"$SLURM_CONF_PATH"
        done
    fi
    echo "PartitionName=all Nodes=$node_list Default=YES MaxTime=INFINITE State=UP" >>"$SLURM_CONF_PATH"
    for p in "${PARTITIONS[@]}"; do
        echo "PartitionName=$p Nodes=$node_list MaxTime=INFINITE State=UP" >>"$SLURM_CONF_PATH"
    done
    chmod 644 "$SLURM_CONF_PATH"

    # slurmdbd refuses a config readable by others (it holds the database password).
    cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=slurm
DebugLevel=$SLURM_DEBUG
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.daemon.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm "$ETC/slurmdbd.conf"
    chmod 600 "$ETC/slurmdbd.conf"
}

# ---------------------------------------------------------------- the daemons

start_munged() {
    install -d -o munge -g munge -m 755 "$RUN/munge"
    install -d -o munge -g munge -m 700 "$STATE/munge"
    start_daemon munged munged -- setpriv --reuid=munge --regid=munge --init-groups \
        munged --foreground --socket="$MUNGE_SOCKET" --key-file=/etc/munge/munge.key \
        --log-file="$LOG/munged.log" --pid-file="$RUN/munge/munged.pid" \
        --seed-file="$STATE/munge/munged.seed"
    wait_for 15 munged "$LOG/munged.log" -- \
        bash -c "munge -n -S '$MUNGE_SOCKET' | unmunge -S '$MUNGE_SOCKET'"
}

sql() { mariadb --no-defaults --socket="$MYSQL_SOCKET" -uroot -N -B -e "$1"; }

start_mariadb() {
    install -d -o mysql -g mysql -m 750 "$STATE/mysql"
    install -d -o mysql -g mysql -m 755 "$RUN/mysqld"
    say "initialising MariaDB data folder"
    mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql" \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$LOG/mariadb-install-db.log" 2>&1 ||
        { log_tail "$LOG/mariadb-install-db.log"; die "mariadb-install-db failed"; }
    # --user makes mariadbd drop to mysql itself; the socket and TCP port are ours alone.
    start_daemon mariadbd mariadbd -- mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" \
        --socket="$MYSQL_SOCKET" --pid-file="$RUN/mysqld/mariadbd.pid" \
        --bind-address=127.0.0.1 --port="$MYSQL_PORT" --skip-name-resolve \
        --log-error="$LOG/mariadbd.log" \
        --innodb-buffer-pool-size=256M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900
    wait_for 60 mariadbd "$LOG/mariadbd.log" -- \
        mariadb-admin --no-defaults --socket="$MYSQL_SOCKET" -uroot ping
    sql "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

sacctmgr_t() { timeout 20 sacctmgr -i "$@"; }

start_slurmdbd() {
    start_daemon slurmdbd slurmdbd -- slurmdbd -D
    wait_for 60 slurmdbd "$LOG/slurmdbd.log" -- timeout 5 sacctmgr -n list cluster
}

start_slurmctld() {
    start_daemon slurmctld slurmctld -- slurmctld -D
    wait_for 60 slurmctld "$LOG/slurmctld.log" -- timeout 5 sinfo -h
}

# Usable = registered and responding; "reserved"/"mixed" count once beamtimes exist.
node_usable() {
    [[ $(timeout 5 sinfo -h -N -n "$1" -o '%T' | sort -u) =~ ^(idle|mixed|allocated|reserved|completing)$ ]]
}
slurmd_start_time() {
    timeout 5 scontrol show node "$1" -o 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' || true
}
export -f node_usable slurmd_start_time

# Starts every node's slurmd, then waits until each has (re-)registered and is usable.
# With --nodes, slurmd runs in the node's network namespace and a UTS namespace of its
# own whose hostname is the node name (both inherited by slurmstepd and the jobs).
# With --private-mounts, also a mount namespace of its own (unshare without --fork execs,
# so the recorded pid is still slurmd's); slave propagation lets the host's later mounts
# in, and nothing made inside out.
start_slurmd() {
    local n name log
    local -A before=()
    local mounts=()
    ((PRIVATE_MOUNTS)) && mounts=(--mount --propagation slave)
    for n in "${NODES[@]}"; do before[$n]=$(slurmd_start_time "$n"); done
    for n in "${NODES[@]}"; do
        name=$(slurmd_name "$n")
        if ((NODE_COUNT == 1 && PRIVATE_MOUNTS)); then
            start_daemon "$name" slurmd -- unshare "${mounts[@]}" -- slurmd -D -N "$n"
        elif ((NODE_COUNT == 1)); then
            start_daemon "$name" slurmd -- slurmd -D -N "$n"
        else
            # shellcheck disable=SC2016 # $0/$@ belong to the inner sh
            start_daemon "$name" slurmd -- nsenter --net="/run/netns/$(node_ns "$n")" -- \
                unshare --uts "${mounts[@]}" -- sh -c 'hostname "$0" && exec "$@"' "$n" slurmd -D -N "$n"
        fi
    done
    for n in "${NODES[@]}"; do
        log=$LOG/$(slurmd_name "$n").log
        # A restarted slurmd must have re-registered: the controller's start time changes.
        wait_for 60 "slurmd (node $n registered and usable)" "$log" -- \
            bash -c "[[ \$(slurmd_start_time $n) != '${before[$n]}' ]] && node_usable $n"
    done
}

# slurmd loads plugstack.conf once, at start: it decides there whether any plugin has
# job_prolog/job_epilog hooks (and runs slurmd_init). `scontrol reconfigure` does not
# reload it (measured), so a plugstack change restarts slurmd. Running steps survive
# a slurmd restart (slurmstepd is a separate process).
restart_slurmd() {
    local n any=0
    for n in "${NODES[@]}"; do alive "$(slurmd_name "$n")" && any=1; done
    ((any)) || return 0
    # SlurmdStartTime has one-second resolution: make the restart visible in it.
    sleep 1
    for n in "${NODES[@]}"; do stop_daemon "$(slurmd_name "$n")" 20; done
    say "starting slurmd on ${NODES[*]}"
    start_slurmd
}

# slurmctld learns about new associations from slurmdbd asynchronously; a job submitted
# before that is rejected as "Invalid account". Wait until the controller has it.
wait_assoc() {
    local user=$1 account=$2
    wait_for 30 "association $user/$account in slurmctld" "$LOG/slurmctld.log" -- \
        bash -c "scontrol show assoc_mgr users='$user' accounts='$account' flags=assoc |
                 grep -q 'UserName=$user('"
}

ensure_user() {
    local user=$1
    id -u "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
}

accounting_base() {
    sacctmgr_t add account "$DEFAULT_ACCOUNT" Cluster="$CLUSTER_NAME" \
        Description="ordinary users" Organization=facility >/dev/null
    ensure_user "$TEST_USER"
    sacctmgr_t add user "$TEST_USER" DefaultAccount="$DEFAULT_ACCOUNT" Cluster="$CLUSTER_NAME" >/dev/null
    wait_assoc "$TEST_USER" "$DEFAULT_ACCOUNT"
}

# ---------------------------------------------------------------- commands

cmd_up() {
    local job_container=0 plugin='' plugin_args='' nodes=1 private_mounts=0
    while (($#)); do
        case $1 in
        --nodes) nodes=${2:?--nodes needs a number}; shift ;;
        --job-container) job_container=1 ;;
        --private-mounts) private_mounts=1 ;;
        --plugin) plugin=${2:?--plugin needs a path}; shift ;;
        --plugin-args) plugin_args=${2?--plugin-args needs a value}; shift ;;
        *) die "up: unknown option $1" ;;
        esac
        shift
    done
    need_root
    check_state_path
    local d running=() f
    load_nodes
    for d in "${DAEMONS[@]}"; do alive "$d" && running+=("$d($(pid_of "$d"))"); done
    ((${#running[@]} == 0)) ||
        die "already up: ${running[*]} running; run '$0 down' first (up always starts from empty state)"
    set_nodes "$nodes"
    PRIVATE_MOUNTS=$private_mounts
    ensure_packages
    export SLURM_CONF=$SLURM_CONF_PATH
    # A previous multi-node run that died without 'down' may have left its network.
    net_down

    # Every up starts from empty state, so runs cannot leak reservations, accounts or jobs
    # into each other. Logs of the previous run move to log.prev/ for post-mortems.
    unmount_leftovers
    mkdir -p "$STATE"
    chmod 755 "$STATE"
    rm -rf --one-file-system "$STATE/log.prev"
    [[ -d $LOG ]] && mv "$LOG" "$STATE/log.prev"
    # plugin-state: the plugin's job cache; a fresh controller hands out job ids from 1 again.
    rm -rf --one-file-system "$RUN" "$STATE/ctld" "$STATE/spool" "$STATE/mysql" "$STATE/munge" \
        "$STATE/jobcontainer" "$STATE/beamline-src" "$STATE/work" "$STATE/plugins" "$ETC" \
        "$STATE/plugin-state" "$STATE"/probe-*
    install -d -m 755 "$ETC" "$RUN" "$LOG" "$STATE/spool" "$STATE/spool/slurmd" "$STATE/beamline-src" "$STATE/work"
    install -d -o slurm -g slurm -m 755 "$STATE/ctld"
    if [[ $job_container == 1 ]]; then
        install -d -m 700 "$STATE/jobcontainer"
        if ((NODE_COUNT > 1)); then for n in "${NODES[@]}"; do install -d -m 700 "$STATE/jobcontainer/$n"; done; fi
    fi
    # Daemons that drop privileges cannot create files in the root-owned log folder, and
    # mariadbd then logs to stderr instead: each log exists beforehand, owned by its writer.
    install -o slurm -g slurm -m 644 /dev/null "$LOG/slurmctld.log"
    install -o slurm -g slurm -m 644 /dev/null "$LOG/slurmdbd.log"
    for n in "${NODES[@]}"; do install -o root -g root -m 644 /dev/null "$LOG/$(slurmd_name "$n").log"; done
    install -o mysql -g mysql -m 644 /dev/null "$LOG/mariadbd.log"
    install -o munge -g munge -m 644 /dev/null "$LOG/munged.log"
    # The plugin mounts a private tmpfs over /beamline inside jobs; the host keeps it empty.
    install -d -o root -g root -m 755 /beamline

    DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    if [[ -n $plugin ]]; then
        plugin=$(install_plugin "$plugin")
    fi
    write_configs "$job_container"
    write_plugstack "$plugin" "$plugin_args"
    printf 'nodes=%s\njob_container=%s\nprivate_mounts=%s\nplugin=%s\nplugin_args=%s\n' "$NODE_COUNT" \
        "$job_container" "$PRIVATE_MOUNTS" "$plugin" "$plugin_args" >"$ETC/cluster.args"

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
    # The cluster must exist in the database before slurmctld registers with slurmdbd.
    sacctmgr_t add cluster "$CLUSTER_NAME" >/dev/null
    ((NODE_COUNT > 1)) && net_up
    say "starting slurmctld on $CTLD_ADDR:$CTLD_PORT"
    start_slurmctld
    if ((NODE_COUNT == 1)); then
        say "starting slurmd as btnode1 on 127.0.0.1:$SLURMD_PORT"
    else
        say "starting slurmd on ${NODES[*]} ($NET.11..$((10 + NODE_COUNT)):$SLURMD_PORT, features: $(for n in "${NODES[@]}"; do printf '%s=%s ' "$n" "$(node_features "$n")"; done))"
    fi
    start_slurmd
    say "accounting: account $DEFAULT_ACCOUNT, user $TEST_USER"
    accounting_base
    # shellcheck disable=SC2034 # read by the EXIT trap
    UP_DONE=1
    say "up ($NODE_COUNT node(s), $( ((job_container)) && echo 'job_container/tmpfs, ')$( ((PRIVATE_MOUNTS)) && echo 'private slurmd mount namespace, ')plugin: ${plugin:-none})"
    cat >&2 <<EOF
  config:  $SLURM_CONF_PATH   (plugstack: $ETC/plugstack.conf)
  logs:    $LOG/{slurmctld,slurmd$( ((NODE_COUNT > 1)) && echo '-<node>'),slurmdbd,mariadbd,munged}.log
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

case ${1:-} in
up | down | status | env | plugstack)
    c=$1
    shift
    "cmd_$c" "$@"
    ;;
*)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
