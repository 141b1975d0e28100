#!/bin/bash
# Every test: the unit tests, then the real-Slurm scenarios on a local cluster
# (munged, MariaDB, slurmdbd, slurmctld, slurmd) started and stopped here, once
# plainly and once with job_container/tmpfs, then the multi-node scenarios on 4 hosts
# (network + UTS namespaces, tests/cluster/README.md). Run as root on Debian 12.
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"

need_root
ensure_cargo
ensure_build_packages
cd "$REPO"

say "unit tests"
# default-members: the scenarios crate needs the cluster and runs below.
cargo test --locked

say "fuzzing the parsers (time-boxed)"
bash "$REPO/scripts/fuzz.sh" 15

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
    cargo test --locked -p scenarios "${tests[@]}"
    "$REPO/tests/cluster/cluster.sh" down
}

run_scenarios "plain slurmd"
run_scenarios "job_container/tmpfs" --job-container
# The multi-node scenarios are #[ignore]d in the one-node passes above.
run_scenarios "4 hosts" --nodes 4 -- --test multinode --test multinode_queries --test multinode_faults -- --ignored --test-threads=4
