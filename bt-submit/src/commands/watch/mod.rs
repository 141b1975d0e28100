//! `bt-submit watch DIR -- SCRIPT ARGS`: one batch job per new file below
//! DIR (or, with `--each folder`, per new scan folder directly below it),
//! submitted once it is complete, exactly once across restarts.
//!
//! Each pass of the loop looks at what is due (new files from the periodic
//! walk of the folder, files inotify reported, files whose settle time is
//! up), submits the complete ones one at a time and then waits for the next
//! event or the next due time. The pieces: command.rs turns the command line
//! into [`Options`] (options.rs), events.rs takes in the walk and inotify's
//! events, complete.rs decides when a file is complete, submission.rs submits
//! while the queue has room and resolves what a crash left open, state.rs
//! keeps what was submitted, tree.rs walks the folder (scan.rs a scan
//! folder, without a stat per frame per look), os.rs holds the system
//! calls, log.rs writes the log; jobs are submitted and Slurm is asked through
//! the [`Host`] that `bt-submit --remote` uses too, on this host or on a
//! reserved node over ssh.

mod beneath;
pub mod command;
mod complete;
mod events;
mod follow;
mod log;
mod options;
mod os;
mod paths;
mod pattern;
mod scan;
mod start;
mod state;
pub mod status;
mod submission;
#[cfg(test)]
mod tests;
mod tree;

/// The state file's parts that bench/src/bin/watch-state-record.rs needs, and
/// nothing else: it times recording one submission with 100,000 files
/// recorded (#22), a cost that a running watch hides behind sbatch's and that,
/// as a timed test, has no place among the unit tests. Not an interface for
/// anything but that measurement (lib.rs re-exports it hidden from the docs).
pub mod state_for_bench {
    pub use super::complete::Look;
    pub use super::state::{Change, Record, Sharing, StateFile};
    pub use crate::cli::Each;
}

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use complete::{Candidate, Verdict, Why};
use os::{EventKind, Inotify};
pub use state::Sharing;
use state::{Change, Record, StateError, StateFile};

// Defined with the command line (a leaf that xtask renders); what it means is here.
pub use crate::cli::Each;
use crate::cli::Format;
use crate::failure::{Failure, Status};
use crate::slurm::host::{Host, SubmitError};
pub use follow::{Beamtime, Plan};
use log::{log, named, secs, Counters, LogEvent, Told};
pub use options::{default_state_file, retry_delay, Options};
pub use paths::{arguments_for, on_nodes, parse_map, OnNodes, SiteView};
pub use pattern::Patterns;
pub use start::dry_run;

impl Each {
    pub fn name(self) -> &'static str {
        match self {
            Each::File => "file",
            Each::Folder => "folder",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Each::File => "files",
            Each::Folder => "folders",
        }
    }
}

/// Runs the watch until SIGINT or SIGTERM (SIGHUP reads the metadata
/// again), or until every submission has been refused for good for
/// `--give-up-after`; one line per file on stdout.
pub fn run(options: &Options, beamtime: &dyn Beamtime) -> Result<(), Failure> {
    os::catch_signals().map_err(|error| {
        Failure::new(
            Status::IoError,
            format!("cannot handle SIGINT/SIGTERM/SIGHUP: {error}"),
            "report this as a bug",
        )
    })?;
    let metadata = beamtime.metadata()?;
    let plan = beamtime.plan(&metadata)?;
    let (mut state, mut record) = StateFile::open(
        &options.state,
        &options.folder,
        options.each,
        options.sharing,
    )
    .map_err(state_failure)?;
    if options.skip_existing {
        start::skip_existing(options, &mut state, &mut record)?;
    }
    let following = follow::Following {
        metadata,
        next_read: follow::REREAD_EVERY.as_millis() as u64,
        told: Told::default(),
    };
    let mut watch = Watch::new(options, beamtime, plan, following, state, record);
    // Files a watch failed with another plan are tried again; those failed
    // with this one stay so until the plan changes or `watch resubmit`.
    watch.try_failed_again()?;
    if !watch.record.failed.is_empty() {
        watch.say(LogEvent::FailedBefore {
            each: options.each,
            count: watch.record.failed.len(),
        });
    }
    watch.run()
}

fn state_failure(error: StateError) -> Failure {
    match &error {
        StateError::InUse { .. } => Failure::new(
            Status::Usage,
            error.to_string(),
            "that watch already submits this folder's files and this one would only do it \
             again: leave it running, or stop it (kill its pid, on its host) and start this one",
        ),
        StateError::Invalid { .. } => Failure::new(
            Status::DataError,
            error.to_string(),
            "give --state the file of this folder's watch, or a new file to start afresh \
             (everything in the folder is then submitted again)",
        ),
        StateError::Unsafe { .. } => Failure::new(
            Status::Usage,
            error.to_string(),
            "keep the state in a folder only you can write (--state FILE); if a team shares \
             this watch's state on purpose, say so with --shared-state (see docs/user.md)",
        ),
        StateError::Io { .. } => Failure::new(
            Status::IoError,
            format!("{error}; the watch stops so that no file is submitted twice"),
            "make the state file's folder writable (or choose another with --state FILE), \
             then start the watch again: it takes up where it stopped",
        ),
    }
}

