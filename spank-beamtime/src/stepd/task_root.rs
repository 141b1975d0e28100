//! `task_init_privileged`, as root, in each task's forked child: after
//! slurmstepd joined any job container namespace and before the user's
//! program runs, the job's view of the beamline is built. Everything happens
//! in a mount namespace private to that task, so nothing is left on the host
//! when the task ends.
//!
//! Every folder is opened as a handle, one component at a time without
//! following symlinks, and every mount is made from and onto handles
//! (open_tree/move_mount), never from or onto a path: a user who can rename
//! things in the beamline folder cannot redirect a mount between the check and
//! the mount.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use std::time::Instant;

use beamtime::policy::{Grant, Refusal, Rule};
use beamtime::trust::{distrust, FileFacts, TrustPolicy};
use beamtime::walk::{self, WalkError};
use slurm_spank::{spank_log_info, spank_log_verbose};

use super::decide::refused_line;
use super::{Granted, Verdict};
use crate::{ffi, PLUGIN};

/// Small, and read-only once set up: it only holds the folders leading to the target.
const HIDE_ROOT_TMPFS_OPTIONS: &str = "mode=0755,size=64k,nr_inodes=256";

/// Builds a granted step's namespace in this task; a failure turns the
/// verdict into a refusal, which the task reports as the user (`task_user`).
///
/// `task` is the task's id on this node: task 0 writes the step's refusal
/// line, as `decide` does once per step and node, so counting
/// `decision=refused` counts steps; another task that fails alone (which
/// needs the source to change between two tasks' mounts) logs its failure
/// without a decision.
pub fn prepare_task(verdict: &mut Verdict, task: Option<i32>) {
    let Verdict::Granted(granted) = verdict else {
        return;
    };
    let Granted { grant, trust, step } = granted.as_ref();
    let started = Instant::now();
    let shown = show_beamline(grant, trust);
    // For admins weighing the cost on nodes with large mount tables (bench/ reads it too).
    spank_log_verbose!(
        "{PLUGIN}: beamtime={} mount namespace set up in {} us",
        grant.beamtime,
        started.elapsed().as_micros()
    );
    if let Err(why) = shown {
        let refusal = Refusal::new(
            Rule::MountFailed,
            format!("the beamline folder could not be set up: {why}"),
            "Report this to the cluster admins",
        );
        // Info, not error: slurmstepd copies its errors to the user's stderr, where
        // task_init's refusal already says this once.
        match task {
            Some(0) | None => spank_log_info!("{PLUGIN}: {}", refused_line(step, &refusal)),
            Some(task) => spank_log_info!("{PLUGIN}: {step} task={task} mount failed: {why}"),
        }
        *verdict = Verdict::Refused(refusal);
    }
}

