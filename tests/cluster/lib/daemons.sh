# shellcheck shell=bash
# Starting and stopping the daemons (munged, MariaDB, slurmdbd, slurmctld, each node's
# slurmd), always by the pid recorded when they were started, never by name.

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


# start_daemon NAME BINARY -- argv…: run in its own session (so the caller's process group
# can be killed without taking the daemon along), in foreground mode, pid recorded by us.
# BINARY is what the pid must be running for alive() (Debian's daemons are symlinks).
start_daemon() {
    local name=$1 binary
    binary=$(readlink -f "$(command -v "$2")")
    shift 3
    echo "$binary" >"$RUN/$name.exe"
    setsid env -i PATH="$CLEAN_PATH" SLURM_CONF="$SLURM_CONF_PATH" LANG=C.UTF-8 "$@" \
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
    # Snapshot isolation off: MariaDB 11.8 turns it on by default, and Slurm 26.05's
    # slurmdbd warns that a write conflict then becomes fatal to it. 10.11 (Debian 12)
    # has it off already; --loose- lets a MariaDB without the option ignore it.
    start_daemon mariadbd mariadbd -- mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" \
        --socket="$MYSQL_SOCKET" --pid-file="$RUN/mysqld/mariadbd.pid" \
        --bind-address=127.0.0.1 --port="$MYSQL_PORT" --skip-name-resolve \
        --log-error="$LOG/mariadbd.log" \
        --innodb-buffer-pool-size=256M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
        --loose-innodb-snapshot-isolation=OFF
    wait_for 60 mariadbd "$LOG/mariadbd.log" -- \
        mariadb-admin --no-defaults --socket="$MYSQL_SOCKET" -uroot ping
    # The database exists before slurmdbd first connects. Slurm 24.11+ with MariaDB's 11.8
    # client library otherwise dies at start ("fatal: _check_mysql_concat_is_sane" after
    # "5027 Number of columns in result … exceeds maximum"): slurmdbd reuses the handle of
    # its failed connect ("Unknown database") to create it, and every later result set on
    # that handle is broken (reproduced outside Slurm).
    sql "CREATE DATABASE slurm_acct_db;
         CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}


start_slurmdbd() {
    start_daemon slurmdbd slurmdbd -- slurmdbd -D
    wait_for 60 slurmdbd "$LOG/slurmdbd.log" -- timeout 5 sacctmgr -n list cluster
}

start_slurmctld() {
    start_daemon slurmctld slurmctld -- slurmctld -D
    wait_for 60 slurmctld "$LOG/slurmctld.log" -- timeout 5 sinfo -h
}

# The reserved nodes' OpenSSH servers, for bt-submit --remote: Debian's sshd with a config,
# host key and authorized keys of its own under $ETC/sshd, never the system's ssh service
# (ensure_packages keeps the package from starting it). One on loopback port $SSHD_PORT for
# btnode1 of the one-node cluster (in every configuration); with several nodes also one in
# each node's network and UTS namespaces, on port 22 of the node's own address (a real
# reserved node's login, $ETC/sshd/<node>/, its address in $ETC/sshd/<node>/address).
# Logins are by key only, and only for accounts that a test gives a file in
# $ETC/sshd/authorized_keys/ (named after the account); every session gets the test
# cluster's SLURM_CONF, so sbatch run there reaches this cluster. Tests make their
# known_hosts entries from the host_ed25519_key.pub next to each sshd_config.
start_sshd() {
    local dir=$ETC/sshd n
    install -d -m 755 "$dir" "$dir/authorized_keys"
    # Debian's sshd will not start without its privilege-separation folder, which the
    # system's ssh service would create (systemd's RuntimeDirectory).
    install -d -m 755 /run/sshd
    write_sshd_config "$dir" 127.0.0.1 "$SSHD_PORT"
    run_sshd
    ((NODE_COUNT > 1)) || return 0
    for n in "${NODES[@]}"; do
        install -d -m 755 "$dir/$n"
        node_addr "$n" >"$dir/$n/address"
        write_sshd_config "$dir/$n" "$(node_addr "$n")" 22
        # shellcheck disable=SC2016 # $0/$@ belong to the inner sh
        start_daemon "sshd-$n" /usr/sbin/sshd -- nsenter --net="/run/netns/$(node_ns "$n")" -- \
            unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$n" \
            /usr/sbin/sshd -D -f "$dir/$n/sshd_config" -E "$LOG/sshd-$n.log"
    done
    for n in "${NODES[@]}"; do
        wait_for 10 "sshd-$n" "$LOG/sshd-$n.log" -- \
            timeout 2 bash -c "exec 3<>/dev/tcp/$(node_addr "$n")/22"
    done
}

