//! Validated names: beamtime ids, beamlines, and the Slurm and Unix names that
//! the metadata file hands to `sbatch` command lines and to the plugin's
//! decisions.
//!
//! Every name is checked against a deliberately small character set so that it
//! can never be a path (`/`, `..`), an option (leading `-`), a hidden file
//! (leading `.`), or smuggle control characters into logs and command lines.

use std::fmt;
use std::str::FromStr;

use crate::untrusted::{shown, SHOWN_CHARS};

/// Longest beamtime id, beamline, partition, reservation or node name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Longest Unix account name accepted (the limit of common `useradd`).
pub const MAX_USER_NAME_LEN: usize = 32;

/// What a checked name is for; decides its character set and length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    BeamtimeId,
    Beamline,
    UserAccount,
    Partition,
    Reservation,
    Node,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::BeamtimeId => "beamtime id",
            NameKind::Beamline => "beamline",
            NameKind::UserAccount => "user account",
            NameKind::Partition => "partition name",
            NameKind::Reservation => "reservation name",
            NameKind::Node => "node name",
        }
    }

    fn max_len(self) -> usize {
        match self {
            NameKind::UserAccount => MAX_USER_NAME_LEN,
            _ => MAX_NAME_LEN,
        }
    }

    fn rule(self) -> String {
        match self {
            NameKind::UserAccount => format!(
                "a user account is 1 to {MAX_USER_NAME_LEN} characters from a-z 0-9 . _ - \
                 and starts with a-z or _"
            ),
            other => format!(
                "a {} is 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 . _ - \
                 and does not start with '.' or '-'",
                other.noun()
            ),
        }
    }

    fn allows(self, ch: char) -> bool {
        match self {
            NameKind::UserAccount => {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            }
            _ => ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'),
        }
    }

    fn allows_first(self, ch: char) -> bool {
        match self {
            NameKind::UserAccount => ch.is_ascii_lowercase() || ch == '_',
            _ => ch.is_ascii_alphanumeric() || ch == '_',
        }
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    TooLong {
        length: usize,
    },
    /// `position` counts characters from 1.
    ForbiddenChar {
        ch: char,
        position: usize,
    },
    BadStart {
        ch: char,
    },
    DotDot,
}

/// A rejected name: what kind it was, the offending value (escaped, shortened)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    kind: NameKind,
    shown_value: String,
    problem: NameProblem,
}

impl IdError {
    pub fn kind(&self) -> NameKind {
        self.kind
    }

    pub fn problem(&self) -> &NameProblem {
        &self.problem
    }
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {}: ", self.kind.noun(), self.shown_value)?;
        match &self.problem {
            NameProblem::Empty => f.write_str("it is empty")?,
            // A value cut in the message already says how long it is.
            NameProblem::TooLong { length } if *length > SHOWN_CHARS => {
                f.write_str("it is too long")?
            }
            NameProblem::TooLong { length } => write!(f, "it is {length} characters long")?,
            NameProblem::ForbiddenChar { ch, position } => {
                write!(f, "{ch:?} at position {position} is not allowed")?
            }
            NameProblem::BadStart { ch } => write!(f, "it must not start with {ch:?}")?,
            NameProblem::DotDot => f.write_str("it must not contain \"..\"")?,
        }
        write!(f, "; {}", self.kind.rule())
    }
}

impl std::error::Error for IdError {}

/// Checks `value` against the rules for `kind`.
pub fn check_name(kind: NameKind, value: &str) -> Result<(), IdError> {
    let reject = |problem| IdError {
        kind,
        shown_value: shown(value),
        problem,
    };
    let length = value.chars().count();
    let Some(first) = value.chars().next() else {
        return Err(reject(NameProblem::Empty));
    };
    if length > kind.max_len() {
        return Err(reject(NameProblem::TooLong { length }));
    }
    if let Some((index, ch)) = value.chars().enumerate().find(|&(_, ch)| !kind.allows(ch)) {
        return Err(reject(NameProblem::ForbiddenChar {
            ch,
            position: index + 1,
        }));
    }
    if !kind.allows_first(first) {
        return Err(reject(NameProblem::BadStart { ch: first }));
    }
    if value.contains("..") {
        return Err(reject(NameProblem::DotDot));
    }
    Ok(())
}

/// A beamtime or commissioning id such as `11099001` or `c20240312_000_GPUTEST`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BeamtimeId(String);

