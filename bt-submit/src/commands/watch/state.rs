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
//! The file is rewritten whole after every change: written to a temporary
//! file beside it (created exclusively, never through a link), fsync'ed, renamed over the old one and the folder
//! fsync'ed, so a crash leaves the old or the new state, never a mix.
//! Before sbatch runs, the state records the submission it is about to make
//! and the comment (`--comment`) its job will carry; a watch that died
//! between sbatch and recording the job id finds, on restart, the job by
//! that comment in Slurm instead of submitting the file twice.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::beneath::Folder;
use super::complete::Look;
use super::{os, Each};

const FORMAT: &str = "bt-submit watch state 1";

/// A file that was submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub job: u64,
    /// How the file looked when it was submitted (for the record only).
    pub look: Look,
}

/// A submission begun and not known to have ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub file: String,
    /// The `--comment` of its job, unique to this watch and this file.
    pub marker: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unique to one state file; the prefix of its jobs' comments.
    pub watch_id: String,
    /// The watched folder, absolute.
    pub folder: PathBuf,
    /// What each job was submitted for.
    pub each: Each,
    pub submitted: BTreeMap<String, Submitted>,
    /// Paths that were there when a watch started with `--skip-existing`:
    /// never submitted, like the submitted ones.
    pub skipped: BTreeSet<String>,
    pub submitting: Option<Intent>,
    next_marker: u64,
}

impl Record {
    pub fn new(watch_id: String, folder: PathBuf, each: Each) -> Record {
        Record {
            watch_id,
            folder,
            each,
            submitted: BTreeMap::new(),
            skipped: BTreeSet::new(),
            submitting: None,
            next_marker: 1,
        }
    }

    /// The start of every comment this watch's jobs carry.
    pub fn marker_prefix(&self) -> String {
        format!("bt-submit-watch:{}:", self.watch_id)
    }

    /// Records that `file` is about to be submitted; returns its marker.
    pub fn begin(&mut self, file: &str) -> String {
        let marker = format!("{}{}", self.marker_prefix(), self.next_marker);
        self.next_marker += 1;
        self.submitting = Some(Intent {
            file: file.to_owned(),
            marker: marker.clone(),
        });
        marker
    }

    /// The submission under way ended with a job.
    pub fn finish(&mut self, file: &str, job: u64, look: Look) {
        self.submitted
            .insert(file.to_owned(), Submitted { job, look });
        if self.submitting.as_ref().is_some_and(|i| i.file == file) {
            self.submitting = None;
        }
    }

    /// The submission under way is known to have made no job.
    /// Whether `file` is never to be submitted (again): submitted, or skipped.
    pub fn is_done(&self, file: &str) -> bool {
        self.submitted.contains_key(file) || self.skipped.contains(file)
    }

    pub fn abandon(&mut self) {
        self.submitting = None;
    }