# The loopback sshd on the configuration and host key start_sshd wrote: also its start
# after kill_sshd, when the beamline computers' known_hosts must still match. The port is
# the configuration's, whatever BT_SSHD_PORT the caller of start-sshd has.
run_sshd() {
    local dir=$ETC/sshd port
    port=$(awk '$1 == "Port" { print $2 }' "$dir/sshd_config")
    start_daemon sshd /usr/sbin/sshd -- /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$LOG/sshd.log"
    wait_for 10 sshd "$LOG/sshd.log" -- timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"
}

# The loopback sshd dying as in a crash (bt-submit watch --remote's burst): KILL to the
# listener and to every process below it, its per-connection sshd and their sessions (the
# shared ControlMaster connections end with them), by the pids found under the recorded
# one. The listener is stopped first, so that it accepts no connection the list misses.
kill_sshd() {
    local pid kids k
    alive sshd || die "sshd is not running (pid file $RUN/sshd.pid)"
    pid=$(pid_of sshd)
    kill -STOP "$pid"
    kids=$(descendants "$pid")
    kill -KILL "$pid"
    for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
    say "killed sshd (pid $pid) and below it: ${kids//$'\n'/ }"
    rm -f "$RUN/sshd.pid" "$RUN/sshd.exe"
}

# write_sshd_config DIR ADDRESS PORT: DIR/sshd_config and a new host key in DIR.
write_sshd_config() {
    local dir=$1
    ssh-keygen -q -t ed25519 -N '' -C "test cluster sshd $2" -f "$dir/host_ed25519_key"
    # UsePAM: the facility's accounts have no password, which sshd without PAM takes
    # for a locked account; PAM's account checks pass them, as on a real node.
    printf '%s\n' \
        "Port $3" \
        "ListenAddress $2" \
        "HostKey $dir/host_ed25519_key" \
        "PidFile none" \
        "AuthorizedKeysFile $ETC/sshd/authorized_keys/%u" \
        "PubkeyAuthentication yes" \
        "PasswordAuthentication no" \
        "KbdInteractiveAuthentication no" \
        "PermitRootLogin no" \
        "UsePAM yes" \
        "X11Forwarding no" \
        "AllowTcpForwarding no" \
        "AllowAgentForwarding no" \
        "PermitUserEnvironment no" \
        "SetEnv SLURM_CONF=$SLURM_CONF_PATH" >"$dir/sshd_config"
    /usr/sbin/sshd -t -f "$dir/sshd_config" || die "sshd refuses $dir/sshd_config"
}

# Usable = registered and responding; "reserved"/"mixed"/"planned" count once beamtimes
# exist. The same rule as NodeState::is_usable in tests/scenarios/src/slurm.rs: a trailing
# '+' (completing) or '-' (planned) leaves the base state to decide.
node_usable() {
    [[ $(timeout 5 sinfo -h -N -n "$1" -o '%T' | sort -u) =~ ^(idle|planned|mixed|allocated|reserved|completing)[+-]?$ ]]
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
# in, and nothing made inside out. --shared-root makes every mount in it shared instead,
# as systemd makes a host's: a namespace copied from it without changing propagation
# would send its mounts back into slurmd's. That namespace is made on the CPU that holding_cpu
# picks and slurmd then runs on all CPUs again: made elsewhere, job containers in it
# fail on Linux 6.18+ (lib/mntns.sh); checked from inside once slurmd runs.
start_slurmd() {
    local n name log cpus
    local -A before=()
    local mounts=() pin=() unpin=()
    if ((PRIVATE_MOUNTS)); then
        cpus=$(own_cpus)
        mounts=(--mount --propagation "$( ((SHARED_ROOT)) && echo shared || echo slave)")
        pin=(taskset -c "$(holding_cpu "$cpus")")
        unpin=(taskset -c "$cpus")
    fi
    for n in "${NODES[@]}"; do before[$n]=$(slurmd_start_time "$n"); done
    for n in "${NODES[@]}"; do
        name=$(slurmd_name "$n")
        if ((NODE_COUNT == 1 && PRIVATE_MOUNTS)); then
            start_daemon "$name" slurmd -- "${pin[@]}" unshare "${mounts[@]}" -- "${unpin[@]}" slurmd -D -N "$n"
        elif ((NODE_COUNT == 1)); then
            start_daemon "$name" slurmd -- slurmd -D -N "$n"
        else
            # shellcheck disable=SC2016 # $0/$@ belong to the inner sh
            start_daemon "$name" slurmd -- nsenter --net="/run/netns/$(node_ns "$n")" -- \
                "${pin[@]}" unshare --uts "${mounts[@]}" -- "${unpin[@]}" \
                sh -c 'hostname "$0" && exec "$@"' "$n" slurmd -D -N "$n"
        fi
        # shellcheck disable=SC2016 # $0 belongs to the inner bash
        ((PRIVATE_MOUNTS == 0)) ||
            nsenter --mount --target "$(pid_of "$name")" -- bash -c 'children_can_be_held "$0"' "$cpus" ||
            die "$name's mount namespace cannot hold job containers' namespaces (lib/mntns.sh)"
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
