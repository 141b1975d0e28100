#!/bin/bash
# The scenarios on another Slurm release, run inside its root by scripts/test-all.sh:
#
#   scripts/in-root.sh ROOT scripts/release-tests.sh DEB REPORT_DIR [--nodes]
#
# Installs DEB (scripts/package.sh --root ROOT) with dpkg as a site would, then runs the
# one-node scenarios against the installed plugin and bt-submit on a local cluster
# (tests/cluster/cluster.sh, unchanged): plainly, then with the release's job container
# (job_container/tmpfs, namespace/tmpfs from 25.11), then on a node whose / is shared
# (the propagation proof of step_namespace.rs); with --nodes also the 4-host
# scenarios. Logs and figures go to REPORT_DIR/slurm-<major.minor>/, which
# scripts/reliability_report.py reads as one release's column. CARGO_TARGET_DIR should
# be the release's own (scripts/releases.sh).
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"

(($# == 2 || $# == 3)) || die "usage: scripts/release-tests.sh DEB REPORT_DIR [--nodes]"
deb=$1 nodes=${3:-}
[[ -z $nodes || $nodes == --nodes ]] || die "unknown option '$nodes'"
need_root
ensure_cargo
version=$(slurmd -V | awk '{print $2}')
report=$2/slurm-${version%.*}
rm -rf "$report"
mkdir -p "$report"
export BT_FIGURES=$report/figures.jsonl
echo "slurm=$version" >"$report/release.txt"

# slurm_from_source: Slurm installed by `make install` (scripts/release-root.sh source).
source "$REPO/tests/cluster/lib/slurm_install.sh"
say "Slurm $version: installing $deb"
if slurm_from_source; then
    # No package records this Slurm, so dpkg cannot see the release the .deb depends
    # on (Debian's slurm-wlm-basic-plugins or SchedMD's slurm-smd): a site that
    # installs Slurm with `make install` forces it, as here.
    dpkg -i --force-confnew --force-depends "$deb" >&2
else
    dpkg -i --force-confnew "$deb" >&2
fi
PLUGIN_SO=/usr/lib/x86_64-linux-gnu/slurm-wlm/spank_beamtime.so
export BT_SUBMIT=/usr/bin/bt-submit

trap '"$REPO/tests/cluster/cluster.sh" down >&2 || true' EXIT

# run LABEL [cluster.sh up options…] [-- cargo test arguments…], as test-all.sh's
# run_scenarios, with the time each part took in REPORT/times.txt. A failed part is
# noted in FAILED and the next one still runs, so the report has the whole release.
FAILED=()
run() {
    local label=$1 up=() tests=(-- --test-threads=4) start rc=0
    shift
    while (($#)) && [[ $1 != -- ]]; do up+=("$1"); shift; done
    if (($#)); then shift; tests=("$@"); fi
    say "Slurm $version, real-Slurm scenarios: $label"
    start=$(date +%s)
    "$REPO/tests/cluster/cluster.sh" up --plugin "$PLUGIN_SO" --plugin-args "$(plugin_args)" "${up[@]}"
    eval "$("$REPO/tests/cluster/cluster.sh" env)"
    cargo test --locked --no-fail-fast -p scenarios "${tests[@]}" 2>&1 |
        tee "$report/scenarios-${label//[^a-z0-9]/_}.log" || rc=$?
    "$REPO/tests/cluster/cluster.sh" down
    echo "$label $(($(date +%s) - start))" >>"$report/times.txt"
    ((rc == 0)) || FAILED+=("$label")
}

run "plain slurmd"
run "job_container/tmpfs" --job-container
run "shared root" --shared-root -- --test step_namespace -- --ignored --test-threads=1
if [[ -n $nodes ]]; then
    run "4 hosts" --nodes 4 -- --test multinode --test multinode_queries --test multinode_faults --test multinode_remote -- --ignored --test-threads=4
fi
((${#FAILED[@]} == 0)) || die "Slurm $version: scenarios failed in: ${FAILED[*]} (logs in $report)"
say "Slurm $version: every scenario passed"