    pub fn render(&self) -> String {
        let submitted: serde_json::Map<String, Value> = self
            .submitted
            .iter()
            .map(|(file, s)| {
                let mut entry = json!({
                    "job": s.job,
                    "size": s.look.size,
                    "mtimeNs": s.look.mtime_ns.to_string(),
                });
                if self.each == Each::Folder {
                    entry["files"] = s.look.files.into();
                }
                (file.clone(), entry)
            })
            .collect();
        let value = json!({
            "format": FORMAT,
            "watchId": self.watch_id,
            "folder": self.folder.to_string_lossy(),
            "each": self.each.name(),
            "nextMarker": self.next_marker,
            "submitting": self.submitting.as_ref().map(|i| json!({"file": i.file, "marker": i.marker})),
            "submitted": submitted,
            "skipped": self.skipped,
        });
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a state file's text; the error says which key is wrong.
    pub fn parse(text: &str) -> Result<Record, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("it is not valid JSON: {e}"))?;
        if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(format!("its \"format\" is not \"{FORMAT}\""));
        }
        let string = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("\"{key}\" is missing or not a string"))
        };
        let watch_id = string("watchId")?;
        let folder = PathBuf::from(string("folder")?);
        // Written before scan folders could be watched: a watch of files.
        let each = match value.get("each").map(Value::as_str) {
            None => Each::File,
            Some(Some(name)) if name == Each::File.name() => Each::File,
            Some(Some(name)) if name == Each::Folder.name() => Each::Folder,
            Some(_) => {
                return Err(format!(
                    "\"each\" is not \"{}\" or \"{}\"",
                    Each::File.name(),
                    Each::Folder.name()
                ))
            }
        };
        let next_marker = value
            .get("nextMarker")
            .and_then(Value::as_u64)
            .ok_or("\"nextMarker\" is missing or not a number")?;
        let submitting = match value.get("submitting") {
            None | Some(Value::Null) => None,
            Some(intent) => {
                let field = |key: &str| {
                    intent
                        .get(key)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| format!("\"submitting\".\"{key}\" is missing"))
                };
                Some(Intent {
                    file: field("file")?,
                    marker: field("marker")?,
                })
            }
        };
        let mut submitted = BTreeMap::new();
        let files = value
            .get("submitted")
            .and_then(Value::as_object)
            .ok_or("\"submitted\" is missing or not an object")?;
        for (file, entry) in files {
            let bad = || format!("\"submitted\".\"{file}\" needs \"job\", \"size\", \"mtimeNs\"");
            let files = match entry.get("files") {
                None => 1,
                Some(count) => count
                    .as_u64()
                    .ok_or_else(|| format!("\"submitted\".\"{file}\".\"files\" is not a number"))?,
            };
            let job = entry.get("job").and_then(Value::as_u64).ok_or_else(bad)?;
            let size = entry.get("size").and_then(Value::as_u64).ok_or_else(bad)?;
            let mtime_ns = entry
                .get("mtimeNs")
                .and_then(Value::as_str)
                .and_then(|t| t.parse().ok())
                .ok_or_else(bad)?;
            submitted.insert(
                file.clone(),
                Submitted {
                    job,
                    look: Look {
                        size,
                        mtime_ns,
                        files,
                    },
                },
            );
        }
        // Optional: states written before --skip-existing have none.
        let skipped = match value.get("skipped") {
            None => BTreeSet::new(),
            Some(list) => list
                .as_array()
                .and_then(|names| {
                    names
                        .iter()
                        .map(|name| name.as_str().map(str::to_owned))
                        .collect::<Option<BTreeSet<String>>>()
                })
                .ok_or("\"skipped\" is not a list of paths")?,
        };
        Ok(Record {
            watch_id,
            folder,
            each,
            submitted,
            skipped,
            submitting,
            next_marker,
        })
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
    Ok(Some(record))
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
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(StateError::Invalid {
                path: path.to_path_buf(),
                why: "it names no file".to_owned(),
            });
        };
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
        let record = match read_record(&folder_handle, name, &path, folder, each)? {
            Some(record) => record,
            None => {
                let id = random_id().map_err(io_error)?;
                Record::new(id, folder.to_path_buf(), each)
            }
        };
        let state = StateFile {
            path,
            folder: folder_handle,
            name: name.to_os_string(),
            mode,
            _lock: lock,
        };
        Ok((state, record))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state of the watch of `folder` as it is on disk, for `--dry-run`:
    /// nothing is created, locked or written; `None` when there is none yet.
    pub fn peek(path: &Path, folder: &Path, each: Each) -> Result<Option<Record>, StateError> {
        let io_error = |error| StateError::Io {
            path: path.to_path_buf(),
            error,
        };
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(StateError::Invalid {
                path: path.to_path_buf(),
                why: "it names no file".to_owned(),
            });
        };
        let real_parent = match fs::canonicalize(parent) {
            Ok(real) => real,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error(error)),
        };
        let folder_handle = Folder::open_root(&real_parent).map_err(io_error)?;
        read_record(&folder_handle, name, &real_parent.join(name), folder, each)
    }

    /// Replaces the file with `record`: a new temporary file beside it
    /// (created exclusively, after removing whatever had its name), fsync,
    /// rename, fsync of the folder.
    pub fn save(&self, record: &Record) -> Result<(), StateError> {
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
        self.folder.sync().map_err(io_error)
    }
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
