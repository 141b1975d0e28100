//! `bt-submit watch DIR -- SCRIPT ARGS`: one batch job per new file below
//! DIR (or, with `--each folder`, per new scan folder directly below it),
//! submitted once it is complete, exactly once across restarts.
//!
//! Each pass of the loop looks at what is due (new files from the periodic
//! walk of the folder, files inotify reported, files whose settle time is
//! up), submits the complete ones one at a time and then waits for the next
//! event or the next due time. The pieces: complete.rs decides when a file
//! is complete, state.rs keeps what was submitted, tree.rs walks the folder,
//! os.rs holds the system calls; jobs are submitted and Slurm is asked
//! through the [`Submitter`] that `bt-submit --remote` uses too, on this host
//! or on a reserved node over ssh.

pub mod command;
mod complete;
mod os;
mod state;
mod tree;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use complete::{Candidate, Verdict, Why};
use os::{EventKind, Inotify};
use state::{Record, StateError, StateFile};

// Defined with the command line (a leaf that xtask renders); what it means is here.
pub use crate::cli::Each;
use crate::failure::{Failure, Status};
use crate::slurm::submit::{SubmitError, Submitter};

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

/// How the watch was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Absolute, without symbolic links.
    pub folder: PathBuf,
    pub each: Each,
    /// With `Each::Folder`: a scan folder is complete once this file is in
    /// it, and not before, however long nothing changes.
    pub done_file: Option<String>,
    pub pattern: String,
    pub settle: Duration,
    pub poll_interval: Duration,
    pub max_in_flight: Option<usize>,
    pub state: PathBuf,
    pub inotify: bool,
    /// sbatch's arguments as bt-submit plans them, `{}` still in place.
    pub template: Vec<OsString>,
}

/// The arguments for one file (or scan folder): each argument that is
/// exactly `{}` becomes its absolute path; without any, the path is
/// appended as the script's last argument.
pub fn arguments_for(template: &[OsString], file: &Path) -> Vec<OsString> {
    let placeholder = OsString::from("{}");
    if !template.contains(&placeholder) {
        let mut args = template.to_vec();
        args.push(file.into());
        return args;
    }
    template
        .iter()
        .map(|arg| {
            if *arg == placeholder {
                file.into()
            } else {
                arg.clone()
            }
        })
        .collect()
}

/// The wait before trying a failed submission again: 2 s, doubling, at most 5 minutes.
pub fn retry_delay(failures: u32) -> Duration {
    let doubled = 2u64.saturating_pow(failures.saturating_sub(1).min(16));
    Duration::from_secs((2 * doubled).min(300))
}

/// Where the state of the watch of `folder` lives unless `--state` says:
/// `$XDG_STATE_HOME/bt-submit/` (else `~/.local/state/bt-submit/`), named
/// after the folder (and, for a watch of scan folders, after that), never
/// inside the watched folder (the watch writes nothing there).
pub fn default_state_file(
    folder: &Path,
    each: Each,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Option<PathBuf> {
    let base = match env("XDG_STATE_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env("HOME")?).join(".local/state"),
    };
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".to_owned());
    // FNV-1a of the whole path: two folders of one name get two files.
    let hash = folder
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        });
    let kind = match each {
        Each::File => "",
        Each::Folder => "folders-",
    };
    Some(
        base.join("bt-submit")
            .join(format!("watch-{kind}{name}-{hash:016x}.json")),
    )
}

/// Runs the watch until SIGINT or SIGTERM; one line per file on stdout.
pub fn run(options: &Options, submitter: &Submitter) -> Result<(), Failure> {
    os::catch_stop_signals().map_err(|error| {
        Failure::new(
            Status::IoError,
            format!("cannot handle SIGINT/SIGTERM: {error}"),
            "report this as a bug",
        )
    })?;
    let (state, record) =
        StateFile::open(&options.state, &options.folder, options.each).map_err(state_failure)?;
    let mut watch = Watch::new(options, submitter, state, record);
    watch.run()
}

fn state_failure(error: StateError) -> Failure {
    match &error {
        StateError::InUse { .. } => Failure::new(
            Status::Usage,
            error.to_string(),
            "stop the other watch first, or give this one its own --state FILE",
        ),
        StateError::Invalid { .. } => Failure::new(
            Status::DataError,
            error.to_string(),
            "give --state the file of this folder's watch, or a new file to start afresh \
             (everything in the folder is then submitted again)",
        ),
        StateError::Io { .. } => Failure::new(
            Status::IoError,
            format!("{error}; the watch stops so that no file is submitted twice"),
            "make the state file's folder writable (or choose another with --state FILE), \
             then start the watch again: it takes up where it stopped",
        ),
    }
}

