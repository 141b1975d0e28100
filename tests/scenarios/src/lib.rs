//! Helpers for tests that run against the real Slurm test cluster started by
//! `tests/cluster/cluster.sh up` (see tests/cluster/README.md).
//!
//! Every test gets its cluster from [`Cluster::from_env`], which panics when there is no
//! running cluster: a real-cluster test must fail loudly, never skip.
//!
//! The helpers are safe to use from tests running in parallel threads: nothing here keeps
//! mutable state except counters for unique names and the beamline registry (see
//! [`Cluster::start_beamtime`]). What is shared is the cluster itself: a test that drains the
//! node, rewrites plugstack.conf or fills the node's CPUs affects its neighbours.

pub mod figures;

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The one compute node of the test cluster.
pub const NODE: &str = "btnode1";
/// An ordinary user with an association in [`DEFAULT_ACCOUNT`], created by `cluster.sh up`.
pub const TEST_USER: &str = "btalice";
/// The Slurm account of ordinary users.
pub const DEFAULT_ACCOUNT: &str = "btusers";
/// The default partition; holds [`NODE`] like the online partitions.
pub const DEFAULT_PARTITION: &str = "all";
/// The facility's per-beamline online partitions configured on the test cluster.
pub const ONLINE_PARTITIONS: [&str; 3] = ["ponline_p11", "ponline_p21", "ponline_p07"];

/// What a command gets when the caller does not say otherwise: long enough for a loaded
/// 2-core machine, short enough that a hang fails the test instead of CI's whole budget.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const POLL: Duration = Duration::from_millis(100);

// ------------------------------------------------------------------------------------------
// Unix users

/// A Unix account as the helpers need it to run commands under its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// All groups, primary included, as `initgroups` would set them.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: String,
}

impl UnixUser {
    /// Looks the user up in the password and group databases; `None` if unknown.
    pub fn lookup(name: &str) -> Option<UnixUser> {
        let cname = CString::new(name).ok()?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the call; buf outlives every use of pw's fields.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: getpwnam_r succeeded, so these are NUL-terminated strings inside buf.
        let (home, shell) = unsafe {
            (
                PathBuf::from(OsStr::from_bytes(
                    std::ffi::CStr::from_ptr(pw.pw_dir).to_bytes(),
                )),
                std::ffi::CStr::from_ptr(pw.pw_shell)
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        let (uid, gid) = (pw.pw_uid, pw.pw_gid);
        let mut groups: Vec<libc::gid_t> = vec![0; 64];
        loop {
            let mut n = groups.len() as libc::c_int;
            // SAFETY: groups has room for n entries; getgrouplist updates n.
            let rc =
                unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
            if rc >= 0 {
                groups.truncate(n as usize);
                break;
            }
            groups.resize((n as usize).max(groups.len() * 2), 0);
        }
        Some(UnixUser {
            name: name.to_string(),
            uid,
            gid,
            groups,
            home,
            shell,
        })
    }

    /// Like [`UnixUser::lookup`], but a missing user is a test failure.
    #[track_caller]
    pub fn get(name: &str) -> UnixUser {
        UnixUser::lookup(name).unwrap_or_else(|| panic!("no Unix user {name:?} on this machine"))
    }
}

// ------------------------------------------------------------------------------------------
// Running commands

/// A command to run as root or as another user, with an exact environment (nothing leaks
/// from the test process: cargo's variables would otherwise travel into jobs via sbatch's
/// default `--export=ALL`), a working directory and a bounded run time.
#[derive(Clone, Debug)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    user: Option<UnixUser>,
    env: BTreeMap<OsString, OsString>,
    cwd: Option<PathBuf>,
    timeout: Duration,
    stdin: Option<Vec<u8>>,
}

impl Cmd {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets (or overrides) one variable of the command's environment.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .insert(key.as_ref().to_owned(), value.as_ref().to_owned());
        self
    }

