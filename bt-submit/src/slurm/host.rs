//! Where bt-submit runs Slurm: this host, or one of the beamtime's reserved
//! nodes over ssh. A [`Host`] submits a batch job and reads its id back (the
//! one place bt-submit runs sbatch as a child), asks for the submitter's own
//! jobs, and answers any query ([`Slurm`]); `bt-submit --remote`, `bt-submit
//! watch` and the planner's controller questions all go through it, so a job
//! submitted or a question asked either way goes the same way.
//!
//! Plain `bt-submit` without `--remote` does not come here: it replaces itself
//! with sbatch (lib.rs), so that sbatch's output and exit status are the user's.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

use crate::failure::{Failure, Status};
use crate::slurm::error::SlurmError;
use crate::slurm::process::{cannot_start, last_line};
use crate::slurm::query::{self, Slurm};
use crate::slurm::ssh::{Remote, RunError};

/// Where jobs are submitted and Slurm is asked.
#[derive(Debug)]
pub enum Host {
    /// The Slurm commands on this host's PATH.
    Local,
    /// The same commands on a reserved node, logged in as the beamtime account.
    Remote(Remote),
}

impl Slurm for Host {
    fn query(&self, program: &str, args: &[&str]) -> Result<String, SlurmError> {
        match self {
            Host::Local => query::here(program, args),
            Host::Remote(remote) => remote.query(program, args),
        }
    }
}

/// A job sbatch accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub job_id: u64,
    /// The cluster sbatch names after the id (`--parsable` prints `ID;CLUSTER`
    /// in a federation or with `-M`), else none.
    pub cluster: Option<String>,
    /// The node it was submitted from, for a remote submission.
    pub node: Option<String>,
}

/// Why a submission did not give a job id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// sbatch ran and refused the job: Slurm said no, and its stderr says why.
    Refused(SlurmError),
    /// sbatch could not be run, or not reached.
    Failed(Failure),
    /// sbatch may have made a job, but no job id came back: the ssh
    /// connection broke off, or sbatch printed none. Only Slurm can tell
    /// (`bt-submit watch` asks it by the job's comment); no one refused it.
    AnswerLost(Failure),
}

impl From<Failure> for SubmitError {
    fn from(failure: Failure) -> SubmitError {
        SubmitError::Failed(failure)
    }
}

/// What one run of a Slurm command gave.
struct Ran {
    output: Output,
    node: Option<String>,
}

impl Host {
    /// Runs `sbatch --parsable ARGS` (`args` as the plan made them: the
    /// metadata's options, then the user's, then the script and its arguments)
    /// and returns the job id sbatch printed.
    pub fn sbatch(&self, args: &[OsString]) -> Result<Submitted, SubmitError> {
        let ran = self
            .run("sbatch", &parsable(args))
            .map_err(|error| match error {
                RunError::Failed(failure) => SubmitError::Failed(failure),
                RunError::AnswerLost(failure) => SubmitError::AnswerLost(failure),
            })?;
        if !ran.output.status.success() {
            return Err(SubmitError::Refused(SlurmError::failed(
                format!("sbatch{}", on_node(&ran.node)),
                &ran.output,
            )));
        }
        let stderr = String::from_utf8_lossy(&ran.output.stderr);
        let stdout = String::from_utf8_lossy(&ran.output.stdout);
        let (job_id, cluster) = parse_parsable(&stdout).ok_or_else(|| {
            SubmitError::AnswerLost(Failure::new(
                Status::CannotExecute,
                format!(
                    "sbatch{} exited 0 but printed no job id (stdout {:?}, stderr {:?}); the \
                     job may have been submitted",
                    on_node(&ran.node),
                    stdout.trim(),
                    stderr.trim()
                ),
                "look for it with 'squeue --me' before submitting again",
            ))
        })?;
        Ok(Submitted {
            job_id,
            cluster,
            node: ran.node,
        })
    }

