#!/bin/bash
# Job-launch cost of spank-beamtime, measured on the local cluster against
# Slurm without it. Each pair of variants is run interleaved (A B A B …) on the
# same machine in the same run, so drift and background load hit both alike.
# Writes docs/benchmarks.md and docs/benchmarks.svg. Run as root:
#
#   bench/run.sh [ROUNDS]        (default 40 rounds per comparison)
set -Eeuo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
ROUNDS=${1:-40}
CLUSTER=$REPO/tests/cluster/cluster.sh
OUT=$(mktemp -d /var/tmp/spank-beamtime-bench.XXXXXX)

start_cluster_with_fresh_plugin
trap '"$CLUSTER" down >&2 || true' EXIT
"$REPO/slurm-conf-examples/beamtime-start.sh" --id 11099001 --beamline p11 --account bttest01 \
    --partition ponline_p11 --cores 2 --replace >/dev/null

as_user() {
    local user=$1; shift
    runuser -u "$user" -- env -C "$BT_TEST_STATE/work" SLURM_CONF="$SLURM_CONF" PATH="$PATH" "$@"
}
mkdir -p "$BT_TEST_STATE/work"
chmod 1777 "$BT_TEST_STATE/work"

# Milliseconds one command takes, appended to a file.
timed() {
    local file=$1; shift
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { echo "benchmark command failed: $*" >&2; exit 1; }
    end=$(date +%s%N)
    echo "$(((end - start) / 1000))" >>"$file"
}

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

say "2. a step inside an allocation: srun -n1 true vs srun --beamtime … -n1 true ($ROUNDS rounds)"
cat >"$BT_TEST_STATE/work/steps.sh" <<STEPS
#!/bin/bash
set -e
$(declare -f timed)
for ((i = 0; i < $ROUNDS; i++)); do
    timed $OUT/step-plain srun -n1 true
    timed $OUT/step-beamtime srun --beamtime=11099001 -n1 true
done
STEPS
chmod 755 "$BT_TEST_STATE/work/steps.sh"
chmod 777 "$OUT"
as_user bttest01 salloc -p ponline_p11 --reservation=11099001 -n1 "$BT_TEST_STATE/work/steps.sh"

say "3. submitting: sbatch directly vs bt-submit ($ROUNDS rounds)"
for ((i = 0; i < ROUNDS; i++)); do
    timed "$OUT/submit-sbatch" as_user bttest01 sbatch --parsable -p ponline_p11 \
        --reservation=11099001 --beamtime=11099001 -o /dev/null --wrap true
    timed "$OUT/submit-bt-submit" as_user bttest01 env \
        BEAMTIME_METADATA_PATH="$BT_TEST_STATE/beamline-src/*/current/beamtime-metadata-{id}.json" \
        "$BT_SUBMIT" --beamtime 11099001 --parsable -o /dev/null --wrap true
done
as_user bttest01 scancel -u bttest01 || true

say "4. loading the plugin: dlopen() in a fresh process, libslurm already loaded ($ROUNDS rounds)"
# What srun, sbatch, salloc and each slurmstepd pay for a plugin they load; the library is
# linked with -z now, so every symbol is bound here, which needs libslurm's symbols present.
for ((i = 0; i < ROUNDS; i++)); do
    LD_PRELOAD=$(dirname "$(readlink -f /usr/lib/x86_64-linux-gnu/slurm-wlm/libslurmfull.so)")/libslurmfull.so \
        python3 -c 'import ctypes, os, sys, time
start = time.perf_counter()
ctypes.CDLL(sys.argv[1], mode=os.RTLD_LAZY | os.RTLD_LOCAL)
print(round((time.perf_counter() - start) * 1e6))' "$PLUGIN_SO" >>"$OUT/dlopen"
done

say "writing docs/benchmarks.md and docs/benchmarks.svg"
python3 "$REPO/bench/report.py" "$OUT" "$ROUNDS" "$REPO/docs/benchmarks.md" "$REPO/docs/benchmarks.svg"
rm -rf "$OUT"
