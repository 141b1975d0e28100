//! How bt-submit talks to Slurm: the option syntax of sbatch, srun and salloc
//! (options), scontrol's records (text), running Slurm's commands here
//! or on a reserved node over ssh (host, with query for what a Slurm command
//! answered, error for one that said no, and ssh for the way there), and what
//! a child process said (process).

// Slurm said no: the one error of a Slurm command run through a Host.
pub mod error;
// What became of jobs: the queue, then accounting (watch status, resubmit).
pub mod jobs;
pub mod options;
pub mod process;
pub mod query;
// Public with host: a Host::Remote is made from it.
pub mod known_hosts;
pub mod ssh;
// Where Slurm runs, this host or a reserved node over ssh: the one way to
// submit a batch job and get its id back, to ask for the submitter's queued
// jobs, and to ask Slurm anything; --remote, watch and the planner use it.
pub mod host;
// Whether a refused submission can succeed by trying again (watch).
pub mod refusal;
// Public for the real-Slurm tests, which read scontrol's records the same way.
pub mod text;
