//! The hooks Slurm calls, each switching on the context it runs in. Only
//! local (srun), allocator (sbatch, salloc) and remote (slurmstepd) contexts
//! concern the plugin; in slurmd itself it does nothing.

use std::error::Error;

use beamtime::plugin_config::PluginConfig;
use slurm_spank::{spank_log_error, Context, Plugin, SpankHandle};

use crate::stepd::{self, Verdict};
use crate::{client, option, PLUGIN};

#[derive(Default)]
pub struct Beamtime {
    /// Parsed in `init`; `None` in contexts the plugin stays out of.
    config: Option<PluginConfig>,
    /// This step's verdict, decided once in slurmstepd and inherited by every
    /// forked task.
    verdict: Verdict,
}

impl Beamtime {
    /// The `--beamtime` value, if the job carries one. `None` in every context
    /// where the plugin is idle, so such jobs cost nothing beyond this lookup.
    fn requested(&self, spank: &SpankHandle) -> Option<String> {
        self.config.as_ref()?;
        option::requested(spank)
    }
}

// SAFETY (the trait's contract): the plugin starts no threads, so the task
// hooks, which run in children slurmstepd forks, inherit no held locks.
unsafe impl Plugin for Beamtime {
    fn init(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        match spank.context()? {
            Context::Local | Context::Allocator | Context::Remote => {
                // An admin's typo fails loudly here, when the plugin loads,
                // rather than quietly weakening enforcement.
                self.config = Some(PluginConfig::parse(spank.plugin_argv()?)?);
                option::register(spank)?;
            }
            Context::Slurmd | Context::JobScript => {}
        }
        Ok(())
    }

    fn init_post_opt(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        let (Some(requested), Some(config)) = (self.requested(spank), self.config.as_ref()) else {
            return Ok(());
        };
        match spank.context()? {
            // An error here stops srun/sbatch/salloc before a job exists.
            Context::Local | Context::Allocator => client::check_before_submit(config, &requested)?,
            // Never an error here: see stepd/decide.rs.
            Context::Remote => self.verdict = stepd::decide::decide(spank, config, &requested),
            Context::Slurmd | Context::JobScript => {}
        }
        Ok(())
    }

    fn task_init_privileged(&mut self, _spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        stepd::task_root::prepare_task(&mut self.verdict);
        Ok(())
    }

    fn task_init(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        stepd::task_user::enforce(spank, &self.verdict);
        Ok(())
    }

    /// The crate's default sends errors to the info log, which srun and sbatch
    /// users never see; at error level they print as `sbatch: error: …`.
    fn report_error(&self, _spank: &mut SpankHandle, error: &dyn Error) {
        spank_log_error!("{PLUGIN}: {error}");
    }
}
