#!/bin/bash
# What spank-beamtime costs, measured on the local test cluster against Slurm without it
# (issue #6). Each pair of variants is run interleaved (A B A B …) on the same machine in
# the same run, so drift and background load hit both alike. Writes docs/benchmarks.md,
# docs/benchmarks.svg (launch latency) and docs/benchmarks-mounts.svg (mount setup against
# the node's mount table). Run as root:
#
#   bench/run.sh [ROUNDS]        (default 40 rounds per comparison: about 8 minutes on 2 cores)
#   bench/run.sh ROUNDS watch    (only section 8, bt-submit watch: replaces that section of
#                                 docs/benchmarks.md and its rows of the summary table, and
#                                 leaves the others as they are; about 11 minutes at 40 rounds
#                                 on 2 shared cores, 4 of them the ssh burst, which the whole
#                                 run pays too)
#
# Uses the cluster of tests/cluster/cluster.sh, so BT_TEST_STATE and the BT_*_PORT variables
# choose which one (and which state folder) it brings up and down; CARGO_TARGET_DIR where
# the builds and criterion's estimates go.
set -Eeuo pipefail
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
ROUNDS=${1:-40}
if ! [[ $ROUNDS =~ ^[0-9]+$ ]] || ((ROUNDS < 4)); then
    die "ROUNDS: want a whole number, at least 4 (quartiles need a few values)"
fi
ONLY=${2:-}
[[ -z $ONLY || $ONLY == watch ]] || die "unknown part '$ONLY': the one part that runs alone is 'watch'"
# Files bt-submit watch has already submitted while it idles (section 8).
WATCH_IDLE_FILES=10000
WATCH_IDLE_SECONDS=60
# #22's sizes (section 8): a burst over ssh, the frames of one scan folder still being written
# (looked at for as many seconds, one look a second, once they stood still for the watch's
# settle time), the files there at a first start, and the files recorded when one more
# submission is.
SSH_BURST_FILES=200
SSH_BURST_ROUNDS=5
SCAN_FRAMES=10000
SCAN_LOOK_SECONDS=30
SCAN_SETTLE_SECONDS=10
FIRST_START_FILES=20000
RECORDED_FILES=100000
CLUSTER=$REPO/tests/cluster/cluster.sh
BEAMTIME=11099001
# Controller queries are counts, not timings: a few jobs per shape show whether they vary.
QUERY_REPEATS=3
MOUNT_TABLE_SIZES=(0 100 1000 5000)
# Steps of several tasks (one per core, as MPI runs them), at these table sizes: the
# namespace is built by each node's task 0 and joined by the others (#16).
TASK_COUNTS=(1 8 32)
TASK_TABLE_SIZES=(0 1000 5000)
OUT=$(mktemp -d /var/tmp/spank-beamtime-bench.XXXXXX)

# MENTO, the beamline tool bt-submit --remote replaces (section 9), goes into a venv.
BUILD_PACKAGES+=(python3-venv)
MENTO_VERSION=0.2.1
need_root
ensure_cargo
# Before the cluster starts, so that compiling never competes with a measurement.
if [[ -z $ONLY ]]; then
    say "building the metadata micro-benchmarks (criterion)"
    (cd "$REPO" && cargo bench --locked -p beamtime-bench --bench metadata --no-run)
fi
say "building the watch state's measurement (bench/src/bin/watch-state-record.rs)"
(cd "$REPO" && cargo build --release --locked -p beamtime-bench --bin watch-state-record)
WATCH_STATE_RECORD=$TARGET_DIR/release/watch-state-record
start_cluster_with_fresh_plugin
# On success the raw measurements have moved to the target folder by now (see the end);
# after a failure they help find out why.
trap '"$CLUSTER" down >&2 || true; [[ ! -d $OUT ]] || echo "raw measurements kept in $OUT" >&2' EXIT
git -C "$REPO" describe --always --dirty >"$OUT/source" 2>/dev/null || echo "an unknown revision" >"$OUT/source"
printf '%s cores, Linux %s, %s\n' "$(nproc)" "$(uname -r)" "$(sinfo --version)" >"$OUT/machine"
stat -c %s "$PLUGIN_SO" >"$OUT/plugin-size"
echo "$ROUNDS" >"$OUT/rounds"

