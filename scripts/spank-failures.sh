#!/bin/bash
# Measures what each Slurm release does when a SPANK callback fails, and makes
# docs/plugin.md's per-release table from the measurements:
#
#   scripts/spank-failures.sh [host] [ROOT…]
#
# host is the Slurm installed here; a ROOT is a release root made by
# scripts/release-root.sh (entered with scripts/in-root.sh, never made or rebuilt here).
# Without arguments: the host and every root under $BT_ROOTS (default
# /var/lib/spank-beamtime-roots) that holds a Slurm. On each, a one-node cluster is started
# plainly and then with the release's job container, and the scenario spank_failures.rs
# (every callback failing with -1 and with 1, in a batch and in an srun step, through the
# btprobe plugin; about a minute per configuration) writes
# docs/spank-failures/slurm-<release>[-job-container].tsv. Then
# scripts/spank-failures-table.py rewrites the table in docs/plugin.md from those files.
# The cluster ports and state folder are the caller's (BT_TEST_STATE, BT_*_PORT).
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"

# The inside half, on the machine or in the root whose Slurm is measured: TEST_BINARY is
# spank_failures.rs compiled on the host (it needs only the C library, so it runs in every
# root unchanged).
if [[ ${1:-} == --here ]]; then
    test_binary=$2
    trap '"$REPO/tests/cluster/cluster.sh" down >&2 || true' EXIT
    for configuration in plain --job-container; do
        up=()
        [[ $configuration == plain ]] || up=("$configuration")
        start=$(date +%s)
        "$REPO/tests/cluster/cluster.sh" up "${up[@]}" >&2
        eval "$("$REPO/tests/cluster/cluster.sh" env)"
        BT_SPANK_FAILURES_DIR=$REPO/docs/spank-failures "$test_binary" --ignored --nocapture
        "$REPO/tests/cluster/cluster.sh" down >&2
        say "$(slurmd -V), $configuration: $(($(date +%s) - start)) s with the cluster's up and down"
    done
    exit
fi

need_root
ensure_cargo
ROOTS=${BT_ROOTS:-/var/lib/spank-beamtime-roots}
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(host)
    for root in "$ROOTS"/*/; do
        [[ -x $root/usr/sbin/slurmd ]] && targets+=("${root%/}")
    done
fi

say "building the scenario spank_failures.rs"
test_binary=$(cd "$REPO" && cargo test --locked -p scenarios --test spank_failures --no-run 2>&1 |
    sed -n 's/^ *Executable .*(\(.*\))$/\1/p')
[[ -n $test_binary && -x $REPO/$test_binary ]] || die "cargo test --no-run named no test binary for spank_failures"
for target in "${targets[@]}"; do
    if [[ $target == host ]]; then
        say "Slurm on this host: $(slurmd -V)"
        "$REPO/scripts/spank-failures.sh" --here "$REPO/$test_binary"
    else
        say "Slurm in $target"
        "$REPO/scripts/in-root.sh" "$target" "$REPO/scripts/spank-failures.sh" --here "$REPO/$test_binary"
    fi
done
python3 "$REPO/scripts/spank-failures-table.py"