/// How often the running watch logs its counters.
const COUNTERS_EVERY_MS: u64 = 60_000;

struct Retry {
    failures: u32,
    /// Refusals in a row that no retry can fix.
    permanent: u32,
    at: u64,
}

/// What Slurm last said about this watch's unfinished jobs.
struct InFlight {
    counted: usize,
    submitted_since: usize,
    asked_at: Option<u64>,
    waiting_told: bool,
    /// Why Slurm could not be asked last, so that it is said once, not at every poll.
    unanswered: Told,
}

struct Watch<'a> {
    options: &'a Options,
    beamtime: &'a dyn Beamtime,
    plan: Plan,
    follow: follow::Following,
    state: StateFile,
    record: Record,
    candidates: BTreeMap<String, Candidate>,
    retries: HashMap<String, Retry>,
    refused_for_good: Option<follow::RefusedForGood>,
    told_unusable: HashSet<String>,
    inotify: Option<Inotify>,
    /// inotify watch descriptor → folder below the watched one.
    watched: HashMap<i32, String>,
    watched_folders: HashSet<String>,
    /// What each folder's last listing saw (tree.rs).
    listings: HashMap<String, tree::Listing>,
    /// What was seen of each scan folder not submitted yet, frame by frame (scan.rs).
    scans: HashMap<String, scan::ScanSeen>,
    clock: Instant,
    in_flight: InFlight,
    submitted: usize,
    /// When the intent left by a failed or interrupted submission is next resolved.
    resolve_at: u64,
    /// Why the last resolving failed, so that it is said once, not at every poll.
    unresolved_told: Told,
    /// While the state's disk is full: when to try writing it again.
    state_full_until: Option<u64>,
}

impl<'a> Watch<'a> {
    fn new(
        options: &'a Options,
        beamtime: &'a dyn Beamtime,
        plan: Plan,
        follow: follow::Following,
        state: StateFile,
        record: Record,
    ) -> Self {
        let inotify = if options.inotify {
            match Inotify::new() {
                Ok(inotify) => Some(inotify),
                Err(error) => {
                    log(
                        options.format,
                        &LogEvent::NoInotify {
                            error: error.to_string(),
                            at_start: true,
                            poll_interval: options.poll_interval,
                        },
                    );
                    None
                }
            }
        } else {
            None
        };
        Watch {
            options,
            beamtime,
            plan,
            follow,
            state,
            record,
            candidates: BTreeMap::new(),
            retries: HashMap::new(),
            refused_for_good: None,
            told_unusable: HashSet::new(),
            inotify,
            watched: HashMap::new(),
            watched_folders: HashSet::new(),
            listings: HashMap::new(),
            scans: HashMap::new(),
            clock: Instant::now(),
            in_flight: InFlight {
                counted: 0,
                submitted_since: 0,
                asked_at: None,
                waiting_told: false,
                unanswered: Told::default(),
            },
            submitted: 0,
            resolve_at: 0,
            unresolved_told: Told::default(),
            state_full_until: None,
        }
    }

    fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Records `change` in the state. `Ok(false)` when the state's disk is
    /// full: nothing was recorded, the watch says so (once) and submits
    /// nothing until a change can be recorded again; any other failure
    /// stops the watch, so that no file is submitted twice.
    fn recorded(&mut self, change: Change) -> Result<bool, Failure> {
        let now = self.now();
        match self.state.record(&mut self.record, change) {
            Ok(()) => {
                if self.state_full_until.take().is_some() {
                    self.say(LogEvent::StateWritable);
                }
                if let Some(failure) = self.state.take_compaction_failure() {
                    self.say(LogEvent::JournalNotFolded {
                        error: failure.to_string(),
                    });
                }
                Ok(true)
            }
            Err(error) if error.disk_full() => {
                if self.state_full_until.is_none() {
                    self.say(LogEvent::WaitingForDisk {
                        error: error.to_string(),
                    });
                }
                self.state_full_until = Some(now + self.options.poll_interval.as_millis() as u64);
                Ok(false)
            }
            Err(error) => Err(state_failure(error)),
        }
    }

    /// How long a file or scan folder must stay unchanged to be complete;
    /// `None` when only its done file makes a scan folder complete.
    fn settle_ms(&self) -> Option<u64> {
        match self.options.done_file {
            Some(_) => None,
            None => Some(self.options.settle.as_millis() as u64),
        }
    }

    /// How long looks must find a frame of a scan unchanged before the
    /// quick looks stop stat'ing it: the settle time, also with
    /// `--done-file` (where it completes nothing).
    fn frames_stand_still_ms(&self) -> u64 {
        self.options.settle.as_millis() as u64
    }