impl BeamtimeId {
    pub fn parse(value: &str) -> Result<BeamtimeId, IdError> {
        check_name(NameKind::BeamtimeId, value)?;
        Ok(BeamtimeId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a Slurm reservation belongs to this beamtime: the facility
    /// names a beamtime's reservations `<id>` and `<id>_<N>`.
    pub fn owns_reservation(&self, reservation: &str) -> bool {
        match reservation.strip_prefix(self.0.as_str()) {
            Some("") => true,
            Some(rest) => rest
                .strip_prefix('_')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
            None => false,
        }
    }
}

impl FromStr for BeamtimeId {
    type Err = IdError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        BeamtimeId::parse(value)
    }
}

impl AsRef<str> for BeamtimeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BeamtimeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A beamline such as `p11`, always lower-case: beamtime files write `p11`,
/// commissioning files `P11`, and paths like `/beamline/p11` use lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Beamline(String);

impl Beamline {
    pub fn parse(value: &str) -> Result<Beamline, IdError> {
        check_name(NameKind::Beamline, value)?;
        Ok(Beamline(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Beamline {
    type Err = IdError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Beamline::parse(value)
    }
}

impl AsRef<str> for Beamline {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Beamline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: &str) -> BeamtimeId {
        match BeamtimeId::parse(value) {
            Ok(id) => id,
            Err(error) => panic!("{value:?} should be a valid id: {error}"),
        }
    }

    fn rejection(kind: NameKind, value: &str) -> String {
        match check_name(kind, value) {
            Ok(()) => panic!("{value:?} should be rejected as {kind}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn real_ids_are_accepted() {
        for value in ["11099001", "c20240312_000_GPUTEST", "c20210823_000_MAA"] {
            assert_eq!(id(value).as_str(), value);
            assert_eq!(id(value).to_string(), value);
        }
    }

    #[test]
    fn hostile_ids_are_rejected_with_the_reason() {
        let cases = [
            ("", "invalid beamtime id \"\": it is empty"),
            ("..", "must not start with '.'"),
            ("11..01", "must not contain \"..\""),
            ("../etc", "'/' at position 3 is not allowed"),
            ("1109/9001", "'/' at position 5 is not allowed"),
            ("1109\09001", "'\\0' at position 5 is not allowed"),
            ("1109\n9001", "'\\n' at position 5 is not allowed"),
            ("-rf", "must not start with '-'"),
            (".hidden", "must not start with '.'"),
            ("1109é", "'é' at position 5 is not allowed"),
            ("a b", "' ' at position 2 is not allowed"),
        ];
        for (value, expected) in cases {
            let message = rejection(NameKind::BeamtimeId, value);
            assert!(message.contains(expected), "{value:?}: {message}");
            assert!(message.contains("A-Z a-z 0-9 . _ -"), "{message}");
        }
    }

    #[test]
    fn control_characters_never_reach_the_message_raw() {
        let message = rejection(NameKind::BeamtimeId, "a\nFAKE LOG LINE\r\x1b[31m");
        assert!(!message.contains('\n') && !message.contains('\r') && !message.contains('\x1b'));
    }

    #[test]
    fn very_long_names_are_rejected_and_shortened_in_the_message() {
        let long = "1".repeat(100_000);
        let message = rejection(NameKind::BeamtimeId, &long);
        assert!(
            message.contains("\"… (100000 characters): it is too long"),
            "{message}"
        );
        assert!(message.len() < 400, "{message}");
        assert!(check_name(NameKind::BeamtimeId, &"1".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn beamline_is_lower_case() {
        match Beamline::parse("P21.1") {
            Ok(beamline) => assert_eq!(beamline.as_str(), "p21.1"),
            Err(error) => panic!("{error}"),
        }
        assert!(rejection(NameKind::Beamline, "p11/../x").contains("invalid beamline"));
    }

    #[test]
    fn user_accounts_follow_unix_rules() {
        for good in ["bttest01", "_svc", "first.last", "a-b_c"] {
            assert!(check_name(NameKind::UserAccount, good).is_ok(), "{good}");
        }
        assert!(rejection(NameKind::UserAccount, "Bttest").contains("'B' at position 1"));
        assert!(rejection(NameKind::UserAccount, "1abc").contains("must not start with '1'"));
        assert!(rejection(NameKind::UserAccount, &"a".repeat(33)).contains("33 characters"));
        assert!(rejection(NameKind::UserAccount, "root;id").contains("';'"));
    }

    #[test]
    fn reservations_of_a_beamtime_are_id_or_id_underscore_number() {
        let beamtime = id("11099005");
        for owned in ["11099005", "11099005_1", "11099005_12"] {
            assert!(beamtime.owns_reservation(owned), "{owned}");
        }
        for foreign in [
            "1109900",
            "110990051",
            "11099005_",
            "11099005_a",
            "11099005_1_2",
            "x11099005",
            "",
        ] {
            assert!(!beamtime.owns_reservation(foreign), "{foreign}");
        }
    }
}
