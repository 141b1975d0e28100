//! Binds the few libslurm calls the plugin makes to ask the controller about
//! its job. The symbols are not linked here: srun, sbatch, salloc and
//! slurmstepd already carry libslurm, and a second copy would split its state.
//!
//! The headers are whichever `<slurm/slurm.h>` clang finds: the build host's
//! own (libslurm-dev), or another release's when `C_INCLUDE_PATH` names a
//! folder holding its `slurm/` (scripts/lib.sh `use_slurm_root` does that for
//! a release root). The release is read from those same headers
//! (`SLURM_VERSION_NUMBER`) and every API difference between releases becomes
//! a cfg here, used only in src/ffi.rs.

use std::env;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// `SLURM_VERSION_NUMBER` (0xMMmmuu) of the first release with each change.
const SLURM_25_05: i64 = 0x190500;
const SLURM_26_05: i64 = 0x1a0500;

/// Records the value of `SLURM_VERSION_NUMBER` as clang evaluated it.
#[derive(Debug)]
struct VersionNumber(Arc<AtomicI64>);

impl bindgen::callbacks::ParseCallbacks for VersionNumber {
    fn int_macro(&self, name: &str, value: i64) -> Option<bindgen::callbacks::IntKind> {
        if name == "SLURM_VERSION_NUMBER" {
            self.0.store(value, Ordering::Relaxed);
        }
        None
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Where clang looks for <slurm/…> besides its defaults (bindgen's own
    // callbacks track BINDGEN_EXTRA_CLANG_ARGS and every header read).
    println!("cargo:rerun-if-env-changed=C_INCLUDE_PATH");
    println!("cargo:rerun-if-env-changed=CPATH");
    // 26.05: slurm_load_job(job_info_msg_t **, slurm_step_id_t, uint16_t) instead
    // of a bare uint32_t job id.
    println!("cargo::rustc-check-cfg=cfg(slurm_load_job_by_step_id)");
    // 25.05: a plugin may choose what a failing `init` in slurmstepd does
    // (`slurm_spank_init_failure_mode`, ESPANK_JOB_FAILURE or the default
    // ESPANK_NODE_FAILURE, which drains the node).
    println!("cargo::rustc-check-cfg=cfg(slurm_init_failure_mode)");
    // The unwinder (std needs it to catch panics at the FFI boundary) linked in
    // statically: otherwise every srun, sbatch and slurmstepd that loads the plugin
    // also loads libgcc_s.so.1, which none of them carry — measured here as 125 of
    // the 200 us dlopen() takes, paid by every job on the cluster. Its symbols stay
    // local to the plugin (rustc exports only the SPANK entry points).
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");

    let version = Arc::new(AtomicI64::new(-1));
    let bindings = bindgen::Builder::default()
        // SHOW_LOCAL is `SLURM_BIT(4)` from 24.11 on, a function-like macro that
        // bindgen leaves out; as an enum constant clang evaluates it, on every release.
        // ESPANK_JOB_FAILURE (slurm_errno.h, from 25.05) is a member of slurm_err_t;
        // evaluated the same way, where it exists.
        .header_contents(
            "job_query.h",
            "#include <stdint.h>\n#include <slurm/slurm.h>\n\
             enum bt_evaluated { BT_SHOW_LOCAL = SHOW_LOCAL };\n\
             #if SLURM_VERSION_NUMBER >= SLURM_VERSION_NUM(25, 5, 0)\n\
             enum bt_failure_mode { BT_ESPANK_JOB_FAILURE = ESPANK_JOB_FAILURE };\n\
             #endif\n",
        )
        .allowlist_function("slurm_load_job")
        .allowlist_function("slurm_free_job_info_msg")
        .allowlist_function("slurm_strerror")
        .allowlist_type("bt_evaluated")
        .allowlist_type("bt_failure_mode")
        .prepend_enum_name(false)
        .allowlist_var("NO_VAL")
        .allowlist_var("SLURM_VERSION_NUMBER")
        .allowlist_var("SLURM_EXTERN_CONT")
        .allowlist_var("SLURM_BATCH_SCRIPT")
        .allowlist_var("SLURM_INTERACTIVE_STEP")
        .layout_tests(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .parse_callbacks(Box::new(VersionNumber(Arc::clone(&version))))
        .generate()
        .unwrap_or_else(|e| {
            panic!("bindgen could not read <slurm/slurm.h> (install libslurm-dev): {e}")
        });
    let version = version.load(Ordering::Relaxed);
    assert!(
        version > 0,
        "<slurm/slurm.h> did not define SLURM_VERSION_NUMBER"
    );
    if version >= SLURM_25_05 {
        println!("cargo:rustc-cfg=slurm_init_failure_mode");
    }
    if version >= SLURM_26_05 {
        println!("cargo:rustc-cfg=slurm_load_job_by_step_id");
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("slurm_job_query.rs"))
        .expect("OUT_DIR is writable");
}
