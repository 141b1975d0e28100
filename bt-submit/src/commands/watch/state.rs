//! The watch's state file: which files were submitted, as which job, and the
//! one submission that may be under way. It is what makes "exactly once"
//! hold across restarts.
//!
//! A watch of scan folders keeps its folders the same way, by their names;
//! the state says which of the two it is, so that neither is taken for the
//! other.
//!
//! "The same file" is the same path below the watched folder: a detector
//! writes each scan under a new name, and a name once submitted is never
//! submitted again, even if the file is later rewritten or replaced. A file
//! renamed into place (`x.part` → `x.h5`) is the file under its final name.
//! Inode numbers are not the identity: a deleted file's inode is reused by
//! the next one, which would then never be submitted.
//!
//! The state is a snapshot and a journal beside it (`<state>.journal`): each
//! change is one line appended to the journal and fsync'ed, so recording a
//! submission costs the same with ten files recorded or a hundred thousand.
//! Now and then (when the journal holds as many lines as the snapshot holds
//! files, and at every start) the journal is folded into the snapshot: a
//! temporary file beside it (created exclusively, never through a link),
//! fsync'ed, renamed over the old one and the folder fsync'ed, then the
//! journal emptied. A crash leaves the old or the new snapshot, never a mix;
//! one between the rename and the emptying replays lines the snapshot holds
//! already, which changes nothing (each line sets, it never counts). A line
//! cut short by a crash was never fsync'ed, so nothing acted on it: it is
//! dropped.
//! Before sbatch runs, the state records the submission it is about to make
//! and the comment (`--comment`) its job will carry; a watch that died
//! between sbatch and recording the job id finds, on restart, the job by
//! that comment in Slurm instead of submitting the file twice.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::beneath::Folder;
use super::{os, Each};

mod record;
pub use record::{Change, Record};

/// The fewest journal lines that make a compaction worth its rewrite.
const COMPACT_AFTER_AT_LEAST: usize = 1000;

/// The folder a state path is in and its name there; a path that names no
/// file (`/`, `..`) is no state.
fn folder_and_name(path: &Path) -> Result<(&Path, &OsStr), StateError> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(StateError::Invalid {
            path: path.to_path_buf(),
            why: "it names no file".to_owned(),
        }),
    }
}

impl StateError {
    /// Whether the state's filesystem is full (or the user's quota used up):
    /// the watch waits for room instead of stopping.
    pub fn disk_full(&self) -> bool {
        matches!(self, StateError::Io { error, .. }
            if matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)))
    }
}

/// The record in the state file `name` of `folder_handle` (never through a
/// link), refused when it is not the state of the watch of `folder` that
/// submits `each`; `None` when there is no such file.
fn read_record(
    folder_handle: &Folder,
    name: &OsStr,
    path: &Path,
    folder: &Path,
    each: Each,
) -> Result<Option<Record>, StateError> {
    let invalid = |why: String| StateError::Invalid {
        path: path.to_path_buf(),
        why,
    };
    let mut file = match folder_handle.open_entry(name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
            return Err(StateError::Unsafe {
                path: path.to_path_buf(),
                why: format!(
                    "{} is a symbolic link (the watch never writes through one)",
                    name.to_string_lossy()
                ),
            })
        }
        Err(error) => {
            return Err(StateError::Io {
                path: path.to_path_buf(),
                error,
            })
        }
    };
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|error| StateError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    let record = Record::parse(&text).map_err(invalid)?;
    belongs(&record, path, folder, each)?;
    Ok(Some(record))
}

/// Refuses `record`, read from `path`, when it is not the state of the
/// watch of `folder` that submits `each`.
fn belongs(record: &Record, path: &Path, folder: &Path, each: Each) -> Result<(), StateError> {
    let invalid = |why: String| StateError::Invalid {
        path: path.to_path_buf(),
        why,
    };
    if record.folder != folder {
        return Err(invalid(format!(
            "it belongs to the watch of {}, not of {}",
            record.folder.display(),
            folder.display()
        )));
    }
    if record.each != each {
        return Err(invalid(format!(
            "it is the state of a watch that submits each {}, not each {}",
            record.each.name(),
            each.name()
        )));
    }
    Ok(())
}

