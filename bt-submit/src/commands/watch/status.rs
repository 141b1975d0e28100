//! `bt-submit watch status` and `bt-submit watch resubmit`: a watch's state
//! file read, its jobs looked up in Slurm (slurm/jobs.rs), shown per file
//! with totals, and the files whose jobs failed marked to be submitted again.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};

use super::log::named;
use super::state::{Change, Record, StateError, StateFile};
use super::{default_state_file, state_failure, Sharing};
use crate::cli::{Format, WatchStateArgs};
use crate::commands::submit::submitter_for;
use crate::failure::{Failure, Status};
use crate::output::{write_json, write_stdout};
use crate::site::metadata_file::{absolute, load_metadata};
use crate::site::settings::Settings;
use crate::slurm::host::Host;
use crate::slurm::jobs::{job_states, JobState};
use crate::slurm::options::Program;

/// Where a file stands in the watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Standing {
    /// It has a job.
    Submitted,
    /// Its sbatch is under way (or was, when the watch died).
    Submitting,
    /// sbatch refused it and the watch tries again.
    Refused,
    /// Refused too often in a way no retry can fix: not tried again until
    /// the plan changes (or `watch resubmit`).
    Failed,
    /// Its failed job was set aside: the next start submits it again.
    Resubmit,
}

impl Standing {
    fn name(self) -> &'static str {
        match self {
            Standing::Submitted => "submitted",
            Standing::Submitting => "submitting",
            Standing::Refused => "refused",
            Standing::Failed => "failed",
            Standing::Resubmit => "to resubmit",
        }
    }
}

/// One file of the state, as status shows it.
struct Row<'a> {
    file: &'a str,
    standing: Standing,
    job: Option<u64>,
    state: Option<&'a JobState>,
    earlier: &'a [u64],
    attempts: u64,
    last_error: Option<&'a str>,
}

