//! Running a Slurm command on one of the beamtime's reserved nodes over
//! OpenSSH, as the beamtime account with the beamtime's key: the ssh command
//! line, the remote command quoted from the argument vector, the key file
//! checked before connecting, the node chosen, and ssh's failures told apart.
//!
//! Host keys are checked against the system's known_hosts, never switched off
//! (`StrictHostKeyChecking=yes` overrides any `no` in the user's ssh_config):
//! the key is the beamtime's and the node runs its jobs, so a node that cannot
//! prove who it is gets neither.
//!
//! A long-lived caller (`bt-submit watch --remote`) shares one connection per
//! node among its commands ([`Remote::share_connections`]): OpenSSH's
//! connection sharing, its socket in a folder of this run's own (mode 700,
//! so no one else can reach or plant a socket there). The shared connection
//! is made by the first command with the same options as every other, so host
//! key and key are checked as before; a connection that broke is replaced by
//! the next command's.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use beamtime::metadata::OnlineAnalysis;
use beamtime::problem::ASK_THE_ADMINS;
use beamtime::shell::quote_bytes;

use crate::failure::{Failure, Status};
use crate::slurm::error::{SlurmError, SlurmErrorKind};
use crate::slurm::known_hosts::KnownHostsName;
use crate::slurm::process::{cannot_start, last_line};
use crate::slurm::query::Slurm;

/// Seconds ssh waits for a node to answer before the next one is tried.
pub const CONNECT_TIMEOUT_SECONDS: u32 = 10;

/// The options that make ssh fit for a program: no prompts (`BatchMode`), only
/// the beamtime's key (`IdentitiesOnly`, not whatever the agent holds), host
/// keys checked, a bounded wait for a node that is down, and only ssh's errors
/// on stderr, so that they can be told apart.
fn fixed_options() -> [String; 5] {
    [
        "BatchMode=yes".to_owned(),
        "IdentitiesOnly=yes".to_owned(),
        "StrictHostKeyChecking=yes".to_owned(),
        format!("ConnectTimeout={CONNECT_TIMEOUT_SECONDS}"),
        "LogLevel=ERROR".to_owned(),
    ]
}

/// Why [`Remote::run`] gave no output of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// It did not run, or ssh refused to go on (or, logged in, no sign that
    /// it started came back): as the failure says.
    Failed(Failure),
    /// The connection broke off, before the sign that it started or after:
    /// it may have run (sbatch may have made a job), and only Slurm can tell.
    /// Trying again is no mistake of anyone's; the failure says how to look.
    AnswerLost(Failure),
}

impl From<Failure> for RunError {
    fn from(failure: Failure) -> RunError {
        RunError::Failed(failure)
    }
}

impl From<RunError> for Failure {
    fn from(error: RunError) -> Failure {
        match error {
            RunError::Failed(failure) | RunError::AnswerLost(failure) => failure,
        }
    }
}

/// The beamtime account on its reserved nodes.
#[derive(Debug)]
pub struct Remote {
    account: String,
    key: Option<PathBuf>,
    /// In the order they are tried.
    nodes: Vec<String>,
    /// The node that answered last: later commands of this run try it first,
    /// and the others when it stops answering (a long `watch --remote`
    /// outlives a node's reboot).
    answered: RefCell<Option<String>>,
    shared: Option<SharedConnections>,
}

/// Seconds a shared connection outlives its last command: a burst of
/// submissions reuses it, a quiet watch does not keep it open for hours, and
/// one left behind by a killed bt-submit ends on its own.
const SHARED_CONNECTION_SECONDS: u32 = 60;

/// The private folder of this run's shared connections and the nodes tried
/// through it, whose connections are closed when it is dropped.
#[derive(Debug)]
struct SharedConnections {
    folder: PathBuf,
    account: String,
    tried: RefCell<BTreeSet<String>>,
}

