# Building for a Slurm release other than the host's, from a root made by
# scripts/release-root.sh. Sourced after lib.sh.
# shellcheck shell=bash

# Points the build at the Slurm headers of ROOT: clang (both bindgen runs, the
# plugin's and slurm-spank's) finds <slurm/…> there before the host's, through a
# folder that holds only a link to ROOT's slurm/, so the host's C library headers
# stay the ones used. Each release gets its own target folder: slurm-spank's
# build script does not rerun when the include path changes, and its bindings
# (plugin_version among them) must come from the same headers as the plugin's
# (ffi.rs refuses to compile otherwise). Sets TARGET_DIR and SLURM_VERSION_H.
use_slurm_root() {
    local root=$1 suite
    [[ -r $root/usr/include/slurm/slurm_version.h ]] ||
        die "$root has no Slurm headers (usr/include/slurm): make it with scripts/release-root.sh"
    suite=$(basename "$root")
    TARGET_DIR=$REPO/target/slurm-$suite
    export CARGO_TARGET_DIR=$TARGET_DIR
    mkdir -p "$TARGET_DIR/slurm-include"
    ln -sfn "$root/usr/include/slurm" "$TARGET_DIR/slurm-include/slurm"
    export C_INCLUDE_PATH=$TARGET_DIR/slurm-include
    # shellcheck disable=SC2034 # read by package.sh
    SLURM_VERSION_H=$TARGET_DIR/slurm-include/slurm/slurm_version.h
}
