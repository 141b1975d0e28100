//! Each thing the running watch logs, as one typed event with its two
//! renderings side by side, so that the two always say the same: the human
//! line and, for `--format json`, one JSON object.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::super::{Each, Patterns};
use super::{named, secs};
use crate::cli::Format;

/// What happened, with what the log says of it.
#[derive(Debug)]
pub enum LogEvent<'a> {
    /// The watch starts: what it watches, how, with which state and plan.
    Watching {
        folder: &'a Path,
        each: Each,
        patterns: &'a Patterns,
        done_file: Option<&'a str>,
        /// `None` when only the done file makes a scan folder complete.
        settle: Option<Duration>,
        poll_interval: Duration,
        inotify: bool,
        max_in_flight: Option<usize>,
        state: &'a Path,
        submitted_before: usize,
        plan: &'a str,
    },
    /// Files failed with this plan before are left failed at the start.
    FailedBefore {
        each: Each,
        count: usize,
    },
    /// `--skip-existing` recorded `count` files as skipped.
    SkippedExisting {
        each: Each,
        count: usize,
        skipped_in_all: usize,
    },
    /// inotify cannot be had at the start, or failed later.
    NoInotify {
        error: String,
        at_start: bool,
        poll_interval: Duration,
    },
    /// A folder below the watched one got no inotify watch.
    NoInotifyWatch {
        folder: &'a str,
        error: String,
    },
    /// A file (or folder) the watch cannot submit, said once.
    Unusable {
        file: &'a str,
        why: &'a str,
    },
    /// A file gone before it was complete.
    Disappeared {
        file: &'a str,
    },
    /// A file's job was made and recorded.
    Submitted {
        file: &'a str,
        job: u64,
        node: Option<&'a str>,
        why: String,
        /// Jobs and refusals of the file so far, this one included, across restarts.
        attempt: u64,
    },
    /// A file's job was made, but the state's disk is full: recorded later.
    SubmittedNotRecorded {
        file: &'a str,
        job: u64,
    },
    /// A submission whose answer was lost (the connection broke off): not
    /// a refusal; Slurm is asked for its job by its comment at once.
    AnswerLost {
        file: &'a str,
        error: &'a str,
    },
    /// sbatch refused a file; it is tried again after `retry_in`.
    Refused {
        file: &'a str,
        error: &'a str,
        /// Whether no retry can fix it unless something changes.
        permanent: bool,
        retry_in: Duration,
        /// Refusals of the file in this run of the watch.
        failures: u32,
        attempt: u64,
    },
    /// A file refused for good too often: not tried again until the plan changes.
    Failed {
        file: &'a str,
        error: &'a str,
        refusals: u32,
    },
    /// Slurm cannot be asked whether a file's interrupted submission made a job.
    Unresolved {
        file: &'a str,
        error: String,
    },
    /// Slurm cannot be asked how many of the watch's jobs are in flight.
    CannotCountJobs {
        error: String,
    },
    /// `--max-in-flight` jobs are pending or running.
    WaitingForRoom {
        in_flight: usize,
        max: usize,
    },
    /// The state's disk is full: nothing is submitted until it can be recorded.
    WaitingForDisk {
        error: String,
    },
    /// The state can be written again after a full disk.
    StateWritable,
    /// The journal could not be folded into the state file.
    JournalNotFolded {
        error: String,
    },
    /// SIGHUP asks for the metadata to be read again.
    RereadRequested,
    /// The metadata cannot be read again; the watch keeps its plan.
    MetadataUnreadable {
        error: String,
        plan: &'a str,
    },
    /// The metadata changed and the plan with it.
    PlanChanged {
        old: &'a str,
        new: &'a str,
    },
    /// The metadata changed, but no plan can be made from it.
    NoPlan {
        error: String,
        plan: &'a str,
    },
    /// Files failed with another plan are tried again.
    FailedTriedAgain {
        each: Each,
        count: usize,
    },
    Counters(Counters),
    /// SIGINT or SIGTERM: the watch stops.
    Stopping {
        signal: &'a str,
        each: Each,
        submitted_in_run: usize,
        waiting: usize,
    },
}

