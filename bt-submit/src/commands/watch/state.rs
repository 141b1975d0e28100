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

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::beneath::Folder;
use super::complete::Look;
use super::{os, Each};

/// The snapshot's format. A snapshot of format 2 has a journal beside it;
/// a bt-submit that knows only format 1 refuses it rather than ignore the
/// journal and submit its files again.
const FORMAT: &str = "bt-submit watch state 2";
const FORMAT_WITHOUT_JOURNAL: &str = "bt-submit watch state 1";

/// The fewest journal lines that make a compaction worth its rewrite.
const COMPACT_AFTER_AT_LEAST: usize = 1000;

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

/// One change of the state: a line of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `file` is about to be submitted, its job carrying marker `number`.
    Begin { file: String, number: u64 },
    /// `file`'s submission made job `job`.
    Finish { file: String, job: u64, look: Look },
    /// `file`'s submission is known to have made no job.
    Abandon { file: String },
    /// sbatch refused `file` for the `attempts`-th time, saying `error`.
    Refused {
        file: String,
        attempts: u32,
        error: String,
    },
    /// `file`'s job is set aside (`bt-submit watch resubmit`): the file is
    /// submitted again, once, as if new.
    Resubmit { file: String },
    /// `files`, there when a watch started with `--skip-existing`, are never
    /// submitted: one line for all of them.
    Skip { files: Vec<String> },
    /// `file` was refused too often in a way no retry can fix, the last
    /// time saying `reason`, with the plan `plan`: it is not tried again
    /// while the watch submits with that plan.
    Fail {
        file: String,
        reason: String,
        plan: String,
    },
    /// `file`, failed, is tried again (the plan changed, or `watch resubmit`).
    Retry { file: String },
}

impl Change {
    /// The journal line: one JSON object and a newline (JSON escapes any
    /// newline in a name, so one change is always one line).
    fn line(&self) -> String {
        let value = match self {
            Change::Begin { file, number } => json!({"begin": file, "marker": number}),
            Change::Finish { file, job, look } => {
                let mut value = look_json(*job, look);
                value["finish"] = file.as_str().into();
                value
            }
            Change::Abandon { file } => json!({"abandon": file}),
            Change::Refused {
                file,
                attempts,
                error,
            } => json!({"refused": file, "attempts": attempts, "error": error}),
            Change::Resubmit { file } => json!({"resubmit": file}),
            Change::Skip { files } => json!({ "skip": files }),
            Change::Fail { file, reason, plan } => {
                json!({"failed": file, "reason": reason, "plan": plan})
            }
            Change::Retry { file } => json!({ "retry": file }),
        };
        let mut line = value.to_string();
        line.push('\n');
        line
    }

    fn parse(line: &str) -> Result<Change, String> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("it is not valid JSON: {e}"))?;
        let name = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        if let Some(file) = name("begin") {
            let number = value
                .get("marker")
                .and_then(Value::as_u64)
                .ok_or("\"marker\" is missing or not a number")?;
            Ok(Change::Begin { file, number })
        } else if let Some(file) = name("finish") {
            let (job, look) = parse_look(&value, &format!("\"finish\" of {file:?}"))?;
            Ok(Change::Finish { file, job, look })
        } else if let Some(file) = name("abandon") {
            Ok(Change::Abandon { file })
        } else if let Some(file) = name("refused") {
            let (attempts, error) = parse_refusal(&value, &format!("\"refused\" of {file:?}"))?;
            Ok(Change::Refused {
                file,
                attempts,
                error,
            })
        } else if let Some(file) = name("resubmit") {
            Ok(Change::Resubmit { file })
        } else if let Some(files) = value.get("skip") {
            Ok(Change::Skip {
                files: paths(files).ok_or("\"skip\" is not a list of paths")?,
            })
        } else if let Some(file) = name("failed") {
            let failed = parse_failed(&value, &format!("\"failed\" of {file:?}"))?;
            Ok(Change::Fail {
                file,
                reason: failed.reason,
                plan: failed.plan,
            })
        } else if let Some(file) = name("retry") {
            Ok(Change::Retry { file })
        } else {
            Err(
                "it has none of \"begin\", \"finish\", \"abandon\", \"refused\", \"resubmit\", \
                 \"skip\", \"failed\", \"retry\""
                    .to_owned(),
            )
        }
    }
}