# The plugin's job cache (state_dir= in plugin_args) outlives the cluster, and a new cluster
# hands out job ids from 1 again: a previous run's answers must not stand in for queries.
forget_job_cache() {
    local dir
    dir=$(plugin_args | tr ' ' '\n' | sed -n 's/^state_dir=//p')
    if [[ -n $dir && $dir == "$BT_TEST_STATE"/* && -d $dir ]]; then
        rm -rf --one-file-system "$dir"
    fi
}

start_beamtime() {
    "$REPO/slurm-conf-examples/beamtime-start.sh" --id "$BEAMTIME" --beamline p11 --account bttest01 \
        --partition ponline_p11 --cores "${TASK_COUNTS[-1]}" --replace >/dev/null
    mkdir -p "$BT_TEST_STATE/work"
    chmod 1777 "$BT_TEST_STATE/work"
}
forget_job_cache
start_beamtime

as_user() {
    local user=$1; shift
    runuser -u "$user" -- env -C "$BT_TEST_STATE/work" SLURM_CONF="$SLURM_CONF" PATH="$PATH" "$@"
}

# Microseconds one command takes, appended to a file.
timed() {
    local file=$1; shift
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { echo "benchmark command failed: $*" >&2; exit 1; }
    end=$(date +%s%N)
    echo "$(((end - start) / 1000))" >>"$file"
}

# A job script running ROUNDS pairs of steps of TASKS tasks (default 1), plain and
# --beamtime, each timed.
write_steps_script() {
    local script=$1 plain=$2 beamtime=$3 tasks=${4:-1}
    cat >"$script" <<STEPS
#!/bin/bash
set -e
$(declare -f timed)
for ((i = 0; i < $ROUNDS; i++)); do
    timed $OUT/$plain srun -n$tasks true
    timed $OUT/$beamtime srun --beamtime=$BEAMTIME -n$tasks true
done
STEPS
    chmod 755 "$script"
}
# The job scripts run as bttest01 and append to files here.
chmod 777 "$OUT"

# Section 8, bt-submit watch: measure_watch.
# shellcheck source=SCRIPTDIR/watch.sh
source "$REPO/bench/watch.sh"

if [[ $ONLY == watch ]]; then
    measure_watch
    say "writing section 8 of docs/benchmarks.md"
    python3 "$REPO/bench/report.py" --watch "$OUT" "$REPO/docs"
    # Kept, to render section 8 again: python3 bench/report.py --watch TARGET/bench-last-watch docs
    last=$(cd "$REPO" && realpath -m "$TARGET_DIR")/bench-last-watch
    rm -rf "$last"
    chmod 755 "$OUT"
    mv "$OUT" "$last"
    say "raw measurements: $last"
    exit 0
fi

say "1. a new one-task job: srun -n1 true, no plugin vs plugin loaded but unused ($ROUNDS rounds)"
# srun and slurmstepd read plugstack.conf afresh for every job (tests/cluster/README.md), so
# switching its content switches the plugin; the library file itself stays the same, cached,
# as on a production node.
plugstack=$BT_TEST_STATE/etc/plugstack.conf
with_plugin=$(cat "$plugstack")
for ((i = 0; i < ROUNDS; i++)); do
    echo "# no SPANK plugin" >"$plugstack"
    timed "$OUT/job-no-plugin" as_user btalice srun -n1 true
    echo "$with_plugin" >"$plugstack"
    timed "$OUT/job-plugin-unused" as_user btalice srun -n1 true
done

say "1. a new batch job: sbatch --wait, no plugin vs plugin loaded but unused ($ROUNDS rounds)"
# sbatch --wait first looks at the job 2 s after submitting it (Slurm's sbatch.c), which
# hides everything faster than that. The same jobs therefore also give the time until
# sbatch printed the job id (where sbatch has loaded the plugin and submitted) and until the
# script ran (noted by the script itself).
batch_job() {
    local name=$1 marker=$BT_TEST_STATE/work/batch-started start submitted end
    rm -f "$marker"
    start=$(date +%s%N)
    # Line-buffered: into a pipe, sbatch's "Submitted batch job" would come only at its exit.
    submitted=$(as_user btalice stdbuf -oL sbatch --wait -o /dev/null --wrap "date +%s%N >$marker" 2>/dev/null |
        { read -r _ && date +%s%N; cat >/dev/null; }) || die "sbatch --wait failed ($name)"
    end=$(date +%s%N)
    [[ -n $submitted ]] || die "sbatch --wait printed no job id ($name)"
    [[ -s $marker ]] || die "the batch job ($name) ended without running its script"
    echo "$(((end - start) / 1000))" >>"$OUT/$name-wait"
    echo "$(((submitted - start) / 1000))" >>"$OUT/$name-submitted"
    echo "$((($(<"$marker") - start) / 1000))" >>"$OUT/$name-started"
}
for ((i = 0; i < ROUNDS; i++)); do
    echo "# no SPANK plugin" >"$plugstack"
    batch_job batch-no-plugin
    echo "$with_plugin" >"$plugstack"
    batch_job batch-plugin-unused
done
# When slurmctld accepted and when it started each of these jobs (report.py reads the delays).
cp "$BT_TEST_STATE/log/slurmctld.log" "$OUT/slurmctld-batch.log"

say "2. a step inside an allocation: srun -n1 true vs srun --beamtime … -n1 true ($ROUNDS rounds)"
write_steps_script "$BT_TEST_STATE/work/steps.sh" step-plain step-beamtime
as_user bttest01 salloc -p ponline_p11 --reservation="$BEAMTIME" -n1 "$BT_TEST_STATE/work/steps.sh"

say "3. controller queries per job: salloc with 1 or 10 steps, plain vs --beamtime ($QUERY_REPEATS jobs each)"
# slurmctld counts every RPC it serves by message type (sdiag); slurm_load_job() arrives as
# REQUEST_JOB_INFO_SINGLE, preceded by REQUEST_FED_INFO unless asked with SHOW_LOCAL.
# Nothing else talks to this cluster's controller meanwhile.
rpc_count() {
    awk -v type="$1" '
        /^Remote Procedure Call statistics by message type/ { on = 1; next }
        /^Remote Procedure Call statistics by user/ { on = 0 }
        on && $1 == type { sub(/.*count:/, ""); n = $1 + 0 }
        END { print n + 0 }'
}
for ((r = 0; r < QUERY_REPEATS; r++)); do
    for steps in 1 10; do
        for kind in plain beamtime; do
            option=''
            [[ $kind == beamtime ]] && option=--beamtime=$BEAMTIME
            sdiag --reset >/dev/null
            as_user bttest01 salloc -p ponline_p11 --reservation="$BEAMTIME" -n1 bash -c \
                "for ((i = 0; i < $steps; i++)); do srun $option -n1 true; done" >/dev/null 2>&1 ||
                die "the $kind salloc job with $steps steps failed"
            stats=$(sdiag)
            echo "$(rpc_count REQUEST_JOB_INFO_SINGLE <<<"$stats") $(rpc_count REQUEST_FED_INFO <<<"$stats")" \
                >>"$OUT/queries-$kind-$steps"
        done
    done
done

say "6. submitting: sbatch directly vs bt-submit ($ROUNDS rounds)"
for ((i = 0; i < ROUNDS; i++)); do
    timed "$OUT/submit-sbatch" as_user bttest01 sbatch --parsable -p ponline_p11 \
        --reservation="$BEAMTIME" --beamtime="$BEAMTIME" -o /dev/null --wrap true
    timed "$OUT/submit-bt-submit" as_user bttest01 env \
        BEAMTIME_METADATA_PATH="$BT_TEST_STATE/beamline-src/*/current/beamtime-metadata-{id}.json" \
        "$BT_SUBMIT" --beamtime "$BEAMTIME" --parsable -o /dev/null --wrap true
done
as_user bttest01 scancel -u bttest01 || true

say "9. from the beamline computer: bt-submit --remote --dry-run vs MENTO $MENTO_VERSION building its ssh+sbatch command ($ROUNDS rounds)"
# MENTO from PyPI in a venv under the target folder, never system-wide.
mento_venv=$TARGET_DIR/mento-venv
if ! "$mento_venv/bin/python3" -c "import importlib.metadata as m, sys
sys.exit(m.version('desy-mento') != '$MENTO_VERSION')" 2>/dev/null; then
    python3 -m venv "$mento_venv"
    "$mento_venv/bin/pip" install --quiet "desy-mento==$MENTO_VERSION"
fi
# The same metadata for both: a beamline folder as MENTO expects it (<root>/current with
# the metadata file, its key and the ASAP::O tokens it checks for), the fixture with two
# reservations and four nodes.
beamline=$OUT/gpfs/current
mkdir -p "$beamline/shared"
cp "$REPO/beamtime/tests/fixtures/beamtime-metadata-11099005.json" "$beamline/"
install -m 600 /dev/null "$beamline/shared/id_rsa"
touch "$beamline/shared/asapo-token.txt" "$beamline/shared/asapo-token-clbt.txt"
# MENTO's own way, as mento.trigger.Trigger.run builds it before handing it to Popen:
# locate and parse the metadata, then get_ssh_command and get_sbatch_command.
cat >"$OUT/mento-command.py" <<'MENTO'
import sys
from mento.metadata import get_beamtime_metadata
from mento.trigger import get_ssh_command, get_sbatch_command
info = get_beamtime_metadata(root_dir=sys.argv[1])
print(f'{get_ssh_command(info)} "{get_sbatch_command(info)} {" ".join(sys.argv[2:])}"')
MENTO
# Both find the metadata from where they run: MENTO under its root, bt-submit from the
# folder it runs in. /bin/true is the floor: what starting any process costs here.
(
    cd "$beamline"
    for ((i = 0; i < ROUNDS; i++)); do
        timed "$OUT/remote-mento" "$mento_venv/bin/python3" "$OUT/mento-command.py" "$OUT/gpfs" \
            /gpfs/current/processed/analyse.sh scan_00042
        timed "$OUT/remote-bt-submit" "$BT_SUBMIT" --remote --dry-run /gpfs/current/processed/analyse.sh scan_00042
        timed "$OUT/remote-process-start" /bin/true
    done
)
"$mento_venv/bin/python3" "$OUT/mento-command.py" "$OUT/gpfs" /gpfs/current/processed/analyse.sh scan_00042 \
    >"$OUT/remote-mento-command"
(cd "$beamline" && "$BT_SUBMIT" --remote --dry-run /gpfs/current/processed/analyse.sh scan_00042) \
    >"$OUT/remote-bt-submit-command"

say "7. slurmstepd memory: no plugin vs plugin unused vs --beamtime ($ROUNDS rounds)"
# A task's parent is its step's slurmstepd (task/none forks tasks itself). VmHWM is that
# process's peak resident set up to the moment the task runs, which covers the plugin's
# init and option handling and, with --beamtime, the metadata read and the controller
# query; the mount setup happens in the task's own forked child, whose memory exec replaces.
cat >"$BT_TEST_STATE/work/stepd-memory.sh" <<'PROBE'
#!/bin/bash
read -r comm <"/proc/$PPID/comm"
[[ $comm == slurmstepd ]] || { echo "the task's parent is $comm, not slurmstepd" >&2; exit 1; }
# RssAnon is the process's own memory; RssFile the pages of mapped files (its libraries),
# which every process mapping the same file shares in the page cache.
awk '/^VmHWM:/ {hwm = $2} /^VmRSS:/ {rss = $2} /^RssAnon:/ {anon = $2} /^RssFile:/ {file = $2}
     END {print hwm, rss, anon, file}' "/proc/$PPID/status"
PROBE
chmod 755 "$BT_TEST_STATE/work/stepd-memory.sh"
memory_of() {
    local name=$1; shift
    as_user bttest01 srun -p ponline_p11 --reservation="$BEAMTIME" -n1 "$@" \
        "$BT_TEST_STATE/work/stepd-memory.sh" >>"$OUT/memory-$name" || die "the memory probe failed ($name)"
}
for ((i = 0; i < ROUNDS; i++)); do
    echo "# no SPANK plugin" >"$plugstack"
    memory_of no-plugin
    echo "$with_plugin" >"$plugstack"
    memory_of plugin-unused
    memory_of beamtime --beamtime="$BEAMTIME"
done

say "loading the plugin: dlopen() in a fresh process, libslurm already loaded ($ROUNDS rounds)"
# What srun, sbatch, salloc and each slurmstepd pay for a plugin they load; the library is
# linked with -z now, so every symbol is bound here, which needs libslurm's symbols present.
for ((i = 0; i < ROUNDS; i++)); do
    LD_PRELOAD=$(dirname "$(readlink -f /usr/lib/x86_64-linux-gnu/slurm-wlm/libslurmfull.so)")/libslurmfull.so \
        python3 -c 'import ctypes, os, sys, time
start = time.perf_counter()
ctypes.CDLL(sys.argv[1], mode=os.RTLD_LAZY | os.RTLD_LOCAL)
print(round((time.perf_counter() - start) * 1e6))' "$PLUGIN_SO" >>"$OUT/dlopen"
done

measure_watch

say "4. mount setup against the node's mount table: the cluster again, slurmd in a mount namespace of its own"
# The extra mounts must not touch the host: they go into slurmd's own namespace
# (cluster.sh --private-mounts), which every slurmstepd and task inherits. Verbose logging
# makes slurmstepd log the plugin's setup time per task.
"$CLUSTER" down >&2
BT_SLURM_DEBUG=verbose "$CLUSTER" up --private-mounts --plugin "$PLUGIN_SO" --plugin-args "$(plugin_args)"
forget_job_cache
start_beamtime
slurmd_pid=$(<"$BT_TEST_STATE/run/slurmd.pid")
[[ $(readlink "/proc/$slurmd_pid/ns/mnt") != "$(readlink /proc/self/ns/mnt)" ]] ||
    die "slurmd (pid $slurmd_pid) shares this shell's mount namespace: the extra mounts would land on the host"
mount_table=$BT_TEST_STATE/work/mount-table
mkdir -p "$mount_table"

# Small tmpfs mounts, all made by one process: thousands of mount(8) runs would take minutes.
grow_mount_table() {
    nsenter --mount --target "$slurmd_pid" -- python3 -c '
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
folder, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(start, end):
    path = f"{folder}/{i}"
    os.makedirs(path, exist_ok=True)
    if libc.mount(b"tmpfs", path.encode(), b"tmpfs", 0, b"size=16k,nr_inodes=16,mode=0755") != 0:
        sys.exit(f"mount {path}: {os.strerror(ctypes.get_errno())}")
' "$mount_table" "$1" "$2"
}

# The kernel's share alone: the plugin's first two calls (unshare(CLONE_NEWNS), then every
# mount made a slave: ffi::enter_private_mount_namespace) in a fresh child per round.
namespace_copy_times() {
    nsenter --mount --target "$slurmd_pid" -- python3 -c '
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, MS_REC, MS_SLAVE = 0x20000, 0x4000, 0x80000
for _ in range(int(sys.argv[1])):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        start = time.perf_counter()
        ok = libc.unshare(CLONE_NEWNS) == 0 and libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None) == 0
        os.write(w, str(round((time.perf_counter() - start) * 1e6) if ok else "failed").encode())
        os._exit(0)
    os.close(w)
    answer = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    if answer == "failed":
        sys.exit("unshare(CLONE_NEWNS) or the slave remount failed")
    print(answer)
' "$ROUNDS"
}

log=$BT_TEST_STATE/log/slurmd.log
have=0
for n in "${MOUNT_TABLE_SIZES[@]}"; do
    say "4. $n extra mounts in slurmd's namespace ($ROUNDS rounds)"
    grow_mount_table "$have" "$n"
    have=$n
    echo "$n $(wc -l <"/proc/$slurmd_pid/mountinfo")" >>"$OUT/mount-table-sizes"
    offset=$(stat -c %s "$log")
    write_steps_script "$BT_TEST_STATE/work/steps-$n.sh" "mounts-$n-step-plain" "mounts-$n-step-beamtime"
    as_user bttest01 salloc -p ponline_p11 --reservation="$BEAMTIME" -n1 "$BT_TEST_STATE/work/steps-$n.sh"
    tail -c "+$((offset + 1))" "$log" |
        sed -n "s/.*spank-beamtime: beamtime=$BEAMTIME mount namespace set up in \([0-9]*\) us\$/\1/p" \
            >"$OUT/mounts-$n-setup"
    found=$(wc -l <"$OUT/mounts-$n-setup")
    ((found == ROUNDS)) ||
        die "$log: $found 'mount namespace set up' lines for $ROUNDS beamtime steps (does the plugin log them at verbose?)"
    namespace_copy_times >"$OUT/mounts-$n-unshare"
    [[ " ${TASK_TABLE_SIZES[*]} " == *" $n "* ]] || continue
    for tasks in "${TASK_COUNTS[@]}"; do
        say "4. $n extra mounts, steps of $tasks tasks ($ROUNDS rounds)"
        name=mounts-$n-tasks-$tasks
        offset=$(stat -c %s "$log")
        write_steps_script "$BT_TEST_STATE/work/$name.sh" "$name-step-plain" "$name-step-beamtime" "$tasks"
        as_user bttest01 salloc -p ponline_p11 --reservation="$BEAMTIME" -n"$tasks" "$BT_TEST_STATE/work/$name.sh"
        # Task 0 of each step sets the namespace up, every other task waits for it and joins.
        new_log() { tail -c "+$((offset + 1))" "$log"; }
        new_log | sed -n "s/.*spank-beamtime: beamtime=$BEAMTIME mount namespace set up in \([0-9]*\) us\$/\1/p" \
            >"$OUT/$name-set-up"
        new_log | sed -n "s/.*spank-beamtime: beamtime=$BEAMTIME mount namespace joined in \([0-9]*\) us after waiting [0-9]* us for task 0\$/\1/p" \
            >"$OUT/$name-joined"
        new_log | sed -n "s/.*spank-beamtime: beamtime=$BEAMTIME mount namespace joined in [0-9]* us after waiting \([0-9]*\) us for task 0\$/\1/p" \
            >"$OUT/$name-waited"
        found=$(wc -l <"$OUT/$name-set-up")
        ((found == ROUNDS)) || die "$log: $found 'mount namespace set up' lines for $ROUNDS steps of $tasks tasks"
        # Tasks that log at the same moment can garble each other's line in slurmd's log
        # (seen: 1 of 124); what is readable is enough, none or too many is not.
        found=$(wc -l <"$OUT/$name-joined")
        ((found <= ROUNDS * (tasks - 1) && (tasks == 1 || found > 0))) ||
            die "$log: $found 'mount namespace joined' lines for $ROUNDS steps of $tasks tasks"
        echo "$n $tasks $found $((ROUNDS * (tasks - 1)))" >>"$OUT/joined-lines"
    done
done
# The namespace, and every mount in it, ends with slurmd and its steps.
"$CLUSTER" down >&2
rm -rf --one-file-system "$mount_table"

say "5. metadata discovery, trust checks and parsing (criterion, cluster stopped)"
# Set explicitly, so that criterion and report.py agree even for a relative CARGO_TARGET_DIR.
criterion_dir=$(cd "$REPO" && realpath -m "$TARGET_DIR")/criterion
touch "$OUT/criterion-start"
(cd "$REPO" && CRITERION_HOME=$criterion_dir cargo bench --locked -p beamtime-bench --bench metadata)

say "writing docs/benchmarks.md, docs/benchmarks.svg and docs/benchmarks-mounts.svg"
python3 "$REPO/bench/report.py" "$OUT" "$criterion_dir" "$REPO/docs"
# Kept, so that a change to report.py can be rendered without measuring again:
#   python3 bench/report.py TARGET/bench-last TARGET/criterion docs
last=$(dirname "$criterion_dir")/bench-last
rm -rf "$last"
chmod 755 "$OUT"
mv "$OUT" "$last"
say "raw measurements: $last"
