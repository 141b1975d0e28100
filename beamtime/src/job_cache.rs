//! What the controller said about a job, kept on the node for the job's later
//! steps.
//!
//! Every beamtime step needs the job's reservation and Slurm account, which
//! only the controller can be trusted to tell. A pipeline that runs thousands
//! of short steps would otherwise ask it thousands of times per node. The
//! answer hardly changes while the job lives: Slurm refuses to change the
//! account of a job that is no longer pending, and only the reservation can
//! be changed on a running job (by the job's owner or an operator). So an
//! answer is reused for a bounded time (`job_cache_seconds`), which bounds the
//! queries per job and node by the job's run time instead of its step count,
//! and bounds how stale a reservation can be.
//!
//! Everything else (who runs the step, the metadata, the node) is checked
//! afresh at every step, and the cached answer goes through the same decision
//! as a fresh one. An entry is bound to the job id and the job's user, so a job
//! id that Slurm hands out again (after a wrap-around or a wiped controller
//! state) within the cache time reuses it only for the same user — the same
//! beamtime account, in whose own reservation the old job ran.
//!
//! An entry is also bound to one run of the job on this node. A job its owner
//! requeues runs again under the same id, and may run outside any reservation
//! then (#17): an answer of its first run must not stand for the second. The
//! node knows no run number for srun steps (`S_SLURM_RESTART_COUNT` is the
//! batch step's only), but it knows which of the job's steps are alive here:
//! each beamtime step keeps the job's run token (`job-<id>.run`) open with a
//! shared `flock` until its slurmstepd exits ([`RunHold`]). A step that finds
//! the token held joins that run; one that finds nobody holding it begins a
//! new run, with a new token and a new name for it, and the entries of the
//! old run no longer answer. A requeue ends every step of the job on every
//! node before the job runs again, so its new run always asks first. Only
//! batch jobs can be requeued (slurmctld refuses others: "Only batch jobs are
//! accepted"), and the controller's answer says whether the job is one: the
//! answer for an salloc or srun allocation stands for the job's lifetime as
//! before. For a batch job, the batch step holds the token on its node for
//! the whole run; on its other nodes an answer stands only while another step
//! of the job runs there.
//!
//! The folder is slurmstepd's (root's) alone: it and every folder above it
//! must be owned by the plugin's user and writable by nobody else, so nobody
//! can plant or swap an entry. The cache is an optimisation only: a folder
//! that is missing is created, and one that cannot be used (unsafe, full,
//! read-only) makes every step ask the controller, as without a cache.

use std::fmt::Write as _;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::facts::ControllerJob;

mod error;
pub use error::{CacheError, RecordError};

/// Entries are a few lines; anything larger was not written by the plugin.
const MAX_ENTRY_BYTES: u64 = 4096;

/// A clock that went back by more than this makes an entry count as stale.
const CLOCK_SKEW_SECONDS: u64 = 60;

/// One job's controller answer as the plugin stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    pub job: u32,
    pub uid: u32,
    /// The name of the run of the job on this node it was asked in ([`RunHold::run`]).
    pub run: String,
    /// Seconds since the Unix epoch when the controller answered.
    pub fetched_at: u64,
    pub controller: ControllerJob,
}

impl CachedAnswer {
    /// The file's text, or `None` for an answer the format cannot hold
    /// (a value with a line break: then the job is simply not cached).
    pub fn encode(&self) -> Option<String> {
        let mut text = format!(
            "job={}\nuid={}\nrun={}\nfetched_at={}\nbatch={}\n",
            self.job,
            self.uid,
            self.run,
            self.fetched_at,
            u8::from(self.controller.batch)
        );
        if self.run.contains(['\n', '\r']) {
            return None;
        }
        for (key, value) in [
            ("reservation", &self.controller.reservation),
            ("account", &self.controller.account),
        ] {
            if let Some(value) = value {
                if value.contains(['\n', '\r']) {
                    return None;
                }
                let _ = writeln!(text, "{key}={value}");
            }
        }
        Some(text)
    }

