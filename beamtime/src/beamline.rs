//! What a beamline's folder on the node holds, as root on the node sees it:
//! this beamtime's trusted metadata file, another beamtime's, none, or no
//! folder at all (which tells the phase, see [`crate::policy::Phase`]); and
//! whether the names inside it could be swapped by someone not trusted, which
//! decides whether the site's writable subfolders are honoured. Every file in
//! the folder is judged by [`crate::trust::distrust`].

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use crate::facts::BeamlineFolder;
use crate::metadata::MetadataKind;
use crate::trust::{distrust, FileFacts, TrustPolicy};
use crate::walk::{self, WalkError};

/// Why the names inside a beamline folder could be swapped by someone the
/// plugin does not trust, or `None` when only root or a trusted owner can
/// rename what is in it. The site's writable subfolders are found by name:
/// where the account (or any member) can rename entries of the folder, it
/// can put another of its folders under a writable name while tasks start,
/// or move a mounted one after (#17), so `writable=` is honoured only in a
/// folder nobody else can change. The mode's group bits are the ACL mask,
/// so an ACL granting writes shows there too.
pub fn names_can_be_swapped(folder: &FileFacts, policy: &TrustPolicy) -> Option<String> {
    if folder.owner != 0 && !policy.owners.contains(&folder.owner) {
        return Some(format!(
            "it is owned by uid {}, who can rename what is in it",
            folder.owner
        ));
    }
    if folder.mode & 0o022 != 0 {
        return Some(format!(
            "it is writable by group or others (mode {:04o}), who can rename what is in it",
            folder.mode & 0o7777
        ));
    }
    None
}

/// Why a beamline folder could not be told apart.
#[derive(Debug)]
pub enum FolderError {
    /// The walk to it failed: a symbolic link on the way, a folder above it
    /// missing (an unmounted file system), no permission …
    Walk(WalkError),
    /// It holds a file of this beamtime's name that is a link or not trusted,
    /// which the start script would never leave.
    Copy(String),
    /// It could not be listed.
    List(std::io::Error),
}

/// What the beamline folder `source` holds, `name` being this beamtime's
/// metadata file: how the node tells whether a beamline's folder is this
/// beamtime's (see [`crate::policy::Phase`]). Walked from `/` following no
/// link. Only the folder itself may be missing (a beamline between two
/// beamtimes, or before the first): a missing folder above it is a fault.
pub fn inspect_beamline_folder(
    source: &Path,
    name: &str,
    policy: &TrustPolicy,
) -> Result<BeamlineFolder, FolderError> {
    let folder = match walk::open_folder(source, &|_| false) {
        Ok(folder) => folder,
        Err(WalkError::Io { at, error })
            if error.kind() == std::io::ErrorKind::NotFound && at == source =>
        {
            return Ok(BeamlineFolder::Absent)
        }
        Err(error) => return Err(FolderError::Walk(error)),
    };
    beamline_folder(folder.as_fd(), source, name, policy)
}

/// The names of the beamtime and commissioning metadata files in the folder
/// behind the handle, listed through its /proc name.
fn metadata_files_in(folder: BorrowedFd<'_>) -> Result<Vec<String>, FolderError> {
    let listed = std::fs::read_dir(format!("/proc/self/fd/{}", folder.as_raw_fd()))
        .map_err(FolderError::List)?;
    Ok(listed
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| MetadataKind::from_file_name(name).is_some())
        .collect())
}

