# shellcheck shell=bash
# How Slurm is installed here. Sourced by cluster.sh (which packages it needs) and
# scripts/release-tests.sh (how the plugin's package is installed); needs only bash
# and dpkg, so it also runs inside a release root.

# slurm_from_source: a slurmd that no package owns, as Slurm's `make install` leaves
# it (scripts/release-root.sh source).
slurm_from_source() {
    local slurmd
    slurmd=$(command -v slurmd) || return 1
    ! dpkg-query -S "$(realpath "$slurmd")" >/dev/null 2>&1
}