    pub fn decode(text: &str) -> Result<CachedAnswer, RecordError> {
        let (mut job, mut uid, mut run, mut fetched_at, mut batch) = (None, None, None, None, None);
        let mut controller = ControllerJob::default();
        for line in text.lines() {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| RecordError::NotKeyValue(line.to_owned()))?;
            let number = || {
                value.parse::<u64>().map_err(|_| RecordError::NotANumber {
                    key: key.to_owned(),
                    value: value.to_owned(),
                })
            };
            let slot_taken = match key {
                "job" => job.replace(number()?).is_some(),
                "uid" => uid.replace(number()?).is_some(),
                "run" => run.replace(value.to_owned()).is_some(),
                "fetched_at" => fetched_at.replace(number()?).is_some(),
                "batch" => match value {
                    "0" => batch.replace(false).is_some(),
                    "1" => batch.replace(true).is_some(),
                    _ => return Err(RecordError::NotABatchFlag(value.to_owned())),
                },
                "reservation" => controller.reservation.replace(value.to_owned()).is_some(),
                "account" => controller.account.replace(value.to_owned()).is_some(),
                _ => return Err(RecordError::UnknownKey(key.to_owned())),
            };
            if slot_taken {
                return Err(RecordError::Repeated(key.to_owned()));
            }
        }
        let missing = RecordError::Missing;
        let narrow = |key: &'static str, value: u64| {
            u32::try_from(value).map_err(|_| RecordError::OutOfRange(key))
        };
        controller.batch = batch.ok_or_else(|| missing("batch"))?;
        Ok(CachedAnswer {
            job: narrow("job", job.ok_or_else(|| missing("job"))?)?,
            uid: narrow("uid", uid.ok_or_else(|| missing("uid"))?)?,
            run: run.ok_or_else(|| missing("run"))?,
            fetched_at: fetched_at.ok_or_else(|| missing("fetched_at"))?,
            controller,
        })
    }

    /// Whether this answer may stand in for asking the controller about
    /// `job` run by `uid` in the run named `run` at time `now`. A job that is
    /// not a batch job cannot be requeued: it has one run, and its answer
    /// stands across the gaps between its steps.
    pub fn answers(&self, job: u32, uid: u32, run: &str, now: u64, lifetime: Duration) -> bool {
        let age_ok = match now.checked_sub(self.fetched_at) {
            Some(age) => age < lifetime.as_secs(),
            None => self.fetched_at - now <= CLOCK_SKEW_SECONDS,
        };
        let same_run = !self.controller.batch || self.run == run;
        self.job == job && self.uid == uid && same_run && age_ok
    }
}

/// A step's membership in the current run of its job on this node: the run
/// token, kept open with a shared lock for as long as the step's slurmstepd
/// lives. Opened close-on-exec, so the step's programs never hold it; dropped
/// (or the process ending) releases it.
#[derive(Debug)]
pub struct RunHold {
    _token: File,
    run: String,
}

impl RunHold {
    /// The run's name, written in the token when the run began on this node.
    pub fn run(&self) -> &str {
        &self.run
    }
}

/// Attempts to join a run whose token is being replaced before giving up
/// (and asking the controller).
const JOIN_ATTEMPTS: usize = 4;

/// The cache folder, checked and ready for one step's lookup and store.
#[derive(Debug)]
pub struct JobCache {
    dir: PathBuf,
    lifetime: Duration,
    owner: u32,
}

