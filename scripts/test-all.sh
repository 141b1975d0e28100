#!/bin/bash
# Every test: the unit tests, then the real-Slurm scenarios on a local cluster
# (munged, MariaDB, slurmdbd, slurmctld, slurmd) started and stopped here, once
# plainly, once with job_container/tmpfs and once on a node whose / is shared, then
# bt-submit watch's, then the multi-node scenarios on 4 hosts
# (network + UTS namespaces, tests/cluster/README.md), then the one-node scenarios on
# Slurm 24.11 and 26.05 in Debian roots and on 23.11, 25.05 and 25.11 built from
# SchedMD's sources (below). The one-node passes include remote.rs,
# bt-submit --remote against the loopback sshd that cluster.sh starts for the node; the
# 4-host pass multinode_remote.rs, against each node's own sshd. Run as root on Debian 12.
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"

# What the tests print and measure goes to REPORT, and from there into reliability.md
# (scripts/reliability_report.py; scripts/reliability.sh makes docs/reliability.md so).
REPORT=${BT_REPORT_DIR:-$REPO/target/reliability}
FUZZ_SECONDS=${BT_FUZZ_SECONDS:-15}

need_root
ensure_cargo
ensure_build_packages
cd "$REPO"
rm -rf "$REPORT"
mkdir -p "$REPORT"
export BT_FIGURES=$REPORT/figures.jsonl

say "formatting and lints"
# Before anything slow: a formatting slip or a lint fails the run in seconds.
cargo fmt --all --check
(cd "$REPO/fuzz" && cargo fmt --check)
cargo clippy --workspace --all-targets --locked -- -D warnings 2>&1 | tee "$REPORT/clippy.log"
ensure_packages shellcheck
mapfile -t shell_scripts < <(git ls-files '*.sh')
shellcheck -x "${shell_scripts[@]}" .ci/run
# docs/plugin.md's SPANK failure tables are made from the measurements (scripts/spank-failures.sh).
python3 scripts/spank-failures-table.py --check

# The other releases' roots, made (or reused) in the background while the host's tests run:
# mmdebstrap is network and dpkg work, and the Slurm builds (several minutes of compiling
# each) run at the lowest priority beside scenarios that mostly wait on daemons. Their
# paths go to roots.txt, one a line; the seconds each took, to roots.log.
# SchedMD's archives of the releases no Debian suite carries, from $BT_SLURM_SRC
# (release-root.sh: ../shared/slurm-src beside the repository unless set).
SOURCE_ARCHIVES=(slurm-23-11-11-1.tar.gz slurm-25-05-8-1.tar.gz slurm-25-11-7-1.tar.gz)
make_roots() {
    local suite archive
    renice -n 19 -p "$BASHPID" >/dev/null
    for suite in trixie sid; do "$REPO/scripts/release-root.sh" "$suite"; done
    for archive in "${SOURCE_ARCHIVES[@]}"; do "$REPO/scripts/release-root.sh" source "$archive"; done
}
make_roots >"$REPORT/roots.txt" 2>"$REPORT/roots.log" &
roots_pid=$!
# stop_tree PID: the process and everything under it, children first (by pid, from ps).
stop_tree() {
    local child
    for child in $(ps -o pid= --ppid "$1"); do stop_tree "$child"; done
    kill -TERM "$1" 2>/dev/null || true
}
# However the run ends, the background roots job (still running only if a pass failed
# first) goes with it: a failed run must not leave Slurm compiling into the roots.
stop_background() {
    local job
    for job in $(jobs -pr); do stop_tree "$job"; done
}
trap stop_background EXIT

say "unit tests"
# default-members: the scenarios crate needs the cluster and runs below.
cargo test --locked 2>&1 | tee "$REPORT/unit.log"

say "fuzzing the parsers (time-boxed)"
bash "$REPO/scripts/fuzz.sh" "$FUZZ_SECONDS" | tee "$REPORT/fuzz.txt"

# The scenarios run against the installed package, as a site has it.
install_package
"$REPO/tests/cluster/cluster.sh" down >/dev/null 2>&1 || true
trap 'stop_background; "$REPO/tests/cluster/cluster.sh" down >&2 || true' EXIT

# The passes (scripts/lib.sh pass_definition): every one on the host's release.
# The beamline computer's root (no Slurm; made once, then reused) for its pass.
BT_NO_SLURM_ROOT=$("$REPO/scripts/release-root.sh" no-slurm)
export BT_NO_SLURM_ROOT
for pass in plain watch job-container shared-root nodes beamline-computer; do
    run_pass "$pass" "$REPORT"
done

# The other supported releases, each in a root of its own (scripts/release-root.sh, made
# in the background above, or reused): the .deb built here against that root's headers,
# installed there, and scenario passes on a cluster inside it (scripts/in-root.sh,
# scripts/release-tests.sh). The newest release (Debian's 26.05) gets the one-node passes in
# full; the others the core ones, 25.11 also its two namespace plugins' — for time (README
# says what each part costs). A root that could not be made fails the run here.
# root_number N: the Nth root the background job made, as soon as it is there (the releases
# whose roots are ready run while the later ones are still being built).
root_number() {
    local n=$1
    until (($(wc -l <"$REPORT/roots.txt") >= n)); do
        if ! kill -0 "$roots_pid" 2>/dev/null; then
            wait "$roots_pid" || die "making the release roots failed: see $REPORT/roots.log"
            (($(wc -l <"$REPORT/roots.txt") >= n)) || die "only $(wc -l <"$REPORT/roots.txt") release roots were made: see $REPORT/roots.log"
        fi
        sleep 5
    done
    sed -n "${n}p" "$REPORT/roots.txt"
}
# release_part ROOT PASS…
release_part() {
    local root=$1 debs start name
    shift
    name=$(basename "$root")
    start=$(date +%s)
    say "Slurm of the $name root: package"
    # The plugin's .deb and its bt-submit's, as one comma-separated argument.
    debs=$("$REPO/scripts/package.sh" --root "$root" | paste -sd,)
    echo "$name package $(($(date +%s) - start))" >>"$REPORT/release-times.txt"
    start=$(date +%s)
    CARGO_TARGET_DIR=$REPO/target/slurm-$name \
        "$REPO/scripts/in-root.sh" "$root" "$REPO/scripts/release-tests.sh" "$debs" "$REPORT" "$@"
    echo "$name scenarios $(($(date +%s) - start))" >>"$REPORT/release-times.txt"
}
for ((n = 1; n <= 2 + ${#SOURCE_ARCHIVES[@]}; n++)); do
    root=$(root_number "$n")
    case $(basename "$root") in
    sid) release_part "$root" plain job-container shared-root namespace-tmpfs ;;
    source-25-11) release_part "$root" core core-container namespace-tmpfs namespace-linux ;;
    *) release_part "$root" core core-container ;;
    esac
done

{
    printf 'commit=%s\n' "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    printf 'slurm=%s\n' "$(sinfo -V)"
    printf 'kernel=%s\n' "$(uname -r)"
    printf 'cpus=%s\n' "$(nproc)"
    printf 'fuzz_seconds=%s\n' "$FUZZ_SECONDS"
    printf 'date=%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
} >"$REPORT/machine.txt"
python3 "$REPO/scripts/reliability_report.py" "$REPORT" >"$REPORT/reliability.md"
say "every test passed; figures in $REPORT/reliability.md"
