#!/bin/bash
# Every test: the unit tests, then the real-Slurm scenarios on a local cluster
# (munged, MariaDB, slurmdbd, slurmctld, slurmd) started and stopped here, once
# plainly, once with job_container/tmpfs and once on a node whose / is shared, then
# bt-submit watch's, then the multi-node scenarios on 4 hosts
# (network + UTS namespaces, tests/cluster/README.md), then the one-node scenarios on
# Slurm 24.11 and 26.05 in Debian roots (below). The one-node passes include remote.rs,
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

say "unit tests"
# default-members: the scenarios crate needs the cluster and runs below.
cargo test --locked 2>&1 | tee "$REPORT/unit.log"

say "fuzzing the parsers (time-boxed)"
bash "$REPO/scripts/fuzz.sh" "$FUZZ_SECONDS" | tee "$REPORT/fuzz.txt"

# The scenarios run against the installed package, as a site has it.
install_package
"$REPO/tests/cluster/cluster.sh" down >/dev/null 2>&1 || true
trap '"$REPO/tests/cluster/cluster.sh" down >&2 || true' EXIT

# run_scenarios LABEL [cluster.sh up options…] [-- cargo test arguments…]
run_scenarios() {
    local label=$1 up=() tests=(-- --test-threads=4)
    shift
    while (($#)) && [[ $1 != -- ]]; do up+=("$1"); shift; done
    if (($#)); then shift; tests=("$@"); fi
    say "real-Slurm scenarios: $label"
    "$REPO/tests/cluster/cluster.sh" up --plugin "$PLUGIN_SO" --plugin-args "$(plugin_args)" "${up[@]}"
    eval "$("$REPO/tests/cluster/cluster.sh" env)"
    export BT_SUBMIT
    cargo test --locked -p scenarios "${tests[@]}" 2>&1 | tee "$REPORT/scenarios-${label//[^a-z0-9]/_}.log"
    "$REPO/tests/cluster/cluster.sh" down
}

run_scenarios "plain slurmd"
# bt-submit watch's scenarios (#[ignore]d above) are about bt-submit, not the node's
# configuration, and make some 450 jobs: once, on the host's release, not in every pass.
run_scenarios "bt-submit watch" -- --test watch -- --ignored --test-threads=2
run_scenarios "job_container/tmpfs" --job-container
# A node whose / is shared, as systemd makes it: nothing the plugin mounts may reach
# slurmd's table (the test is #[ignore]d in the passes above, which cannot show it).
run_scenarios "shared root" --shared-root -- --test step_namespace -- --ignored --test-threads=1
# The multi-node scenarios are #[ignore]d in the one-node passes above.
run_scenarios "4 hosts" --nodes 4 -- --test multinode --test multinode_queries --test multinode_faults --test multinode_remote -- --ignored --test-threads=4

# The other supported releases, each in a Debian root of its own (scripts/release-root.sh:
# made once, then reused): the .deb built here against that root's headers, installed there, and the one-node scenarios in both
# configurations and on a shared / on a cluster inside it (scripts/in-root.sh, scripts/release-tests.sh).
# Not the 4-host scenarios, for time (about 4 min more per release; release-tests.sh
# --nodes runs them). A root that cannot be made, or a
# release tool that is missing, fails the run. Measured per release (2 cores, warm
# roots): package 1–2.5 min, scenarios 8–9 min; a root from nothing about 100 s.
release_part() {
    local suite=$1 root deb start
    start=$(date +%s)
    say "Slurm of Debian $suite: root and package"
    root=$("$REPO/scripts/release-root.sh" "$suite")
    deb=$("$REPO/scripts/package.sh" --root "$root")
    echo "$suite root+package $(($(date +%s) - start))" >>"$REPORT/release-times.txt"
    start=$(date +%s)
    CARGO_TARGET_DIR=$REPO/target/slurm-$suite \
        "$REPO/scripts/in-root.sh" "$root" "$REPO/scripts/release-tests.sh" "$deb" "$REPORT"
    echo "$suite scenarios $(($(date +%s) - start))" >>"$REPORT/release-times.txt"
}
release_part trixie
release_part sid

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
