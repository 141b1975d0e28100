//! Why bt-submit stops, as one error line, one hint line and an exit status.

use std::fmt;
use std::process::ExitCode;

use beamtime::problem::Problem;

/// Exit statuses, from sysexits.h where one fits and from the shell's
/// conventions for a program that cannot be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 64: the command line is wrong.
    Usage = 64,
    /// 65: the metadata is invalid or ambiguous, or the user's options
    /// contradict it.
    DataError = 65,
    /// 66: no metadata file found, or it cannot be read.
    NoInput = 66,
    /// 68: `--remote`: none of the reserved nodes answered over ssh.
    NoHost = 68,
    /// 69: the beamtime has no online analysis resources yet.
    Unavailable = 69,
    /// 74: the output could not be written.
    IoError = 74,
    /// 77: `--remote`: ssh may not or will not log in: the node's host key is
    /// unknown or changed, the node refused the beamtime's key, or the key file
    /// is open to others. Trying again changes nothing until someone fixes it.
    NoPermission = 77,
    /// 78: a setting is invalid: the search path (`BEAMTIME_METADATA_PATH`,
    /// the config file) or the plugin's plugstack line.
    Config = 78,
    /// 126: sbatch/srun/salloc was found but could not be run.
    CannotExecute = 126,
    /// 127: sbatch/srun/salloc is not on PATH.
    NotFound = 127,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> ExitCode {
        ExitCode::from(status as u8)
    }
}

/// Why bt-submit stops: the project's one shape for what is wrong and what to
/// do, and the exit status that tells a script which kind of wrong it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: Status,
    pub problem: Problem,
}

impl Failure {
    pub fn new(status: Status, what: impl Into<String>, fix: impl Into<String>) -> Failure {
        Failure {
            status,
            problem: Problem::new(what, fix),
        }
    }
}

/// bt-submit's rendering: an `error:` line, then the fix as a `hint:` line.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bt-submit: error: {}\nhint: {}",
            self.problem.what, self.problem.fix
        )
    }
}