/// A JSON list of paths, as the snapshot and the journal write them.
fn paths<T: FromIterator<String>>(list: &Value) -> Option<T> {
    list.as_array()?
        .iter()
        .map(|name| name.as_str().map(str::to_owned))
        .collect()
}

/// A failed file's last refusal and plan, as the snapshot and the journal
/// write them.
fn parse_failed(entry: &Value, what: &str) -> Result<Failed, String> {
    let text = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_owned);
    match (text("reason"), text("plan")) {
        (Some(reason), Some(plan)) => Ok(Failed { reason, plan }),
        _ => Err(format!("{what} needs \"reason\" and \"plan\"")),
    }
}

/// A refusal's count and message, as the snapshot and the journal write them.
fn parse_refusal(entry: &Value, what: &str) -> Result<(u32, String), String> {
    let attempts = entry
        .get("attempts")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok());
    let error = entry.get("error").and_then(Value::as_str);
    match (attempts, error) {
        (Some(attempts), Some(error)) => Ok((attempts, error.to_owned())),
        _ => Err(format!("{what} needs \"attempts\" and \"error\"")),
    }
}

/// A submitted file's job and look as the snapshot and the journal write them.
fn look_json(job: u64, look: &Look) -> Value {
    json!({
        "job": job,
        "size": look.size,
        "mtimeNs": look.mtime_ns.to_string(),
        "files": look.files,
    })
}

/// Reads what [`look_json`] wrote; `what` names the entry in the error. An
/// entry without "files" (written before scan folders could be watched) is
/// one file.
fn parse_look(entry: &Value, what: &str) -> Result<(u64, Look), String> {
    let bad = || format!("{what} needs \"job\", \"size\", \"mtimeNs\"");
    let files = match entry.get("files") {
        None => 1,
        Some(count) => count
            .as_u64()
            .ok_or_else(|| format!("{what}: \"files\" is not a number"))?,
    };
    let job = entry.get("job").and_then(Value::as_u64).ok_or_else(bad)?;
    let size = entry.get("size").and_then(Value::as_u64).ok_or_else(bad)?;
    let mtime_ns = entry
        .get("mtimeNs")
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
        .ok_or_else(bad)?;
    Ok((
        job,
        Look {
            size,
            mtime_ns,
            files,
        },
    ))
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
    /// Files sbatch refused: how often, and what it said last. Kept once the
    /// file is submitted, for `watch status`.
    pub refused: BTreeMap<String, Refusal>,
    /// The jobs of files submitted again (`watch resubmit`), oldest first.
    pub earlier_jobs: BTreeMap<String, Vec<u64>>,
    /// Files refused for good too often: not submitted while the plan they
    /// failed with is the watch's plan.
    pub failed: BTreeMap<String, Failed>,
    next_marker: u64,
}

/// Why a file failed, and with which plan (its one-line summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub reason: String,
    pub plan: String,
}