struct Retry {
    failures: u32,
    at: u64,
}

/// What Slurm last said about this watch's unfinished jobs.
struct InFlight {
    counted: usize,
    submitted_since: usize,
    asked_at: Option<u64>,
    waiting_told: bool,
}

struct Watch<'a> {
    options: &'a Options,
    submitter: &'a Submitter,
    state: StateFile,
    record: Record,
    candidates: BTreeMap<String, Candidate>,
    retries: HashMap<String, Retry>,
    told_unusable: HashSet<String>,
    inotify: Option<Inotify>,
    /// inotify watch descriptor → folder below the watched one.
    watched: HashMap<i32, String>,
    watched_folders: HashSet<String>,
    /// What each folder's last listing saw (tree.rs).
    listings: HashMap<String, tree::Listing>,
    clock: Instant,
    in_flight: InFlight,
    submitted: usize,
    /// When the intent left by a failed or interrupted submission is next resolved.
    resolve_at: u64,
}

impl<'a> Watch<'a> {
    fn new(
        options: &'a Options,
        submitter: &'a Submitter,
        state: StateFile,
        record: Record,
    ) -> Self {
        let inotify = if options.inotify {
            match Inotify::new() {
                Ok(inotify) => Some(inotify),
                Err(error) => {
                    log(&format!(
                        "inotify is not available ({error}); looking every {} s only",
                        secs(options.poll_interval)
                    ));
                    None
                }
            }
        } else {
            None
        };
        Watch {
            options,
            submitter,
            state,
            record,
            candidates: BTreeMap::new(),
            retries: HashMap::new(),
            told_unusable: HashSet::new(),
            inotify,
            watched: HashMap::new(),
            watched_folders: HashSet::new(),
            listings: HashMap::new(),
            clock: Instant::now(),
            in_flight: InFlight {
                counted: 0,
                submitted_since: 0,
                asked_at: None,
                waiting_told: false,
            },
            submitted: 0,
            resolve_at: 0,
        }
    }

    fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// How long a file or scan folder must stay unchanged to be complete;
    /// `None` when only its done file makes a scan folder complete.
    fn settle_ms(&self) -> Option<u64> {
        match self.options.done_file {
            Some(_) => None,
            None => Some(self.options.settle.as_millis() as u64),
        }
    }

    /// A new look at a file or scan folder; `None` when it is gone (or, a
    /// folder, cannot be read).
    fn look_again(&self, rel: &str) -> Option<complete::Look> {
        match self.options.each {
            Each::File => tree::look(&self.options.folder, rel),
            Each::Folder => tree::look_folder(&self.options.folder, rel),
        }
    }

    /// Logs that `rel` will not be submitted: gone before it was complete.
    fn forget_gone(&mut self, rel: &str) {
        self.candidates.remove(rel);
        self.retries.remove(rel);
        log(&format!(
            "{rel}: not submitted: it disappeared before it was complete"
        ));
    }