    /// Removes a variable the helpers would otherwise set (e.g. `SLURM_CONF`).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.remove(key.as_ref());
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// The command line as a shell would show it, for messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the command to completion or until its timeout, then kills its whole process
    /// group. Never panics for the command's own failure: look at the [`Output`].
    #[track_caller]
    pub fn run(&self) -> Output {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(&self.env)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout can end srun and whatever it started.
            .process_group(0);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if let Some(user) = &self.user {
            let (uid, gid, groups) = (user.uid, user.gid, user.groups.clone());
            // std's uid()/gid() would drop the supplementary groups; the user's real ones
            // matter (e.g. a beamtime folder's group). Only raw syscalls in the child: it
            // is a fork of a multi-threaded process, where taking locks could deadlock.
            // SAFETY: setgroups/setgid/setuid are async-signal-safe; `groups` was
            // allocated before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let user = self
            .user
            .as_ref()
            .map_or("root".to_string(), |u| u.name.clone());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}` as {user}: {e}", self.display()));
        let pid = child.id() as libc::pid_t;
        let feeder = self.stdin.clone().map(|data| {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            thread::spawn(move || {
                let _ = pipe.write_all(&data);
            })
        });
        let mut out_pipe = child.stdout.take().expect("stdout is piped");
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let out_reader = thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out_pipe.read_to_end(&mut v);
            v
        });
        let err_reader = thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err_pipe.read_to_end(&mut v);
            v
        });
        let deadline = started + self.timeout;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    // SAFETY: plain kill(2) on the process group we created for this child.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    break child.wait().expect("wait for killed child");
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("waiting for `{}`: {e}", self.display()),
            }
        };
        if let Some(f) = feeder {
            let _ = f.join();
        }
        // A grandchild that kept the pipes open would block these joins: kill the group.
        if timed_out {
            // SAFETY: as above.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
        Output {
            cmdline: self.display(),
            user,
            status,
            timed_out,
            elapsed: started.elapsed(),
            stdout,
            stderr,
        }
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a finished [`Cmd`] left behind. Its `Display` shows everything, for panic messages.
#[derive(Clone, Debug)]
pub struct Output {
    pub cmdline: String,
    pub user: String,
    pub status: ExitStatus,
    /// The command ran into its timeout and was killed.
    pub timed_out: bool,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The exit code; `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.timed_out,
            "command timed out instead of failing:\n{self}"
        );
        assert!(
            !self.status.success(),
            "command succeeded, expected a failure:\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{self}"
        );
        self
    }

    /// The job id printed by `sbatch --parsable` (`<id>` or `<id>;<cluster>`).
    #[track_caller]
    pub fn job_id(&self) -> u32 {
        self.assert_success();
        let first = self
            .stdout
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        first
            .split(';')
            .next()
            .and_then(|id| id.trim().parse().ok())
            .unwrap_or_else(|| panic!("no job id in the output of:\n{self}"))
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.timed_out {
            "killed after its timeout".to_string()
        } else if let Some(sig) = self.status.signal() {
            format!("killed by signal {sig}")
        } else {
            format!("exit code {}", self.status.code().unwrap_or(-1))
        };
        writeln!(f, "  command: {} (as {})", self.cmdline, self.user)?;
        writeln!(f, "  result:  {status} after {:.2?}", self.elapsed)?;
        writeln!(f, "  stdout:  {}", indent(&self.stdout))?;
        write!(f, "  stderr:  {}", indent(&self.stderr))
    }
}

fn indent(s: &str) -> String {
    let s = s.trim_end();
    if s.is_empty() {
        return "(empty)".into();
    }
    s.replace('\n', "\n           ")
}

// ------------------------------------------------------------------------------------------
// Jobs

/// A submitted batch job and where its output goes.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: u32,
    pub user: String,
    pub workdir: PathBuf,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Job {
    /// The job's standard output file; a missing file is a test failure (Slurm creates it
    /// when the batch step starts, so a job that never started has none).
    #[track_caller]
    pub fn stdout(&self) -> String {
        read_job_file(&self.stdout_path, self.id)
    }

    #[track_caller]
    pub fn stderr(&self) -> String {
        read_job_file(&self.stderr_path, self.id)
    }
}

#[track_caller]
fn read_job_file(path: &Path, id: u32) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("job {id}: cannot read {}: {e}", path.display()))
}

/// Where a job ended up, as the controller (or, after it forgot the job, sacct) says.
#[derive(Clone, Debug)]
pub struct JobEnd {
    pub id: u32,
    /// `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, `NODE_FAIL`, … or `PENDING` for a
    /// job that Slurm requeued and held after a launch or prolog failure.
    pub state: String,
    /// scontrol's `Reason` (e.g. `launch_failed_requeued_held`), `None` if there is none.
    pub reason: Option<String>,
    /// The batch script's exit code and the signal that ended it (`ExitCode=<code>:<sig>`).
    pub exit_code: i32,
    pub signal: i32,
    /// The whole `scontrol show job -o` record (empty when the answer came from sacct).
    pub record: BTreeMap<String, String>,
}

impl JobEnd {
    pub fn completed_ok(&self) -> bool {
        self.state == "COMPLETED" && self.exit_code == 0 && self.signal == 0
    }

    /// Slurm gave up launching the job and held it (what a failing node-side plugin
    /// init or prolog causes for batch jobs, together with a drained node).
    pub fn requeued_held(&self) -> bool {
        REQUEUED_STATES.contains(&self.state.as_str())
            && self.reason.as_deref().is_some_and(is_held_reason)
    }

    #[track_caller]
    pub fn assert_completed_ok(&self) -> &Self {
        assert!(
            self.completed_ok(),
            "job {} did not complete with 0:0: {self:#?}",
            self.id
        );
        self
    }
}

const FINAL_STATES: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
];

/// States of a job that Slurm put back into the queue. (`Reason=Prolog` on a RUNNING job
/// only means the prolog is still running, which job_container/tmpfs's Contain makes common.)
const REQUEUED_STATES: &[&str] = &[
    "PENDING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "SPECIAL_EXIT",
];

fn is_held_reason(reason: &str) -> bool {
    reason.contains("launch_failed") || reason.to_ascii_lowercase().contains("held")
}

/// Splits an `-o` (one line) record of scontrol into its `Key=Value` fields. Values may hold
/// spaces (a command line, a working directory): a word that does not start a new
/// `Key=` belongs to the previous value.
pub fn parse_record(line: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut last: Option<String> = None;
    for word in line.split(' ').filter(|w| !w.is_empty()) {
        match word.split_once('=') {
            Some((k, v))
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/' || c == ':') =>
            {
                map.insert(k.to_string(), v.to_string());
                last = Some(k.to_string());
            }
            _ => {
                if let Some(k) = &last {
                    let v: &mut String = map.get_mut(k).expect("last key present");
                    v.push(' ');
                    v.push_str(word);
                }
            }
        }
    }
    map
}

