#!/bin/bash
# Makes (or reuses) a Debian root holding another Slurm release, for building and
# testing the plugin against it, and prints the root's path on stdout:
#
#   scripts/release-root.sh trixie     Slurm 24.11
#   scripts/release-root.sh sid        Slurm 26.05
#   scripts/release-root.sh bookworm   Slurm 22.05, Debian 12's own: a cluster of the
#                                      host's release apart from the host's own one
#
# Roots live in $BT_ROOTS (default /var/lib/spank-beamtime-roots), one folder per suite,
# outside the repository. A root is reused when its completion stamp matches the
# package list below and its Slurm answers `slurmd -V`; anything else (absent, a build
# that died half-way, a changed package list) is deleted and built again with
# mmdebstrap from the Debian mirror apt already uses. Enter one with scripts/in-root.sh.
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"

ROOTS=${BT_ROOTS:-/var/lib/spank-beamtime-roots}
# What tests/cluster/cluster.sh installs on the host (its PACKAGES), plus what the
# build and the scenarios call: there is no network inside a root to install the rest.
ROOT_PACKAGES=(slurm-wlm slurmctld slurmd slurm-client slurmdbd libslurm-dev munge
    mariadb-server libclang-dev pkg-config build-essential python3 util-linux passwd
    openssh-client openssh-server iproute2 procps ca-certificates)

usage() { die "usage: scripts/release-root.sh trixie|sid|bookworm"; }
(($# == 1)) || usage
suite=$1
aptopts=()
case $suite in
trixie | bookworm) ;;
# The sid mirror reached here is a frozen snapshot whose Release file's Valid-Until
# has passed; apt refuses it as expired unless told not to check (sid has no
# security archive that this would weaken).
sid) aptopts=(--aptopt='Acquire::Check-Valid-Until "false"') ;;
*) usage ;;
esac

need_root
root=$ROOTS/$suite
stamp=$root/.spank-beamtime-root
wanted="suite=$suite packages=${ROOT_PACKAGES[*]}"

# slurmd -V run inside the root: its Slurm and libraries, not the host's.
root_slurm_version() { chroot "$1" slurmd -V 2>/dev/null; }

if [[ -f $stamp && $(head -n1 "$stamp") == "$wanted" ]] && root_slurm_version "$root" >/dev/null; then
    say "reusing $root ($(root_slurm_version "$root"))"
    echo "$root"
    exit 0
fi

command -v mmdebstrap >/dev/null || {
    say "installing mmdebstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2
}
# The mirror apt uses here (deb822 or one-line sources), so a root needs no other host.
# shellcheck disable=SC2016 # $(REPO_URI) is apt's format field, not a shell expansion
mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' 2>/dev/null |
    grep -m1 -E '/debian/?$' || true)
[[ -n $mirror ]] || die "no Debian mirror found in apt's sources (apt-get update first?)"

say "building the $suite root in $root from $mirror (a few minutes)"
start=$(date +%s)
rm -rf "$root" "$root.partial"
mkdir -p "$ROOTS"
# Built beside and renamed at the end: a root is either complete or absent.
mmdebstrap --variant=minbase --include="$(IFS=,; echo "${ROOT_PACKAGES[*]}")" \
    "${aptopts[@]}" "$suite" "$root.partial" "$mirror" >&2
version=$(root_slurm_version "$root.partial") || die "the $suite root has no working slurmd"
printf '%s\nslurm=%s\nbuilt=%s\n' "$wanted" "$version" "$(date -u +%Y-%m-%dT%H:%MZ)" >"$root.partial/.spank-beamtime-root"
mv "$root.partial" "$root"
say "$suite root ready: $version, $(($(date +%s) - start)) s, $(du -sh "$root" | cut -f1)"
echo "$root"
