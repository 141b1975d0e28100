//! The facts the node's decision ([`crate::policy::decide`]) is made from,
//! and the trait through which it asks for them. Plain values, below the
//! policy, so that the code gathering them needs nothing of the decision.

use std::path::Path;

use crate::refusal::Refusal;

/// What the controller says about the job; read through `slurm_load_job`,
/// never from the step environment, which srun users can forge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerJob {
    pub reservation: Option<String>,
    pub account: Option<String>,
    /// A batch job (`batch_flag`): the only kind Slurm requeues, so the only
    /// kind that runs more than once under one id (see `job_cache`).
    pub batch: bool,
}

/// Where the node's decision gets its trusted facts. [`crate::policy::decide`] asks for them
/// in its own order, cheapest first and each at most once, and stops at the
/// first refusal: a wrong user never costs a controller query. The plugin
/// implements this on slurmstepd.
pub trait StepFacts {
    /// `S_JOB_UID`, set by slurmstepd from the signed credential.
    fn job_uid(&self) -> u32;
    /// The uid the user database gives for the metadata's `userAccount`.
    fn account_uid(&mut self, account: &str) -> Result<Option<u32>, Refusal>;
    /// `SLURMD_NODENAME` of slurmstepd's own environment (set by slurmd).
    fn node(&mut self) -> Result<String, Refusal>;
    /// What the controller says about the job (a query, or the node's job cache).
    fn controller(&mut self) -> Result<ControllerJob, Refusal>;
    /// What the beamline folder `source` holds, `file_name` being this
    /// beamtime's metadata file (see [`crate::policy::Phase`]); asked last.
    fn beamline_folder(
        &mut self,
        source: &Path,
        file_name: &str,
    ) -> Result<BeamlineFolder, Refusal>;
}

/// What the beamline's folder on the node (`source=`) holds, as the node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeamlineFolder {
    /// No folder: the beamtime has not started on the beamline.
    Absent,
    /// A trusted copy of this beamtime's metadata file: it is this beamtime's.
    ThisBeamtime,
    /// Another beamtime's (or commissioning run's) metadata file, not this one's.
    AnotherBeamtime,
    /// No metadata file of any beamtime: not what the start script leaves, but
    /// what an unmounted file system's empty mount point looks like.
    NoBeamtime,
}

/// Facts about a job on a node, all known already: how a caller that has them
/// as plain values states a job — the policy's table of tests, and bt-submit
/// doctor's test that feeds its node-verdict check and [`crate::policy::decide`]
/// the same facts for every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    pub uid: u32,
    pub account_uid: Option<u32>,
    pub controller: ControllerJob,
    pub node: String,
    /// What [`StepFacts::beamline_folder`] answers.
    pub beamline_folder: BeamlineFolder,
}

impl StepFacts for JobFacts {
    fn job_uid(&self) -> u32 {
        self.uid
    }
    fn account_uid(&mut self, _account: &str) -> Result<Option<u32>, Refusal> {
        Ok(self.account_uid)
    }
    fn node(&mut self) -> Result<String, Refusal> {
        Ok(self.node.clone())
    }
    fn controller(&mut self) -> Result<ControllerJob, Refusal> {
        Ok(self.controller.clone())
    }
    fn beamline_folder(&mut self, _: &Path, _: &str) -> Result<BeamlineFolder, Refusal> {
        Ok(self.beamline_folder)
    }
}