/// Why the state file cannot be used.
#[derive(Debug)]
pub enum StateError {
    /// It cannot be read, written or locked.
    Io { path: PathBuf, error: io::Error },
    /// Another watch holds it; `holder` is what it wrote into the lock file
    /// (its pid, host and start), empty if it has not yet.
    InUse { path: PathBuf, holder: String },
    /// Its content is not a state file, or not this folder's.
    Invalid { path: PathBuf, why: String },
    /// Its folder lets others plant links or files beside it.
    Unsafe { path: PathBuf, why: String },
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Io { path, error } => write!(f, "state file {}: {error}", path.display()),
            StateError::InUse { path, holder } if holder.is_empty() => write!(
                f,
                "state file {} is in use by another bt-submit watch, just starting",
                path.display()
            ),
            StateError::InUse { path, holder } => write!(
                f,
                "state file {} is in use by another bt-submit watch: {holder}",
                path.display()
            ),
            StateError::Invalid { path, why } | StateError::Unsafe { path, why } => {
                write!(f, "state file {} cannot be used: {why}", path.display())
            }
        }
    }
}

/// Whether others may write the state's folder: the watch then refuses it
/// unless told it is a team's shared folder (`--shared-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    OnlyMine,
    Shared,
}

/// The state file on disk, locked for this watch while it lives. Every name
/// is opened in a handle on its folder and never through a link: someone who
/// can write that folder could otherwise plant `<state>.new` or
/// `<state>.lock` as a link and have the watch overwrite or create the file
/// it points to, with the watch user's rights.
pub struct StateFile {
    /// The path shown in messages: the real folder and the file's name.
    path: PathBuf,
    folder: Folder,
    name: OsString,
    mode: libc::mode_t,
    /// `<state>.journal`, opened for appending.
    journal: File,
    /// Lines in the journal since the last compaction.
    journal_lines: usize,
    /// Why the last compaction failed, until the watch has said so.
    compaction_failure: Option<StateError>,
    _lock: File,
}

