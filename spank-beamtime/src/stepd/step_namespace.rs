//! One mount namespace per step and node, not one per task. Making a mount
//! namespace copies the node's whole mount table, which costs milliseconds on
//! a node with thousands of mounts (docs/benchmarks.md); a 64-task step paid
//! it 64 times. Now the node's task 0 builds the namespace and hands it to the
//! step's other tasks on this node, which join it: a join copies nothing.
//!
//! - [`StepNamespace::for_tasks`]: slurmstepd, as root, before any task forks
//!   (`decide`): the channel every task of the step inherits.
//! - [`StepNamespace::share`] and [`StepNamespace::join`]: in each task's
//!   forked child, as root (`task_root`).
//!
//! Nothing is pinned outside the processes: the namespace lives as long as a
//! task in it or a descriptor on it does, and slurmstepd's ends of the channel
//! (which hold any message a task never read) close when the step ends, so a
//! killed step or a task that never started leaves nothing behind. Each step's
//! slurmstepd makes its own channel, so two steps never share a namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use super::mount_failure::MountFailure;
use crate::ffi;

/// How long a task waits for task 0. Task 0 only checks the beamline folder
/// and mounts; a minute means it died or hangs on the file system.
const WAIT_FOR_TASK_0: Duration = Duration::from_secs(60);

/// The longest reason task 0 passes on; the rest is in its own log line.
const LONGEST_REASON: usize = 2048;

const BUILT: u8 = b'+';
const FAILED: u8 = b'-';

#[derive(Debug)]
pub enum StepNamespace {
    /// The step's only task on this node: it builds its own namespace. Also
    /// what every task does if the channel could not be made.
    OwnTask,
    /// Task 0 builds and sends one message per other task on `sender`; each
    /// of them reads one on `receiver`.
    Shared {
        sender: OwnedFd,
        receiver: OwnedFd,
        joiners: u32,
    },
}

impl StepNamespace {
    /// The channel for a step with `local_tasks` tasks on this node.
    pub fn for_tasks(local_tasks: u32) -> io::Result<Self> {
        if local_tasks <= 1 {
            return Ok(Self::OwnTask);
        }
        let (sender, receiver) = ffi::socket_pair()?;
        ffi::set_receive_timeout(receiver.as_fd(), WAIT_FOR_TASK_0)?;
        Ok(Self::Shared {
            sender,
            receiver,
            joiners: local_tasks - 1,
        })
    }

    /// Task 0, after building (or failing to build) the namespace it is in:
    /// hands it, or the reason it failed, to every other task of the step.
    /// An error here means the other tasks were told that it failed.
    pub fn share(&self, built: Result<(), MountFailure>) -> Result<(), MountFailure> {
        let Self::Shared {
            sender, joiners, ..
        } = self
        else {
            return built;
        };
        let namespace = built.and_then(|()| {
            File::open("/proc/self/ns/mnt").map_err(MountFailure::system(
                "cannot open the namespace for the other tasks",
            ))
        });
        let sent = (0..*joiners).try_for_each(|_| match &namespace {
            Ok(namespace) => ffi::send_message(sender.as_fd(), &[BUILT], Some(namespace.as_fd())),
            Err(why) => {
                let mut message = vec![FAILED];
                message.extend(why.to_string().bytes().take(LONGEST_REASON));
                ffi::send_message(sender.as_fd(), &message, None)
            }
        });
        let namespace = namespace?;
        drop(namespace);
        sent.map_err(MountFailure::system(
            "cannot hand the namespace to the other tasks",
        ))
    }

    /// Every task but 0: waits for task 0's namespace and moves into it. The
    /// working folder is kept by name, as a task that built its own would.
    /// Returns how long the wait for task 0 took, which is task 0's setup and
    /// not this task's own cost.
    pub fn join(&self) -> Result<Duration, MountFailure> {
        let started = Instant::now();
        let Self::Shared { receiver, .. } = self else {
            return Err(MountFailure::NoSharedNamespace);
        };
        let (message, namespace) = match ffi::receive_message(receiver.as_fd(), 1 + LONGEST_REASON)
        {
            Ok(received) => received,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(MountFailure::TaskZeroSilent(WAIT_FOR_TASK_0))
            }
            Err(e) => return Err(MountFailure::system("cannot hear from task 0 of this step")(e)),
        };
        let namespace = match (message.first(), namespace) {
            (Some(&BUILT), Some(namespace)) => namespace,
            (Some(&FAILED), _) => {
                return Err(MountFailure::TaskZeroFailed(
                    String::from_utf8_lossy(&message[1..]).into_owned(),
                ))
            }
            _ => return Err(MountFailure::TaskZeroSentNothing),
        };
        let waited = started.elapsed();
        let folder = std::env::current_dir();
        ffi::join_mount_namespace(namespace.as_fd()).map_err(MountFailure::system(
            "cannot join the step's mount namespace",
        ))?;
        // setns moved the working folder to the namespace's root; slurmstepd
        // changes to the job's folder after this hook, but only for jobs
        // with an allocation, so the one it had is found again by its name.
        if let Ok(folder) = folder {
            let _ = std::env::set_current_dir(folder);
        }
        Ok(waited)
    }
}
