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
pub mod mount_failure;
pub mod step_namespace;
pub mod task_root;
pub mod task_user;

use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use beamtime::job_cache::RunHold;
use beamtime::policy::Grant;
use beamtime::refusal::Refusal;
use beamtime::trust::TrustPolicy;
use beamtime::walk;

use mount_failure::MountFailure;
use step_namespace::StepNamespace;

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
/// belongs to the beamtime when the task mounts it, who and where, for the
/// refusal line a failed mount logs, and how the step's tasks on this node
/// share one namespace.
#[derive(Debug)]
pub struct Granted {
    pub grant: Grant,
    pub trust: TrustPolicy,
    pub step: String,
    /// The step's `decision=accepted` log line, written once its task 0 has
    /// the beamline mounted.
    pub accepted: String,
    pub namespace: StepNamespace,
    /// The step's membership in its job's run on this node, kept for as long
    /// as slurmstepd keeps the verdict: the step's whole life (see
    /// `beamtime::job_cache`); `None` without a usable cache.
    pub _cache_hold: Option<RunHold>,
}

// What both root phases use: `decide` to tell the step's phase, `task_root` to
// mount. The beamline's folders are walked the same way in both.

/// Opens an absolute path one component at a time, refusing any symlink on
/// the way, and returns an `O_PATH` handle on the directory it names.
pub fn walk_no_symlinks(path: &Path) -> Result<OwnedFd, MountFailure> {
    if path
        .components()
        .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return Err(MountFailure::NotPlainPath(path.to_owned()));
    }
    walk::open_folder(path, &|_| false).map_err(|error| MountFailure::Walk {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi;
    use std::fs;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    /// A scratch folder holding `real/current`, removed when the test ends.
    struct Scratch {
        path: PathBuf,
        _removed_on_drop: tempfile::TempDir,
    }

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let dir = tempfile::Builder::new()
                .prefix(&format!("spank-beamtime-{label}-"))
                .tempdir()
                .unwrap();
            fs::create_dir_all(dir.path().join("real/current")).unwrap();
            Scratch {
                path: dir.path().to_owned(),
                _removed_on_drop: dir,
            }
        }
    }

    #[test]
    fn a_plain_path_is_walked_to_the_folder_it_names() {
        let scratch = Scratch::new("walk-plain");
        let end = walk_no_symlinks(&scratch.path.join("real/current")).unwrap();
        let opened = fs::metadata(ffi::fd_path(end.as_fd())).unwrap();
        let expected = fs::metadata(scratch.path.join("real/current")).unwrap();
        assert_eq!(
            (opened.dev(), opened.ino()),
            (expected.dev(), expected.ino())
        );
    }

    #[test]
    fn a_symlink_anywhere_on_the_way_is_refused_by_name() {
        let scratch = Scratch::new("walk-link");
        std::os::unix::fs::symlink(scratch.path.join("real"), scratch.path.join("link")).unwrap();
        let link = scratch.path.join("link");
        let error = walk_no_symlinks(&link.join("current")).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{} is a symbolic link, which the plugin does not follow",
                link.display()
            )
        );
    }

    #[test]
    fn a_missing_folder_a_file_and_a_relative_path_each_say_what_they_are() {
        let scratch = Scratch::new("walk-other");
        let missing = scratch.path.join("real/gone");
        assert_eq!(
            walk_no_symlinks(&missing.join("deeper"))
                .unwrap_err()
                .to_string(),
            format!("{} does not exist", missing.display())
        );
        let file = scratch.path.join("real/file");
        fs::write(&file, b"").unwrap();
        assert!(walk_no_symlinks(&file)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("{} is not a folder", file.display())));
        assert_eq!(
            walk_no_symlinks(Path::new("/tmp/../etc"))
                .unwrap_err()
                .to_string(),
            "/tmp/../etc is not a plain absolute path"
        );
    }
}