fn parse_exit_code(s: &str) -> (i32, i32) {
    let (code, sig) = s.split_once(':').unwrap_or((s, "0"));
    (
        code.trim().parse().unwrap_or(-1),
        sig.trim().parse().unwrap_or(-1),
    )
}

// ------------------------------------------------------------------------------------------
// The node

/// The node's state as sinfo prints it (`%T`, e.g. `idle`, `mixed`, `drained`, `down*`)
/// and its reason (`%E`, `none` when there is none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub state: String,
    pub reason: String,
}

impl NodeState {
    /// Able to take jobs: not drained, draining, down, failing or unresponsive (`*`).
    /// `reserved` is normal once beamtimes exist; `completing` passes in a moment.
    pub fn is_usable(&self) -> bool {
        // sinfo appends '+' while a job on the node is completing (node_state_string in
        // Slurm's slurm_protocol_defs.c); the base state decides.
        matches!(
            self.state.trim_end_matches('+'),
            "idle" | "mixed" | "allocated" | "reserved" | "completing"
        )
    }
}

// ------------------------------------------------------------------------------------------
// Beamtimes

/// What `slurm-conf-examples/beamtime-start.sh` should create. Defaults: one reservation
/// named after the id, one core of the node (so other tests' jobs still fit), partition
/// `ponline_<beamline>`, with online resources.
#[derive(Clone, Debug)]
pub struct BeamtimeSpec {
    pub id: String,
    pub beamline: String,
    pub account: String,
    pub partition: Option<String>,
    pub reservations: Vec<String>,
    /// Cores per reservation; `None` reserves whole nodes as the facility does, which
    /// keeps every job outside the reservation off the test cluster's only node.
    pub cores: Option<u32>,
    pub online: bool,
    /// Further options for beamtime-start.sh (`--title`, `--proposal-type`, …).
    pub extra_args: Vec<String>,
}

impl BeamtimeSpec {
    pub fn new(id: &str, beamline: &str, account: &str) -> Self {
        BeamtimeSpec {
            id: id.into(),
            beamline: beamline.into(),
            account: account.into(),
            partition: None,
            reservations: Vec::new(),
            cores: Some(1),
            online: true,
            extra_args: Vec::new(),
        }
    }

    pub fn partition(mut self, partition: &str) -> Self {
        self.partition = Some(partition.into());
        self
    }

