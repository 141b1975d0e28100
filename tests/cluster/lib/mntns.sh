# shellcheck shell=bash
# Mount namespaces that can hold job containers' namespaces. Sourced by cluster.sh
# (--private-mounts) and scripts/in-root.sh (a release root's namespace); needs
# only bash, util-linux and coreutils, so it also runs inside a root.
#
# job_container/tmpfs (namespace/tmpfs from 25.11) keeps each job's mount namespace
# by bind-mounting /proc/<child>/ns/mnt onto a file from slurmstepd's namespace. The
# kernel refuses that with EINVAL unless the child namespace is newer than the
# caller's (fs/namespace.c, mnt_ns_loop: caller's id >= target's id → refused; Slurm
# logs "_create_ns: ns base mount failed: Invalid argument" and the node drains).
# From Linux 6.18 on, namespace ids come from a per-CPU batched counter
# (kernel/nstree.c: ns_tree_gen_id → gen_cookie_next, 4096 ids per CPU and batch):
# they grow on each CPU, but not across CPUs. A namespace made on a CPU whose batch
# is newer than another CPU's has a higher id than every namespace that other CPU
# makes until its batch runs out, so its children made there are refused, every
# time (measured: 20 of 20; 0 of 20 when parent and children share a CPU, and 0 in
# the host's initial namespace, whose id is fixed and lowest). Where the slurmd
# runs in a mount namespace of its own (a release root, --private-mounts), that
# namespace must be made on the CPU holding the oldest batch: then every later
# namespace is newer. Older kernels number namespaces from one global counter and
# pass every check below on the first CPU.

# Expands a CPU list as taskset prints it ("0-3,6") into one number a line.
cpu_list() {
    local part
    tr ',' '\n' <<<"$1" | while read -r part; do
        if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
    done
}

# children_can_be_held CPUS: whether a child of the calling process's mount
# namespace, made on each of CPUS in turn, can be bind-mounted from here as Slurm
# does. Exit status 0 yes, 1 no, 2 the check itself failed.
children_can_be_held() {
    local cpu pid dir ready rc=0
    dir=$(mktemp -d) || return 2
    touch "$dir/holder"
    mkfifo "$dir/ready"
    # Opened read-write, so that neither side blocks in open().
    exec {ready}<>"$dir/ready"
    for cpu in $(cpu_list "$1"); do
        taskset -c "$cpu" unshare --mount -- sh -c "echo >'$dir/ready'; exec sleep 30" &
        pid=$!
        if ! read -r -t 10 -u "$ready" _; then
            echo "children_can_be_held: unshare --mount on CPU $cpu did not start" >&2
            rc=2
        elif mount --bind "/proc/$pid/ns/mnt" "$dir/holder" 2>/dev/null; then
            umount "$dir/holder"
        else
            rc=1
        fi
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        ((rc != 2)) || break
    done
    exec {ready}<&-
    rm -rf "$dir"
    return "$rc"
}
export -f cpu_list children_can_be_held

# holding_cpu CPUS: prints the first of CPUS on which a new mount namespace can hold
# its children made on any of CPUS (tried with a throwaway namespace on each).
holding_cpu() {
    local cpu
    for cpu in $(cpu_list "$1"); do
        # shellcheck disable=SC2016 # $0 belongs to the inner bash
        if taskset -c "$cpu" unshare --mount --propagation private -- \
            bash -c 'children_can_be_held "$0"' "$1"; then
            echo "$cpu"
            return 0
        fi
    done
    echo "holding_cpu: no CPU of $1 makes a mount namespace that can hold its children's" >&2
    return 1
}

# The CPUs this process may run on, as taskset prints them.
own_cpus() { taskset -pc $$ | sed 's/.*: //'; }