impl JobCache {
    /// Checks `dir` and every folder above it (owned by `owner`, the
    /// plugin's own uid, and writable by nobody else), creating `dir` itself
    /// if it is missing.
    pub fn open(dir: &Path, lifetime: Duration, owner: u32) -> Result<JobCache, CacheError> {
        let dot = dir
            .as_os_str()
            .as_bytes()
            .split(|b| *b == b'/')
            .any(|c| c == b"." || c == b"..");
        if !dir.is_absolute() || dot {
            return Err(CacheError::NotPlainPath(dir.to_owned()));
        }
        let mut walked = PathBuf::new();
        for component in dir.components() {
            walked.push(component);
            let is_last = walked.as_path() == dir;
            let stat = match fs::symlink_metadata(&walked) {
                Err(e) if e.kind() == ErrorKind::NotFound && is_last => {
                    DirBuilder::new()
                        .mode(0o700)
                        .create(&walked)
                        .or_else(|e| {
                            // Another step of the same moment may have created it.
                            if e.kind() == ErrorKind::AlreadyExists {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        })
                        .map_err(|error| CacheError::CreateFolder {
                            path: walked.clone(),
                            error,
                        })?;
                    fs::symlink_metadata(&walked).map_err(|error| CacheError::Io {
                        path: walked.clone(),
                        error,
                    })?
                }
                Err(error) => {
                    return Err(CacheError::Io {
                        path: walked,
                        error,
                    })
                }
                Ok(stat) => stat,
            };
            if !stat.file_type().is_dir() {
                return Err(CacheError::NotAFolder(walked));
            }
            // Above the folder, root's folders and sticky ones like /tmp are
            // safe: nobody else can rename what is below them.
            let owner_ok = stat.uid() == owner || (!is_last && stat.uid() == 0);
            if !owner_ok {
                return Err(CacheError::WrongOwner {
                    path: walked,
                    owner: stat.uid(),
                    expected: owner,
                });
            }
            let open_to_others = if is_last {
                stat.mode() & 0o077 != 0
            } else {
                stat.mode() & 0o022 != 0 && stat.mode() & libc::S_ISVTX == 0
            };
            if open_to_others {
                return Err(CacheError::OpenToOthers {
                    path: walked,
                    mode: stat.mode(),
                });
            }
        }
        Ok(JobCache {
            dir: dir.to_owned(),
            lifetime,
            owner,
        })
    }

    fn entry_path(&self, job: u32) -> PathBuf {
        self.dir.join(format!("job-{job}"))
    }

    fn token_path(&self, job: u32) -> PathBuf {
        self.dir.join(format!("job-{job}.run"))
    }

    /// Joins the run of `job` whose steps live on this node now, or begins a
    /// new one when none does. A token that a live step holds refuses an
    /// exclusive lock: a step granted one knows the token's run has no step
    /// left here (an earlier run, or one whose steps all ended) and puts a new
    /// token in its place while it holds the lock. A step that took its
    /// shared lock on a token no longer in place tries again.
    pub fn join_run(&self, job: u32) -> Result<RunHold, CacheError> {
        let path = self.token_path(job);
        let at = |error| CacheError::Io {
            path: path.clone(),
            error,
        };
        for _ in 0..JOIN_ATTEMPTS {
            let token = match OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
            {
                Err(e) if e.kind() == ErrorKind::NotFound => return self.begin_run(job),
                Err(e) => return Err(at(e)),
                Ok(token) => token,
            };
            if try_flock(&token, libc::LOCK_EX).map_err(at)? {
                // Held exclusively, so nobody joins it before it is replaced.
                return self.begin_run(job);
            }
            if !try_flock(&token, libc::LOCK_SH).map_err(at)? {
                continue; // another step is replacing it right now
            }
            let stat = token.metadata().map_err(at)?;
            if stat.nlink() == 0 {
                continue; // replaced between opening and locking
            }
            if !stat.file_type().is_file() || stat.uid() != self.owner || stat.size() > 128 {
                return Err(CacheError::NotWrittenByPlugin {
                    path,
                    kind: "a token",
                });
            }
            let mut run = String::new();
            (&token).read_to_string(&mut run).map_err(at)?;
            return Ok(RunHold { _token: token, run });
        }
        Err(CacheError::Contended {
            path,
            attempts: JOIN_ATTEMPTS,
        })
    }

    /// A new token, locked before it is in place so nobody finds it unheld.
    /// Named by this process and the moment: no earlier run's token had it.
    fn begin_run(&self, job: u32) -> Result<RunHold, CacheError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let run = format!(
            "{}.{}.{:09}",
            std::process::id(),
            now.as_secs(),
            now.subsec_nanos()
        );
        let path = self.token_path(job);
        let token = self.write_in_place(&path, run.as_bytes())?;
        Ok(RunHold { _token: token, run })
    }