impl Remote {
    /// `node`: the user's `--node`, which must be one of `reservedNodes` (the
    /// beamtime's key opens only those); without it every reserved node is
    /// tried in the metadata's order.
    pub fn new(online: &OnlineAnalysis, node: Option<&str>) -> Result<Remote, Failure> {
        let nodes = match node {
            Some(node) if online.reserved_nodes.iter().any(|n| n == node) => {
                vec![node.to_owned()]
            }
            Some(node) => {
                return Err(Failure::new(
                    Status::Usage,
                    format!(
                        "--node {} is not one of the beamtime's reserved nodes: {}",
                        beamtime::shell::quote(node),
                        online.reserved_nodes.join(", ")
                    ),
                    "name one of them with --node, or leave --node out to use the first that \
                     answers",
                ))
            }
            None => online.reserved_nodes.clone(),
        };
        Ok(Remote {
            account: online.user_account.clone(),
            key: online.ssh_private_key.clone(),
            nodes,
            answered: RefCell::new(None),
            shared: None,
        })
    }

    /// From now on, one connection per node serves every command of this
    /// run (see the module's comment).
    pub fn share_connections(&mut self) -> Result<(), Failure> {
        let folder = private_folder().map_err(|error| {
            Failure::new(
                Status::IoError,
                format!("cannot make a private folder for the shared ssh connections: {error}"),
                "make XDG_RUNTIME_DIR or /tmp writable for your user",
            )
        })?;
        self.shared = Some(SharedConnections {
            folder,
            account: self.account.clone(),
            tried: RefCell::new(BTreeSet::new()),
        });
        Ok(())
    }

    /// The node tried first (for `--dry-run`).
    pub fn first_node(&self) -> String {
        self.candidates().into_iter().next().unwrap_or_default()
    }

    /// The nodes in the order the next command tries them: the one that
    /// answered last first, then the others in the metadata's order.
    fn candidates(&self) -> Vec<String> {
        let answered = self.answered.borrow().clone();
        answered
            .iter()
            .chain(self.nodes.iter().filter(|n| Some(*n) != answered.as_ref()))
            .cloned()
            .collect()
    }

    /// The whole ssh command that runs `program args` on `node`.
    pub fn command(&self, node: &str, program: &str, args: &[OsString]) -> Vec<OsString> {
        let mut command: Vec<OsString> = vec!["ssh".into()];
        if let Some(key) = &self.key {
            command.push("-i".into());
            command.push(key.into());
        }
        command.push("-l".into());
        command.push(self.account.clone().into());
        for option in fixed_options() {
            command.push("-o".into());
            command.push(option.into());
        }
        if let Some(shared) = &self.shared {
            for option in shared.options() {
                command.push("-o".into());
                command.push(option);
            }
        }
        command.push(node.into());
        command.push(remote_command(program, args));
        command
    }

