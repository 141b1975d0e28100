//! Local (srun) and allocator (sbatch, salloc) context: the submitting user's
//! own process. These checks only spare users a job that the node would
//! refuse anyway; a user can skip them (another SLURM_CONF, a forged option
//! variable), so nothing here is enforcement — slurmstepd decides again.

use beamtime::plugin_config::PluginConfig;
use beamtime::policy::{self, Submitter};
use beamtime::refusal::Refusal;

use crate::ffi;
use crate::load::{account_uid, load_beamtime};

pub fn check_before_submit(config: &PluginConfig, requested: &str) -> Result<(), Refusal> {
    let loaded = load_beamtime(config, requested)?;
    let submitter = Submitter::Client(ffi::current_uid());
    policy::check_submitter(config, &loaded.metadata, submitter, account_uid).map(|_| ())
}
