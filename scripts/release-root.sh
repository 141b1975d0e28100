#!/bin/bash
# Makes (or reuses) a Debian root holding another Slurm release, for building and
# testing the plugin against it, and prints the root's path on stdout:
#
#   scripts/release-root.sh trixie     Slurm 24.11
#   scripts/release-root.sh sid        Slurm 26.05
#   scripts/release-root.sh bookworm   Slurm 22.05, Debian 12's own: a cluster of the
#                                      host's release apart from the host's own one
#   scripts/release-root.sh no-slurm   Debian 12 without Slurm, with ssh: the beamline
#                                      computer, where the bt-submit package is installed
#                                      alone (tests/scenarios/tests/beamline_computer.rs)
#   scripts/release-root.sh source ARCHIVE
#                                      Slurm built from a source archive of SchedMD's
#                                      (a path, or a file name in $BT_SLURM_SRC, default
#                                      ../shared/slurm-src beside the repository, where
#                                      the project's shared folder lies) in a Debian 12 root: the
#                                      releases no Debian suite carries (23.11, 25.05,
#                                      25.11), or a site's own archive
#
# Roots live in $BT_ROOTS (default /var/lib/spank-beamtime-roots), one folder per suite
# (source-MAJOR-MINOR for a source build), outside the repository. A root is reused when
# its completion stamp matches what it is made from (the package list; for a source
# build also the archive's sha256 and the configure line) and its Slurm answers
# `slurmd -V`; anything else (absent, a build that died half-way, a changed package
# list or archive) is deleted and built again with mmdebstrap from the Debian mirror
# apt already uses. Enter one with scripts/in-root.sh.
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"

ROOTS=${BT_ROOTS:-/var/lib/spank-beamtime-roots}
SLURM_SRC=${BT_SLURM_SRC:-$(dirname "$REPO")/shared/slurm-src}
# What tests/cluster/cluster.sh installs on the host (its PACKAGES), plus what the
# build and the scenarios call: there is no network inside a root to install the rest.
COMMON_PACKAGES=(munge mariadb-server libclang-dev pkg-config build-essential python3
    util-linux passwd openssh-client openssh-server iproute2 procps ca-certificates)
DEBIAN_SLURM_PACKAGES=(slurm-wlm slurmctld slurmd slurm-client slurmdbd libslurm-dev)
# What Slurm's configure looks for, for the plugins the harness uses: munge's headers
# (auth/munge, cred/munge), MariaDB's client (slurmdbd's accounting_storage/mysql),
# libyaml and json-c (serializer/yaml and serializer/json: 25.11's namespace/linux reads
# namespace.yaml with the one, and slurmd with it configured will not start without the
# other — measured: "fatal: serializer_required: could not find plugin for application/json").
SOURCE_BUILD_PACKAGES=(libmunge-dev libmariadb-dev libyaml-dev libjson-c-dev)
# Slurm installed where Debian's packages put it (the harness and the plugin's .deb
# then work unchanged). No static archives: libtool would compile every file twice.
# No debug information; -O1 is the optimisation Slurm's configure itself chooses by
# default (its --enable-debug, on unless disabled, adds -ggdb3 -g -O1).
SOURCE_CONFIGURE=(--prefix=/usr --sysconfdir=/etc/slurm --libdir=/usr/lib/x86_64-linux-gnu
    --localstatedir=/var --disable-static --disable-debug CFLAGS="-O1 -g0")

usage() { die "usage: scripts/release-root.sh trixie|sid|bookworm|no-slurm|source ARCHIVE"; }

# slurmd -V run inside the root: its Slurm and libraries, not the host's.
root_slurm_version() { chroot "$1" slurmd -V 2>/dev/null; }

# reuse_root ROOT WANTED: prints ROOT and exits when it is complete and was made from WANTED.
reuse_root() {
    if [[ -f $1/.spank-beamtime-root && $(head -n1 "$1/.spank-beamtime-root") == "$2" ]] &&
        root_slurm_version "$1" >/dev/null; then
        say "reusing $1 ($(root_slurm_version "$1"))"
        echo "$1"
        exit 0
    fi
}

