//! Running Slurm's query commands (`scontrol`, `sacctmgr`, `srun --help`): the
//! one place bt-submit starts them and tells why one gave no answer.
//!
//! Callers take a [`Slurm`], so what they make of the answers is unit-tested
//! with canned output ([`canned::Canned`]); the real commands meet Slurm on the
//! test cluster (tests/scenarios).

use std::process::{Command, Stdio};

use crate::slurm::error::{SlurmError, SlurmErrorKind};

/// Asks Slurm; the real one is [`crate::slurm::host::Host`], here or over ssh.
pub trait Slurm {
    /// The program's stdout when it exits 0.
    fn query(&self, program: &str, args: &[&str]) -> Result<String, SlurmError>;
}

/// Runs a Slurm command found on this host's PATH: [`crate::slurm::host::Host::Local`].
pub fn here(program: &str, args: &[&str]) -> Result<String, SlurmError> {
    let command = command_line(program, args);
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| SlurmError {
            command: command.clone(),
            kind: SlurmErrorKind::CannotRun(error.to_string()),
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(SlurmError::failed(command, &output))
}

/// The command line as messages name it, e.g. `scontrol show node -o btnode1`.
pub(crate) fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
pub mod canned {
    //! A [`Slurm`] that answers from a table, for unit tests.

    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::{command_line, Slurm};
    use crate::slurm::error::{SlurmError, SlurmErrorKind};

    /// Answers keyed by the command line; a command not in the table fails
    /// with exit status 1 and "no such thing" on stderr.
    #[derive(Default)]
    pub struct Canned {
        answers: HashMap<String, Result<String, SlurmError>>,
        asked: RefCell<Vec<String>>,
    }

    impl Canned {
        /// The command lines asked so far, in order: what a run cost Slurm.
        pub fn asked(&self) -> Vec<String> {
            self.asked.borrow().clone()
        }

        /// `command` exits 0 with `stdout`.
        pub fn answer(&mut self, command: &str, stdout: impl Into<String>) {
            self.answers.insert(command.to_owned(), Ok(stdout.into()));
        }

        /// `command` exits 1 with `stderr`.
        pub fn fail(&mut self, command: &str, stderr: &str) {
            self.answers
                .insert(command.to_owned(), Err(failed(command, stderr)));
        }

        /// `command` cannot be started for the OS error `errno`.
        pub fn cannot_run(&mut self, command: &str, errno: i32) {
            let why = std::io::Error::from_raw_os_error(errno).to_string();
            let error = SlurmError {
                command: command.to_owned(),
                kind: SlurmErrorKind::CannotRun(why),
            };
            self.answers.insert(command.to_owned(), Err(error));
        }
    }

    fn failed(command: &str, stderr: &str) -> SlurmError {
        SlurmError {
            command: command.to_owned(),
            kind: SlurmErrorKind::Failed {
                // A wait status: exit code 1.
                status: ExitStatus::from_raw(1 << 8),
                stderr: stderr.to_owned(),
                stdout: String::new(),
            },
        }
    }

    impl Slurm for Canned {
        fn query(&self, program: &str, args: &[&str]) -> Result<String, SlurmError> {
            let command = command_line(program, args);
            self.asked.borrow_mut().push(command.clone());
            self.answers
                .get(&command)
                .cloned()
                .unwrap_or_else(|| Err(failed(&command, "no such thing")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_of_a_command_that_exits_0() {
        let out = here("sh", &["-c", "echo answer; echo noise >&2"]);
        assert_eq!(out, Ok("answer\n".to_owned()));
    }

    #[test]
    fn a_failed_command_is_named_with_its_status_and_what_it_said() {
        let error = here("sh", &["-c", "echo first >&2; echo last >&2; exit 3"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "'sh -c echo first >&2; echo last >&2; exit 3' failed (exit status: 3): first; last"
        );
        assert_eq!(error.reason(), "last");

        let error = here("sh", &["-c", "echo on stdout; exit 1"]).unwrap_err();
        assert!(
            error.to_string().ends_with("(exit status: 1): on stdout"),
            "{error}"
        );
        assert_eq!(error.reason(), "no output");
    }

    #[test]
    fn a_command_not_on_path_cannot_run() {
        let error = here("no-such-command-bt-submit", &["show", "config"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot run 'no-such-command-bt-submit show config': No such file or directory (os \
             error 2)"
        );
        assert_eq!(error.reason(), "No such file or directory (os error 2)");
    }
}
