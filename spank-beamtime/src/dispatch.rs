//! The hooks Slurm calls, each switching on the context it runs in. Only
//! local (srun), allocator (sbatch, salloc) and remote (slurmstepd) contexts
//! concern the plugin; in slurmd itself it does nothing.

use std::error::Error;

use beamtime::plugin_config::PluginConfig;
use beamtime::refusal::Refusal;
use slurm_spank::{spank_log_error, Context, Plugin, SpankHandle};

use crate::stepd::{self, Verdict};
use crate::{client, option, setup, PLUGIN};

#[derive(Default)]
pub struct Beamtime {
    /// Parsed in `init`; `None` in contexts the plugin stays out of. A line
    /// that does not parse is kept as the refusal every `--beamtime` job gets.
    config: Option<Result<PluginConfig, Refusal>>,
    /// This step's verdict, decided once in slurmstepd and inherited by every
    /// forked task.
    verdict: Verdict,
}

impl Beamtime {
    /// The `--beamtime` value, if the job carries one. `None` in every context
    /// where the plugin is idle, so such jobs cost nothing beyond this lookup.
    fn requested(&self, spank: &SpankHandle) -> Option<option::Requested> {
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
                // An admin's typo must not fail everybody's jobs (in slurmstepd an
                // error here fails every step and can drain the node): it is logged
                // loudly in every process that loads the plugin, jobs without
                // --beamtime run as if the plugin were absent, and --beamtime jobs
                // are refused with it, never run unguarded.
                let config = setup::parse(spank.plugin_argv());
                match &config {
                    Ok(config) => setup::warn_if_incomplete(config),
                    Err(refusal) => spank_log_error!("{PLUGIN}: {refusal}"),
                }
                self.config = Some(config);
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
        // A job that names two beamtimes is refused before anything is read,
        // as a plugstack line that did not parse refuses every --beamtime job.
        let config = match &requested.refused {
            Some(refusal) => Err(refusal),
            None => config.as_ref(),
        };
        match spank.context()? {
            // An error here stops srun/sbatch/salloc before a job exists.
            Context::Local | Context::Allocator => {
                client::check_before_submit(config.map_err(Refusal::clone)?, &requested.id)?
            }
            // Never an error here: see stepd/decide.rs.
            Context::Remote => self.verdict = stepd::decide::decide(spank, config, &requested.id),
            Context::Slurmd | Context::JobScript => {}
        }
        Ok(())
    }

    fn task_init_privileged(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        stepd::task_root::prepare_task(&mut self.verdict, spank.task_id().ok());
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
