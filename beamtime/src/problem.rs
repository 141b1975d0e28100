//! One shape for "what is wrong and what to do".
//!
//! Every part of the project says what went wrong as a [`Problem`] and renders it its own
//! way: the plugin as a refusal on the job's stderr and one log line, bt-submit as its
//! `error:` and `hint:` lines, `bt-submit doctor` as a check's line and its fix. Keeping
//! the two halves apart (rather than one sentence) is what lets each renderer put the fix
//! where its reader looks for it.

use std::fmt;

/// [`ASK_THE_ADMINS`] as a literal, for the constants that begin with it: `concat!`
/// takes literals only.
#[macro_export]
macro_rules! ask_the_admins {
    () => {
        "ask the cluster's administrators"
    };
}

/// Whom to send a reader to for what only the cluster's administrators can change: one
/// wording everywhere, so a site can search its logs and mail for it.
pub const ASK_THE_ADMINS: &str = ask_the_admins!();

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

/// One line: the problem, then the fix as a sentence of its own (so a fix that
/// begins with [`ASK_THE_ADMINS`] begins with a capital here).
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)?;
        let mut fix = self.fix.chars();
        match fix.next() {
            None => Ok(()),
            Some(first) => write!(f, ". {}{}", first.to_uppercase(), fix.as_str()),
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
        assert_eq!(
            Problem::new("source= is not set", ASK_THE_ADMINS).to_string(),
            "source= is not set. Ask the cluster's administrators"
        );
    }
}
