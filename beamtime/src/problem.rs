//! One shape for "what is wrong and what to do".
//!
//! Every part of the project says what went wrong as a [`Problem`] and renders it its own
//! way: the plugin as a refusal on the job's stderr and one log line, bt-submit as its
//! `error:` and `hint:` lines, `bt-submit doctor` as a check's line and its fix. Keeping
//! the two halves apart (rather than one sentence) is what lets each renderer put the fix
//! where its reader looks for it.

use std::fmt;

/// Whom to send a reader to for what only the cluster's administrators can change: one
/// wording everywhere, so a site can search its logs and mail for it.
pub const ASK_THE_ADMINS: &str = "ask the cluster's administrators";

/// What is wrong (with the value seen and the value expected) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What was wrong, with the value seen and, where there is one, the value expected.
    pub what: String,
    /// What the reader (the user, or for site problems the admin) should do; empty when
    /// there is nothing to do but read `what`.
    pub fix: String,
}

impl Problem {
    pub fn new(what: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem {
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// One line: the problem, then the fix as a sentence of its own.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fix.is_empty() {
            f.write_str(&self.what)
        } else {
            write!(f, "{}. {}", self.what, self.fix)
        }
    }
}

impl std::error::Error for Problem {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_reads_as_what_then_fix_and_an_empty_fix_adds_nothing() {
        let fix = format!("Resubmit in a minute; if it keeps happening, {ASK_THE_ADMINS}");
        let problem = Problem::new("the controller did not answer", fix);
        assert_eq!(
            problem.to_string(),
            "the controller did not answer. Resubmit in a minute; if it keeps happening, \
             ask the cluster's administrators"
        );
        assert_eq!(Problem::new("done", "").to_string(), "done");
    }
}
