//! spank-beamtime: `--beamtime=<id>` for srun, sbatch and salloc.
//!
//! The entry points Slurm calls are exported here, one per hook the plugin
//! needs and no more: exporting `slurm_spank_job_prolog`/`job_epilog` alone
//! makes slurmd fork a prolog and an epilog process for every job on the node,
//! whoever submits it. [`dispatch`] forwards each hook by context to the file
//! for that process: [`client`] (srun, sbatch, salloc, as the user) or
//! [`slurmstepd`] (the compute node, as root and then as the user).

mod client;
mod dispatch;
mod ffi;
mod namespace;
mod slurmstepd;

use beamtime::id::BeamtimeId;
use beamtime::metadata::{Metadata, Online};
use beamtime::plugin_config::{OwnerSpec, PluginConfig};
use beamtime::policy::{Refusal, Rule};
use beamtime::trust::{load_trusted_metadata, TrustPolicy};

/// The name in log lines and in the option's environment variables
/// (`_SLURM_SPANK_OPTION_beamtime_beamtime`).
const PLUGIN: &str = "spank-beamtime";

/// The option users give: `--beamtime=<id>`.
const OPTION: &str = "beamtime";

/// How sbatch and salloc hand `--beamtime` on to the job's environment, where
/// srun and slurmstepd read it (spank_process_env_options in Slurm's plugstack.c).
const INHERITED_OPTION: &str = "SLURM_SPANK__SLURM_SPANK_OPTION_beamtime_beamtime";

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

macro_rules! export_hooks {
    ($($symbol:ident => $method:ident),* $(,)?) => {$(
        #[no_mangle]
        pub extern "C" fn $symbol(
            spank: slurm_spank::spank_sys::spank_t,
            argc: std::os::raw::c_int,
            argv: *const *const std::os::raw::c_char,
        ) -> std::os::raw::c_int {
            // The crate's wrapper catches panics and maps Err to -1; the plugin
            // installs no tracing subscriber, so its first-call setup flag is unused.
            slurm_spank::spank_callback_with_globals::<dispatch::Beamtime, _>(
                |plugin, options, _first_call| {
                    let mut handle = slurm_spank::init_spank_handle(spank, argc, argv, options);
                    plugin.$method(&mut handle).map_err(|error| {
                        plugin.report_error(&mut handle, error.as_ref());
                        error
                    })
                },
            )
        }
    )*};
}

export_hooks! {
    slurm_spank_init => init,
    slurm_spank_init_post_opt => init_post_opt,
    slurm_spank_task_init_privileged => task_init_privileged,
    slurm_spank_task_init => task_init,
}

/// What both sides read before deciding: the same reading, so the courtesy
/// check and the node agree.
struct Loaded {
    metadata: Metadata,
    /// The uid of the metadata's `userAccount`, `None` if it has none or NSS does not know it.
    account_uid: Option<u32>,
    trust: TrustPolicy,
}

fn load_beamtime(config: &PluginConfig, requested: &str) -> Result<Loaded, Refusal> {
    let id = BeamtimeId::parse(requested).map_err(|e| {
        Refusal::new(
            Rule::InvalidBeamtimeId,
            format!("--beamtime: {e}"),
            "Give the beamtime id from the beamtime's metadata file, e.g. --beamtime=11099001",
        )
    })?;
    let trust = trust_policy(config)?;
    let metadata = load_trusted_metadata(&id, &config.metadata, &trust)?;
    let account_uid = match &metadata.online {
        Online::Ready(online) => ffi::uid_of_user(&online.user_account).map_err(|why| {
            Refusal::new(
                Rule::SiteConfiguration,
                why,
                "Report this to the cluster admins",
            )
        })?,
        Online::NotYet => None,
    };
    Ok(Loaded {
        metadata,
        account_uid,
        trust,
    })
}

/// Trusted owner names are resolved only when a beamtime job needs them, so
/// other jobs cost no NSS lookup.
fn trust_policy(config: &PluginConfig) -> Result<TrustPolicy, Refusal> {
    let mut owners = Vec::with_capacity(config.trusted_owners.len());
    for owner in &config.trusted_owners {
        match owner {
            OwnerSpec::Uid(uid) => owners.push(*uid),
            OwnerSpec::Name(name) => match ffi::uid_of_user(name) {
                Ok(Some(uid)) => owners.push(uid),
                Ok(None) => {
                    return Err(Refusal::new(
                        Rule::SiteConfiguration,
                        format!(
                            "trusted_owners names user '{name}', who does not exist on this host"
                        ),
                        "Ask the cluster admins to fix trusted_owners= in plugstack.conf",
                    ))
                }
                Err(why) => {
                    return Err(Refusal::new(
                        Rule::SiteConfiguration,
                        why,
                        "Report this to the cluster admins",
                    ))
                }
            },
        }
    }
    Ok(TrustPolicy { owners })
}
