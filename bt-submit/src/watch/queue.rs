//! Where the watch's jobs go and how it asks Slurm about them: the one seam
//! between the watch and the Slurm commands. [`LocalQueue`] runs sbatch and
//! squeue on this host.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Why Slurm gave no answer; the text names the command and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueError(pub String);

pub trait Queue {
    /// Runs `sbatch --parsable ARGS` and returns the job id it printed.
    fn submit(&self, args: &[OsString]) -> Result<u64, QueueError>;
    /// Jobs of the calling user whose comment starts with `prefix`:
    /// `unfinished` only (pending, running, completing, …), or every job the
    /// controller still knows (finished ones until its MinJobAge).
    fn jobs(&self, prefix: &str, unfinished: bool) -> Result<Vec<(u64, String)>, QueueError>;
}

pub struct LocalQueue;

impl Queue for LocalQueue {
    fn submit(&self, args: &[OsString]) -> Result<u64, QueueError> {
        let stdout = run(
            "sbatch",
            std::iter::once(OsString::from("--parsable")).chain(args.iter().cloned()),
        )?;
        parse_job_id(&stdout).ok_or_else(|| {
            QueueError(format!(
                "sbatch printed no job id (it printed {:?})",
                stdout.trim()
            ))
        })
    }

    fn jobs(&self, prefix: &str, unfinished: bool) -> Result<Vec<(u64, String)>, QueueError> {
        let mut args: Vec<OsString> = ["--me", "--noheader", "--format=%i|%k"]
            .into_iter()
            .map(OsString::from)
            .collect();
        if !unfinished {
            args.push("--states=all".into());
        }
        Ok(jobs_with_prefix(&run("squeue", args)?, prefix))
    }
}

/// Runs a Slurm command in a process group of its own, so that a Ctrl-C at
/// the terminal stops the watch after this command, not the command half way.
fn run(program: &str, args: impl IntoIterator<Item = OsString>) -> Result<String, QueueError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .output()
        .map_err(|error| QueueError(format!("cannot run {program}: {error}")))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    Err(QueueError(format!(
        "{program} failed ({}): {}",
        output.status,
        reason.trim()
    )))
}

/// `sbatch --parsable` prints `JOBID` or `JOBID;CLUSTER`.
fn parse_job_id(stdout: &str) -> Option<u64> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty())?;
    line.trim().split(';').next()?.parse().ok()
}

/// squeue's `%i|%k` lines, those whose comment starts with `prefix`.
fn jobs_with_prefix(stdout: &str, prefix: &str) -> Vec<(u64, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (id, comment) = line.trim().split_once('|')?;
            let id = id.split('_').next()?.parse().ok()?;
            comment
                .starts_with(prefix)
                .then(|| (id, comment.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_is_read_with_or_without_a_cluster_name() {
        assert_eq!(parse_job_id("123\n"), Some(123));
        assert_eq!(parse_job_id("123;beamline\n"), Some(123));
        assert_eq!(parse_job_id("Submitted batch job 5\n"), None);
        assert_eq!(parse_job_id(""), None);
    }

    #[test]
    fn only_this_watchs_jobs_are_counted() {
        let out = "10|bt-submit-watch:ab:1\n11|other\n12|bt-submit-watch:cd:2\n13_4|bt-submit-watch:ab:7\n14|\n";
        assert_eq!(
            jobs_with_prefix(out, "bt-submit-watch:ab:"),
            vec![
                (10, "bt-submit-watch:ab:1".to_owned()),
                (13, "bt-submit-watch:ab:7".to_owned())
            ]
        );
    }
}
