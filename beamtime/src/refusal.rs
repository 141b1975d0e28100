//! The node's vocabulary for "no": the [`Rule`] a refusal is about and the
//! [`Refusal`] itself. Below the policy so that the modules gathering facts
//! for it (reading trusted files, the job cache, the requested reservation)
//! can refuse without depending on the decision.

use std::fmt;

use crate::problem::Problem;

/// The rule a refusal is about; its name goes into slurmd's log so admins can
/// count refusals by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    InvalidBeamtimeId,
    ConflictingBeamtime,
    MetadataNotFound,
    MetadataAmbiguous,
    MetadataUntrusted,
    MetadataInvalid,
    NoOnlineResources,
    UnsafeAccount,
    WrongUser,
    NoReservation,
    WrongReservation,
    WrongNode,
    WrongAccount,
    ControllerUnavailable,
    SiteConfiguration,
    MountFailed,
    PreStart,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::InvalidBeamtimeId => "invalid-beamtime-id",
            Rule::ConflictingBeamtime => "conflicting-beamtime",
            Rule::MetadataNotFound => "metadata-not-found",
            Rule::MetadataAmbiguous => "metadata-ambiguous",
            Rule::MetadataUntrusted => "metadata-untrusted",
            Rule::MetadataInvalid => "metadata-invalid",
            Rule::NoOnlineResources => "no-online-resources",
            Rule::UnsafeAccount => "unsafe-account",
            Rule::WrongUser => "wrong-user",
            Rule::NoReservation => "no-reservation",
            Rule::WrongReservation => "wrong-reservation",
            Rule::WrongNode => "wrong-node",
            Rule::WrongAccount => "wrong-account",
            Rule::ControllerUnavailable => "controller-unavailable",
            Rule::SiteConfiguration => "site-configuration",
            Rule::MountFailed => "mount-failed",
            Rule::PreStart => "pre-start",
        }
    }
}

/// Why a job may not run as the beamtime it asked for, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    /// What was wrong (with the value seen and the value expected), and what
    /// the user (or, for site problems, the admin) should do.
    pub problem: Problem,
}

impl Refusal {
    pub fn new(rule: Rule, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Refusal {
            rule,
            problem: Problem::new(what, fix),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.problem.fmt(f)
    }
}

impl std::error::Error for Refusal {}