    /// The ids of the caller's jobs that Slurm still holds (pending, running,
    /// suspended, completing …), asked from Slurm each time, never counted here:
    /// `squeue --me`, where the jobs are submitted.
    pub fn queued(&self) -> Result<BTreeSet<u64>, Failure> {
        let (stdout, node) = self.squeue(&["--me", "--noheader", "--array", "--format=%A"])?;
        stdout
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| {
                line.parse::<u64>().map_err(|_| {
                    Failure::new(
                        Status::CannotExecute,
                        format!("squeue{} printed {line:?} for a job id", on_node(&node)),
                        "report this as a bug, with the output of 'squeue --me --format=%A'",
                    )
                })
            })
            .collect()
    }

    /// The ids of the caller's jobs, finished ones included while the
    /// controller still holds them (its MinJobAge), whose comment is exactly
    /// `comment`: how `bt-submit watch` finds a job it submitted but had not
    /// recorded when it died.
    pub fn with_comment(&self, comment: &str) -> Result<BTreeSet<u64>, Failure> {
        let (stdout, _) = self.squeue(&["--me", "--noheader", "--states=all", "--format=%A|%k"])?;
        Ok(jobs_with_comment(&stdout, comment))
    }

    /// squeue's output and the node it ran on; a failed squeue is an error
    /// naming its status and what it said last.
    fn squeue(&self, args: &[&str]) -> Result<(String, Option<String>), Failure> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let ran = self.run("squeue", &args).map_err(Failure::from)?;
        if !ran.output.status.success() {
            let error = SlurmError::failed(format!("squeue{}", on_node(&ran.node)), &ran.output);
            return Err(Failure::new(
                Status::CannotExecute,
                format!(
                    "{} failed with status {}: {}",
                    error.command,
                    error.exit_byte(),
                    error.reason()
                ),
                "check that the Slurm controller answers (squeue --me)",
            ));
        }
        let stdout = String::from_utf8_lossy(&ran.output.stdout).into_owned();
        Ok((stdout, ran.node))
    }

    /// For a caller that runs many commands (`bt-submit watch`): over ssh,
    /// one connection per node serves them all from now on.
    pub fn share_connections(&mut self) -> Result<(), Failure> {
        match self {
            Host::Local => Ok(()),
            Host::Remote(remote) => remote.share_connections(),
        }
    }

    /// What [`Host::sbatch`] runs, for `--dry-run`: `sbatch --parsable …`
    /// here, or the whole ssh command for the first node it would try.
    pub fn sbatch_command(&self, args: &[OsString]) -> Vec<OsString> {
        let args = parsable(args);
        match self {
            Host::Local => std::iter::once(OsString::from("sbatch"))
                .chain(args)
                .collect(),
            Host::Remote(remote) => remote.command(&remote.first_node(), "sbatch", &args),
        }
    }

    fn run(&self, program: &str, args: &[OsString]) -> Result<Ran, RunError> {
        match self {
            Host::Local => {
                // A process group of its own: a Ctrl-C at the terminal stops
                // `bt-submit watch` after the sbatch under way, not that sbatch
                // half way (plain bt-submit execs sbatch and never comes here).
                let output = Command::new(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .process_group(0)
                    .output()
                    .map_err(|error| cannot_start(program, &error))?;
                Ok(Ran { output, node: None })
            }
            Host::Remote(remote) => {
                let (node, output) = remote.run(program, args)?;
                Ok(Ran {
                    output,
                    node: Some(node),
                })
            }
        }
    }
}

/// sbatch's arguments with `--parsable` first, so that its answer is the job
/// id alone whatever the user's options.
pub(crate) fn parsable(args: &[OsString]) -> Vec<OsString> {
    std::iter::once(OsString::from("--parsable"))
        .chain(args.iter().cloned())
        .collect()
}

/// `--parsable` output: `ID` or `ID;CLUSTER` on the last line (sbatch may print
/// warnings before it).
fn parse_parsable(stdout: &str) -> Option<(u64, Option<String>)> {
    let line = last_line(stdout);
    let (id, cluster) = match line.split_once(';') {
        Some((id, cluster)) => (id, Some(cluster.to_owned())),
        None => (line, None),
    };
    Some((id.parse().ok()?, cluster))
}

/// squeue's `%A|%k` lines whose comment is `comment`.
fn jobs_with_comment(stdout: &str, comment: &str) -> BTreeSet<u64> {
    stdout
        .lines()
        .filter_map(|line| {
            let (id, theirs) = line.trim().split_once('|')?;
            (theirs == comment).then(|| id.parse().ok())?
        })
        .collect()
}

fn on_node(node: &Option<String>) -> String {
    node.as_ref()
        .map(|node| format!(" on {node}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsable_output_gives_the_id_and_the_cluster() {
        assert_eq!(parse_parsable("1234\n"), Some((1234, None)));
        assert_eq!(
            parse_parsable("sbatch: warning: x\n77;cl1\n"),
            Some((77, Some("cl1".to_owned())))
        );
        assert_eq!(parse_parsable("Submitted batch job 5\n"), None);
        assert_eq!(parse_parsable(""), None);
    }

    #[test]
    fn only_jobs_with_exactly_that_comment_are_found() {
        let out = "10|bt-submit-watch:ab:1\n11|other\n12|bt-submit-watch:ab:10\n13|\n";
        assert_eq!(
            jobs_with_comment(out, "bt-submit-watch:ab:1"),
            BTreeSet::from([10])
        );
        assert!(jobs_with_comment(out, "bt-submit-watch:cd:1").is_empty());
    }
}