    /// Runs `program args` on the first node that answers (the one that
    /// answered last tried first) and returns that node and what the
    /// program gave. A node that does not answer (refused, timed out, no
    /// route, unknown name, no ssh handshake) is passed over before anything
    /// ran on it, so the command never runs twice; every other ssh failure
    /// ends here.
    pub fn run(&self, program: &str, args: &[OsString]) -> Result<(String, Output), RunError> {
        if let Some(key) = &self.key {
            check_key(key, beamtime::users::current_uid())?;
        }
        let mut unanswered: Vec<String> = Vec::new();
        for node in &self.candidates() {
            if let Some(shared) = &self.shared {
                shared.tried.borrow_mut().insert(node.clone());
            }
            let command = self.command(node, program, args);
            let mut output = Command::new(&command[0])
                .args(&command[1..])
                .stdin(Stdio::null())
                .output()
                .map_err(|error| cannot_start("ssh", &error))?;
            // ssh exits 255 for its own failures, but sbatch exits 255 for some
            // of its refusals too: only the mark the remote shell prints before
            // it starts the program tells that the program ran.
            if let Some(program_stderr) = without_start_mark(&output.stderr) {
                output.stderr = program_stderr;
                *self.answered.borrow_mut() = Some(node.clone());
                return match output.status.code() {
                    Some(127) => Err(Failure::new(
                        Status::NotFound,
                        format!("{program} not found on {node}'s PATH; nothing was submitted"),
                        format!(
                            "{program} must be installed on the reserved nodes; {ASK_THE_ADMINS}"
                        ),
                    )
                    .into()),
                    Some(126) => Err(Failure::new(
                        Status::CannotExecute,
                        format!("{program} cannot be run on {node}; nothing was submitted"),
                        ASK_THE_ADMINS,
                    )
                    .into()),
                    code if connection_lost_after_start(code, &output.stderr) => {
                        Err(RunError::AnswerLost(self.unknown_outcome(format!(
                            "the ssh connection to {node} ended after {program} started there, \
                             before its answer (status 255, nothing said)"
                        ))))
                    }
                    _ => Ok((node.clone(), output)),
                };
            }
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            if output.status.code() != Some(SSH_FAILED) {
                // Logged in, and no mark came back: the login shell did not run
                // the command (nologin, a broken profile), or a profile that
                // sends stderr elsewhere hid the mark of a command that did run.
                return Err(self.cannot_tell(node, program, &stderr).into());
            }
            match SshFailure::of(&stderr) {
                // Named as the metadata names it: ssh's own line names the
                // address it resolved, which the user cannot find in the metadata.
                SshFailure::NoAnswer => unanswered.push(format!("{node} ({})", last_line(&stderr))),
                // ssh's own failure after the connection was made: it broke.
                SshFailure::Unclear => {
                    return Err(RunError::AnswerLost(
                        self.cannot_tell(node, program, &stderr),
                    ))
                }
                SshFailure::Refused(refusal) => {
                    return Err(self.failure(node, refusal, &stderr).into())
                }
            }
        }
        Err(RunError::Failed(Failure::new(
            Status::NoHost,
            format!(
                "none of the reserved nodes answered over ssh: {}; nothing was submitted",
                unanswered.join(", ")
            ),
            format!(
                "try again when a node is up, or name one with --node; if they are all up, \
                 {ASK_THE_ADMINS}"
            ),
        )))
    }

    fn failure(&self, node: &str, refusal: Refusal, stderr: &str) -> Failure {
        let said = last_line(stderr);
        match refusal {
            Refusal::UnknownHostKey => Failure::new(
                Status::NoPermission,
                format!(
                    "the host key of {node} is not in known_hosts, and bt-submit does not log \
                     in to a node it cannot verify (ssh: {said}); nothing was submitted"
                ),
                format!(
                    "the cluster's administrators must add {node}'s host key to \
                     /etc/ssh/ssh_known_hosts on this computer, {}, with the fingerprint checked \
                     on the node: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub",
                    KnownHostsName::of(node).line_to_add()
                ),
            ),
            Refusal::ChangedHostKey => Failure::new(
                Status::NoPermission,
                format!(
                    "the host key of {node} does not match known_hosts: the node was \
                     reinstalled, or it is not {node}; nothing was submitted"
                ),
                format!(
                    "{ASK_THE_ADMINS} to check {node}'s host key and correct known_hosts; do not \
                     remove the entry yourself"
                ),
            ),
            Refusal::Denied => Failure::new(
                Status::NoPermission,
                format!(
                    "{node} refused the login as {} with {} (ssh: {said}); nothing was \
                     submitted",
                    self.account,
                    self.key_text()
                ),
                format!(
                    "check that the metadata's sshPrivateKeyPath is the beamtime's current key; \
                     its public half must be in {}'s authorized keys on the node",
                    self.account
                ),
            ),
        }
    }

    /// ssh ended without the start mark, in a way that does not prove the
    /// command never ran: bt-submit says it cannot tell, and how to find out,
    /// for "nothing was submitted" would make a user submit again.
    fn cannot_tell(&self, node: &str, program: &str, stderr: &str) -> Failure {
        let said = last_line(stderr);
        self.unknown_outcome(format!(
            "ssh to {node} ended without the sign that {program} started there (ssh: {said})"
        ))
    }

    /// `how`: how ssh ended, in a way that leaves open whether the command
    /// ran; the failure says what to look for before submitting again.
    fn unknown_outcome(&self, how: String) -> Failure {
        Failure::new(
            Status::CannotExecute,
            format!("{how}; bt-submit cannot tell whether anything was submitted"),
            format!(
                "before submitting again, look for the job: squeue -u {} -o '%i %j %k' lists \
                 the jobs of the beamtime's account with their names and comments; run the \
                 command that --dry-run prints to see ssh's whole message, and {ASK_THE_ADMINS} if it \
                 is about the node",
                self.account
            ),
        )
    }

