//! spank-beamtime: `--beamtime=<id>` for srun, sbatch and salloc.
//!
//! The entry points Slurm calls are exported here, one per hook the plugin
//! needs and no more: exporting `slurm_spank_job_prolog`/`job_epilog` alone
//! makes slurmd fork a prolog and an epilog process for every job on the node,
//! whoever submits it. [`dispatch`] forwards each hook by context to the file
//! for that process and user: [`client`] (srun, sbatch, salloc, as the user)
//! or [`stepd`] (the compute node: `decide` as root before tasks, `task_root`
//! as root in each task, `task_user` as the job's user). [`option`] and
//! [`load`] are what both sides share; every `unsafe` call is in [`ffi`].

mod client;
mod dispatch;
mod ffi;
mod load;
mod option;
mod setup;
mod stepd;

/// The name in log lines and in the option's environment variables
/// (`_SLURM_SPANK_OPTION_beamtime_beamtime`).
const PLUGIN: &str = "spank-beamtime";

/// A refused task's exit status: sysexits' EX_NOPERM.
const EXIT_REFUSED: i32 = 77;

#[allow(non_upper_case_globals)]
#[no_mangle]
pub static plugin_name: [u8; 9] = *b"beamtime\0";

#[allow(non_upper_case_globals)]
#[no_mangle]
pub static plugin_type: [u8; 6] = *b"spank\0";

/// Slurm refuses to load a plugin whose major.minor differs from its own, so
/// this is the version of the headers the plugin was built against.
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static plugin_version: std::os::raw::c_uint = slurm_spank::SLURM_VERSION_NUMBER;

/// From 25.05 on, what slurmstepd does when `init` fails in a `required` plugin:
/// the default, ESPANK_NODE_FAILURE, drains the node and requeues a batch job;
/// ESPANK_JOB_FAILURE fails the job and leaves the node alone. Remote `init`
/// only parses the plugstack line and registers the option, and a line that
/// does not parse is kept as every --beamtime job's refusal rather than
/// returned, so a failure here is the plugin's own fault or Slurm's, never the
/// node's: it must not drain it. Older releases do not read the symbol.
#[cfg(slurm_init_failure_mode)]
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static slurm_spank_init_failure_mode: std::os::raw::c_int = ffi::ESPANK_JOB_FAILURE;

macro_rules! export_hooks {
    ($($symbol:ident => $method:ident),* $(,)?) => {$(
        #[no_mangle]
        pub extern "C" fn $symbol(
            spank: slurm_spank::spank_sys::spank_t,
            argc: std::os::raw::c_int,
            argv: *const *const std::os::raw::c_char,
        ) -> std::os::raw::c_int {
            // The crate's wrapper maps Err to -1; the plugin installs no tracing
            // subscriber, so its first-call setup flag is unused.
            let rc = slurm_spank::spank_callback_with_globals::<dispatch::Beamtime, _>(
                |plugin, options, _first_call| {
                    without_unwinding(|| {
                        let mut handle =
                            slurm_spank::init_spank_handle(spank, argc, argv, options);
                        plugin.$method(&mut handle).map_err(|error| {
                            plugin.report_error(&mut handle, error.as_ref());
                            error
                        })
                    })
                },
            );
            // Before 25.05 Slurm takes only a negative value as a failure, from 25.05
            // any non-zero one: every failure leaves here as -1, one on every release.
            if rc == 0 {
                0
            } else {
                -1
            }
        }
    )*};
}

/// Runs a hook's body and turns a panic into a logged error before it unwinds
/// into slurm-spank's wrapper. That wrapper catches it too, but only after its
/// option and plugin mutexes were poisoned on the way out; its option callback,
/// which Slurm calls with no catch around it, locks them with `expect`, so the
/// next `--beamtime` option would abort srun or slurmstepd (never panic across
/// FFI).
fn without_unwinding(
    body: impl FnOnce() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), Box<dyn std::error::Error>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        let error = panic_error(payload.as_ref());
        slurm_spank::spank_log_error!("{PLUGIN}: {error}");
        Err(error.into())
    })
}

/// What a caught panic said, as the error the hook fails with.
fn panic_error(payload: &(dyn std::any::Any + Send)) -> String {
    let said = payload
        .downcast_ref::<&str>()
        .map(|said| (*said).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("internal error, please report it: the plugin panicked ({said})")
}

#[cfg(test)]
mod tests {
    use super::panic_error;

    #[test]
    fn a_caught_panic_becomes_an_error_that_says_what_it_said() {
        let caught = |body: fn()| std::panic::catch_unwind(body).unwrap_err();
        assert!(panic_error(caught(|| panic!("static text")).as_ref()).ends_with("(static text)"));
        let formatted = caught(|| panic!("job {}", 42));
        assert!(panic_error(formatted.as_ref()).ends_with("(job 42)"));
        let opaque = caught(|| std::panic::panic_any(7_u8));
        assert!(panic_error(opaque.as_ref()).ends_with("(no message)"));
    }
}

export_hooks! {
    slurm_spank_init => init,
    slurm_spank_init_post_opt => init_post_opt,
    slurm_spank_task_init_privileged => task_init_privileged,
    slurm_spank_task_init => task_init,
}