/// The watch's counters, as a long watch logs them now and then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Submitted or waiting to be complete.
    pub seen: usize,
    pub waiting: usize,
    pub submitted: usize,
    /// As Slurm last counted them plus the jobs submitted since (never too
    /// low); `None` without `--max-in-flight`, when Slurm is not asked.
    pub in_flight: Option<usize>,
    /// Refused by sbatch and not submitted yet, failed ones included.
    pub refused: usize,
    pub failed: usize,
}

impl LogEvent<'_> {
    /// The event's name in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            LogEvent::Watching { .. } => "watching",
            LogEvent::FailedBefore { .. } => "failed-before",
            LogEvent::SkippedExisting { .. } => "skipped-existing",
            LogEvent::NoInotify { .. } => "no-inotify",
            LogEvent::NoInotifyWatch { .. } => "no-inotify-watch",
            LogEvent::Unusable { .. } => "unusable",
            LogEvent::Disappeared { .. } => "disappeared",
            LogEvent::Submitted { .. } => "submitted",
            LogEvent::SubmittedNotRecorded { .. } => "submitted-not-recorded",
            LogEvent::AnswerLost { .. } => "answer-lost",
            LogEvent::Refused { .. } => "refused",
            LogEvent::Failed { .. } => "failed",
            LogEvent::Unresolved { .. } => "unresolved",
            LogEvent::CannotCountJobs { .. } => "cannot-count-jobs",
            LogEvent::WaitingForRoom { .. } => "waiting-for-room",
            LogEvent::WaitingForDisk { .. } => "waiting-for-disk",
            LogEvent::StateWritable => "state-writable",
            LogEvent::JournalNotFolded { .. } => "journal-not-folded",
            LogEvent::RereadRequested => "reread-requested",
            LogEvent::MetadataUnreadable { .. } => "metadata-unreadable",
            LogEvent::PlanChanged { .. } => "plan-changed",
            LogEvent::NoPlan { .. } => "no-plan",
            LogEvent::FailedTriedAgain { .. } => "failed-tried-again",
            LogEvent::Counters(_) => "counters",
            LogEvent::Stopping { .. } => "stopping",
        }
    }

    /// The human line, without the time. Names below the watched folder are
    /// [`named`], so that none can start a forged line; a newline in a
    /// message from elsewhere (sbatch, ssh, the system) is escaped, so that
    /// the event stays one line.
    pub fn text(&self) -> String {
        let text = match self {
            LogEvent::Watching {
                folder,
                each,
                patterns,
                done_file,
                settle,
                poll_interval,
                inotify,
                max_in_flight,
                state,
                submitted_before,
                plan,
            } => {
                let what = match (each, done_file) {
                    (Each::File, _) => format!("files {patterns}"),
                    (Each::Folder, None) => format!("scan folders {patterns}"),
                    (Each::Folder, Some(name)) => {
                        format!("scan folders {patterns}, each complete once it holds {name}")
                    }
                };
                let settle = settle
                    .map(|settle| format!("settle {} s, ", secs(settle)))
                    .unwrap_or_default();
                format!(
                    "watching {} for {what} ({settle}looking every {} s{}{}), state {}: {} {} \
                     submitted before; plan {plan}",
                    folder.display(),
                    secs(*poll_interval),
                    if *inotify { ", inotify" } else { "" },
                    max_in_flight
                        .map(|n| format!(", at most {n} jobs in flight"))
                        .unwrap_or_default(),
                    state.display(),
                    submitted_before,
                    each.plural(),
                )
            }
            LogEvent::FailedBefore { each, count } => format!(
                "{count} {} failed with this plan before, not tried again until it changes \
                 ('bt-submit watch status' names them, 'bt-submit watch resubmit' tries them again)",
                each.plural()
            ),
            LogEvent::SkippedExisting {
                each,
                count,
                skipped_in_all,
            } => format!(
                "--skip-existing: {count} {} already there recorded as skipped, never submitted \
                 ({skipped_in_all} skipped in all)",
                each.plural()
            ),
            LogEvent::NoInotify {
                error,
                at_start,
                poll_interval,
            } => format!(
                "inotify {} ({error}); looking every {} s only",
                if *at_start { "is not available" } else { "failed" },
                secs(*poll_interval)
            ),
            LogEvent::NoInotifyWatch { folder, error } => format!(
                "{}: no inotify watch ({error}); its files are found by looking only",
                named(folder)
            ),
            LogEvent::Unusable { file, why } => format!("{}: not submitted: {why}", named(file)),
            LogEvent::Disappeared { file } => format!(
                "{}: not submitted: it disappeared before it was complete",
                named(file)
            ),
            LogEvent::Submitted {
                file,
                job,
                node,
                why,
                attempt: _,
            } => {
                let node = node.map(|node| format!(" on {node}")).unwrap_or_default();
                format!("{} -> job {job}{node} ({why})", named(file))
            }
            LogEvent::SubmittedNotRecorded { file, job } => format!(
                "{}: job {job} made, not yet recorded (the state's disk is full)",
                named(file)
            ),
            LogEvent::AnswerLost { file, error } => format!(
                "{}: {}; asking Slurm for its job by its comment before it is submitted again",
                named(file),
                error
            ),
            LogEvent::Refused {
                file,
                error,
                permanent,
                retry_in,
                failures,
                attempt: _,
            } => format!(
                "{}: not submitted: {error} ({}); trying again in {} s (failure {failures})",
                named(file),
                if *permanent {
                    "refused for good unless something changes"
                } else {
                    "perhaps passing"
                },
                retry_in.as_secs(),
            ),
            LogEvent::Failed {
                file,
                error,
                refusals,
            } => format!(
                "{}: failed: {error}; refused {refusals} times in a way no retry can fix, so it \
                 is not tried again until the beamtime's plan changes (or 'bt-submit watch \
                 resubmit')",
                named(file)
            ),
            LogEvent::Unresolved { file, error } => format!(
                "{}: cannot tell whether its last submission made a job ({error}); nothing is \
                 submitted until Slurm answers",
                named(file)
            ),
            LogEvent::CannotCountJobs { error } => {
                format!("cannot count this watch's jobs in Slurm ({error}); waiting")
            }
            LogEvent::WaitingForRoom { in_flight, max } => format!(
                "waiting: {in_flight} of this watch's jobs are pending or running \
                 (--max-in-flight {max})"
            ),
            LogEvent::WaitingForDisk { error } => format!(
                "{error}: the state's disk is full, so nothing is submitted until it can be \
                 recorded; make room there, the watch goes on by itself"
            ),
            LogEvent::StateWritable => "the state can be written again; going on".to_owned(),
            LogEvent::JournalNotFolded { error } => format!(
                "cannot fold the state's journal into the state file ({error}); every change \
                 stays in the journal, and folding is tried again"
            ),
            LogEvent::RereadRequested => "SIGHUP: reading the beamtime's metadata again".to_owned(),
            LogEvent::MetadataUnreadable { error, plan } => format!(
                "cannot read the beamtime's metadata again ({error}); still submitting with {plan}"
            ),
            LogEvent::PlanChanged { old, new } => {
                format!("the beamtime's metadata changed: plan {old} -> {new}")
            }
            LogEvent::NoPlan { error, plan } => format!(
                "the beamtime's metadata changed, but no plan can be made from it ({error}); \
                 still submitting with {plan}"
            ),
            LogEvent::FailedTriedAgain { each, count } => {
                format!("{count} failed {} tried again with the new plan", each.plural())
            }
            LogEvent::Counters(c) => format!(
                "counters: seen {}, waiting to be complete {}, submitted {}, in flight {}, \
                 refused and not yet submitted {} ({} of them failed)",
                c.seen,
                c.waiting,
                c.submitted,
                c.in_flight.map_or_else(
                    || "not counted (no --max-in-flight)".to_owned(),
                    |n| n.to_string()
                ),
                c.refused,
                c.failed,
            ),
            LogEvent::Stopping {
                signal,
                each,
                submitted_in_run,
                waiting,
            } => format!(
                "stopping on {signal}: {submitted_in_run} {} submitted in this run, {waiting} \
                 waiting to be complete",
                each.plural()
            ),
        };
        if text.contains(['\n', '\r']) {
            text.replace('\n', "\\n").replace('\r', "\\r")
        } else {
            text
        }
    }

    /// The JSON object: `event` (its [`name`](Self::name)) and its fields.
    /// Names are given whole, as JSON strings: JSON's escaping keeps each
    /// object on one line whatever a name holds.
    pub fn json(&self) -> Value {
        let mut value = match self {
            LogEvent::Watching {
                folder,
                each,
                patterns,
                done_file,
                settle,
                poll_interval,
                inotify,
                max_in_flight,
                state,
                submitted_before,
                plan,
            } => json!({
                "folder": folder.to_string_lossy(),
                "each": each.name(),
                "patterns": patterns.texts(),
                "doneFile": done_file,
                "settleSeconds": settle.map(|settle| settle.as_secs_f64()),
                "pollSeconds": poll_interval.as_secs_f64(),
                "inotify": inotify,
                "maxInFlight": max_in_flight,
                "state": state.to_string_lossy(),
                "submittedBefore": submitted_before,
                "plan": plan,
            }),
            LogEvent::FailedBefore { each, count } | LogEvent::FailedTriedAgain { each, count } => {
                json!({ "each": each.name(), "count": count })
            }
            LogEvent::SkippedExisting {
                each,
                count,
                skipped_in_all,
            } => json!({ "each": each.name(), "count": count, "skippedInAll": skipped_in_all }),
            LogEvent::NoInotify {
                error,
                at_start: _,
                poll_interval,
            } => json!({ "error": error, "pollSeconds": poll_interval.as_secs_f64() }),
            LogEvent::NoInotifyWatch { folder, error } => {
                json!({ "folder": relative(folder), "error": error })
            }
            LogEvent::Unusable { file, why } => json!({ "file": relative(file), "error": why }),
            LogEvent::Disappeared { file } => json!({ "file": file }),
            LogEvent::Submitted {
                file,
                job,
                node,
                why,
                attempt,
            } => json!({
                "file": file, "job": job, "node": node, "why": why, "attempt": attempt,
            }),
            LogEvent::SubmittedNotRecorded { file, job } => json!({ "file": file, "job": job }),
            LogEvent::AnswerLost { file, error } => json!({ "file": file, "error": error }),
            LogEvent::Refused {
                file,
                error,
                permanent,
                retry_in,
                failures,
                attempt,
            } => json!({
                "file": file,
                "error": error,
                "permanent": permanent,
                "retrySeconds": retry_in.as_secs(),
                "failuresInRun": failures,
                "attempt": attempt,
            }),
            LogEvent::Failed {
                file,
                error,
                refusals,
            } => json!({ "file": file, "error": error, "refusals": refusals }),
            LogEvent::Unresolved { file, error } => json!({ "file": file, "error": error }),
            LogEvent::CannotCountJobs { error }
            | LogEvent::WaitingForDisk { error }
            | LogEvent::JournalNotFolded { error } => json!({ "error": error }),
            LogEvent::WaitingForRoom { in_flight, max } => {
                json!({ "inFlight": in_flight, "maxInFlight": max })
            }
            LogEvent::StateWritable | LogEvent::RereadRequested => json!({}),
            LogEvent::MetadataUnreadable { error, plan } | LogEvent::NoPlan { error, plan } => {
                json!({ "error": error, "plan": plan })
            }
            LogEvent::PlanChanged { old, new } => json!({ "oldPlan": old, "newPlan": new }),
            LogEvent::Counters(c) => json!({
                "seen": c.seen,
                "waiting": c.waiting,
                "submitted": c.submitted,
                "inFlight": c.in_flight,
                "refused": c.refused,
                "failed": c.failed,
            }),
            LogEvent::Stopping {
                signal,
                each,
                submitted_in_run,
                waiting,
            } => json!({
                "signal": signal,
                "each": each.name(),
                "submittedInRun": submitted_in_run,
                "waiting": waiting,
            }),
        };
        value["event"] = self.name().into();
        value
    }

    /// The line as `format` has it, without its newline.
    pub fn line(&self, format: Format, time: &str) -> String {
        match format {
            Format::Text => format!("{time} {}", self.text()),
            Format::Json => {
                let mut value = self.json();
                value["time"] = time.into();
                value.to_string()
            }
        }
    }
}

/// A path below the watched folder as JSON gives it: whole, "." for the
/// watched folder itself.
fn relative(rel: &str) -> &str {
    if rel.is_empty() {
        "."
    } else {
        rel
    }
}
