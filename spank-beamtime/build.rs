//! Binds the few libslurm calls the plugin makes to ask the controller about
//! its job. The symbols are not linked here: srun, sbatch, salloc and
//! slurmstepd already carry libslurm, and a second copy would split its state.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The unwinder (std needs it to catch panics at the FFI boundary) linked in
    // statically: otherwise every srun, sbatch and slurmstepd that loads the plugin
    // also loads libgcc_s.so.1, which none of them carry — measured here as 125 of
    // the 200 us dlopen() takes, paid by every job on the cluster. Its symbols stay
    // local to the plugin (rustc exports only the SPANK entry points).
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    let bindings = bindgen::Builder::default()
        .header_contents(
            "job_query.h",
            "#include <stdint.h>\n#include <slurm/slurm.h>\n",
        )
        .allowlist_function("slurm_load_job")
        .allowlist_function("slurm_free_job_info_msg")
        .allowlist_function("slurm_get_errno")
        .allowlist_function("slurm_strerror")
        .allowlist_var("SHOW_LOCAL")
        .allowlist_var("SLURM_EXTERN_CONT")
        .allowlist_var("SLURM_BATCH_SCRIPT")
        .allowlist_var("SLURM_INTERACTIVE_STEP")
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|e| {
            panic!("bindgen could not read <slurm/slurm.h> (install libslurm-dev): {e}")
        });
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("slurm_job_query.rs"))
        .expect("OUT_DIR is writable");
}