    /// The stored answer for this job, user and run if it is still valid;
    /// `Err` only says why an entry that exists was not used.
    pub fn lookup(
        &self,
        job: u32,
        uid: u32,
        run: &RunHold,
        now: u64,
    ) -> Result<Option<ControllerJob>, CacheError> {
        let path = self.entry_path(job);
        let at = |error| CacheError::Io {
            path: path.clone(),
            error,
        };
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
        {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(at(e)),
            Ok(file) => file,
        };
        let stat = file.metadata().map_err(at)?;
        if !stat.file_type().is_file() || stat.uid() != self.owner || stat.size() > MAX_ENTRY_BYTES
        {
            return Err(CacheError::NotWrittenByPlugin {
                path,
                kind: "an entry",
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(at)?;
        let answer =
            CachedAnswer::decode(&text).map_err(|problem| CacheError::Record { path, problem })?;
        Ok(answer
            .answers(job, uid, run.run(), now, self.lifetime)
            .then_some(answer.controller))
    }

    /// Stores an answer (whole or not at all: written aside, then renamed
    /// into place), and removes entries that have outlived the cache time.
    pub fn store(&self, answer: &CachedAnswer) -> Result<(), CacheError> {
        let text = answer
            .encode()
            .ok_or(CacheError::Unstorable { job: answer.job })?;
        self.write_in_place(&self.entry_path(answer.job), text.as_bytes())?;
        self.remove_outlived(answer.fetched_at);
        Ok(())
    }

    /// Writes `bytes` aside, takes a shared lock on it and renames it over
    /// `path`; returns it open and locked.
    fn write_in_place(&self, path: &Path, bytes: &[u8]) -> Result<File, CacheError> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let aside = self.dir.join(format!(".{name}.{}", std::process::id()));
        let written = write_new(&aside, bytes).and_then(|file| {
            // Nobody else knows the aside name: the lock is granted at once.
            if !try_flock(&file, libc::LOCK_SH)? {
                return Err(std::io::Error::from_raw_os_error(libc::EWOULDBLOCK));
            }
            fs::rename(&aside, path)?;
            Ok(file)
        });
        written.map_err(|error| {
            let _ = fs::remove_file(&aside);
            CacheError::Write {
                path: path.to_owned(),
                error,
            }
        })
    }

    /// Entries of ended jobs: nothing else removes them, and a node runs
    /// many jobs between reboots. Judged by the time the plugin wrote them.
    fn remove_outlived(&self, now: u64) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with("job-") && !name.starts_with(".job-") {
                continue;
            }
            let Ok(stat) = entry.metadata() else { continue };
            let written = u64::try_from(stat.mtime()).unwrap_or(0);
            if now.saturating_sub(written) < self.lifetime.as_secs() {
                continue;
            }
            // A token stays while a step of its run lives, however old it is.
            if name.ends_with(".run") && !name.starts_with('.') {
                let unheld = File::open(entry.path())
                    .and_then(|token| try_flock(&token, libc::LOCK_EX))
                    .unwrap_or(false);
                if !unheld {
                    continue;
                }
            }
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// `flock(op | LOCK_NB)`: `Ok(false)` when another open file holds a lock
/// that conflicts. (`File::try_lock` is newer than the crate's Rust.)
fn try_flock(file: &File, op: libc::c_int) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: a descriptor the File owns for the whole call; flock reads no memory.
    if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<File> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(file)
}

#[cfg(test)]
mod tests;
