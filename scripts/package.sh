#!/bin/bash
# Builds the two packages from this tree and prints their paths on stdout, one a line,
# the plugin's first:
#
#   spank-beamtime   the plugin, its plugstack drop-in, the admins' documents; for the
#                    Slurm whose headers are installed here; depends on bt-submit
#   bt-submit        the user command, its man pages and completions; no Slurm
#                    dependency (the beamline computer has none: --remote)
#
#   scripts/package.sh              the .debs (cargo-deb)
#   scripts/package.sh --rpm        the .debs and the .rpms (cargo-generate-rpm)
#   scripts/package.sh --static     also bt-submit as one static binary (glibc's static
#                                   libc, `+crt-static`), for a beamline computer without
#                                   dpkg or rpm: target/static/…/release/bt-submit
#   scripts/package.sh --root DIR   the .debs for the Slurm of a release root
#                                   (scripts/release-root.sh), built here against its
#                                   headers, in target/slurm-<suite>/debian/
#
# The plugin only loads into the Slurm major.minor release it was compiled for,
# so its packages depend on exactly that release, read from slurm_version.h, and
# the plugin's .rpm's release names it (1.sl2511 for 25.11), as sites' Slurm plugin
# RPMs do; and on the bt-submit package of the same version.
# Needs a Rust toolchain; installs cargo-deb / cargo-generate-rpm (pinned) with
# `cargo install --locked` when missing. Honours CARGO_TARGET_DIR.
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/releases.sh"

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
SLURM_VERSION_H=${SLURM_VERSION_H:-/usr/include/slurm/slurm_version.h}

rpm=0 static=0
while (($#)); do
    case $1 in
    --rpm) rpm=1 ;;
    --static) static=1 ;;
    --root) use_slurm_root "${2:?--root needs a release root}"; shift ;;
    *) die "unknown option '$1' (usage: scripts/package.sh [--rpm] [--static] [--root DIR])" ;;
    esac
    shift
done

# SLURM_VERSION_NUMBER is 0xMMmmuu: major, minor, micro.
slurm_release() {
    local number
    [[ -r $SLURM_VERSION_H ]] ||
        die "$SLURM_VERSION_H not found: install the Slurm development headers (libslurm-dev) of the Slurm the plugin will be loaded by"
    number=$(awk '$1 == "#define" && $2 == "SLURM_VERSION_NUMBER" {print $3}' "$SLURM_VERSION_H")
    [[ $number =~ ^0x[0-9a-fA-F]{6}$ ]] ||
        die "$SLURM_VERSION_H: expected '#define SLURM_VERSION_NUMBER 0xMMmmuu', found '${number:-nothing}'"
    printf '%d.%02d %d.%02d\n' $((number >> 16)) $(((number >> 8) & 0xff)) \
        $((number >> 16)) $((((number >> 8) & 0xff) + 1))
}

ensure_tool() {
    local command=$1 crate=$2 version=$3 start
    command -v "$command" >/dev/null && return 0
    say "installing $crate $version (cargo install --locked)"
    start=$(date +%s)
    cargo install --locked --quiet "$crate@$version"
    say "$crate installed in $(($(date +%s) - start)) s"
}

need_command() {
    command -v "$1" >/dev/null || die "$1 not found: $2"
}