# debian_root SUITE DIR PACKAGE…: a minimal Debian root made with mmdebstrap.
debian_root() {
    local suite=$1 dir=$2 mirror aptopts=()
    shift 2
    command -v mmdebstrap >/dev/null || {
        say "installing mmdebstrap"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2
    }
    # The mirror apt uses here (deb822 or one-line sources), so a root needs no other host.
    # shellcheck disable=SC2016 # $(REPO_URI) is apt's format field, not a shell expansion
    mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' 2>/dev/null |
        grep -m1 -E '/debian/?$' || true)
    [[ -n $mirror ]] || die "no Debian mirror found in apt's sources (apt-get update first?)"
    # The sid mirror reached here is a frozen snapshot whose Release file's Valid-Until
    # has passed; apt refuses it as expired unless told not to check (sid has no
    # security archive that this would weaken).
    [[ $suite == sid ]] && aptopts=(--aptopt='Acquire::Check-Valid-Until "false"')
    say "building a $suite root in $dir from $mirror (a few minutes)"
    mmdebstrap --variant=minbase --include="$(IFS=,; echo "$*")" \
        "${aptopts[@]}" "$suite" "$dir" "$mirror" >&2
}

# finish_root PARTIAL ROOT WANTED START: stamps a made root and moves it into place
# (built beside and renamed at the end: a root is either complete or absent).
finish_root() {
    local partial=$1 root=$2 wanted=$3 start=$4 version
    version=$(root_slurm_version "$partial") || die "$partial has no working slurmd"
    printf '%s\nslurm=%s\nbuilt=%s\n' "$wanted" "$version" "$(date -u +%Y-%m-%dT%H:%MZ)" >"$partial/.spank-beamtime-root"
    rm -rf "$root"
    mv "$partial" "$root"
    say "$(basename "$root") root ready: $version, $(($(date +%s) - start)) s, $(du -sh "$root" | cut -f1)"
    echo "$root"
}