    /// A new look at a file or scan folder, given to its candidate if there
    /// is one; `None` when it is gone (or, a folder, cannot be read). A scan
    /// folder's `pass` says which frames are stat'ed (scan.rs): with
    /// [`scan::Pass::Whole`] every one, and a change found in any makes the
    /// scan not complete even where its sums stay the same.
    fn look_again(&mut self, rel: &str, pass: scan::Pass) -> Option<complete::Look> {
        let now = self.now();
        let (look, changed) = match self.options.each {
            Each::File => (tree::look(&self.options.folder, rel)?, false),
            Each::Folder => {
                let stand_still_ms = self.frames_stand_still_ms();
                let seen = self.scans.entry(rel.to_owned()).or_default();
                let looked =
                    scan::look_folder(&self.options.folder, rel, seen, pass, stand_still_ms, now)?;
                (looked.look, looked.changed)
            }
        };
        if let Some(candidate) = self.candidates.get_mut(rel) {
            if changed {
                candidate.changed(look, now);
            } else {
                candidate.looked(look, now);
            }
        }
        Some(look)
    }

    /// Logs that `rel` will not be submitted: gone before it was complete.
    fn forget_gone(&mut self, rel: &str) {
        self.candidates.remove(rel);
        self.retries.remove(rel);
        self.say(LogEvent::Disappeared { file: rel });
    }

    fn run(&mut self) -> Result<(), Failure> {
        let o = self.options;
        self.say(LogEvent::Watching {
            folder: &o.folder,
            each: o.each,
            patterns: &o.patterns,
            done_file: o.done_file.as_deref(),
            settle: self.settle_ms().map(|_| o.settle),
            poll_interval: o.poll_interval,
            inotify: self.inotify.is_some(),
            max_in_flight: o.max_in_flight,
            state: self.state.path(),
            submitted_before: self.record.submitted.len(),
            plan: &self.plan.summary,
        });
        let poll_ms = o.poll_interval.as_millis() as u64;
        let mut next_walk = 0;
        let mut next_counters = COUNTERS_EVERY_MS;
        loop {
            if let Some(signal) = os::stop_requested() {
                // The last counters, for whoever sums up the watch's run.
                self.log_counters();
                self.say(LogEvent::Stopping {
                    signal,
                    each: o.each,
                    submitted_in_run: self.submitted,
                    waiting: self.candidates.len(),
                });
                return Ok(());
            }
            let now = self.now();
            if now >= next_counters {
                // Jobs leave the queue without the watch noticing until it
                // asks: the periodic line counts them afresh (one squeue a
                // minute), so it never shows jobs long ended as in flight.
                if self.options.max_in_flight.is_some()
                    && self.in_flight.counted + self.in_flight.submitted_since > 0
                {
                    self.count_in_flight();
                }
                self.log_counters();
                next_counters = now + COUNTERS_EVERY_MS;
            }
            self.follow_beamtime(now)?;
            if let Some(failure) = self.given_up(now) {
                return Err(failure);
            }
            if now >= next_walk {
                self.walk(now);
                next_walk = now + poll_ms;
            }
            self.submit_complete()?;
            let wake = self.next_due().map_or(next_walk, |due| due.min(next_walk));
            let timeout = Duration::from_millis(wake.saturating_sub(self.now()));
            match &self.inotify {
                Some(inotify) => match inotify.wait(timeout) {
                    Ok(events) => self.handle(events),
                    Err(error) => {
                        self.say(LogEvent::NoInotify {
                            error: error.to_string(),
                            at_start: false,
                            poll_interval: o.poll_interval,
                        });
                        self.inotify = None;
                    }
                },
                None => std::thread::sleep(timeout),
            }
        }
    }

    /// Writes `event` to the log, in the watch's `--format`.
    fn say(&self, event: LogEvent) {
        log(self.options.format, &event);
    }

    /// The counters, for whoever keeps an eye on a long watch: what it knows
    /// of (submitted, or waiting to be complete), what it submitted, the jobs
    /// in flight as Slurm last counted them plus those submitted since (with
    /// --max-in-flight: the watch asks when the cap is reached and before each
    /// periodic line), the files sbatch refused, not yet submitted, and of
    /// those the failed ones.
    fn log_counters(&self) {
        let waiting = self.candidates.len();
        let submitted = self.record.submitted.len();
        let refused = self
            .record
            .refused
            .keys()
            .filter(|file| !self.record.submitted.contains_key(*file))
            .count();
        self.say(LogEvent::Counters(Counters {
            seen: submitted + waiting,
            waiting,
            submitted,
            in_flight: self
                .options
                .max_in_flight
                .map(|_| self.in_flight.counted + self.in_flight.submitted_since),
            refused,
            failed: self.record.failed.len(),
        }));
    }

    /// The earliest time something is due: a settle time up, a retry, an in-flight recount.
    /// A complete file still here after a pass waits for its retry, or else
    /// for room in the queue, which the next walk's pass asks about again.
    fn next_due(&self) -> Option<u64> {
        let settle = self.settle_ms();
        let now = self.now();
        let looks = self.candidates.iter().filter_map(|(rel, c)| {
            let retry = self.retries.get(rel).map(|r| r.at);
            match c.verdict(settle) {
                Verdict::LookAgainAt(at) => Some(at.max(retry.unwrap_or(0))),
                Verdict::Complete(_) => retry.filter(|&at| at > now),
                // Found by the next walk (or its inotify event).
                Verdict::AwaitReport => None,
            }
        });
        looks.min()
    }
}