/// How often sbatch refused a file, and what it said last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub attempts: u32,
    pub error: String,
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
            refused: BTreeMap::new(),
            earlier_jobs: BTreeMap::new(),
            failed: BTreeMap::new(),
            next_marker: 1,
        }
    }

    /// The start of every comment this watch's jobs carry.
    pub fn marker_prefix(&self) -> String {
        format!("bt-submit-watch:{}:", self.watch_id)
    }

    /// The change that records `file` as about to be submitted, and the
    /// comment its job is to carry.
    pub fn begin(&self, file: &str) -> (Change, String) {
        let begin = Change::Begin {
            file: file.to_owned(),
            number: self.next_marker,
        };
        (begin, self.marker(self.next_marker))
    }

    fn marker(&self, number: u64) -> String {
        format!("{}{number}", self.marker_prefix())
    }

    /// Applies one change; the one place where the state changes, whether
    /// live or replayed from the journal.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Begin { file, number } => {
                self.submitting = Some(Intent {
                    file: file.clone(),
                    marker: self.marker(*number),
                });
                self.next_marker = self.next_marker.max(number + 1);
            }
            Change::Finish { file, job, look } => {
                self.submitted.insert(
                    file.clone(),
                    Submitted {
                        job: *job,
                        look: *look,
                    },
                );
                if self.submitting.as_ref().is_some_and(|i| &i.file == file) {
                    self.submitting = None;
                }
                // Submitted after all (found by its comment): failed no more.
                self.failed.remove(file);
            }
            Change::Abandon { file } => {
                if self.submitting.as_ref().is_some_and(|i| &i.file == file) {
                    self.submitting = None;
                }
            }
            Change::Refused {
                file,
                attempts,
                error,
            } => {
                self.refused.insert(
                    file.clone(),
                    Refusal {
                        attempts: *attempts,
                        error: error.clone(),
                    },
                );
            }
            Change::Resubmit { file } => {
                // Replayed over a snapshot that has it already, the job is
                // gone from `submitted` and nothing is added twice.
                if let Some(submitted) = self.submitted.remove(file) {
                    self.earlier_jobs
                        .entry(file.clone())
                        .or_default()
                        .push(submitted.job);
                }
            }
            Change::Skip { files } => self.skipped.extend(files.iter().cloned()),
            Change::Fail { file, reason, plan } => {
                self.failed.insert(
                    file.clone(),
                    Failed {
                        reason: reason.clone(),
                        plan: plan.clone(),
                    },
                );
            }
            Change::Retry { file } => {
                self.failed.remove(file);
            }
        }
    }

    /// Whether `file` is never to be submitted (again): submitted, or skipped.
    pub fn is_done(&self, file: &str) -> bool {
        self.submitted.contains_key(file) || self.skipped.contains(file)
    }

    pub fn render(&self) -> String {
        let submitted: serde_json::Map<String, Value> = self
            .submitted
            .iter()
            .map(|(file, s)| (file.clone(), look_json(s.job, &s.look)))
            .collect();
        let value = json!({
            "format": FORMAT,
            "watchId": self.watch_id,
            "folder": self.folder.to_string_lossy(),
            "each": self.each.name(),
            "nextMarker": self.next_marker,
            "submitting": self.submitting.as_ref().map(|i| json!({"file": i.file, "marker": i.marker})),
            "submitted": submitted,
            "refused": self.refused.iter().map(|(file, r)| {
                (file.clone(), json!({"attempts": r.attempts, "error": r.error}))
            }).collect::<serde_json::Map<String, Value>>(),
            "earlierJobs": self.earlier_jobs,
            "skipped": self.skipped,
            "failed": self.failed.iter().map(|(file, f)| {
                (file.clone(), json!({"reason": f.reason, "plan": f.plan}))
            }).collect::<serde_json::Map<String, Value>>(),
        });
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a state file's text; the error says which key is wrong.
    pub fn parse(text: &str) -> Result<Record, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("it is not valid JSON: {e}"))?;
        let format = value.get("format").and_then(Value::as_str);
        if format != Some(FORMAT) && format != Some(FORMAT_WITHOUT_JOURNAL) {
            return Err(format!(
                "its \"format\" is not \"{FORMAT}\" (or the older \"{FORMAT_WITHOUT_JOURNAL}\")"
            ));
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
            let (job, look) = parse_look(entry, &format!("\"submitted\".\"{file}\""))?;
            submitted.insert(file.clone(), Submitted { job, look });
        }
        // Both written since the journal came (format 2); absent before.
        let mut refused = BTreeMap::new();
        if let Some(entries) = value.get("refused") {
            let entries = entries.as_object().ok_or("\"refused\" is not an object")?;
            for (file, entry) in entries {
                let (attempts, error) = parse_refusal(entry, &format!("\"refused\".\"{file}\""))?;
                refused.insert(file.clone(), Refusal { attempts, error });
            }
        }
        let earlier_jobs = match value.get("earlierJobs") {
            None => BTreeMap::new(),
            Some(jobs) => serde_json::from_value(jobs.clone())
                .map_err(|_| "\"earlierJobs\" is not an object of lists of job ids".to_owned())?,
        };
        // Optional: states written before --skip-existing have none.
        let skipped = match value.get("skipped") {
            None => BTreeSet::new(),
            Some(list) => paths(list).ok_or("\"skipped\" is not a list of paths")?,
        };
        // Written since failures are kept; absent before.
        let mut failed = BTreeMap::new();
        if let Some(entries) = value.get("failed") {
            let entries = entries.as_object().ok_or("\"failed\" is not an object")?;
            for (file, entry) in entries {
                failed.insert(
                    file.clone(),
                    parse_failed(entry, &format!("\"failed\".\"{file}\""))?,
                );
            }
        }
        Ok(Record {
            watch_id,
            folder,
            each,
            submitted,
            skipped,
            submitting,
            refused,
            earlier_jobs,
            failed,
            next_marker,
        })
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
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(StateError::Invalid {
                path: path.to_path_buf(),
                why: "it names no file".to_owned(),
            });
        };
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