/// What the folder behind the handle `folder` (named `shown` in messages)
/// holds: [`inspect_beamline_folder`] for a folder already open, as a task's
/// mount side has it.
pub fn beamline_folder(
    folder: BorrowedFd<'_>,
    shown: &Path,
    name: &str,
    policy: &TrustPolicy,
) -> Result<BeamlineFolder, FolderError> {
    let file_shown = shown.join(name);
    match walk::open_file_in(folder, OsStr::new(name)) {
        Ok(file) => {
            let stat = file
                .metadata()
                .map_err(|e| FolderError::Copy(format!("{}: {e}", file_shown.display())))?;
            if let Some(why) = distrust(&FileFacts::of(&stat), policy) {
                return Err(FolderError::Copy(format!(
                    "{} is not trusted: {why}",
                    file_shown.display()
                )));
            }
            // A folder that holds another beamtime's file as well is neither's
            // for certain (a leftover of a beamtime switch): refused, not
            // shown to both (#21).
            match metadata_files_in(folder)?
                .into_iter()
                .find(|file| file != name)
            {
                None => Ok(BeamlineFolder::ThisBeamtime),
                Some(other) => Err(FolderError::Copy(format!(
                    "it holds {} too, another beamtime's metadata file, so whose folder it is \
                     cannot be told",
                    crate::untrusted::shown_token(&other)
                ))),
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok(if metadata_files_in(folder)?.is_empty() {
                BeamlineFolder::NoBeamtime
            } else {
                BeamlineFolder::AnotherBeamtime
            })
        }
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => Err(FolderError::Copy(format!(
            "{} is a symbolic link",
            file_shown.display()
        ))),
        // A folder the caller may not look into (root on the node always may): the
        // walk stopped there, nothing is known of its contents.
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(FolderError::Walk(WalkError::Io {
                at: file_shown,
                error,
            }))
        }
        Err(error) => Err(FolderError::Copy(format!(
            "{}: {error}",
            file_shown.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    const GOOD: &[u8] = include_bytes!("../tests/fixtures/beamtime-metadata-11099001.json");

    fn write(folder: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = folder.join(name);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    fn owner_of(path: &Path) -> TrustPolicy {
        TrustPolicy {
            owners: vec![fs::metadata(path).unwrap().uid()],
        }
    }

    fn stranger() -> TrustPolicy {
        TrustPolicy {
            owners: vec![4_000_000],
        }
    }

    #[test]
    fn a_beamline_folder_holds_this_beamtime_another_or_none() {
        let scratch = tempfile::tempdir().unwrap();
        let source = scratch.path().join("current");
        let name = "beamtime-metadata-11099001.json";
        let holds = |policy: &TrustPolicy| inspect_beamline_folder(&source, name, policy);
        assert!(matches!(holds(&stranger()), Ok(BeamlineFolder::Absent)));
        fs::create_dir(&source).unwrap();
        assert!(matches!(holds(&stranger()), Ok(BeamlineFolder::NoBeamtime)));
        let other = write(
            scratch.path(),
            "current/beamtime-metadata-11099002.json",
            GOOD,
        );
        assert!(matches!(
            holds(&stranger()),
            Ok(BeamlineFolder::AnotherBeamtime)
        ));
        let path = write(scratch.path(), &format!("current/{name}"), GOOD);
        // Both files: whose folder it is cannot be told.
        match holds(&owner_of(&path)) {
            Err(FolderError::Copy(why)) => assert_eq!(
                why,
                "it holds beamtime-metadata-11099002.json too, another beamtime's metadata \
                 file, so whose folder it is cannot be told"
            ),
            other => panic!("{other:?}"),
        }
        fs::remove_file(&other).unwrap();
        assert!(matches!(
            holds(&owner_of(&path)),
            Ok(BeamlineFolder::ThisBeamtime)
        ));
        match holds(&stranger()) {
            Err(FolderError::Copy(why)) => assert!(
                why.starts_with(&format!(
                    "{} is not trusted: it is owned by uid",
                    path.display()
                )),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        match holds(&owner_of(scratch.path())) {
            Err(FolderError::Copy(why)) => {
                assert_eq!(why, format!("{} is a symbolic link", path.display()))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_folder_above_the_beamline_folder_is_a_fault_not_pre_start() {
        let scratch = tempfile::tempdir().unwrap();
        let source = scratch.path().join("unmounted/p11/current");
        match inspect_beamline_folder(&source, "beamtime-metadata-11099001.json", &stranger()) {
            Err(FolderError::Walk(error)) => assert!(error.is_not_found(), "{error:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn writable_subfolders_need_a_folder_only_root_or_a_trusted_owner_can_change() {
        let policy = TrustPolicy {
            owners: vec![0, 900],
        };
        let folder = |owner, mode| FileFacts {
            is_regular: false,
            owner,
            mode: libc::S_IFDIR | mode,
            size: 4096,
        };
        // The facility's layout: root:<beamtime group> 0750.
        assert_eq!(names_can_be_swapped(&folder(0, 0o750), &policy), None);
        assert_eq!(names_can_be_swapped(&folder(900, 0o755), &policy), None);
        let account = names_can_be_swapped(&folder(5001, 0o750), &policy).unwrap();
        assert!(account.contains("owned by uid 5001"), "{account}");
        for mode in [0o770, 0o2770, 0o1777, 0o757] {
            let why = names_can_be_swapped(&folder(0, mode), &policy).unwrap();
            assert!(why.contains(&format!("mode {mode:04o}")), "{why}");
        }
    }
}