pub fn status(args: WatchStateArgs, settings: &Settings) -> Result<ExitCode, Failure> {
    let path = state_path(&args)?;
    let record = StateFile::peek(&path).map_err(|error| not_readable(error, &args))?;
    let host = host(&args, settings)?;
    let jobs: BTreeSet<u64> = record
        .submitted
        .values()
        .map(|s| s.job)
        .chain(record.earlier_jobs.values().flatten().copied())
        .collect();
    let states = ask(&host, &jobs)?;
    let rows = rows(&record, &states);
    match args.format {
        Format::Text => write_stdout(text(&path, &record, &rows).as_bytes())?,
        Format::Json => write_json(&json_report(&path, &record, &rows))?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn resubmit(args: WatchStateArgs, settings: &Settings) -> Result<ExitCode, Failure> {
    let path = state_path(&args)?;
    let peeked = StateFile::peek(&path).map_err(|error| not_readable(error, &args))?;
    // The lock: never beside a running watch, which could be submitting one
    // of these files right now; and never two resubmits at once.
    let (mut state, mut record) =
        StateFile::open(&path, &peeked.folder, peeked.each, sharing(&args)).map_err(|error| {
            match error {
        StateError::InUse { .. } => Failure::new(
            Status::Usage,
            format!("{error}: resubmit changes the state, which only a stopped watch allows"),
            "stop the watch (SIGTERM or Ctrl-C), run resubmit, then start the watch again: \
                     it submits the marked files once each",
        ),
        other => state_failure(other),
    }
        })?;
    let host = host(&args, settings)?;
    let jobs: BTreeSet<u64> = record.submitted.values().map(|s| s.job).collect();
    let states = ask(&host, &jobs)?;
    let failed: Vec<(String, u64, String)> = record
        .submitted
        .iter()
        .filter_map(|(file, s)| {
            let state = states.get(&s.job)?;
            state
                .failed()
                .then(|| (file.clone(), s.job, state.name().to_owned()))
        })
        .collect();
    let mut out = String::new();
    // Files the watch failed after refusals no retry could fix: tried again
    // with the same plan (the beamtime was fixed without changing it).
    let refused_for_good: Vec<(String, String)> = (record.failed.iter())
        .map(|(file, failed)| (file.clone(), failed.reason.clone()))
        .collect();
    for (file, reason) in &refused_for_good {
        state
            .record(&mut record, Change::Retry { file: file.clone() })
            .map_err(state_failure)?;
        out.push_str(&format!(
            "{}: failed ({}); marked to submit again\n",
            named(file),
            beamtime::untrusted::shown_token(reason)
        ));
    }
    for (file, job, job_state) in &failed {
        state
            .record(&mut record, Change::Resubmit { file: file.clone() })
            .map_err(state_failure)?;
        out.push_str(&format!(
            "{}: job {job} {job_state}; marked to submit again\n",
            named(file)
        ));
    }
    out.push_str(&match failed.len() + refused_for_good.len() {
        0 => "no job or file of this watch failed: nothing marked\n".to_owned(),
        n => format!("{n} marked; start the watch again (as before) to submit each of them once\n"),
    });
    write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn sharing(args: &WatchStateArgs) -> Sharing {
    if args.shared_state {
        Sharing::Shared
    } else {
        Sharing::OnlyMine
    }
}

/// The state file: `--state`, or the one the watch of DIR uses by default.
fn state_path(args: &WatchStateArgs) -> Result<PathBuf, Failure> {
    if let Some(state) = &args.state {
        return absolute(state);
    }
    let Some(folder) = &args.folder else {
        return Err(Failure::new(
            Status::Usage,
            "no watch named",
            "give the watched folder DIR, or the state file with --state FILE",
        ));
    };
    let folder = absolute(folder)?.canonicalize().map_err(|error| {
        Failure::new(
            Status::NoInput,
            format!(
                "cannot find the watched folder {}: {error}",
                folder.display()
            ),
            "name the folder as the watch was started with, or its state with --state FILE",
        )
    })?;
    default_state_file(&folder, args.each, &|name| env::var_os(name)).ok_or_else(|| {
        Failure::new(
            Status::Usage,
            "no default state file: neither XDG_STATE_HOME nor HOME is set",
            "give the state file with --state FILE",
        )
    })
}

fn not_readable(error: StateError, args: &WatchStateArgs) -> Failure {
    let missing = matches!(&error, StateError::Io { error, .. }
        if error.kind() == std::io::ErrorKind::NotFound);
    if missing {
        let fix = if args.state.is_some() {
            "give --state the file the watch was started with"
        } else {
            "give --state FILE if the watch was started with one, or --each folder for a watch \
             of scan folders"
        };
        return Failure::new(
            Status::NoInput,
            format!("{error}: no watch state there"),
            fix,
        );
    }
    state_failure(error)
}

fn host(args: &WatchStateArgs, settings: &Settings) -> Result<Host, Failure> {
    if !args.remote {
        return Ok(Host::Local);
    }
    let metadata = load_metadata(&args.source, settings)?;
    let mut host = submitter_for(Program::Sbatch, &metadata, true, args.node.as_deref())?;
    // sacct is asked in chunks: one connection for all of them.
    host.share_connections()?;
    Ok(host)
}

fn ask(host: &Host, jobs: &BTreeSet<u64>) -> Result<BTreeMap<u64, JobState>, Failure> {
    if jobs.is_empty() {
        return Ok(BTreeMap::new());
    }
    job_states(host, jobs).map_err(|why| {
        Failure::new(
            Status::CannotExecute,
            format!("cannot ask Slurm about the watch's jobs: {why}"),
            "check that the Slurm controller answers (squeue --me); with --remote, that a \
             reserved node answers over ssh",
        )
    })
}

fn rows<'a>(record: &'a Record, states: &'a BTreeMap<u64, JobState>) -> Vec<Row<'a>> {
    let files: BTreeSet<&str> = record
        .submitted
        .keys()
        .chain(record.refused.keys())
        .chain(record.earlier_jobs.keys())
        .chain(record.failed.keys())
        .chain(record.submitting.iter().map(|i| &i.file))
        .map(String::as_str)
        .collect();
    files
        .into_iter()
        .map(|file| {
            let job = record.submitted.get(file).map(|s| s.job);
            let earlier = record.earlier_jobs.get(file).map_or(&[][..], Vec::as_slice);
            let refused = record.refused.get(file);
            let standing = if record.submitting.as_ref().is_some_and(|i| i.file == file) {
                Standing::Submitting
            } else if record.failed.contains_key(file) {
                Standing::Failed
            } else if job.is_some() {
                Standing::Submitted
            } else if refused.is_some() && earlier.is_empty() {
                Standing::Refused
            } else {
                Standing::Resubmit
            };
            Row {
                file,
                standing,
                job,
                state: job.and_then(|job| states.get(&job)),
                earlier,
                attempts: record.attempts(file),
                last_error: refused.map(|r| r.error.as_str()),
            }
        })
        .collect()
}

/// Totals: files per standing, and the submitted ones per job state.
fn totals(rows: &[Row]) -> (BTreeMap<&'static str, usize>, BTreeMap<String, usize>) {
    let mut standing = BTreeMap::new();
    let mut states = BTreeMap::new();
    for row in rows {
        *standing.entry(row.standing.name()).or_insert(0) += 1;
        if let Some(state) = row.state {
            *states.entry(state.name().to_owned()).or_insert(0) += 1;
        }
    }
    (standing, states)
}

fn text(path: &std::path::Path, record: &Record, rows: &[Row]) -> String {
    let mut out = format!(
        "watch of {} (each {}), state {}\n",
        record.folder.display(),
        record.each.name(),
        path.display()
    );
    for row in rows {
        let mut line = format!("{} {}", named(row.file), row.standing.name());
        if let Some(job) = row.job {
            line.push_str(&format!(" job {job}"));
            if let Some(state) = row.state {
                line.push_str(&format!(" {}", state.name()));
                if let JobState::Unknown(why) = state {
                    line.push_str(&format!(" ({why})"));
                }
            }
        }
        if !row.earlier.is_empty() {
            let jobs: Vec<String> = row.earlier.iter().map(u64::to_string).collect();
            line.push_str(&format!(", earlier jobs {}", jobs.join(" ")));
        }
        line.push_str(&format!(", attempts {}", row.attempts));
        if let Some(error) = row.last_error {
            // What sbatch said: shown as text, never as lines of its own.
            line.push_str(&format!(
                ", last refusal: {}",
                beamtime::untrusted::shown_token(error)
            ));
        }
        out.push_str(&line);
        out.push('\n');
    }
    let (standing, states) = totals(rows);
    let list = |map: Vec<(String, usize)>| {
        map.into_iter()
            .map(|(name, n)| format!("{n} {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str(&format!("total: {} {}", rows.len(), record.each.plural()));
    if !standing.is_empty() {
        let standing = standing.into_iter().map(|(k, v)| (k.to_owned(), v));
        out.push_str(&format!(": {}", list(standing.collect())));
    }
    if !states.is_empty() {
        out.push_str(&format!("; jobs {}", list(states.into_iter().collect())));
    }
    // Counted, not listed: a start with --skip-existing may skip tens of
    // thousands, which would bury the files that have a job.
    if !record.skipped.is_empty() {
        out.push_str(&format!(
            "; {} skipped at the start (--skip-existing)",
            record.skipped.len()
        ));
    }
    out.push('\n');
    out
}

fn json_report(path: &std::path::Path, record: &Record, rows: &[Row]) -> Value {
    let files: Vec<Value> = rows
        .iter()
        .map(|row| {
            let (state, from, unknown) = match row.state {
                Some(JobState::Known { state, from }) => (Some(state.as_str()), Some(*from), None),
                Some(JobState::Unknown(why)) => (Some("UNKNOWN"), None, Some(why.as_str())),
                None => (None, None, None),
            };
            json!({
                "file": row.file,
                "standing": row.standing.name(),
                "job": row.job,
                "jobState": state,
                "jobStateFrom": from,
                "jobStateUnknownBecause": unknown,
                "earlierJobs": row.earlier,
                "attempts": row.attempts,
                "lastError": row.last_error,
            })
        })
        .collect();
    let (standing, states) = totals(rows);
    json!({
        "state": path.to_string_lossy(),
        "folder": record.folder.to_string_lossy(),
        "each": record.each.name(),
        "files": files,
        "totals": {
            "files": rows.len(),
            "standing": standing,
            "jobStates": states,
            "skipped": record.skipped.len(),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cli::Each;

    #[test]
    fn the_files_skipped_at_the_start_are_counted_in_the_totals_not_listed() {
        let mut record = Record::new("0123abcd".into(), "/data".into(), Each::File);
        for file in ["a.h5", "b.h5"] {
            record.skipped.insert(file.into());
        }
        let no_jobs = BTreeMap::new();
        let rows = rows(&record, &no_jobs);
        assert!(rows.is_empty());
        let path = Path::new("/state.json");
        let text = text(path, &record, &rows);
        assert!(
            text.ends_with("\ntotal: 0 files; 2 skipped at the start (--skip-existing)\n"),
            "{text}"
        );
        let json = json_report(path, &record, &rows);
        assert_eq!(json["totals"]["skipped"], 2, "{json:#}");
        assert_eq!(json["files"].as_array().map(Vec::len), Some(0), "{json:#}");
    }
}
