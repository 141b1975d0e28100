//! Why a task could not be shown its beamline folder, as one value per cause
//! and said in one place ([`MountFailure`]'s `Display`): the refusal the user
//! reads, slurmd's log line and the reason task 0 hands to the step's other
//! tasks all quote it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use beamtime::beamline::FolderError;
use beamtime::walk::WalkError;

#[derive(Debug)]
pub enum MountFailure {
    /// A path to walk that is not a plain absolute one (`..`, `.`, relative).
    NotPlainPath(PathBuf),
    /// The walk to `path` stopped: a symbolic link, a missing folder, a file …
    Walk { path: PathBuf, error: WalkError },
    /// The beamline folder `source` is not (or no longer) beamtime `beamtime`'s.
    NotTheBeamtimes {
        source: PathBuf,
        beamtime: String,
        why: String,
    },
    /// The beamline folder `source` could not be listed.
    List { source: PathBuf, error: io::Error },
    /// A system call failed; `doing` says what for, as "cannot …".
    System { doing: String, error: io::Error },
    /// A writable subfolder's name led elsewhere between the check and the mount.
    Changed(PathBuf),
    /// The writable subfolders `names` are found by name in `source`, and
    /// someone not trusted can rename its entries.
    NamesNotStable {
        names: Vec<String>,
        source: PathBuf,
        why: String,
    },
    /// Another task than 0 was asked to join a step that has no shared namespace.
    NoSharedNamespace,
    /// Task 0 did not answer within the wait.
    TaskZeroSilent(Duration),
    /// Task 0 failed, for the reason it sent (its own log line has the whole of it).
    TaskZeroFailed(String),
    /// Task 0 answered without a namespace.
    TaskZeroSentNothing,
}

impl MountFailure {
    /// Why the beamline folder `source` could not be told apart.
    pub fn of_folder(source: PathBuf, beamtime: &str, error: FolderError) -> MountFailure {
        match error {
            FolderError::Walk(error) => MountFailure::Walk {
                path: source,
                error,
            },
            FolderError::Copy(why) => MountFailure::NotTheBeamtimes {
                source,
                beamtime: beamtime.to_owned(),
                why,
            },
            FolderError::List(error) => MountFailure::List { source, error },
        }
    }

    /// A failed system call: `doing` as "cannot …".
    pub fn system(doing: impl Into<String>) -> impl FnOnce(io::Error) -> MountFailure {
        let doing = doing.into();
        move |error| MountFailure::System { doing, error }
    }
}

impl fmt::Display for MountFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountFailure::NotPlainPath(path) => {
                write!(f, "{} is not a plain absolute path", path.display())
            }
            MountFailure::Walk { path, error } => match error {
                WalkError::UntrustedLink { link, .. } => write!(
                    f,
                    "{} is a symbolic link, which the plugin does not follow",
                    link.display()
                ),
                WalkError::Io { at, error } if error.kind() == io::ErrorKind::NotFound => {
                    write!(f, "{} does not exist", at.display())
                }
                WalkError::Io { at, error } if error.raw_os_error() == Some(libc::ENOTDIR) => {
                    write!(f, "{} is not a folder", at.display())
                }
                WalkError::Io { at, error } => write!(f, "cannot open {}: {error}", at.display()),
                // Neither follows from a walk that takes no link.
                error @ (WalkError::FileIsLink | WalkError::TooManyLinks { .. }) => {
                    write!(f, "{} cannot be walked: {error:?}", path.display())
                }
            },
            MountFailure::NotTheBeamtimes {
                source,
                beamtime,
                why,
            } => write!(
                f,
                "{} is not beamtime {beamtime}'s folder now: {why}",
                source.display()
            ),
            MountFailure::List { source, error } => {
                write!(f, "cannot list {}: {error}", source.display())
            }
            MountFailure::System { doing, error } => write!(f, "{doing}: {error}"),
            MountFailure::Changed(path) => {
                write!(f, "{} changed while it was being mounted", path.display())
            }
            MountFailure::NamesNotStable { names, source, why } => write!(
                f,
                "{} cannot be made writable: {}: {why}, so its names are not a stable identity \
                 (writable= is honoured only in a beamline folder that only root or a trusted \
                 owner can change; {} to make it root's and not group- or other-writable, as \
                 the facility's start script does, or to drop writable=)",
                names.join(", "),
                source.display(),
                beamtime::problem::ASK_THE_ADMINS
            ),
            MountFailure::NoSharedNamespace => {
                f.write_str("this step has no namespace of task 0 to join")
            }
            MountFailure::TaskZeroSilent(waited) => write!(
                f,
                "task 0 of this step did not set up the beamline within {} s",
                waited.as_secs()
            ),
            MountFailure::TaskZeroFailed(reason) => {
                write!(f, "task 0 of this step could not set it up: {reason}")
            }
            MountFailure::TaskZeroSentNothing => {
                f.write_str("task 0 of this step sent no namespace")
            }
        }
    }
}

impl std::error::Error for MountFailure {}
