//! Running one command, as root or as another user, with an exact environment and a
//! bounded run time.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::users::UnixUser;

/// What a command gets when the caller does not say otherwise: long enough for a loaded
/// 2-core machine, short enough that a hang fails the test instead of CI's whole budget.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A command to run as root or as another user, with an exact environment (nothing leaks
/// from the test process: cargo's variables would otherwise travel into jobs via sbatch's
/// default `--export=ALL`), a working directory and a bounded run time. Made by
/// [`Cluster::cmd`](crate::Cluster::cmd) and [`Cluster::as_user`](crate::Cluster::as_user).
#[derive(Clone, Debug)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    user: Option<UnixUser>,
    env: BTreeMap<OsString, OsString>,
    cwd: Option<PathBuf>,
    timeout: Duration,
}

impl Cmd {
    /// `program` as root, with an empty environment and [`DEFAULT_TIMEOUT`].
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            user: None,
            env: BTreeMap::new(),
            cwd: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Runs the command with `user`'s uid, gid and groups instead of root's.
    pub(crate) fn with_user(mut self, user: UnixUser) -> Self {
        self.user = Some(user);
        self
    }

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

    /// The command line as a shell would show it, for messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| {
                String::from_utf8_lossy(&beamtime::shell::quote_bytes(a.as_bytes())).into_owned()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command as std runs it: exact environment, no stdin, a process group of its
    /// own, and the user's identity.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
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
        cmd
    }

    /// Runs the command to completion or until its timeout, then kills its whole process
    /// group. Never panics for the command's own failure: look at the [`Output`].
    #[track_caller]
    pub fn run(&self) -> Output {
        let mut cmd = self.command();
        let user = self
            .user
            .as_ref()
            .map_or("root".to_string(), |u| u.name.clone());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}` as {user}: {e}", self.display()));
        let pid = child.id() as libc::pid_t;
        let out_reader = read_all(child.stdout.take().expect("stdout is piped"));
        let err_reader = read_all(child.stderr.take().expect("stderr is piped"));
        // The end of the child is the event to wait for: a thread blocks in wait() and
        // says when it returned, the timeout bounds how long that may take.
        let (exited, has_exited) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let status = child.wait();
            let _ = exited.send(());
            status
        });
        let timed_out = has_exited.recv_timeout(self.timeout).is_err();
        if timed_out {
            // SAFETY: plain kill(2) on the process group we created for this child.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let status = waiter
            .join()
            .expect("the waiting thread does not panic")
            .unwrap_or_else(|e| panic!("waiting for `{}`: {e}", self.display()));
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

impl Cmd {
    /// Starts the command in the background (for a long-running one such as
    /// `bt-submit watch`), its stdout and stderr appended to `log`. The [`Background`]
    /// kills its process group when dropped, so a failing test leaves nothing running.
    #[track_caller]
    pub fn spawn(&self, log: &Path) -> Background {
        let out = append_to(log);
        let err = out.try_clone().expect("dup the log file");
        self.spawn_into(out, err)
    }

    /// [`Cmd::spawn`] with stdout appended to `stdout` and stderr to `stderr`: for
    /// output a test reads whole, such as `bt-submit watch --format json`'s.
    #[track_caller]
    pub fn spawn_apart(&self, stdout: &Path, stderr: &Path) -> Background {
        self.spawn_into(append_to(stdout), append_to(stderr))
    }

    #[track_caller]
    fn spawn_into(&self, out: std::fs::File, err: std::fs::File) -> Background {
        let mut cmd = self.command();
        cmd.stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", self.display()));
        Background {
            cmdline: self.display(),
            child: Some(child),
        }
    }
}

#[track_caller]
fn append_to(log: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
}

/// A command started by [`Cmd::spawn`].
#[derive(Debug)]
pub struct Background {
    cmdline: String,
    child: Option<std::process::Child>,
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Sends `signal` to the command itself (not its group).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
    }

    /// Sends `signal` to the command's whole process group (it leads one), as the hangup of
    /// the terminal it was started from, or the shell's at logout, reaches a job.
    pub fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: plain kill(2) on the group our own child leads; it has not been reaped yet.
        unsafe { libc::kill(-(self.pid() as libc::pid_t), signal) };
    }

    /// Waits up to `timeout` for the command to end; panics if it does not.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("not waited for yet");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                return status;
            }
            if Instant::now() >= deadline {
                // SAFETY: kill(2) on the process group the child leads.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                panic!("`{}` did not end within {timeout:?}", self.cmdline);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the process group the child leads.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

/// Reads a pipe to its end in a thread of its own, so that neither pipe can fill up
/// and stall the child while the other is read.
fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
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
    /// The line of one check in `bt-submit doctor`'s text report
    /// (`ok   CHECK …`, `FAIL CHECK …`, `skip CHECK …`).
    #[track_caller]
    pub fn doctor_check(&self, check: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| {
                l.get(5..)
                    .is_some_and(|rest| rest.starts_with(&format!("{check} ")))
            })
            .unwrap_or_else(|| panic!("no line for check {check}:\n{self}"))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_shown_as_a_shell_would_take_it() {
        let cmd = Cmd::new("sbatch").args(["--job-name=a b", "it's", "--x=1"]);
        assert_eq!(cmd.display(), r"sbatch '--job-name=a b' 'it'\''s' --x=1");
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_and_says_so() {
        let out = Cmd::new("/bin/sh")
            .args(["-c", "echo started; exec /bin/sleep 30"])
            .timeout(Duration::from_millis(300))
            .run();
        assert!(out.timed_out && !out.success(), "{out}");
        assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out}");
        assert_eq!(out.stdout, "started\n");
        assert!(out.elapsed < Duration::from_secs(10), "{out}");
    }

    #[test]
    fn a_quick_command_is_not_held_up_by_its_timeout() {
        let out = Cmd::new("/bin/sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .run();
        assert!(!out.timed_out, "{out}");
        assert_eq!(
            (out.code(), &*out.stdout, &*out.stderr),
            (Some(3), "out\n", "err\n")
        );
        assert!(out.elapsed < Duration::from_secs(10), "{out}");
    }
}