    fn key_text(&self) -> String {
        match &self.key {
            Some(key) => format!("key {}", key.display()),
            None => "the default keys (the metadata names no sshPrivateKeyPath)".to_owned(),
        }
    }
}

impl SharedConnections {
    fn options(&self) -> [OsString; 3] {
        let mut path = OsString::from("ControlPath=");
        // %C: a hash of this host, the node, the port and the account.
        path.push(self.folder.join("%C"));
        [
            "ControlMaster=auto".into(),
            path,
            format!("ControlPersist={SHARED_CONNECTION_SECONDS}").into(),
        ]
    }
}

impl Drop for SharedConnections {
    /// Closes this run's shared connections and removes their folder.
    fn drop(&mut self) {
        for node in self.tried.borrow().iter() {
            let mut command = Command::new("ssh");
            command.arg("-l").arg(&self.account);
            for option in self.options() {
                command.arg("-o").arg(option);
            }
            // Nothing to do when the connection is gone already: a node that
            // never answered, or one whose connection broke.
            let _ = command
                .args(["-O", "exit"])
                .arg(node)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Empty once the connections closed; a socket left by one that did
        // not close keeps it, and ControlPersist ends that connection.
        let _ = fs::remove_dir(&self.folder);
    }
}

/// A new folder only this user can enter, for the sockets of the shared
/// connections: in XDG_RUNTIME_DIR (private, on tmpfs) when there is one,
/// else in /tmp. Short, as a socket's path must fit in 108 bytes.
fn private_folder() -> io::Result<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute() && dir.as_os_str().len() <= 40 && dir.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let mut template = base
        .join("bt-submit-ssh.XXXXXX")
        .into_os_string()
        .into_vec();
    template.push(0);
    // SAFETY: a writable, NUL-terminated template that mkdtemp fills in; it
    // creates the folder with mode 700.
    let made = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if made.is_null() {
        return Err(io::Error::last_os_error());
    }
    template.pop();
    Ok(PathBuf::from(OsString::from_vec(template)))
}

/// The controller queries bt-submit makes before a submission (choosing a
/// reservation, choose.rs) are made on the node too: the beamline computer
/// may have no Slurm at all.
impl Slurm for Remote {
    fn query(&self, program: &str, args: &[&str]) -> Result<String, SlurmError> {
        let command = format!("{program} {}", args.join(" "));
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let (node, output) = self.run(program, &args).map_err(|error| SlurmError {
            command: command.clone(),
            kind: SlurmErrorKind::CannotRun(Failure::from(error).problem.what),
        })?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(SlurmError::failed(
            format!("{command} (on {node})"),
            &output,
        ))
    }
}

/// ssh's exit status for its own failures.
const SSH_FAILED: i32 = 255;

/// Whether ssh's status, once the program had started (the mark came back),
/// says the connection was lost before the program's answer: 255, with
/// nothing on the program's stderr, since the Slurm commands say why they
/// fail (sbatch's own 255 comes with its error line).
fn connection_lost_after_start(code: Option<i32>, program_stderr: &[u8]) -> bool {
    code == Some(SSH_FAILED) && program_stderr.iter().all(u8::is_ascii_whitespace)
}

/// What ssh's stderr says went wrong (with `LogLevel=ERROR`, only errors are
/// on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SshFailure {
    /// No connection was made: nothing ran on the node, the next may be tried.
    NoAnswer,
    /// The node answered and ssh stopped: trying another node would not help.
    Refused(Refusal),
    /// An ssh error that does not say whether the command ran.
    Unclear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UnknownHostKey,
    ChangedHostKey,
    Denied,
}

impl SshFailure {
    fn of(stderr: &str) -> SshFailure {
        let refused = if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
            Refusal::ChangedHostKey
        } else if stderr.contains("host key is known for")
            || stderr.contains("Host key verification failed")
        {
            Refusal::UnknownHostKey
        } else if stderr.contains("Permission denied") {
            Refusal::Denied
        } else if stderr.contains("ssh: connect to host ")
            || stderr.contains("ssh: Could not resolve hostname")
            // Connected, but no ssh server spoke within ConnectTimeout, or it
            // hung up before the handshake: still nothing ran there.
            || stderr.contains("timed out during banner exchange")
            || stderr.contains("kex_exchange_identification:")
        {
            return SshFailure::NoAnswer;
        } else {
            return SshFailure::Unclear;
        };
        SshFailure::Refused(refused)
    }
}