# archive_path NAME-OR-PATH: the archive, checked against $SLURM_SRC/SHA256SUMS when
# it is listed there (a site's own archive is not, and is taken as it is).
archive_path() {
    local archive=$1 listed actual
    [[ $archive == */* || -e $archive ]] || archive=$SLURM_SRC/$archive
    [[ -f $archive ]] || die "Slurm source archive '$1' not found (give a path, or a file name in $SLURM_SRC)"
    archive=$(realpath "$archive")
    actual=$(sha256sum "$archive" | cut -d' ' -f1)
    if [[ -f $(dirname "$archive")/SHA256SUMS ]]; then
        listed=$(awk -v f="$(basename "$archive")" '$2 == f || $2 == "*" f {print $1}' "$(dirname "$archive")/SHA256SUMS")
        [[ -z $listed || $listed == "$actual" ]] ||
            die "$archive: sha256 $actual, but $(dirname "$archive")/SHA256SUMS lists $listed: fetch the archive again"
    fi
    printf '%s %s\n' "$archive" "$actual"
}

# source_root ARCHIVE: Slurm configured, built and installed from ARCHIVE inside a
# Debian 12 root, which starts as a copy of a base root (made once) with the build
# packages; chroot suffices for building, as nothing runs as a cluster there.
source_root() {
    local archive sha meta major minor micro root wanted base base_wanted partial start
    read -r archive sha < <(archive_path "$1")
    # META at the top of every Slurm source tree names the release.
    meta=$(tar -xzOf "$archive" --wildcards --no-anchored 'META' 2>/dev/null) ||
        die "$archive: no META file; is this a Slurm source archive?"
    major=$(awk '$1 == "Major:" {print $2}' <<<"$meta")
    minor=$(awk '$1 == "Minor:" {print $2}' <<<"$meta")
    micro=$(awk '$1 == "Micro:" {print $2}' <<<"$meta")
    [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || die "$archive: META names no Major/Minor release"
    root=$ROOTS/source-$major-$minor
    wanted="source=$(basename "$archive") sha256=$sha configure=${SOURCE_CONFIGURE[*]} packages=${COMMON_PACKAGES[*]} ${SOURCE_BUILD_PACKAGES[*]}"
    reuse_root "$root" "$wanted"

    need_root
    start=$(date +%s)
    mkdir -p "$ROOTS"
    base=$ROOTS/.bookworm-source-base
    base_wanted="suite=bookworm packages=${COMMON_PACKAGES[*]} ${SOURCE_BUILD_PACKAGES[*]}"
    if [[ ! -f $base/.stamp || $(cat "$base/.stamp") != "$base_wanted" ]]; then
        rm -rf "$base" "$base.partial"
        debian_root bookworm "$base.partial" "${COMMON_PACKAGES[@]}" "${SOURCE_BUILD_PACKAGES[@]}"
        echo "$base_wanted" >"$base.partial/.stamp"
        mv "$base.partial" "$base"
        say "base root for source builds made in $(($(date +%s) - start)) s"
    fi
    partial=$root.partial
    rm -rf "$partial"
    cp -a "$base" "$partial"
    rm "$partial/.stamp"
    mkdir -p "$partial/usr/src/slurm"
    tar -xzf "$archive" -C "$partial/usr/src/slurm" --strip-components=1
    say "building Slurm $major.$minor.$micro from $(basename "$archive") in $partial (several minutes)"
    # A private mount namespace: the /proc mounted for the build goes with it.
    # Each step's log stays in the root's /usr/src; the seconds each took go to stderr.
    unshare --mount --propagation private -- chroot "$partial" /bin/sh -ec "
        mount -t proc proc /proc
        cd /usr/src/slurm
        t=\$(date +%s)
        ./configure $(printf '%q ' "${SOURCE_CONFIGURE[@]}") >/usr/src/slurm-configure.log 2>&1 ||
            { tail -n 40 /usr/src/slurm-configure.log; exit 1; }
        echo configure \$((\$(date +%s) - t)) s; t=\$(date +%s)
        make -j$(nproc) >/usr/src/slurm-make.log 2>&1 || { tail -n 60 /usr/src/slurm-make.log; exit 1; }
        echo make \$((\$(date +%s) - t)) s; t=\$(date +%s)
        make install >/usr/src/slurm-install.log 2>&1 || { tail -n 40 /usr/src/slurm-install.log; exit 1; }
        echo make install \$((\$(date +%s) - t)) s
        ldconfig
        # What Debian's packages create and the harness expects (SlurmUser=slurm).
        getent passwd slurm >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin slurm
        mkdir -p /etc/slurm
        umount /proc
    " >&2
    rm -rf "$partial/usr/src/slurm"
    finish_root "$partial" "$root" "$wanted" "$start"
}

# no_slurm_root: the beamline computer's root, reused while its stamp matches (it has no
# slurmd to ask, so reuse_root's check does not fit).
no_slurm_root() {
    local root=$ROOTS/no-slurm wanted="suite=bookworm packages=openssh-client" start
    if [[ -f $root/.spank-beamtime-root && $(head -n1 "$root/.spank-beamtime-root") == "$wanted" ]]; then
        say "reusing $root"
        echo "$root"
        return
    fi
    need_root
    start=$(date +%s)
    rm -rf "$root.partial" "$root"
    mkdir -p "$ROOTS"
    debian_root bookworm "$root.partial" openssh-client
    printf '%s\nbuilt=%s\n' "$wanted" "$(date -u +%Y-%m-%dT%H:%MZ)" >"$root.partial/.spank-beamtime-root"
    mv "$root.partial" "$root"
    say "no-slurm root ready: $(($(date +%s) - start)) s, $(du -sh "$root" | cut -f1)"
    echo "$root"
}

(($# >= 1)) || usage
suite=$1
case $suite in
trixie | bookworm | sid) (($# == 1)) || usage ;;
no-slurm)
    (($# == 1)) || usage
    no_slurm_root
    exit 0
    ;;
source)
    (($# == 2)) || usage
    source_root "$2"
    exit 0
    ;;
*) usage ;;
esac

need_root
root=$ROOTS/$suite
wanted="suite=$suite packages=${DEBIAN_SLURM_PACKAGES[*]} ${COMMON_PACKAGES[*]}"
reuse_root "$root" "$wanted"
start=$(date +%s)
rm -rf "$root.partial"
mkdir -p "$ROOTS"
debian_root "$suite" "$root.partial" "${DEBIAN_SLURM_PACKAGES[@]}" "${COMMON_PACKAGES[@]}"
finish_root "$root.partial" "$root" "$wanted" "$start"
