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
pub mod step_namespace;
pub mod task_root;
pub mod task_user;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use beamtime::job_cache::RunHold;
use beamtime::policy::{Grant, Refusal};
use beamtime::trust::{FolderError, TrustPolicy};
use beamtime::walk::{self, WalkError};

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
pub fn walk_no_symlinks(path: &Path) -> Result<OwnedFd, String> {
    if path
        .components()
        .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return Err(format!("{} is not a plain absolute path", path.display()));
    }
    walk::open_folder(path, &|_| false).map_err(|error| describe(path, error))
}

/// A failed walk as the user and slurmd's log read it.
pub fn describe(path: &Path, error: WalkError) -> String {
    match error {
        WalkError::UntrustedLink { link, .. } => format!(
            "{} is a symbolic link, which the plugin does not follow",
            link.display()
        ),
        WalkError::Io { at, error } if error.kind() == io::ErrorKind::NotFound => {
            format!("{} does not exist", at.display())
        }
        WalkError::Io { at, error } if error.raw_os_error() == Some(libc::ENOTDIR) => {
            format!("{} is not a folder", at.display())
        }
        WalkError::Io { at, error } => format!("cannot open {}: {error}", at.display()),
        // Neither follows from a walk that takes no link.
        error @ (WalkError::FileIsLink | WalkError::TooManyLinks { .. }) => {
            format!("{} cannot be walked: {error:?}", path.display())
        }
    }
}

/// Why a beamline folder is not shown: it is not (or no longer) this beamtime's.
pub fn not_the_beamtimes(source: &Path, beamtime: &str, why: &str) -> String {
    format!(
        "{} is not beamtime {beamtime}'s folder now: {why}",
        source.display()
    )
}

/// Why the beamline folder `source` could not be told apart, for the user and the log.
pub fn folder_problem(source: &Path, beamtime: &str, error: FolderError) -> String {
    match error {
        FolderError::Walk(error) => describe(source, error),
        FolderError::Copy(why) => not_the_beamtimes(source, beamtime, &why),
        FolderError::List(error) => format!("cannot list {}: {error}", source.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi;
    use std::fs;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    /// A scratch folder per test, removed when the test ends.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("spank-beamtime-{label}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("real/current")).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_plain_path_is_walked_to_the_folder_it_names() {
        let scratch = Scratch::new("walk-plain");
        let end = walk_no_symlinks(&scratch.0.join("real/current")).unwrap();
        let opened = fs::metadata(ffi::fd_path(end.as_fd())).unwrap();
        let expected = fs::metadata(scratch.0.join("real/current")).unwrap();
        assert_eq!(
            (opened.dev(), opened.ino()),
            (expected.dev(), expected.ino())
        );
    }

    #[test]
    fn a_symlink_anywhere_on_the_way_is_refused_by_name() {
        let scratch = Scratch::new("walk-link");
        std::os::unix::fs::symlink(scratch.0.join("real"), scratch.0.join("link")).unwrap();
        let link = scratch.0.join("link");
        let error = walk_no_symlinks(&link.join("current")).unwrap_err();
        assert_eq!(
            error,
            format!(
                "{} is a symbolic link, which the plugin does not follow",
                link.display()
            )
        );
    }

    #[test]
    fn a_missing_folder_a_file_and_a_relative_path_each_say_what_they_are() {
        let scratch = Scratch::new("walk-other");
        let missing = scratch.0.join("real/gone");
        assert_eq!(
            walk_no_symlinks(&missing.join("deeper")).unwrap_err(),
            format!("{} does not exist", missing.display())
        );
        let file = scratch.0.join("real/file");
        fs::write(&file, b"").unwrap();
        assert!(walk_no_symlinks(&file)
            .unwrap_err()
            .starts_with(&format!("{} is not a folder", file.display())));
        assert_eq!(
            walk_no_symlinks(Path::new("/tmp/../etc")).unwrap_err(),
            "/tmp/../etc is not a plain absolute path"
        );
    }
}
