#!/bin/bash
# Fuzzes the parsers that take outside input — metadata files, plugstack.conf
# arguments, beamtime ids and search patterns — with libFuzzer (cargo fuzz),
# each target for SECONDS (default 20). Seeds: the metadata fixtures and
# fuzz/seeds/<target>/. Prints one line per target; a crash fails the run and
# leaves its input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS]
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"
SECONDS_PER_TARGET=${1:-20}
TARGETS=(metadata plugin_config names_and_patterns)

ensure_cargo
command -v cargo-fuzz >/dev/null || {
    say "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
}
cd "$REPO/fuzz"
# Stable Rust has no -Zsanitizer: the fuzzed code is safe Rust, so coverage
# guidance without AddressSanitizer still finds panics and broken invariants.
cargo fuzz build -O --sanitizer none

for target in "${TARGETS[@]}"; do
    corpus=$REPO/target/fuzz-corpus/$target
    mkdir -p "$corpus"
    seeds=$REPO/fuzz/seeds/$target
    [[ $target == metadata ]] && seeds=$REPO/beamtime/tests/fixtures
    log=$REPO/target/fuzz-$target.log
    if ! cargo fuzz run -O --sanitizer none "$target" "$corpus" "$seeds" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -rss_limit_mb=2048 >"$log" 2>&1; then
        tail -40 "$log" >&2
        die "fuzz target $target crashed; the input is in fuzz/artifacts/$target/"
    fi
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo 0)
    stats=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
    printf 'fuzz %-20s %10s executions in %ss, %s, crashes: 0\n' "$target" "$runs" "$SECONDS_PER_TARGET" "$stats"
done
