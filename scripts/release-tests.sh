#!/bin/bash
# The scenarios on another Slurm release, run inside its root by scripts/test-all.sh:
#
#   scripts/in-root.sh ROOT scripts/release-tests.sh DEBS REPORT_DIR PASS…
#
# Installs DEBS (scripts/package.sh --root ROOT: spank-beamtime's and bt-submit's, comma
# separated) with dpkg as a site would, then runs
# each named scenario pass (scripts/lib.sh pass_definition: plain, job-container, core,
# core-container, shared-root, nodes …) against the installed plugin and bt-submit on a
# local cluster (tests/cluster/cluster.sh, unchanged). Logs, figures and the seconds
# each pass took go to REPORT_DIR/slurm-<major.minor>/, which
# scripts/reliability_report.py reads as one release's columns. CARGO_TARGET_DIR should
# be the release's own (scripts/releases.sh).
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"

(($# >= 3)) || die "usage: scripts/release-tests.sh DEB,DEB REPORT_DIR PASS…"
IFS=, read -ra debs <<<"$1"
REPORT_DIR=$2
shift 2
passes=("$@")
for pass in "${passes[@]}"; do pass_definition "$pass"; done
need_root
ensure_cargo
version=$(slurmd -V | awk '{print $2}')
report=$REPORT_DIR/slurm-${version%.*}
rm -rf "$report"
mkdir -p "$report"
export BT_FIGURES=$report/figures.jsonl
echo "slurm=$version" >"$report/release.txt"

# slurm_from_source: Slurm installed by `make install` (scripts/release-root.sh source).
source "$REPO/tests/cluster/lib/slurm_install.sh"
say "Slurm $version: installing ${debs[*]}"
if slurm_from_source; then
    # No package records this Slurm, so dpkg cannot see the release the .deb depends
    # on (Debian's slurm-wlm-basic-plugins or SchedMD's slurm-smd): a site that
    # installs Slurm with `make install` forces it, as here.
    dpkg -i --force-confnew --force-depends "${debs[@]}" >&2
else
    dpkg -i --force-confnew "${debs[@]}" >&2
fi
PLUGIN_SO=/usr/lib/x86_64-linux-gnu/slurm-wlm/spank_beamtime.so
export BT_SUBMIT=/usr/bin/bt-submit

trap '"$REPO/tests/cluster/cluster.sh" down >&2 || true' EXIT

# A failed pass is noted in FAILED and the next one still runs, so the report has the
# whole release.
FAILED=()
for pass in "${passes[@]}"; do
    run_pass "$pass" "$report" || FAILED+=("$PASS_LABEL")
done
((${#FAILED[@]} == 0)) || die "Slurm $version: scenarios failed in: ${FAILED[*]} (logs in $report)"
say "Slurm $version: every scenario passed"