/// Shows the granted beamline folder at its target, read-only but for the
/// site's writable subfolders, and hides everything else under the hide root.
fn show_beamline(grant: &Grant, trust: &TrustPolicy) -> Result<(), String> {
    ffi::enter_private_mount_namespace()
        .map_err(|e| format!("cannot create a private mount namespace: {e}"))?;

    // Handles are opened only now: open_tree needs them in the caller's namespace.
    let hide_root = walk_no_symlinks(&grant.hide_root)?;
    let source = walk_no_symlinks(&grant.source)?;
    check_source_is_the_beamtimes(grant, &source, trust)?;
    let mut writable: Vec<(&str, OwnedFd)> = Vec::new();
    for name in &grant.writable {
        match ffi::open_directory_no_follow(source.as_fd(), OsStr::new(name)) {
            Ok(fd) => writable.push((name, fd)),
            // A beamtime without this subfolder simply has nothing writable there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(component_error(&grant.source.join(name), &source, name, e)),
        }
    }

    let beamline = ffi::clone_mount(source.as_fd())
        .and_then(|m| ffi::restrict_mount(m.as_fd(), true, false).map(|()| m))
        .map_err(|e| format!("cannot copy the mount of {}: {e}", grant.source.display()))?;

    ffi::mount_tmpfs(&ffi::fd_path(hide_root.as_fd()), HIDE_ROOT_TMPFS_OPTIONS).map_err(|e| {
        format!(
            "cannot mount a tmpfs over {}: {e}",
            grant.hide_root.display()
        )
    })?;
    // Below the hide root is now the tmpfs just mounted, which only this
    // namespace sees: nobody else can plant anything on the way to the target.
    std::fs::create_dir_all(&grant.target).map_err(|e| {
        format!(
            "cannot create {} in the private tmpfs: {e}",
            grant.target.display()
        )
    })?;
    let target = walk_no_symlinks(&grant.target)?;
    ffi::attach(beamline.as_fd(), target.as_fd()).map_err(|e| {
        format!(
            "cannot mount {} at {}: {e}",
            grant.source.display(),
            grant.target.display()
        )
    })?;

    for (name, folder) in &writable {
        let shown = grant.target.join(name);
        // Looked up through the attached copy, then compared with the folder
        // that was opened from the source: a swap in between is refused.
        let mountpoint = ffi::open_directory_no_follow(beamline.as_fd(), OsStr::new(name))
            .map_err(|e| component_error(&shown, &beamline, name, e))?;
        if !ffi::same_file(mountpoint.as_fd(), folder.as_fd()).map_err(|e| e.to_string())? {
            return Err(format!(
                "{} changed while it was being mounted",
                grant.source.join(name).display()
            ));
        }
        ffi::clone_mount(folder.as_fd())
            .and_then(|m| ffi::restrict_mount(m.as_fd(), false, false).map(|()| m))
            .and_then(|m| ffi::attach(m.as_fd(), mountpoint.as_fd()))
            .map_err(|e| format!("cannot make {} writable: {e}", shown.display()))?;
    }

    let tmpfs = walk_no_symlinks(&grant.hide_root)?;
    ffi::restrict_mount(tmpfs.as_fd(), true, true)
        .map_err(|e| format!("cannot make {} read-only: {e}", grant.hide_root.display()))
}

/// The source template names the beamline's *current* folder: it must hold
/// this beamtime's own metadata file, or the beamline has moved on to another
/// beamtime (or a commissioning run shares it) and mounting it would show
/// someone else's data.
fn check_source_is_the_beamtimes(
    grant: &Grant,
    source: &OwnedFd,
    trust: &TrustPolicy,
) -> Result<(), String> {
    let name = OsStr::new(&grant.metadata_file_name);
    let shown = grant.source.join(&grant.metadata_file_name);
    let not_ours = |why: String| {
        format!(
            "{} is not beamtime {}'s folder now: {why}",
            grant.source.display(),
            grant.beamtime
        )
    };
    let file = ffi::open_file_no_follow(source.as_fd(), name).map_err(|e| {
        if ffi::is_symlink_at(source.as_fd(), name) {
            not_ours(format!("{} is a symbolic link", shown.display()))
        } else {
            not_ours(format!("{}: {e}", shown.display()))
        }
    })?;
    let stat = file
        .metadata()
        .map_err(|e| format!("{}: {e}", shown.display()))?;
    match distrust(&FileFacts::of(&stat), trust) {
        None => Ok(()),
        Some(why) => Err(not_ours(format!(
            "{} is not trusted: {why}",
            shown.display()
        ))),
    }
}

/// Opens an absolute path one component at a time, refusing any symlink on
/// the way, and returns an `O_PATH` handle on the directory it names.
fn walk_no_symlinks(path: &Path) -> Result<OwnedFd, String> {
    if path
        .components()
        .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return Err(format!("{} is not a plain absolute path", path.display()));
    }
    walk::open_folder(path, &|_| false).map_err(|error| match error {
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
        WalkError::FileIsLink | WalkError::TooManyLinks { .. } => {
            format!("{} cannot be walked: {error:?}", path.display())
        }
    })
}

fn component_error(
    walked: &Path,
    parent: &OwnedFd,
    name: impl AsRef<OsStr>,
    e: io::Error,
) -> String {
    if ffi::is_symlink_at(parent.as_fd(), name.as_ref()) {
        format!(
            "{} is a symbolic link, which the plugin does not follow",
            walked.display()
        )
    } else if e.kind() == io::ErrorKind::NotFound {
        format!("{} does not exist", walked.display())
    } else if e.raw_os_error() == Some(libc::ENOTDIR) {
        // What O_DIRECTORY|O_NOFOLLOW says of a symlink too: one swapped back
        // since the open failed no longer shows as a link when checked above.
        format!(
            "{} is not a folder (or was a symbolic link, which the plugin does not follow)",
            walked.display()
        )
    } else {
        format!("cannot open {}: {e}", walked.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
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