/// What the remote shell prints on stderr, on a line of its own, right before
/// it starts the program; a newline goes first, for a login script may have
/// left a line unfinished (a quota or module note without its newline).
const START_MARK: &str = "bt-submit-remote-command-starts";

/// The remote command: every argument quoted for the POSIX shell that sshd
/// starts as the account's login shell, joined by spaces, so that the shell
/// there rebuilds exactly this argument vector (spaces, quotes, `;`, `$(…)`,
/// globs, newlines: single quotes keep every byte but `'`, which is written
/// `'\''`). First [`START_MARK`] on stderr, then `exec`, so that the
/// program's exit status is ssh's and a 255 of the program's can be told from
/// ssh's own.
pub fn remote_command(program: &str, args: &[OsString]) -> OsString {
    let mut line = format!("echo >&2; echo {START_MARK} >&2; exec ").into_bytes();
    line.extend_from_slice(&quote_bytes(program.as_bytes()));
    for arg in args {
        line.push(b' ');
        line.extend_from_slice(&quote_bytes(arg.as_bytes()));
    }
    OsString::from_vec(line)
}

/// `stderr` without the start mark and the newline before it, when the mark is
/// there, wherever a login script's messages put it (what they printed stays).
fn without_start_mark(stderr: &[u8]) -> Option<Vec<u8>> {
    let mark = format!("\n{START_MARK}\n");
    let at = stderr
        .windows(mark.len())
        .position(|window| window == mark.as_bytes())?;
    Some([&stderr[..at], &stderr[at + mark.len()..]].concat())
}

/// The key file as ssh will take it, checked before connecting: it must exist
/// and be readable, and if it is this user's own it must be private, since ssh
/// ignores a key its owner leaves readable or writable to others ("UNPROTECTED
/// PRIVATE KEY FILE"). A key owned by someone else (the beamtime account's,
/// readable to the beamline computer's user through a group) is taken as is.
pub fn check_key(key: &Path, uid: u32) -> Result<(), Failure> {
    let shown = key.display();
    let metadata = fs::metadata(key).map_err(|error| {
        let why = if error.kind() == io::ErrorKind::NotFound {
            "does not exist".to_owned()
        } else {
            error.to_string()
        };
        Failure::new(
            Status::NoInput,
            format!(
                "the beamtime's ssh key {shown} (sshPrivateKeyPath) {why}; nothing was submitted"
            ),
            "run bt-submit where the beamline filesystem is mounted, or ask the beamline staff \
             whether the key was moved",
        )
    })?;
    if let Err(error) = fs::File::open(key) {
        return Err(Failure::new(
            Status::NoInput,
            format!("the beamtime's ssh key {shown} (sshPrivateKeyPath) cannot be read: {error}; nothing was submitted"),
            "run bt-submit as a user who may read the beamtime's shared folder (the beamtime \
             account, or one in its group)",
        ));
    }
    let mode = metadata.mode() & 0o777;
    if metadata.uid() == uid && mode & 0o077 != 0 {
        return Err(Failure::new(
            Status::NoPermission,
            format!(
                "the beamtime's ssh key {shown} is yours and open to others (mode {mode:04o}), \
                 so ssh would refuse to use it; nothing was submitted"
            ),
            format!(
                "make it private: chmod 600 {}",
                beamtime::shell::quote(&key.to_string_lossy())
            ),
        ));
    }
    Ok(())
}

/// For `--dry-run`: the command shell-quoted on one line.
pub fn shell_line(command: &[OsString]) -> Vec<u8> {
    let mut line = Vec::new();
    for (index, arg) in command.iter().enumerate() {
        if index > 0 {
            line.push(b' ');
        }
        line.extend_from_slice(&quote_bytes(OsStr::as_bytes(arg)));
    }
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests;