    fn run(&mut self) -> Result<(), Failure> {
        let o = self.options;
        let what = match (o.each, &o.done_file) {
            (Each::File, _) => format!("files {}", o.pattern),
            (Each::Folder, None) => format!("scan folders {}", o.pattern),
            (Each::Folder, Some(name)) => {
                format!(
                    "scan folders {}, each complete once it holds {name}",
                    o.pattern
                )
            }
        };
        let settle = match self.settle_ms() {
            Some(_) => format!("settle {} s, ", secs(o.settle)),
            None => String::new(),
        };
        log(&format!(
            "watching {} for {what} ({settle}looking every {} s{}{}), state {}: {} {} submitted before",
            o.folder.display(),
            secs(o.poll_interval),
            if self.inotify.is_some() { ", inotify" } else { "" },
            o.max_in_flight.map(|n| format!(", at most {n} jobs in flight")).unwrap_or_default(),
            self.state.path().display(),
            self.record.submitted.len(),
            o.each.plural()
        ));
        let poll_ms = o.poll_interval.as_millis() as u64;
        let mut next_walk = 0;
        loop {
            if let Some(signal) = os::stop_requested() {
                log(&format!(
                    "stopping on {signal}: {} {} submitted in this run, {} waiting to be complete",
                    self.submitted,
                    o.each.plural(),
                    self.candidates.len()
                ));
                return Ok(());
            }
            let now = self.now();
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
                        log(&format!(
                            "inotify failed ({error}); looking every {} s only",
                            secs(o.poll_interval)
                        ));
                        self.inotify = None;
                    }
                },
                None => std::thread::sleep(timeout),
            }
        }
    }

    /// Looks through the whole folder: new files (or scan folders) become
    /// candidates, known candidates get a new look, new folders an inotify
    /// watch.
    fn walk(&mut self, now: u64) {
        let found = match self.options.each {
            Each::File => self.walk_files(now),
            Each::Folder => {
                let submitted = &self.record.submitted;
                tree::walk_scan_folders(&self.options.folder, &self.options.pattern, &|rel| {
                    submitted.contains_key(rel)
                })
            }
        };
        let mut present = HashSet::with_capacity(found.files.len());
        for (rel, look) in found.files {
            let candidate = self
                .candidates
                .entry(rel.clone())
                .or_insert_with(|| Candidate::first_seen(look, now));
            candidate.looked(look, now);
            if let Some(done_file) = &self.options.done_file {
                if tree::holds_file(&self.options.folder, &rel, done_file) {
                    candidate.reported(Why::DoneFileFound, look, now);
                }
            }
            present.insert(rel);
        }
        let gone: Vec<String> = self
            .candidates
            .keys()
            .filter(|rel| !present.contains(*rel))
            .cloned()
            .collect();
        for rel in gone {
            self.forget_gone(&rel);
        }
        for (rel, why) in found.unusable {
            if self.told_unusable.insert(rel.clone()) {
                log(&format!("{rel}: not submitted: {why}"));
            }
        }
        if let Some(inotify) = &self.inotify {
            for folder in found.folders {
                if self.watched_folders.contains(&folder) {
                    continue;
                }
                match inotify.watch(&self.options.folder.join(&folder)) {
                    Ok(wd) => {
                        self.watched.insert(wd, folder.clone());
                    }
                    Err(error) => log(&format!(
                        "{}: no inotify watch ({error}); its files are found by looking only",
                        if folder.is_empty() { "." } else { &folder }
                    )),
                }
                self.watched_folders.insert(folder);
            }
        }
    }

    /// Every folder below the watched one, listed where it may have changed.
    fn walk_files(&mut self, now: u64) -> tree::Found {
        let submitted = &self.record.submitted;
        // Folders holding files not submitted yet are listed at every walk:
        // a file that disappears from one must be noticed.
        let busy: HashSet<String> = self
            .candidates
            .keys()
            .map(|rel| {
                rel.rsplit_once('/')
                    .map_or("", |(folder, _)| folder)
                    .to_owned()
            })
            .collect();
        tree::walk(
            &self.options.folder,
            &self.options.pattern,
            &|rel| submitted.contains_key(rel),
            &busy,
            &mut self.listings,
            now,
        )
    }

    fn handle(&mut self, events: Vec<os::Event>) {
        if self.options.each == Each::Folder {
            return self.handle_in_scan_folders(events);
        }
        let now = self.now();
        let mut walk_again = false;
        for event in events {
            let why = match event.kind {
                EventKind::ClosedAfterWrite => Why::ClosedAfterWriting,
                EventKind::MovedIn => Why::RenamedIntoPlace,
                EventKind::FolderCreated | EventKind::Overflow => {
                    walk_again = true;
                    continue;
                }
            };
            let Some(folder) = self.watched.get(&event.watch) else {
                continue;
            };
            let Ok(name) = event.name.into_string() else {
                continue;
            };
            if !tree::name_matches(&self.options.pattern, &name) {
                // A folder renamed into place is walked.
                walk_again |= why == Why::RenamedIntoPlace;
                continue;
            }
            let rel = tree::join(folder, &name);
            if self.record.submitted.contains_key(&rel) {
                continue;
            }
            let Some(look) = tree::look(&self.options.folder, &rel) else {
                walk_again |= why == Why::RenamedIntoPlace;
                continue;
            };
            self.candidates
                .entry(rel)
                .or_insert_with(|| Candidate::first_seen(look, now))
                .reported(why, look, now);
        }
        if walk_again {
            self.walk(now);
        }
    }

    /// Watching scan folders, an event in the watched folder itself (a new
    /// folder) calls for a walk; in a scan folder only its done file
    /// counts: the files of a scan say nothing about whether it is complete.
    fn handle_in_scan_folders(&mut self, events: Vec<os::Event>) {
        let now = self.now();
        let mut walk_again = false;
        for event in events {
            if event.kind == EventKind::Overflow {
                walk_again = true;
                continue;
            }
            let Some(folder) = self.watched.get(&event.watch) else {
                continue;
            };
            if folder.is_empty() {
                walk_again = true;
                continue;
            }
            let is_done_file =
                self.options.done_file.as_deref().is_some_and(|name| {
                    event.name == name && event.kind != EventKind::FolderCreated
                });
            if !is_done_file || !self.candidates.contains_key(folder) {
                continue;
            }
            let folder = folder.clone();
            match self.look_again(&folder) {
                Some(look) => {
                    if let Some(candidate) = self.candidates.get_mut(&folder) {
                        candidate.reported(Why::DoneFileFound, look, now);
                    }
                }
                None => walk_again = true,
            }
        }
        if walk_again {
            self.walk(now);
        }
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

    fn submit_complete(&mut self) -> Result<(), Failure> {
        if self.record.submitting.is_some() && !self.resolve_intent()? {
            return Ok(());
        }
        let settle = self.settle_ms();
        let now = self.now();
        // Files whose settle time is up get the look that proves it first.
        let due: Vec<String> = self
            .candidates
            .iter()
            .filter(|(_, c)| matches!(c.verdict(settle), Verdict::LookAgainAt(at) if at <= now))
            .map(|(rel, _)| rel.clone())
            .collect();
        for rel in due {
            match self.look_again(&rel) {
                Some(look) => {
                    if let Some(c) = self.candidates.get_mut(&rel) {
                        c.looked(look, now);
                    }
                }
                None => self.forget_gone(&rel),
            }
        }
        let complete: Vec<(String, Why)> = self
            .candidates
            .iter()
            .filter_map(|(rel, c)| match c.verdict(settle) {
                Verdict::Complete(why) => Some((rel.clone(), why)),
                Verdict::LookAgainAt(_) | Verdict::AwaitReport => None,
            })
            .filter(|(rel, _)| self.retries.get(rel).map_or(true, |r| r.at <= now))
            .collect();
        for (rel, why) in complete {
            if os::stop_requested().is_some() || !self.room_for_one() {
                break;
            }
            self.submit(&rel, why)?;
            if self.record.submitting.is_some() && !self.resolve_intent()? {
                break;
            }
        }
        Ok(())
    }

    /// Whether one more job stays within `--max-in-flight`, asking Slurm when
    /// what it said last (plus the jobs submitted since) says no: jobs only
    /// ever leave the queue, so that sum is never too low.
    fn room_for_one(&mut self) -> bool {
        let Some(max) = self.options.max_in_flight else {
            return true;
        };
        if self.in_flight.counted + self.in_flight.submitted_since < max {
            return true;
        }
        let now = self.now();
        let poll_ms = self.options.poll_interval.as_millis() as u64;
        if self.in_flight.asked_at.is_some_and(|at| now < at + poll_ms) {
            return false;
        }
        self.in_flight.asked_at = Some(now);
        match self.submitter.queued() {
            Ok(queued) => {
                // Slurm's answer, narrowed to the jobs this watch submitted.
                let ours: HashSet<u64> = self.record.submitted.values().map(|s| s.job).collect();
                self.in_flight.counted = queued.iter().filter(|id| ours.contains(id)).count();
                self.in_flight.submitted_since = 0;
            }
            Err(error) => {
                log(&format!(
                    "cannot count this watch's jobs in Slurm ({}); waiting",
                    error.problem.what
                ));
                return false;
            }
        }
        let room = self.in_flight.counted < max;
        if !room && !self.in_flight.waiting_told {
            log(&format!(
                "waiting: {} of this watch's jobs are pending or running (--max-in-flight {max})",
                self.in_flight.counted
            ));
        }
        self.in_flight.waiting_told = !room;
        room
    }

    fn submit(&mut self, rel: &str, why: Why) -> Result<(), Failure> {
        let now = self.now();
        // One last look right before sbatch: a file changed since is not complete.
        let Some(look) = self.look_again(rel) else {
            self.forget_gone(rel);
            return Ok(());
        };
        let settle = self.settle_ms();
        if let Some(candidate) = self.candidates.get_mut(rel) {
            candidate.looked(look, now);
            if !matches!(candidate.verdict(settle), Verdict::Complete(_)) {
                return Ok(());
            }
        }
        let marker = self.record.begin(rel);
        self.state.save(&self.record).map_err(state_failure)?;
        let mut args = vec![OsString::from(format!("--comment={marker}"))];
        args.extend(arguments_for(
            &self.options.template,
            &self.options.folder.join(rel),
        ));
        match self.submitter.sbatch(&args) {
            Ok(submitted) => {
                let job = submitted.job_id;
                self.record.finish(rel, job, look);
                self.state.save(&self.record).map_err(state_failure)?;
                self.candidates.remove(rel);
                self.retries.remove(rel);
                self.submitted += 1;
                self.in_flight.submitted_since += 1;
                let node = submitted
                    .node
                    .map(|node| format!(" on {node}"))
                    .unwrap_or_default();
                log(&format!("{rel} -> job {job}{node} ({why})"));
            }
            Err(error) => {
                let reason = match error {
                    SubmitError::Refused { status, stderr } => format!(
                        "sbatch failed (exit status {status}): {}",
                        stderr
                            .lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .unwrap_or("no message")
                            .trim()
                    ),
                    SubmitError::Failed(failure) => failure.problem.what,
                };
                let retry = self
                    .retries
                    .entry(rel.to_owned())
                    .or_insert(Retry { failures: 0, at: 0 });
                retry.failures += 1;
                let delay = retry_delay(retry.failures);
                retry.at = now + delay.as_millis() as u64;
                log(&format!(
                    "{rel}: not submitted: {reason}; trying again in {} s (failure {})",
                    delay.as_secs(),
                    retry.failures
                ));
                self.resolve_at = 0;
            }
        }
        Ok(())
    }

    /// A submission whose outcome is not known (sbatch failed, or the watch
    /// died during it): asks Slurm for a job with its comment. `Ok(false)`
    /// while Slurm cannot be asked; nothing is submitted until it can.
    fn resolve_intent(&mut self) -> Result<bool, Failure> {
        let Some(intent) = self.record.submitting.clone() else {
            return Ok(true);
        };
        let now = self.now();
        if now < self.resolve_at {
            return Ok(false);
        }
        match self.submitter.with_comment(&intent.marker) {
            Err(error) => {
                self.resolve_at = now + self.options.poll_interval.as_millis() as u64;
                log(&format!(
                    "{}: cannot tell whether its last submission made a job ({}); nothing is submitted until Slurm answers",
                    intent.file, error.problem.what
                ));
                Ok(false)
            }
            Ok(jobs) => {
                match jobs.first() {
                    Some(job) => {
                        let look = self.look_again(&intent.file).unwrap_or(complete::Look {
                            size: 0,
                            mtime_ns: 0,
                            files: 0,
                        });
                        self.record.finish(&intent.file, *job, look);
                        self.candidates.remove(&intent.file);
                        self.retries.remove(&intent.file);
                        log(&format!(
                            "{} -> job {job} (its submission was interrupted; Slurm has the job)",
                            intent.file
                        ));
                    }
                    None => self.record.abandon(),
                }
                self.state.save(&self.record).map_err(state_failure)?;
                Ok(true)
            }
        }
    }
}

