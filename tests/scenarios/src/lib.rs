//! Helpers for tests that run against the real Slurm test cluster started by
//! `tests/cluster/cluster.sh up` (see tests/cluster/README.md).
//!
//! Every test gets its cluster from [`cluster()`] (once per binary, [`Cluster::from_env`]), which panics when there is no
//! running cluster: a real-cluster test must fail loudly, never skip.
//!
//! The helpers are safe to use from tests running in parallel threads: nothing here keeps
//! mutable state except counters for unique names and the beamline registry (see
//! [`Cluster::start_beamtime`]). What is shared is the cluster itself: a test that drains the
//! node, rewrites plugstack.conf or fills the node's CPUs affects its neighbours.
//!
//! By responsibility: `cluster` (the cluster's files, commands against it, logs,
//! plugstack, several nodes), `cmd` (running one command as a user, bounded in time),
//! `users` (Unix accounts), `slurm` (jobs, nodes, reservations as Slurm reports them),
//! `fixture` (beamtimes), `sshd` (the reserved nodes' sshds and beamline computers for
//! `bt-submit --remote`), [`wait`] (polling with a deadline), [`figures`] (measurements
//! for the reliability report), [`probe`] (the btprobe plugin that measures Slurm's own handling
//! of SPANK plugins).

mod cluster;
mod cmd;
pub mod figures;
mod fixture;
pub mod probe;
mod slurm;
mod sshd;
mod users;
pub mod wait;

pub use cluster::{
    assert_host_untouched, bt_submit, cluster, host_mounts_below, Cluster, LogCursor,
    RestorePlugstack, DEFAULT_ACCOUNT, MULTI_NODES, NODE, TEST_USER,
};
pub use cmd::{Background, Cmd, Output, DEFAULT_TIMEOUT};
pub use fixture::{Beamtime, BeamtimeSpec};
pub use slurm::{assert_refused_by_client, Job, JobEnd, NodeState, REFUSED};
pub use sshd::{beamline_computer_of_nodes, NodeSshd, Sshd, DOWN_PORT};
pub use users::UnixUser;
