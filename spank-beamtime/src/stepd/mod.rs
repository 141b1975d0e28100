//! Remote context: slurmstepd on a compute node, once per job step. Each file
//! runs in one place, as one user:
//!
//! - [`decide`]: `init_post_opt`, as root, before any task forks. It only
//!   records a [`Verdict`]: an error returned there would make slurmd drain
//!   the node for a batch step, and a user's mistake must never do that.
//! - [`task_root`]: `task_init_privileged`, as root, in each task's forked
//!   child after any job-container join; it builds the mount namespace.
//! - [`task_user`]: `task_init`, as the job's user, with the task's stdio
//!   wired to the user: a refused task says why there and exits before exec.

pub mod decide;
pub mod task_root;
pub mod task_user;

use beamtime::policy::{Grant, Refusal};
use beamtime::trust::TrustPolicy;

/// What this step's tasks get; decided once in slurmstepd and inherited by
/// every forked task.
#[derive(Debug, Default)]
pub enum Verdict {
    /// No `--beamtime`, or the extern step: the plugin stays out of the way.
    #[default]
    Untouched,
    /// Boxed: the verdict lives in every process's plugin state, and only
    /// granted steps need the room.
    Granted(Box<Granted>),
    Refused(Refusal),
}

/// What to mount, whom to trust for the check that the source folder still
/// belongs to the beamtime when the task mounts it, and who and where, for
/// the refusal line a failed mount logs.
#[derive(Debug)]
pub struct Granted {
    pub grant: Grant,
    pub trust: TrustPolicy,
    pub step: String,
}
