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
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "bt-submit-watch-state-{label}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn look() -> Look {
        Look {
            size: 42,
            mtime_ns: 1_700_000_000_123_456_789,
            files: 1,
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut record = Record::new("0123abcd".into(), "/gpfs/raw".into(), Each::File);
        let marker = record.begin("scan 1/a.h5");
        record.finish("scan 1/a.h5", 17, look());
        let next = record.begin("b\"quoted\".h5");
        assert_ne!(marker, next);
        assert!(next.starts_with("bt-submit-watch:0123abcd:"));
        assert_eq!(Record::parse(&record.render()), Ok(record));
    }

    #[test]
    fn a_finished_submission_is_no_longer_under_way() {
        let mut record = Record::new("id".into(), "/d".into(), Each::File);
        record.begin("a");
        record.finish("a", 5, look());
        assert_eq!(record.submitting, None);
        assert_eq!(record.submitted["a"].job, 5);
        record.begin("b");
        record.abandon();
        assert_eq!(record.submitting, None);
        assert!(!record.submitted.contains_key("b"));
    }

    #[test]
    fn a_damaged_state_file_says_what_is_wrong() {
        assert!(Record::parse("{").unwrap_err().contains("not valid JSON"));
        assert!(Record::parse("{\"format\": \"x\"}")
            .unwrap_err()
            .contains("\"format\""));
        let mut value: Value =
            serde_json::from_str(&Record::new("i".into(), "/d".into(), Each::File).render())
                .unwrap();
        value["submitted"] = json!({"a": {"job": 1}});
        assert!(Record::parse(&value.to_string())
            .unwrap_err()
            .contains("\"submitted\".\"a\""));
    }

    #[test]
    fn the_state_survives_a_reopen_and_keeps_its_id() {
        let dir = temp_dir("reopen");
        let path = dir.join("sub/state.json");
        let (file, mut record) =
            StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
        record.begin("x");
        record.finish("x", 9, look());
        record.begin("y");
        file.save(&record).unwrap();
        drop(file);
        let (_file, again) =
            StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
        assert_eq!(again, record);
        assert_eq!(again.submitting.unwrap().file, "y");
        assert!(!dir.join("state.json.new").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_watches_cannot_share_a_state_file() {
        let dir = temp_dir("lock");
        let path = dir.join("state.json");
        let (_held, _) =
            StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
        assert!(matches!(
            StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine),
            Err(StateError::InUse { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_refusal_of_a_second_watch_names_the_first_one() {
        let dir = temp_dir("holder");
        let path = dir.join("state.json");
        let (_held, _) =
            StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
        let Err(refused) =
            StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine)
        else {
            panic!("a second watch took the lock");
        };
        let said = refused.to_string();
        assert!(
            said.contains(&format!("pid {} on {}", std::process::id(), os::hostname())),
            "{said}"
        );
        assert!(said.contains(" since 20"), "{said}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn skipped_paths_are_kept_and_count_as_done() {
        let mut record = Record::new("id".to_owned(), PathBuf::from("/data"), Each::File);
        record.skipped.insert("old.h5".to_owned());
        let again = Record::parse(&record.render()).unwrap();
        assert_eq!(again, record);
        assert!(again.is_done("old.h5"));
        assert!(!again.is_done("new.h5"));
    }

    #[test]
    fn a_peek_creates_locks_and_writes_nothing() {
        let dir = temp_dir("peek");
        let path = dir.join("sub").join("state.json");
        assert!(StateFile::peek(&path, Path::new("/data"), Each::File)
            .unwrap()
            .is_none());
        assert!(!dir.join("sub").exists());
        let (file, mut record) =
            StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
        record.finish(
            "a",
            5,
            Look {
                size: 1,
                mtime_ns: 2,
                files: 1,
            },
        );
        file.save(&record).unwrap();
        // Even while a watch holds the lock.
        let seen = StateFile::peek(&path, Path::new("/data"), Each::File).unwrap();
        assert_eq!(seen, Some(record));
        assert!(matches!(
            StateFile::peek(&path, Path::new("/other"), Each::File),
            Err(StateError::Invalid { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_file_of_another_folder_is_refused() {
        let dir = temp_dir("folder");
        let path = dir.join("state.json");
        let (file, record) =
            StateFile::open(&path, Path::new("/data/a"), Each::File, Sharing::OnlyMine).unwrap();
        file.save(&record).unwrap();
        drop(file);
        let refused = StateFile::open(&path, Path::new("/data/b"), Each::File, Sharing::OnlyMine)
            .err()
            .unwrap();
        assert!(refused
            .to_string()
            .contains("belongs to the watch of /data/a"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_file_of_the_other_kind_of_watch_is_refused() {
        let dir = temp_dir("each");
        let path = dir.join("state.json");
        let (file, record) =
            StateFile::open(&path, Path::new("/data"), Each::Folder, Sharing::OnlyMine).unwrap();
        file.save(&record).unwrap();
        drop(file);
        let refused = StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine)
            .err()
            .unwrap();
        assert!(refused
            .to_string()
            .contains("a watch that submits each folder, not each file"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_scan_folder_record_keeps_its_file_count_and_an_old_record_is_of_files() {
        let mut record = Record::new("f".into(), "/raw".into(), Each::Folder);
        record.begin("scan_1");
        let scan = Look {
            files: 1200,
            ..look()
        };
        record.finish("scan_1", 3, scan);
        assert_eq!(Record::parse(&record.render()), Ok(record));
        let mut old: Value =
            serde_json::from_str(&Record::new("o".into(), "/d".into(), Each::File).render())
                .unwrap();
        old.as_object_mut().unwrap().remove("each");
        assert_eq!(Record::parse(&old.to_string()).unwrap().each, Each::File);
        old["each"] = json!("scan");
        assert!(Record::parse(&old.to_string())
            .unwrap_err()
            .contains("\"each\""));
    }

    #[test]
    fn links_planted_beside_the_state_are_neither_followed_nor_written_through() {
        let dir = temp_dir("planted");
        let victim = dir.join("private.txt");
        fs::write(&victim, b"mine").unwrap();
        let path = dir.join("state.json");
        std::os::unix::fs::symlink(&victim, dir.join("state.json.new")).unwrap();
        let (file, record) =
            StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
        file.save(&record).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"mine");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        drop(file);

        let lock_target = dir.join("created-by-lock");
        let other = dir.join("other.json");
        std::os::unix::fs::symlink(&lock_target, dir.join("other.json.lock")).unwrap();
        let refused = StateFile::open(&other, Path::new("/data"), Each::File, Sharing::OnlyMine);
        assert!(matches!(refused, Err(StateError::Unsafe { .. })));
        assert!(!lock_target.exists());

        std::os::unix::fs::symlink(&victim, dir.join("linked.json")).unwrap();
        let refused = StateFile::open(
            &dir.join("linked.json"),
            Path::new("/data"),
            Each::File,
            Sharing::OnlyMine,
        );
        assert!(matches!(refused, Err(StateError::Unsafe { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_reached_through_a_linked_folder_shares_the_lock() {
        let dir = temp_dir("linked-folder");
        fs::create_dir(dir.join("real")).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("via-link")).unwrap();
        let (held, _) = StateFile::open(
            &dir.join("real/state.json"),
            Path::new("/data"),
            Each::File,
            Sharing::OnlyMine,
        )
        .unwrap();
        let second = StateFile::open(
            &dir.join("via-link/state.json"),
            Path::new("/data"),
            Each::File,
            Sharing::OnlyMine,
        );
        assert!(matches!(second, Err(StateError::InUse { .. })));
        assert_eq!(
            held.path(),
            dir.join("real").canonicalize().unwrap().join("state.json")
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_folder_others_can_write_is_refused_unless_shared_or_sticky() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("shared");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).unwrap();
        let path = dir.join("state.json");
        let refused = StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine);
        let Err(StateError::Unsafe { why, .. }) = refused else {
            panic!("a group-writable folder was taken");
        };
        assert!(why.contains("written by others"), "{why}");
        assert!(StateFile::open(&path, Path::new("/data"), Each::File, Sharing::Shared).is_ok());
        assert!(folder_is_shared(0o777));
        assert!(!folder_is_shared(0o1777));
        assert!(!folder_is_shared(0o755));
        fs::remove_dir_all(&dir).unwrap();
    }
}
