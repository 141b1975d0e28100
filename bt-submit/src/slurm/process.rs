//! What bt-submit says about a child process, here or over ssh: why it could
//! not start, and the last line it said.

use std::ffi::OsStr;
use std::io;

use crate::failure::{Failure, Status};

/// The last line of a program's stderr that says something: what it ended with.
/// Slurm's echo of a SPANK plugin's failure (`spank_beamtime.so: init_post_opt()
/// failed with rc=-1`) says nothing: the plugin's own reason is the line before.
pub fn last_line(text: &str) -> &str {
    let says_something = |line: &&str| !line.trim().is_empty();
    let mut lines = text.lines().rev().filter(says_something);
    let last = lines.clone().next().unwrap_or("");
    lines
        .find(|line| !line.contains("() failed with rc="))
        .unwrap_or(last)
        .trim()
}

/// A program on this host that could not be started: not on PATH (127) or not
/// runnable (126), as the shell would say.
pub fn cannot_start(program: impl AsRef<OsStr>, error: &io::Error) -> Failure {
    let program = program.as_ref().to_string_lossy();
    if error.kind() == io::ErrorKind::NotFound {
        Failure::new(
            Status::NotFound,
            format!("{program} not found on PATH; nothing was submitted"),
            format!("install {program} here, or add its folder to PATH"),
        )
    } else {
        Failure::new(
            Status::CannotExecute,
            format!("cannot run {program}: {error}; nothing was submitted"),
            format!("check the {program} found on PATH"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_sbatch_that_is_missing_is_status_127() {
        let error = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(cannot_start("sbatch", &error).status, Status::NotFound);
        let error = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(cannot_start("sbatch", &error).status, Status::CannotExecute);
    }

    #[test]
    fn the_last_line_is_the_last_that_says_something() {
        assert_eq!(
            last_line("sbatch: error: first\n  Batch job submission failed  \n\n"),
            "Batch job submission failed"
        );
        assert_eq!(last_line("\n \n"), "");
    }

    #[test]
    fn the_last_line_is_the_plugins_reason_not_slurms_echo_of_it() {
        let stderr = "sbatch: error: spank-beamtime: beamtime 11012345 has ended\n\
                      sbatch: error: spank_beamtime.so: init_post_opt() failed with rc=-1\n\n";
        assert_eq!(
            last_line(stderr),
            "sbatch: error: spank-beamtime: beamtime 11012345 has ended"
        );
        assert_eq!(
            last_line("x.so: init_post_opt() failed with rc=-1\n"),
            "x.so: init_post_opt() failed with rc=-1"
        );
    }
}