ensure_cargo
read -r release next < <(slurm_release)
# merge_floors "DEPENDS": cargo-deb's $auto gives each binary its own libc6 floor
# ("libc6 (>= 2.34), libc6 (>= 2.35)"); one entry per package, with the highest floor,
# says the same once. Entries of another form stay as they are, in their order.
merge_floors() {
    local entry name version kept=() i
    local -A floor=()
    IFS=',' read -ra entries <<<"$1"
    for entry in "${entries[@]}"; do
        entry=${entry# }
        if [[ $entry =~ ^([^ ]+)\ \(\>=\ ([^\)]+)\)$ ]]; then
            name=${BASH_REMATCH[1]} version=${BASH_REMATCH[2]}
            if [[ -z ${floor[$name]:-} ]]; then
                kept+=("@$name")
                floor[$name]=$version
            elif dpkg --compare-versions "$version" gt "${floor[$name]}"; then
                floor[$name]=$version
            fi
        else
            kept+=("$entry")
        fi
    done
    for i in "${!kept[@]}"; do
        [[ ${kept[$i]} == @* ]] && name=${kept[$i]#@} && kept[i]="$name (>= ${floor[$name]})"
    done
    (IFS=','; printf '%s' "${kept[*]}" | sed 's/,/, /g')
}

# bt-submit --version names the release (bt-submit/build.rs).
export BT_SUBMIT_SLURM_RELEASE=$release
build_release
say "man pages and completions (xtask)"
assets=$TARGET_DIR/release/assets
rm -rf "$assets"
(cd "$REPO" && cargo run --release --locked --quiet -p xtask -- assets "$assets" >/dev/null)

say "Debian packages: bt-submit, and spank-beamtime for Slurm $release"
ensure_tool cargo-deb cargo-deb "$CARGO_DEB_VERSION"
need_command dpkg-deb "run this on Debian or Ubuntu (dpkg-deb adds the Slurm dependency)"
mkdir -p "$TARGET_DIR/debian"
# cargo_deb [--variant plugin]: one package, its path on stdout.
cargo_deb() {
    local deb
    deb=$(cd "$REPO" && cargo deb --quiet --locked --no-build -p bt-submit "$@" -o "$TARGET_DIR/debian/")
    [[ -f $deb ]] || die "cargo deb $* did not report the package it wrote (got '$deb')"
    echo "$deb"
}
bt_deb=$(cargo_deb)
deb=$(cargo_deb --variant plugin)
bt_version=$(dpkg-deb --field "$bt_deb" Version)
# cargo-deb takes Depends from Cargo.toml only, and the release is known only
# now: unpack, add it, pack again.
unpacked=$TARGET_DIR/debian/unpacked
rm -rf "$unpacked"
dpkg-deb --raw-extract "$deb" "$unpacked"
# Debian's Slurm packages or SchedMD's own (slurm-smd, built from the debian/ folder of
# its sources from 23.11 on), whichever the site installed.
depends="bt-submit (= $bt_version), slurm-wlm-basic-plugins (>= $release) | slurm-smd (>= $release), slurm-wlm-basic-plugins (<< $next) | slurm-smd (<< $next)"
if grep -q '^Depends:' "$unpacked/DEBIAN/control"; then
    auto=$(sed -n 's/^Depends: //p' "$unpacked/DEBIAN/control")
    sed -i "s/^Depends: .*/Depends: $(merge_floors "$auto"), $depends/" "$unpacked/DEBIAN/control"
else
    sed -i "/^Architecture:/a Depends: $depends" "$unpacked/DEBIAN/control"
fi
# bt-submit's Replaces (the files earlier spank-beamtime packages carried), inherited by
# the variant, is not the plugin's.
sed -i '/^Replaces:/d' "$unpacked/DEBIAN/control"
dpkg-deb --root-owner-group -Zxz --build "$unpacked" "$deb" >/dev/null
rm -rf "$unpacked"
echo "$deb"
echo "$bt_deb"

if ((rpm)); then
    say "RPM packages: bt-submit, and spank-beamtime for Slurm $release"
    ensure_tool cargo-generate-rpm cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"
    mkdir -p "$assets/rpm"
    sed 's|/usr/lib/x86_64-linux-gnu/slurm-wlm/|/usr/lib64/slurm/|' \
        "$REPO/slurm-conf-examples/plugstack.conf.d/beamtime.conf" >"$assets/rpm/beamtime.conf"
    grep -q '^required /usr/lib64/slurm/spank_beamtime.so ' "$assets/rpm/beamtime.conf" ||
        die "the RPM drop-in does not name /usr/lib64/slurm/spank_beamtime.so: check slurm-conf-examples/plugstack.conf.d/beamtime.conf"
    rm -rf "$TARGET_DIR/generate-rpm"
    mkdir -p "$TARGET_DIR/generate-rpm"
    # The crate's version, as the .deb's without its Debian revision.
    version=${bt_version%-*}
    (cd "$REPO" && cargo generate-rpm -p bt-submit --target-dir "$TARGET_DIR" -o "$TARGET_DIR/generate-rpm/")
    (cd "$REPO" && cargo generate-rpm -p bt-submit --variant plugin --target-dir "$TARGET_DIR" \
        -o "$TARGET_DIR/generate-rpm/" \
        -s "release = \"1.sl${release/./}\"" \
        -s "requires = { slurm = \">= $release\", bt-submit = \"= $version\" }" \
        -s "conflicts = { slurm = \">= $next\" }")
    echo "$TARGET_DIR"/generate-rpm/spank-beamtime-*.rpm
    echo "$TARGET_DIR"/generate-rpm/bt-submit-*.rpm
fi

if ((static)); then
    # The musl target would need a download outside the package registries (rustup's own
    # server); glibc's static libc is installed with the toolchain's host target. The
    # explicit --target keeps build scripts and proc macros dynamic: only bt-submit is
    # static. Its own target folder: the flags differ from the packages' build.
    say "bt-submit as a static binary (+crt-static)"
    (cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=$TARGET_DIR/static \
        cargo build --release --locked --quiet -p bt-submit --target x86_64-unknown-linux-gnu)
    static_binary=$TARGET_DIR/static/x86_64-unknown-linux-gnu/release/bt-submit
    file "$static_binary" | grep -q 'static' || die "$static_binary is not statically linked"
    echo "$static_binary"
fi
