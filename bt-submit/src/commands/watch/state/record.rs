//! What the state holds, and how it is written: the record of a watch (what
//! was submitted, skipped, refused or failed, and the submission under way),
//! each change to it as one journal line, and the snapshot's text. Pure: the
//! files are the business of state.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value};

use super::super::complete::Look;
use super::super::Each;

/// The snapshot's format. A snapshot of format 2 has a journal beside it;
/// a bt-submit that knows only format 1 refuses it rather than ignore the
/// journal and submit its files again.
const FORMAT: &str = "bt-submit watch state 2";
pub(super) const FORMAT_WITHOUT_JOURNAL: &str = "bt-submit watch state 1";

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
    pub(super) fn line(&self) -> String {
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

    pub(super) fn parse(line: &str) -> Result<Change, String> {
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

    /// How often `file` was tried across restarts: its jobs (earlier ones
    /// included) and sbatch's refusals.
    pub fn attempts(&self, file: &str) -> u64 {
        let earlier = self.earlier_jobs.get(file).map_or(0, Vec::len) as u64;
        let job = u64::from(self.submitted.contains_key(file));
        let refusals = self.refused.get(file).map_or(0, |r| u64::from(r.attempts));
        earlier + job + refusals
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

    pub(super) fn marker(&self, number: u64) -> String {
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
