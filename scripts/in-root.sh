#!/bin/bash
# Runs a command inside a release root (scripts/release-root.sh) as if it were
# another machine:
#
#   scripts/in-root.sh ROOT COMMAND [ARG…]
#
# The command gets its own mount, pid, network and UTS namespaces: a file system
# whose / is ROOT (pivot_root, not chroot: slurmstepd's setns() into a job's mount
# namespace resets the root to that namespace's, which escapes a chroot — measured:
# a job printed the host's users), a fresh /proc, /tmp and /run, only loopback
# (up, with a second address: Slurm 24.11+ resolves with AI_ADDRCONFIG, and glibc
# counts no IPv4 address when 127.0.0.1 is the only one, so the daemons loop on
# "getaddrinfo() failed"), and the host name bt-<suite>, which the root's
# /etc/hosts (a per-run copy) maps to 127.0.0.1. Inside, the repository and the
# Rust toolchain (CARGO_HOME, RUSTUP_HOME) appear at their host paths, so cargo
# and the repository's scripts run unchanged. Ports, state folders and the munge
# socket of a cluster started inside cannot collide with the host's. When the
# command ends, everything it started ends with the pid namespace.
# Exit status: the command's.
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"

# Exit status of the inside half when the mount namespace it got cannot hold job
# containers (below); the outside half then makes another.
RETRY_NAMESPACE=75

# Expands a CPU list as taskset prints it ("0-3,6") into one number a line.
cpu_list() {
    local part
    tr ',' '\n' <<<"$1" | while read -r part; do
        if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
    done
}

# Whether a child of this mount namespace, made on each CPU in turn, can be
# bind-mounted from here, as job_container/tmpfs and namespace/tmpfs do to keep
# a job's namespace (mount /proc/<child>/ns/mnt onto a file; "ns base mount
# failed: Invalid argument" when refused). The kernel (fs/namespace.c,
# mnt_ns_loop) refuses a namespace whose id is not greater than the caller's,
# and from Linux 6.18 on mount namespace ids come from a per-CPU batched counter
# (kernel/nstree.c ns_tree_gen_id → gen_cookie_next, batches of 4096 per CPU):
# ids grow on each CPU, but a namespace made on a CPU whose batch is newer than
# another CPU's gets an id above everything that CPU hands out next, so its
# children made there are refused, every time. The host's initial namespace has
# a fixed low id and never sees this. Made on the CPU holding the oldest batch, a
# namespace is older than every later one; checked, not assumed.
children_can_be_held() {
    local cpu pid dir ready ok=0
    dir=$(mktemp -d)
    touch "$dir/holder"
    mkfifo "$dir/ready"
    # Opened read-write, so that neither side blocks in open().
    exec {ready}<>"$dir/ready"
    for cpu in $(cpu_list "$1"); do
        taskset -c "$cpu" unshare --mount -- sh -c "echo >'$dir/ready'; exec sleep 30" &
        pid=$!
        read -r -t 10 -u "$ready" _ || die "in-root: unshare --mount on CPU $cpu did not start"
        if mount --bind "/proc/$pid/ns/mnt" "$dir/holder" 2>/dev/null; then
            umount "$dir/holder"
        else
            ok=1
        fi
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
    exec {ready}<&-
    rm -rf "$dir"
    return "$ok"
}

# The inside half: pid 1 of the new namespaces, still seeing the host's files.
if [[ ${1:-} == --inside ]]; then
    shift
    root=$1 cpus=$2 repo=$3
    shift 3
    suite=$(basename "$root")
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
    mount -t tmpfs -o mode=0755 tmpfs "$root/run"
    mkdir -p "$root/run/lock"
    mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
    printf '127.0.0.1\tlocalhost bt-%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' "$suite" >"$root/run/hosts"
    mount --bind "$root/run/hosts" "$root/etc/hosts"
    for dir in "$repo" "${CARGO_HOME:-$HOME/.cargo}" "${RUSTUP_HOME:-$HOME/.rustup}"; do
        [[ -d $dir ]] || continue
        mkdir -p "$root$dir"
        mount --rbind "$dir" "$root$dir"
    done
    hostname "bt-$suite"
    mkdir -p "$root/.host-root"
    cd "$root"
    pivot_root . .host-root
    cd /
    umount -l /.host-root
    ip link set lo up
    ip addr add 127.0.0.2/8 dev lo
    children_can_be_held "$cpus" || exit "$RETRY_NAMESPACE"
    # Back to every CPU the caller had: only the namespace had to be made on one.
    taskset -pc "$cpus" $$ >/dev/null
    export PATH=${CARGO_HOME:-$HOME/.cargo}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    cd "$repo"
    # Not exec'd: bash as pid 1 reaps the orphans that daemons leave.
    "$@"
    exit
fi

(($# >= 2)) || die "usage: scripts/in-root.sh ROOT COMMAND [ARG…]"
need_root
root=$(realpath "$1")
shift
[[ -f $root/.spank-beamtime-root ]] ||
    die "$root is not a complete release root: make it with scripts/release-root.sh"
cpus=$(taskset -pc $$ | sed 's/.*: //')
for cpu in $(cpu_list "$cpus"); do
    rc=0
    taskset -c "$cpu" unshare --mount --propagation private --pid --fork --kill-child --net --uts -- \
        "$REPO/scripts/in-root.sh" --inside "$root" "$cpus" "$REPO" "$@" || rc=$?
    ((rc == RETRY_NAMESPACE)) || exit "$rc"
    say "in-root: a mount namespace made on CPU $cpu cannot hold its children's; trying the next CPU"
done
die "no CPU gave a mount namespace whose children it can hold (see children_can_be_held in $0)"