    pub fn reservations(mut self, names: &[&str]) -> Self {
        self.reservations = names.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn cores(mut self, cores: u32) -> Self {
        self.cores = Some(cores);
        self
    }

    pub fn whole_nodes(mut self) -> Self {
        self.cores = None;
        self
    }

    pub fn no_online(mut self) -> Self {
        self.online = false;
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// A started beamtime.
#[derive(Clone, Debug)]
pub struct Beamtime {
    pub id: String,
    pub beamline: String,
    /// The beamtime's Unix account (`onlineAnalysis.userAccount`).
    pub account: String,
    /// The Slurm account (named after the id).
    pub slurm_account: String,
    pub partition: String,
    /// Empty without online resources.
    pub reservations: Vec<String>,
    /// `<source root>/<beamline>/current`, what the plugin shows as `/beamline/<bl>/current`.
    pub current_dir: PathBuf,
    pub metadata_path: PathBuf,
}

impl Beamtime {
    /// The metadata file, parsed.
    #[track_caller]
    pub fn metadata(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.metadata_path)
            .unwrap_or_else(|e| panic!("{}: {e}", self.metadata_path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", self.metadata_path.display()))
    }
}

/// Beamline -> beamtime id of the beamtimes this test process started. The facility has one
/// `current` beamtime per beamline, and beamtime-start.sh --replace moves an older one aside:
/// two tests of one binary sharing a beamline would pull folders from under each other.
static BEAMLINES: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

// ------------------------------------------------------------------------------------------
// Logs

/// A position in a daemon's log; [`LogCursor::read_new`] returns what was written since.
/// Other tests write to the same logs concurrently: look for your job id, not line counts.
#[derive(Clone, Debug)]
pub struct LogCursor {
    pub path: PathBuf,
    offset: u64,
}

impl LogCursor {
    pub fn at_end(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        LogCursor { path, offset }
    }

    pub fn read_new(&self) -> String {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return String::new();
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_ok() {
            let _ = f.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

// ------------------------------------------------------------------------------------------
// The cluster

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A handle on the running test cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    slurm_conf: PathBuf,
    state: PathBuf,
}

impl Cluster {
    /// The cluster that `eval "$(tests/cluster/cluster.sh env)"` points at.
    /// Panics — the test fails — when `SLURM_CONF`/`BT_TEST_STATE` are unset, when not
    /// running as root, or when slurmctld does not answer.
    #[track_caller]
    pub fn from_env() -> Cluster {
        const HOW: &str = "no test cluster: run tests/cluster/cluster.sh up first, then \
                           eval \"$(tests/cluster/cluster.sh env)\" in the shell that runs cargo test";
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let (Some(conf), Some(state)) = (var("SLURM_CONF"), var("BT_TEST_STATE")) else {
            panic!("{HOW} (SLURM_CONF or BT_TEST_STATE is not set)");
        };
        let cluster = Cluster {
            slurm_conf: conf.into(),
            state: state.into(),
        };
        assert!(
            cluster.slurm_conf.is_file(),
            "{HOW} ({} does not exist)",
            cluster.slurm_conf.display()
        );
        // SAFETY: getuid cannot fail.
        assert_eq!(
            unsafe { libc::getuid() },
            0,
            "the real-cluster tests run as root: they act as several Unix users and create beamtimes"
        );
        let out = cluster
            .cmd("sinfo")
            .args(["-h", "-o", "%P"])
            .timeout(Duration::from_secs(15))
            .run();
        assert!(
            out.success(),
            "{HOW} (sinfo cannot reach slurmctld):\n{out}"
        );
        cluster
    }

    pub fn slurm_conf(&self) -> &Path {
        &self.slurm_conf
    }

    /// The cluster's state folder (`BT_TEST_STATE`).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// `<state>/log`: slurmctld.log, slurmd.log (slurmstepd logs there too), slurmdbd.log, …
    pub fn log_dir(&self) -> PathBuf {
        self.state.join("log")
    }

    /// A cursor at the current end of `<state>/log/<name>` (e.g. `"slurmd.log"`).
    pub fn log_cursor(&self, name: &str) -> LogCursor {
        LogCursor::at_end(self.log_dir().join(name))
    }

    /// Where beamtime-start.sh creates beamline folders by default: `<state>/beamline-src`.
    pub fn beamline_src(&self) -> PathBuf {
        self.state.join("beamline-src")
    }

    /// The repository's root (for scripts such as slurm-conf-examples/beamtime-start.sh).
    pub fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .expect("repository root")
    }

    fn base_env(&self, cmd: Cmd) -> Cmd {
        cmd.env("PATH", CLEAN_PATH)
            .env("LANG", "C.UTF-8")
            .env("SLURM_CONF", &self.slurm_conf)
    }

    /// A command run as root, with `SLURM_CONF` and `BT_TEST_STATE` set and nothing else
    /// inherited but `PATH`/`LANG`.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Cmd {
        let cmd = Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            user: None,
            env: BTreeMap::new(),
            cwd: None,
            timeout: DEFAULT_TIMEOUT,
            stdin: None,
        };
        self.base_env(cmd)
            .env("HOME", "/root")
            .env("BT_TEST_STATE", &self.state)
    }

    /// A command run as `user` (real uid/gid and supplementary groups, no PAM session) with
    /// a login-like environment (`HOME`, `USER`, `LOGNAME`, `SHELL`, `PATH`, `LANG`,
    /// `SLURM_CONF`) and the user's home as working directory unless `cwd` says otherwise.
    #[track_caller]
    pub fn as_user(&self, user: &str, program: impl AsRef<OsStr>) -> Cmd {
        let u = UnixUser::get(user);
        let mut cmd = self.cmd(program).env_remove("BT_TEST_STATE");
        cmd = cmd
            .env("HOME", &u.home)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name)
            .env("SHELL", &u.shell)
            .cwd(&u.home);
        cmd.user = Some(u);
        cmd
    }

    /// Runs `argv` as `user` in `workdir`; shorthand for [`Cluster::as_user`].
    #[track_caller]
    pub fn run_as(&self, user: &str, workdir: &Path, argv: &[&str]) -> Output {
        let (program, args) = argv.split_first().expect("argv must not be empty");
        self.as_user(user, program).args(args).cwd(workdir).run()
    }

    /// A fresh folder owned by `user` for one test's scripts and job output:
    /// `<state>/work/<user>/<label>-<pid>-<n>`. Not under /tmp (job_container/tmpfs gives
    /// jobs their own /tmp) and not root-owned (Slurm opens output files as the user).
    #[track_caller]
    pub fn workdir(&self, user: &str, label: &str) -> PathBuf {
        let u = UnixUser::get(user);
        let parent = self.state.join("work").join(user);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("{label}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for d in [&parent, &dir] {
            std::os::unix::fs::chown(d, Some(u.uid), Some(u.gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", d.display()));
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", d.display()));
        }
        dir
    }

    /// Writes `script` to a file in `workdir` (owned by `user`) and runs
    /// `sbatch --parsable -o <workdir>/slurm-%j.out -e <workdir>/slurm-%j.err <args> <file>`
    /// as `user` in `workdir`. Later `-o`/`-e` in `args` win. `--wait` in `args` works, but
    /// [`Cluster::wait_job`] polls faster than sbatch does.
    #[track_caller]
    pub fn sbatch(&self, user: &str, workdir: &Path, args: &[&str], script: &str) -> Output {
        let u = UnixUser::get(user);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let file = workdir.join(format!("job-{n}.sh"));
        std::fs::write(&file, script).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        std::os::unix::fs::chown(&file, Some(u.uid), Some(u.gid)).expect("chown job script");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
            .expect("chmod job script");
        let timeout = if args.contains(&"--wait") || args.contains(&"-W") {
            Duration::from_secs(300)
        } else {
            DEFAULT_TIMEOUT
        };
        self.as_user(user, "sbatch")
            .cwd(workdir)
            .arg("--parsable")
            .arg("-o")
            .arg(workdir.join("slurm-%j.out"))
            .arg("-e")
            .arg(workdir.join("slurm-%j.err"))
            .args(args)
            .arg(&file)
            .timeout(timeout)
            .run()
    }

    /// [`Cluster::sbatch`] that must succeed; returns the job and its output paths.
    #[track_caller]
    pub fn submit(&self, user: &str, workdir: &Path, args: &[&str], script: &str) -> Job {
        let out = self.sbatch(user, workdir, args, script);
        let id = out.job_id();
        Job {
            id,
            user: user.into(),
            workdir: workdir.into(),
            stdout_path: workdir.join(format!("slurm-{id}.out")),
            stderr_path: workdir.join(format!("slurm-{id}.err")),
        }
    }

    /// Submits and waits until the job has settled (see [`Cluster::wait_job`]).
    #[track_caller]
    pub fn submit_and_wait(
        &self,
        user: &str,
        workdir: &Path,
        args: &[&str],
        script: &str,
    ) -> (Job, JobEnd) {
        let job = self.submit(user, workdir, args, script);
        let end = self.wait_job(job.id, DEFAULT_TIMEOUT);
        (job, end)
    }

    /// The controller's record of a job (`scontrol show job -o`), `None` once it forgot it.
    pub fn job_record(&self, id: u32) -> Option<BTreeMap<String, String>> {
        let out = self
            .cmd("scontrol")
            .args(["show", "job", "-o", &id.to_string()])
            .run();
        if !out.success() {
            return None;
        }
        let line = out.stdout.lines().find(|l| l.starts_with("JobId="))?;
        Some(parse_record(line))
    }

    /// sacct's `(State, ExitCode)` of a job's allocation, `None` until accounting has it.
    pub fn sacct(&self, id: u32) -> Option<(String, String)> {
        let out = self
            .cmd("sacct")
            .args([
                "-n",
                "-P",
                "-X",
                "-j",
                &id.to_string(),
                "-o",
                "State,ExitCode",
            ])
            .timeout(Duration::from_secs(20))
            .run();
        let line = out.stdout.lines().next()?.trim().to_string();
        let (state, exit) = line.split_once('|')?;
        // "CANCELLED by 0" -> "CANCELLED"
        let state = state.split_whitespace().next().unwrap_or("").to_string();
        Some((state, exit.to_string()))
    }

    /// Polls until the job has settled: a final state, or requeued and held after a launch
    /// or prolog failure. Panics after `timeout` with the job's record and the node's state
    /// (a job pending on resources forever is a failing test, not a hang).
    #[track_caller]
    pub fn wait_job(&self, id: u32, timeout: Duration) -> JobEnd {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            match self.job_record(id) {
                Some(rec) => {
                    let state = rec.get("JobState").cloned().unwrap_or_default();
                    let reason = rec.get("Reason").filter(|r| r.as_str() != "None").cloned();
                    let held = REQUEUED_STATES.contains(&state.as_str())
                        && reason.as_deref().is_some_and(is_held_reason);
                    if FINAL_STATES.contains(&state.as_str()) || held {
                        let (exit_code, signal) =
                            parse_exit_code(rec.get("ExitCode").map_or("", |s| s));
                        return JobEnd {
                            id,
                            state,
                            reason,
                            exit_code,
                            signal,
                            record: rec,
                        };
                    }
                    last = Some(rec);
                }
                None => {
                    // Purged from the controller (MinJobAge): accounting has the end.
                    if let Some((state, exit)) = self.sacct(id) {
                        if FINAL_STATES.contains(&state.as_str()) {
                            let (exit_code, signal) = parse_exit_code(&exit);
                            return JobEnd {
                                id,
                                state,
                                reason: None,
                                exit_code,
                                signal,
                                record: BTreeMap::new(),
                            };
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "job {id} did not settle within {timeout:?}; last record: {last:#?}; node: {:?}",
                    self.node_state()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Polls sacct until it reports a final state for the job (accounting lags behind the
    /// controller by a moment); returns `(State, ExitCode)` as sacct prints them.
    #[track_caller]
    pub fn wait_accounted(&self, id: u32, timeout: Duration) -> (String, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.sacct(id);
            if let Some((state, exit)) = &got {
                if FINAL_STATES.contains(&state.as_str()) {
                    return (state.clone(), exit.clone());
                }
            }
            assert!(
                Instant::now() < deadline,
                "sacct has no final state for job {id} after {timeout:?} (last: {got:?})"
            );
            thread::sleep(POLL * 2);
        }
    }

    /// The node's state and reason from `sinfo -N`.
    #[track_caller]
    pub fn node_state(&self) -> NodeState {
        let out = self
            .cmd("sinfo")
            .args(["-h", "-N", "-n", NODE, "-o", "%T|%E"])
            .timeout(Duration::from_secs(20))
            .run();
        out.assert_success();
        let line = out
            .stdout
            .lines()
            .next()
            .unwrap_or_else(|| panic!("sinfo does not list {NODE}:\n{out}"));
        let (state, reason) = line.split_once('|').unwrap_or((line, ""));
        NodeState {
            state: state.trim().into(),
            reason: reason.trim().into(),
        }
    }

    /// Fails the test when the node is drained, draining, down or not responding, showing
    /// Slurm's reason (a plugin error in the wrong hook drains the node for everybody).
    #[track_caller]
    pub fn assert_node_not_drained(&self) {
        let node = self.node_state();
        assert!(
            node.is_usable(),
            "node {NODE} is {} (reason: {}); slurmd.log: {}",
            node.state,
            node.reason,
            self.log_dir().join("slurmd.log").display()
        );
    }

    /// Puts a drained node back into service, for tests that drain it on purpose, and
    /// waits (30 s at most) until it takes jobs again: right after RESUME it can show as
    /// `idle*` (not responding) until slurmd answers the controller's next ping.
    #[track_caller]
    pub fn resume_node(&self) {
        let state = self.node_state();
        if state.state.contains("drain") || state.state.starts_with("down") {
            self.cmd("scontrol")
                .args(["update", &format!("NodeName={NODE}"), "State=RESUME"])
                .run()
                .assert_success();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.node_state();
            if state.is_usable() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {NODE} still {state:?} 30 s after RESUME"
            );
            thread::sleep(POLL * 2);
        }
    }

    /// Creates an ordinary user (Unix account if missing, association with
    /// [`DEFAULT_ACCOUNT`]) and waits until the controller knows the association.
    #[track_caller]
    pub fn add_ordinary_user(&self, name: &str) -> UnixUser {
        let lock = self.state.join("beamline-src/.beamtime-start.lock");
        // useradd fails on a /etc/passwd locked by a concurrent useradd: share
        // beamtime-start.sh's lock.
        let script = format!(
            "set -e; exec 9>'{lock}'; flock -w 120 9; id -u {name} >/dev/null 2>&1 || useradd -m -s /bin/bash {name}; \
             [ -n \"$(timeout 30 sacctmgr -n -P show assoc where user={name} account={DEFAULT_ACCOUNT} format=User)\" ] || \
             timeout 30 sacctmgr -i add user {name} DefaultAccount={DEFAULT_ACCOUNT} >/dev/null",
            lock = lock.display()
        );
        self.cmd("bash")
            .args(["-c", &script])
            .run()
            .assert_success();
        self.wait_association(name, DEFAULT_ACCOUNT);
        UnixUser::get(name)
    }

    /// Waits until slurmctld has the user/account association (slurmdbd pushes new ones
    /// asynchronously; a job submitted before that is refused as an invalid account).
    #[track_caller]
    pub fn wait_association(&self, user: &str, account: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let needle = format!("UserName={user}(");
        loop {
            let out = self
                .cmd("scontrol")
                .args([
                    "show",
                    "assoc_mgr",
                    &format!("users={user}"),
                    &format!("accounts={account}"),
                    "flags=assoc",
                ])
                .run();
            if out.stdout.contains(&needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "slurmctld does not know {user}/{account} after 30 s:\n{out}"
            );
            thread::sleep(POLL * 2);
        }
    }

    /// `scontrol show res -o <name>` as fields; `None` if there is no such reservation.
    pub fn reservation(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let out = self.cmd("scontrol").args(["show", "res", "-o", name]).run();
        if !out.success() {
            return None;
        }
        out.stdout
            .lines()
            .find(|l| l.starts_with("ReservationName="))
            .map(parse_record)
    }

    /// Runs slurm-conf-examples/beamtime-start.sh for `spec` and returns what it made.
    /// Always passes `--replace`, so a beamline's `current` left by an earlier test binary
    /// does not block; within this test process, a beamline may serve one beamtime id only
    /// (give every test its own beamline name, e.g. `p11` in one test, `p99` with
    /// partition `all` in another) — this panics otherwise.
    #[track_caller]
    pub fn start_beamtime(&self, spec: &BeamtimeSpec) -> Beamtime {
        {
            let mut guard = BEAMLINES.lock().unwrap_or_else(|p| p.into_inner());
            let map = guard.get_or_insert_with(HashMap::new);
            if let Some(other) = map.get(&spec.beamline) {
                assert_eq!(
                    other, &spec.id,
                    "beamline {} already serves beamtime {other} in this test binary; use another beamline name for {}",
                    spec.beamline, spec.id
                );
            }
            map.insert(spec.beamline.clone(), spec.id.clone());
        }
        let script = Cluster::repo_root().join("slurm-conf-examples/beamtime-start.sh");
        let mut cmd = self
            .cmd(&script)
            .args([
                "--id",
                &spec.id,
                "--beamline",
                &spec.beamline,
                "--account",
                &spec.account,
                "--replace",
            ])
            .args(["--nodes", NODE])
            .timeout(Duration::from_secs(180));
        if let Some(p) = &spec.partition {
            cmd = cmd.args(["--partition", p]);
        }
        for r in &spec.reservations {
            cmd = cmd.args(["--reservation", r]);
        }
        if let Some(c) = spec.cores {
            cmd = cmd.args(["--cores", &c.to_string()]);
        }
        if !spec.online {
            cmd = cmd.arg("--no-online");
        }
        let out = cmd.args(&spec.extra_args).run();
        out.assert_success();
        let metadata_path = PathBuf::from(out.stdout.trim());
        let reservations = match (spec.online, spec.reservations.is_empty()) {
            (false, _) => Vec::new(),
            (true, true) => vec![spec.id.clone()],
            // `NAME@NODES` asks beamtime-start.sh for a reservation on those nodes.
            (true, false) => spec
                .reservations
                .iter()
                .map(|r| r.split('@').next().unwrap_or(r).to_owned())
                .collect(),
        };
        let src = self.beamline_src();
        Beamtime {
            id: spec.id.clone(),
            beamline: spec.beamline.clone(),
            account: spec.account.clone(),
            slurm_account: spec.id.clone(),
            partition: spec
                .partition
                .clone()
                .unwrap_or_else(|| format!("ponline_{}", spec.beamline)),
            reservations,
            current_dir: src.join(&spec.beamline).join("current"),
            metadata_path,
        }
    }

    /// A copy of the cluster's slurm.conf, readable by `user`, whose plugstack is
    /// empty: a host without the plugin, or a user skipping its client side.
    #[track_caller]
    pub fn slurm_conf_without_plugins(&self, user: &str) -> PathBuf {
        let dir = self.workdir(user, "no-plugins");
        let plugstack = dir.join("plugstack.conf");
        std::fs::write(&plugstack, "# nothing\n").expect("write plugstack.conf");
        let conf: String = std::fs::read_to_string(&self.slurm_conf)
            .expect("read slurm.conf")
            .lines()
            .filter(|line| !line.starts_with("PlugStackConfig"))
            .map(|line| format!("{line}\n"))
            .chain([format!("PlugStackConfig={}\n", plugstack.display())])
            .collect();
        let path = dir.join("slurm.conf");
        std::fs::write(&path, conf).expect("write slurm.conf");
        for file in [&plugstack, &path] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        path
    }

    /// Creates (again) a one-core reservation on the node that admits `user`.
    #[track_caller]
    pub fn create_reservation(&self, name: &str, user: &str) {
        let _ = self
            .cmd("scontrol")
            .args(["delete", &format!("ReservationName={name}")])
            .run();
        self.cmd("scontrol")
            .args([
                "create",
                "reservation",
                &format!("ReservationName={name}"),
                &format!("Users={user}"),
            ])
            .args([
                &format!("Nodes={NODE}"),
                "CoreCnt=1",
                "StartTime=now",
                "Duration=infinite",
                "Flags=IGNORE_JOBS",
            ])
            .run()
            .assert_success();
    }

    /// What `cluster.sh up` recorded in `etc/cluster.args` under `key` (`plugin`,
    /// `plugin_args`, `nodes`, `job_container`, …); empty when it recorded nothing.
    pub fn recorded(&self, key: &str) -> String {
        let path = self.state_dir().join("etc/cluster.args");
        let recorded = std::fs::read_to_string(&path).unwrap_or_default();
        let prefix = format!("{key}=");
        recorded
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_default()
            .to_owned()
    }

    /// The plugin the cluster was started with and its plugstack arguments.
    #[track_caller]
    pub fn installed_plugin(&self) -> (PathBuf, String) {
        let plugin = self.recorded("plugin");
        assert!(
            !plugin.is_empty(),
            "the cluster runs without spank-beamtime: start it with --plugin"
        );
        (PathBuf::from(plugin), self.recorded("plugin_args"))
    }

    /// Rewrites plugstack.conf through `cluster.sh plugstack` (which restarts slurmd, the only
    /// daemon that reads it once). This changes the cluster for every test running at the
    /// same time: only for tests that run alone (their own test binary, one test).
    #[track_caller]
    pub fn set_plugstack(&self, plugin: Option<&Path>, plugin_args: &str) -> Output {
        let script = Cluster::repo_root().join("tests/cluster/cluster.sh");
        let mut cmd = self
            .cmd(&script)
            .arg("plugstack")
            .timeout(Duration::from_secs(120));
        if let Some(p) = plugin {
            cmd = cmd
                .arg("--plugin")
                .arg(p)
                .args(["--plugin-args", plugin_args]);
        }
        let out = cmd.run();
        out.assert_success();
        out
    }
}

/// Puts back, when dropped, the plugstack the cluster was started with, cancels the test
/// user's jobs and returns the node to service: for tests that change plugstack.conf.
pub struct RestorePlugstack<'a> {
    c: &'a Cluster,
    plugin: Option<PathBuf>,
    args: String,
}

impl RestorePlugstack<'_> {
    pub fn new(c: &Cluster) -> RestorePlugstack<'_> {
        let plugin = Some(c.recorded("plugin"))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        RestorePlugstack {
            c,
            plugin,
            args: c.recorded("plugin_args"),
        }
    }
}

impl Drop for RestorePlugstack<'_> {
    fn drop(&mut self) {
        // No panicking here: this also runs while a failed test unwinds.
        let script = Cluster::repo_root().join("tests/cluster/cluster.sh");
        let mut cmd = self
            .c
            .cmd(&script)
            .arg("plugstack")
            .timeout(Duration::from_secs(120));
        if let Some(p) = &self.plugin {
            cmd = cmd
                .arg("--plugin")
                .arg(p)
                .args(["--plugin-args", &self.args]);
        }
        let out = cmd.run();
        if !out.success() {
            eprintln!("could not restore plugstack.conf:\n{out}");
        }
        let _ = self.c.cmd("scancel").args(["-u", TEST_USER]).run();
        self.c.resume_node();
    }
}

// ------------------------------------------------------------------------------------------
// Several nodes (`cluster.sh up --nodes N`)

/// The node count the multi-node scenarios need (`cluster.sh up --nodes 4`).
pub const MULTI_NODES: usize = 4;

impl Cluster {
    /// The cluster's node names as sinfo lists them (`btnode1` … `btnodeN`), each once.
    #[track_caller]
    pub fn nodes(&self) -> Vec<String> {
        let out = self
            .cmd("sinfo")
            .args(["-h", "-N", "-o", "%N"])
            .timeout(Duration::from_secs(20))
            .run();
        out.assert_success();
        let mut nodes: Vec<String> = Vec::new();
        for n in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !nodes.iter().any(|m| m == n) {
                nodes.push(n.to_owned());
            }
        }
        nodes.sort_by_key(|n| n.trim_start_matches("btnode").parse::<u32>().unwrap_or(0));
        nodes
    }

    /// Fails the test unless the cluster has at least `n` nodes: multi-node scenarios are
    /// `#[ignore]`d by default and run with `--ignored` on `cluster.sh up --nodes 4`.
    #[track_caller]
    pub fn require_nodes(&self, n: usize) -> Vec<String> {
        let nodes = self.nodes();
        assert!(
            nodes.len() >= n,
            "this scenario needs a cluster of {n} nodes, this one has {nodes:?}: run \
             tests/cluster/cluster.sh up --nodes {n}"
        );
        nodes
    }

    /// A node's state and reason from `sinfo -N`.
    #[track_caller]
    pub fn state_of(&self, node: &str) -> NodeState {
        let out = self
            .cmd("sinfo")
            .args(["-h", "-N", "-n", node, "-o", "%T|%E"])
            .timeout(Duration::from_secs(20))
            .run();
        out.assert_success();
        let line = out
            .stdout
            .lines()
            .next()
            .unwrap_or_else(|| panic!("sinfo does not list {node}:\n{out}"));
        let (state, reason) = line.split_once('|').unwrap_or((line, ""));
        NodeState {
            state: state.trim().into(),
            reason: reason.trim().into(),
        }
    }

    /// Fails the test when any node is drained, draining, down or not responding.
    #[track_caller]
    pub fn assert_nodes_not_drained(&self) {
        for node in self.nodes() {
            let st = self.state_of(&node);
            assert!(
                st.is_usable(),
                "node {node} is {} (reason: {})",
                st.state,
                st.reason
            );
        }
    }

    /// The slurmd log of `node`: `slurmd-<node>.log` on a multi-node cluster, `slurmd.log`
    /// on the one-node cluster. slurmstepd of that node logs there too.
    pub fn slurmd_log(&self, node: &str) -> PathBuf {
        let per_node = self.log_dir().join(format!("slurmd-{node}.log"));
        if per_node.exists() {
            per_node
        } else {
            self.log_dir().join("slurmd.log")
        }
    }

    /// Cursors at the end of every node's slurmd log.
    pub fn slurmd_log_cursors(&self) -> Vec<(String, LogCursor)> {
        self.nodes()
            .into_iter()
            .map(|n| {
                let cursor = LogCursor::at_end(self.slurmd_log(&n));
                (n, cursor)
            })
            .collect()
    }

    /// slurmctld's RPC counts by message type since the last reset (`sdiag`), e.g.
    /// `REQUEST_JOB_INFO_SINGLE` -> 4.
    #[track_caller]
    pub fn rpc_counts(&self) -> BTreeMap<String, u64> {
        let out = self.cmd("sdiag").timeout(Duration::from_secs(20)).run();
        out.assert_success();
        let mut counts = BTreeMap::new();
        let mut in_types = false;
        for line in out.stdout.lines() {
            if line.starts_with("Remote Procedure Call statistics by message type") {
                in_types = true;
                continue;
            }
            if line.starts_with("Remote Procedure Call statistics by user") {
                break;
            }
            if !in_types {
                continue;
            }
            // "\tREQUEST_JOB_INFO_SINGLE   ( 2021) count:4   ave_time:224 total_time:899"
            let mut words = line.split_whitespace();
            let (Some(name), Some(count)) = (words.next(), line.split("count:").nth(1)) else {
                continue;
            };
            let count = count.split_whitespace().next().and_then(|c| c.parse().ok());
            if let Some(count) = count {
                counts.insert(name.to_owned(), count);
            }
        }
        counts
    }

    /// Resets slurmctld's RPC statistics (`sdiag --reset`).
    #[track_caller]
    pub fn reset_rpc_counts(&self) {
        self.cmd("sdiag")
            .arg("--reset")
            .timeout(Duration::from_secs(20))
            .run()
            .assert_success();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_with_spaces_in_values_parse() {
        let rec = parse_record("JobId=7 JobName=my job Command=/a b/c.sh WorkDir=/w ExitCode=1:0");
        assert_eq!(rec["JobId"], "7");
        assert_eq!(rec["JobName"], "my job");
        assert_eq!(rec["Command"], "/a b/c.sh");
        assert_eq!(parse_exit_code(&rec["ExitCode"]), (1, 0));
    }

    #[test]
    fn quoting_shows_a_shell_command() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("--x=1"), "--x=1");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
