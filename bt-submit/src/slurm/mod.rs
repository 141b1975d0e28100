//! How bt-submit talks to Slurm: the option syntax of sbatch, srun and salloc
//! (options), scontrol's records (text), running Slurm's commands here
//! (query, submit) or on a reserved node over ssh (ssh), and what a child
//! process said (process).

pub mod options;
pub mod process;
pub mod query;
// Public with submit: a Submitter::Remote is made from it.
pub mod ssh;
// The one way to submit a batch job and get its id back, and to ask Slurm for
// the submitter's queued jobs, here or over ssh: --remote and watch use it.
pub mod submit;
// Public for the real-Slurm tests, which read scontrol's records the same way.
pub mod text;