fn secs(duration: Duration) -> String {
    format!("{}", duration.as_secs_f64())
}

/// One line on stdout, with the time in UTC. A stdout that is gone is no
/// reason to stop watching.
fn log(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} {line}", utc_now()).and_then(|()| out.flush());
}

fn utc_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn braces_become_the_file_only_as_a_whole_argument() {
        let file = Path::new("/data/scan 1/a.h5");
        assert_eq!(
            arguments_for(&os(&["-J", "x", "run.sh", "{}", "--in={}", "{}"]), file),
            os(&[
                "-J",
                "x",
                "run.sh",
                "/data/scan 1/a.h5",
                "--in={}",
                "/data/scan 1/a.h5"
            ])
        );
        assert_eq!(
            arguments_for(&os(&["run.sh", "--fast"]), file),
            os(&["run.sh", "--fast", "/data/scan 1/a.h5"])
        );
    }

    #[test]
    fn retries_back_off_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=10).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(retry_delay(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn the_default_state_file_is_per_folder_and_outside_it() {
        let env = |name: &str| match name {
            "HOME" => Some(OsString::from("/home/u")),
            _ => None,
        };
        let a = default_state_file(Path::new("/gpfs/raw"), Each::File, &env).unwrap();
        let b = default_state_file(Path::new("/other/raw"), Each::File, &env).unwrap();
        let scans = default_state_file(Path::new("/gpfs/raw"), Each::Folder, &env).unwrap();
        assert!(a.starts_with("/home/u/.local/state/bt-submit"));
        assert!(a.to_string_lossy().contains("watch-raw-"));
        assert!(scans.to_string_lossy().contains("watch-folders-raw-"));
        assert_ne!(a, b);
        let xdg = |name: &str| (name == "XDG_STATE_HOME").then(|| OsString::from("/state"));
        assert!(default_state_file(Path::new("/gpfs/raw"), Each::File, &xdg)
            .unwrap()
            .starts_with("/state/bt-submit"));
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_819), (2027, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
