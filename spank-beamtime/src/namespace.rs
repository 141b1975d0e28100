//! The job's view of the beamline: built in each task's child process, as
//! root, after slurmstepd joined any job container namespace and before the
//! user's program runs. Everything happens in a mount namespace private to
//! that task, so nothing is left on the host when the task ends.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use beamtime::policy::Grant;

use crate::ffi;

/// Small and read-only once set up: it only holds the folders leading to the target.
const HIDE_ROOT_TMPFS_OPTIONS: &str = "mode=0755,size=64k,nr_inodes=256";

/// Shows the granted beamline folder at its target, read-only but for the
/// site's writable subfolders, and hides everything else under the hide root.
pub fn show_beamline(grant: &Grant) -> Result<(), String> {
    ffi::enter_private_mount_namespace()
        .map_err(|e| format!("cannot create a private mount namespace: {e}"))?;

    // Handles are opened only now: a bind mount's source must be in the caller's namespace.
    let hide_root = walk_no_symlinks(&grant.hide_root)?;
    let source = walk_no_symlinks(&grant.source)?;
    let mut writable: Vec<(&str, OwnedFd)> = Vec::new();
    for name in &grant.writable {
        match ffi::open_directory_no_follow(source.as_fd(), OsStr::new(name)) {
            Ok(fd) => writable.push((name, fd)),
            // A beamtime without this subfolder simply has nothing writable there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(component_error(&grant.source.join(name), &source, name, e)),
        }
    }

    ffi::mount_tmpfs(&ffi::fd_path(hide_root.as_fd()), HIDE_ROOT_TMPFS_OPTIONS)
        .map_err(|e| format!("cannot mount a tmpfs over {}: {e}", grant.hide_root.display()))?;
    // From here on every path below the hide root is in the tmpfs just mounted,
    // which only this namespace can see: no other process can plant anything there.
    std::fs::create_dir_all(&grant.target)
        .map_err(|e| format!("cannot create {} in the private tmpfs: {e}", grant.target.display()))?;
    ffi::bind(source.as_fd(), &grant.target).map_err(|e| {
        format!("cannot bind {} to {}: {e}", grant.source.display(), grant.target.display())
    })?;
    ffi::remount(&grant.target, true, true)
        .map_err(|e| format!("cannot make {} read-only: {e}", grant.target.display()))?;
    for (name, fd) in &writable {
        let target = grant.target.join(name);
        ffi::bind(fd.as_fd(), &target)
            .and_then(|()| ffi::remount(&target, false, true))
            .map_err(|e| format!("cannot make {} writable: {e}", target.display()))?;
    }
    ffi::remount(&grant.hide_root, true, false)
        .map_err(|e| format!("cannot make {} read-only: {e}", grant.hide_root.display()))
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

fn component_error(walked: &Path, parent: &OwnedFd, name: impl AsRef<OsStr>, e: io::Error) -> String {
    if ffi::is_symlink_at(parent.as_fd(), name.as_ref()) {
        format!("{} is a symbolic link, which the plugin does not follow", walked.display())
    } else if e.kind() == io::ErrorKind::NotFound {
        format!("{} does not exist", walked.display())
    } else {
        format!("cannot open {}: {e}", walked.display())
    }
}
