//! The job's view of the beamline: built in each task's child process, as
//! root, after slurmstepd joined any job container namespace and before the
//! user's program runs. Everything happens in a mount namespace private to
//! that task, so nothing is left on the host when the task ends.
//!
//! Every folder is opened as a handle, one component at a time without
//! following symlinks, and every mount is made from and onto handles
//! (open_tree/move_mount), never from or onto a path: a user who can rename
//! things in the beamline folder cannot redirect a mount between the check and
//! the mount.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use beamtime::policy::Grant;
use beamtime::trust::{distrust, FileFacts, TrustPolicy};

use crate::ffi;

/// Small, and read-only once set up: it only holds the folders leading to the target.
const HIDE_ROOT_TMPFS_OPTIONS: &str = "mode=0755,size=64k,nr_inodes=256";

/// Shows the granted beamline folder at its target, read-only but for the
/// site's writable subfolders, and hides everything else under the hide root.
pub fn show_beamline(grant: &Grant, trust: &TrustPolicy) -> Result<(), String> {
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
    let facts = FileFacts {
        is_regular: stat.file_type().is_file(),
        owner: stat.uid(),
        mode: stat.mode(),
        size: stat.size(),
    };
    match distrust(&facts, trust) {
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
    let mut current = ffi::open_root().map_err(|e| format!("cannot open /: {e}"))?;
    let mut walked = Path::new("/").to_path_buf();
    for component in path.components() {
        let name = match component {
            Component::RootDir => continue,
            Component::Normal(name) => name,
            _ => return Err(format!("{} is not a plain absolute path", path.display())),
        };
        walked.push(name);
        current = ffi::open_directory_no_follow(current.as_fd(), name)
            .map_err(|e| component_error(&walked, &current, name, e))?;
    }
    Ok(current)
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