impl StateFile {
    /// Opens (or, if it does not exist, creates) the state of the watch of
    /// `folder`; refuses a file another watch holds or one made for another
    /// folder, or for the other kind of watch, a state that is a link, and
    /// a folder others can write unless `sharing` says it is shared.
    pub fn open(
        path: &Path,
        folder: &Path,
        each: Each,
        sharing: Sharing,
    ) -> Result<(StateFile, Record), StateError> {
        let io_error = |error| StateError::Io {
            path: path.to_path_buf(),
            error,
        };
        let (parent, name) = folder_and_name(path)?;
        // Only its user may write a folder made here, whatever the umask: a
        // group-writable one would be refused just below.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_error)?;
        // The state's real identity: two paths to one folder (through a link
        // on the way) are one state and take one lock.
        let real_parent = fs::canonicalize(parent).map_err(io_error)?;
        let path = real_parent.join(name);
        let io_error = |error| StateError::Io {
            path: path.clone(),
            error,
        };
        let folder_handle = Folder::open_root(&real_parent).map_err(io_error)?;
        let (owner, mode) = folder_handle.owner_and_mode().map_err(io_error)?;
        let shared = folder_is_shared(mode);
        if shared && sharing == Sharing::OnlyMine {
            return Err(StateError::Unsafe {
                path,
                why: format!(
                    "its folder {} (mode {mode:o}, owner uid {owner}) can be written by others, \
                     who could plant links beside the state and change or replace it",
                    real_parent.display()
                ),
            });
        }
        let mode = if shared { 0o660 } else { 0o600 };
        let linked = |error: io::Error, entry: &str| match error.raw_os_error() {
            Some(libc::ELOOP) => StateError::Unsafe {
                path: path.clone(),
                why: format!("{entry} is a symbolic link (the watch never writes through one)"),
            },
            _ => io_error(error),
        };
        let lock_name = with_suffix(name, ".lock");
        let mut lock = folder_handle
            .open_entry(&lock_name, libc::O_RDWR | libc::O_CREAT, mode)
            .map_err(|error| linked(error, &lock_name.to_string_lossy()))?;
        if !os::try_lock(&lock).map_err(io_error)? {
            let mut holder = String::new();
            // What it says is only shown; a lock file that cannot be read still means "in use".
            let _ = lock.read_to_string(&mut holder);
            return Err(StateError::InUse {
                path,
                holder: beamtime::untrusted::shown_token(holder.trim()),
            });
        }
        // Who holds the lock, for the refusal of a second watch.
        lock.set_len(0)
            .and_then(|()| {
                writeln!(
                    lock,
                    "pid {} on {} since {}",
                    std::process::id(),
                    os::hostname(),
                    super::log::utc_now()
                )
            })
            .map_err(io_error)?;
        let (mut record, snapshot_found) =
            match read_record(&folder_handle, name, &path, folder, each)? {
                Some(record) => (record, true),
                None => {
                    let id = random_id().map_err(io_error)?;
                    (Record::new(id, folder.to_path_buf(), each), false)
                }
            };
        let journal_name = with_suffix(name, ".journal");
        let mut journal = folder_handle
            .open_entry(
                &journal_name,
                libc::O_RDWR | libc::O_APPEND | libc::O_CREAT | libc::O_NONBLOCK,
                mode,
            )
            .map_err(|error| linked(error, &journal_name.to_string_lossy()))?;
        if !snapshot_found && journal.metadata().map_err(io_error)?.len() > 0 {
            // The journal's lines belong to a snapshot; without it they
            // would be applied to a new watch id and new markers.
            return Err(StateError::Invalid {
                path,
                why: format!(
                    "its journal {} has changes but the state file itself is missing",
                    journal_name.to_string_lossy()
                ),
            });
        }
        let replayed = replay(&mut journal, &mut record).map_err(|replay| match replay {
            Replay::Io(error) => io_error(error),
            Replay::Invalid { line, why } => StateError::Invalid {
                path: path.clone(),
                why: format!(
                    "line {line} of its journal {}: {why}",
                    journal_name.to_string_lossy()
                ),
            },
        })?;
        let mut state = StateFile {
            path,
            folder: folder_handle,
            name: name.to_os_string(),
            mode,
            journal,
            journal_lines: replayed,
            compaction_failure: None,
            _lock: lock,
        };
        // A start begins with a compact state, and a new one is on disk (its
        // watch id with it) before its first journal line.
        if !snapshot_found || replayed > 0 {
            state.compact(&record)?;
        }
        Ok((state, record))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state as it is now, read without taking the lock (and without
    /// changing anything), for `watch status` beside a running watch. A
    /// compaction between reading the snapshot and its journal is noticed
    /// (the snapshot is another file then) and the reading begun again; a
    /// journal line the watch is still writing is left out.
    pub fn peek(path: &Path) -> Result<Record, StateError> {
        let io_error = |error| StateError::Io {
            path: path.to_path_buf(),
            error,
        };
        let (parent, name) = folder_and_name(path)?;
        let folder =
            Folder::open_root(&fs::canonicalize(parent).map_err(io_error)?).map_err(io_error)?;
        let journal_name = with_suffix(name, ".journal");
        loop {
            let mut snapshot = folder
                .open_entry(name, libc::O_RDONLY | libc::O_NONBLOCK, 0)
                .map_err(io_error)?;
            let mut text = String::new();
            snapshot.read_to_string(&mut text).map_err(io_error)?;
            let mut record = Record::parse(&text).map_err(|why| StateError::Invalid {
                path: path.to_path_buf(),
                why,
            })?;
            let mut lines = Vec::new();
            match folder.open_entry(&journal_name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
                Ok(mut journal) => {
                    journal.read_to_end(&mut lines).map_err(io_error)?;
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error(error)),
            }
            let now = folder
                .open_entry(name, libc::O_RDONLY | libc::O_NONBLOCK, 0)
                .and_then(|file| file.metadata())
                .map_err(io_error)?;
            if now.ino() != snapshot.metadata().map_err(io_error)?.ino() {
                continue;
            }
            apply_lines(&lines, &mut record).map_err(|(line, why)| StateError::Invalid {
                path: path.to_path_buf(),
                why: format!(
                    "line {line} of its journal {}: {why}",
                    journal_name.to_string_lossy()
                ),
            })?;
            return Ok(record);
        }
    }

    /// The state of the watch of `folder` that submits `each`, as [`peek`]
    /// reads it, for `--dry-run`: `None` when there is none yet.
    ///
    /// [`peek`]: StateFile::peek
    pub fn peek_watch(
        path: &Path,
        folder: &Path,
        each: Each,
    ) -> Result<Option<Record>, StateError> {
        match StateFile::peek(path) {
            Ok(record) => {
                belongs(&record, path, folder, each)?;
                Ok(Some(record))
            }
            Err(StateError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Records one change: applies it to `record` and appends it to the
    /// journal, fsync'ed before this returns. When the write fails, the
    /// journal is cut back to where it was, so that no part of the line is
    /// left to join the next one.
    pub fn record(&mut self, record: &mut Record, change: Change) -> Result<(), StateError> {
        let io_error = |error| StateError::Io {
            path: self.path.clone(),
            error,
        };
        let before = self.journal.metadata().map_err(io_error)?.len();
        let written = self
            .journal
            .write_all(change.line().as_bytes())
            .and_then(|()| self.journal.sync_data());
        if let Err(error) = written {
            // Best effort: the error below is what the caller acts on.
            let _ = self.journal.set_len(before);
            return Err(io_error(error));
        }
        record.apply(&change);
        self.journal_lines += 1;
        if self.journal_lines >= COMPACT_AFTER_AT_LEAST.max(record.submitted.len()) {
            // The change is on disk, in the journal: a compaction that fails
            // (a full disk) loses nothing and is tried again with the next.
            if let Err(error) = self.compact(record) {
                self.compaction_failure = Some(error);
            }
        }
        Ok(())
    }

    /// Why the last compaction failed, once.
    pub fn take_compaction_failure(&mut self) -> Option<StateError> {
        self.compaction_failure.take()
    }

    /// Folds the journal into the snapshot: the snapshot is replaced by
    /// `record` (a new temporary file beside it, created exclusively after
    /// removing whatever had its name; fsync, rename, fsync of the folder),
    /// then the journal is emptied.
    fn compact(&mut self, record: &Record) -> Result<(), StateError> {
        let io_error = |error| StateError::Io {
            path: self.path.clone(),
            error,
        };
        let temporary = with_suffix(&self.name, ".new");
        self.folder.remove_entry(&temporary).map_err(io_error)?;
        let mut file = self
            .folder
            .open_entry(
                &temporary,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                self.mode,
            )
            .map_err(io_error)?;
        file.write_all(record.render().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_error)?;
        self.folder
            .rename_entry(&temporary, &self.name)
            .map_err(io_error)?;
        self.folder.sync().map_err(io_error)?;
        self.journal
            .set_len(0)
            .and_then(|()| self.journal.sync_all())
            .map_err(io_error)?;
        self.journal_lines = 0;
        Ok(())
    }
}

enum Replay {
    Io(io::Error),
    Invalid { line: usize, why: String },
}

/// Applies the journal's lines to `record`; returns how many there were. A
/// last line without its newline was cut short by a crash before its fsync
/// (nothing acted on it): it is cut off the file.
fn replay(journal: &mut File, record: &mut Record) -> Result<usize, Replay> {
    let mut bytes = Vec::new();
    journal.read_to_end(&mut bytes).map_err(Replay::Io)?;
    let complete = complete_lines(&bytes);
    if complete < bytes.len() {
        journal.set_len(complete as u64).map_err(Replay::Io)?;
    }
    apply_lines(&bytes, record).map_err(|(line, why)| Replay::Invalid { line, why })
}

/// How many of `bytes` are whole lines.
fn complete_lines(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// Applies the whole lines of `bytes` to `record`; returns how many there
/// were, or the number of the line that is not a change and why.
fn apply_lines(bytes: &[u8], record: &mut Record) -> Result<usize, (usize, String)> {
    let mut lines = 0;
    let whole = &bytes[..complete_lines(bytes)];
    for (index, line) in whole.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let text = std::str::from_utf8(line).map_err(|e| (index + 1, e.to_string()))?;
        record.apply(&Change::parse(text).map_err(|why| (index + 1, why))?);
        lines += 1;
    }
    Ok(lines)
}

/// Whether users other than the owner may create entries in a folder of
/// this mode: group or world writable and not sticky (a sticky folder lets
/// no one remove or rename another's entries).
fn folder_is_shared(mode: u32) -> bool {
    mode & 0o022 != 0 && mode & 0o1000 == 0
}

fn with_suffix(name: &OsStr, suffix: &str) -> OsString {
    let mut name = name.to_os_string();
    name.push(suffix);
    name
}

/// A name no other watch has: the watch's id in its state file and in its
/// jobs' comments.
fn random_id() -> io::Result<String> {
    let mut bytes = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests;
