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
# socket of a cluster started inside cannot collide with the host's. The mount
# namespace is made on a CPU where it can hold its children's, as job containers
# need (tests/cluster/lib/mntns.sh says why that matters from Linux 6.18 on). When the
# command ends, everything it started ends with the pid namespace.
# Exit status: the command's.
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"

# cpu_list, children_can_be_held, holding_cpu, own_cpus: why a root's mount
# namespace is made on one particular CPU (job containers inside it).
source "$REPO/tests/cluster/lib/mntns.sh"

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
    # bookworm's minbase has no /etc/hosts to bind over.
    [[ -e $root/etc/hosts ]] || : >"$root/etc/hosts"
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
    children_can_be_held "$cpus" ||
        die "in-root: this mount namespace cannot hold its children's, which job containers need (tests/cluster/lib/mntns.sh)"
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
cpus=$(own_cpus)
cpu=$(holding_cpu "$cpus")
taskset -c "$cpu" unshare --mount --propagation private --pid --fork --kill-child --net --uts -- \
    "$REPO/scripts/in-root.sh" --inside "$root" "$cpus" "$REPO" "$@"
