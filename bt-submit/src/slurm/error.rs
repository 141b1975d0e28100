//! Slurm said no: the one error for a Slurm command a [`crate::slurm::host::Host`]
//! ran, here or on a reserved node, that gave no answer, whether it was a query
//! (`scontrol`, `sacctmgr`), `squeue` or `sbatch`. Each caller turns it into its
//! own words (a `Failure`, a doctor line, a watch log line) from the same parts.

use std::fmt;
use std::process::{ExitStatus, Output};

use crate::slurm::process::last_line;

/// A Slurm command that gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmError {
    /// The command line, e.g. `scontrol show node -o btnode1`, with the node
    /// it ran on for a remote one.
    pub command: String,
    pub kind: SlurmErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlurmErrorKind {
    /// It could not be started (not on PATH, not executable, no node reached):
    /// the reason.
    CannotRun(String),
    /// It ran and did not exit 0.
    Failed {
        status: ExitStatus,
        stderr: String,
        stdout: String,
    },
}

impl SlurmError {
    /// `command` ran and did not exit 0, as `output` shows.
    pub fn failed(command: String, output: &Output) -> SlurmError {
        SlurmError {
            command,
            kind: SlurmErrorKind::Failed {
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            },
        }
    }

    /// The reason alone, for a message that names the command itself: why it
    /// could not start, or the last line of its stderr (Slurm's commands explain
    /// over several lines; the last one says what failed).
    pub fn reason(&self) -> String {
        match &self.kind {
            SlurmErrorKind::CannotRun(why) => why.clone(),
            SlurmErrorKind::Failed { stderr, .. } => match last_line(stderr) {
                "" => "no output".to_owned(),
                said => said.to_owned(),
            },
        }
    }

    /// All it said on stderr, to pass on as it is (sbatch's own words for a
    /// job it refused); nothing for a command that could not start.
    pub fn stderr(&self) -> &str {
        match &self.kind {
            SlurmErrorKind::CannotRun(_) => "",
            SlurmErrorKind::Failed { stderr, .. } => stderr,
        }
    }

    /// The exit status as the shell reports it (a signal as 128+N), for
    /// bt-submit to exit with when it stands in for the command; 255 for a
    /// command that could not start.
    pub fn exit_byte(&self) -> u8 {
        use std::os::unix::process::ExitStatusExt;
        let SlurmErrorKind::Failed { status, .. } = &self.kind else {
            return u8::MAX;
        };
        match (status.code(), status.signal()) {
            (Some(code), _) => u8::try_from(code).unwrap_or(u8::MAX),
            (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(u8::MAX),
            (None, None) => u8::MAX,
        }
    }
}

/// One line with the command, its status and all it said (on stderr, or on
/// stdout when stderr is empty: sacctmgr reports some errors there).
impl fmt::Display for SlurmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SlurmErrorKind::CannotRun(why) => write!(f, "cannot run '{}': {why}", self.command),
            SlurmErrorKind::Failed {
                status,
                stderr,
                stdout,
            } => {
                let said = match stderr.trim() {
                    "" => stdout.trim(),
                    said => said,
                };
                write!(
                    f,
                    "'{}' failed ({status}): {}",
                    self.command,
                    said.replace('\n', "; ")
                )
            }
        }
    }
}

impl std::error::Error for SlurmError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn ran(wait_status: i32, stderr: &str) -> SlurmError {
        let output = Output {
            status: ExitStatus::from_raw(wait_status),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        SlurmError::failed("sbatch --parsable job.sh".to_owned(), &output)
    }

    #[test]
    fn the_exit_status_is_the_shells_and_stderr_is_passed_on_whole() {
        let refused = ran(1 << 8, "sbatch: error: first\nsbatch: error: last\n");
        assert_eq!(refused.exit_byte(), 1);
        assert_eq!(
            refused.stderr(),
            "sbatch: error: first\nsbatch: error: last\n"
        );
        assert_eq!(refused.reason(), "sbatch: error: last");
        // Killed by SIGTERM (15): 143, as a shell says.
        assert_eq!(ran(15, "").exit_byte(), 143);
        let cannot = SlurmError {
            command: "sbatch".to_owned(),
            kind: SlurmErrorKind::CannotRun("no node answered".to_owned()),
        };
        assert_eq!(cannot.exit_byte(), u8::MAX);
        assert_eq!(cannot.stderr(), "");
    }
}
