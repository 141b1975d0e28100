//! `bt-submit doctor`: everything that decides whether a beamtime job will
//! run, checked in the order the plugin and Slurm check it, each with a fix.
//!
//! [`examine`] owns that order and what a failed check makes the later ones
//! skip; `checks.rs` makes each check, `plugstack.rs` finds the plugin's line in
//! the plugstack configuration, `metadata.rs` reads the metadata as the plugin
//! would, `render.rs` writes the report as text or JSON.
//!
//! What Slurm says comes through [`Slurm`], so the order, the skipping and the
//! messages are tested with canned scontrol output; the real commands are
//! tested on the test cluster (tests/scenarios/tests/doctor.rs).

mod checks;
mod metadata;
mod plugstack;
mod render;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

use beamtime::id::BeamtimeId;
use beamtime::users::LookupError;

use crate::slurm_query::Slurm;
use crate::slurm_text::Reservation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Not checked because an earlier check it needs failed.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    /// What to do; empty for a passed check.
    pub fix: String,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Pass,
            detail: detail.into(),
            fix: String::new(),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    fn failed(name: &'static str, problem: &Problem) -> Check {
        Check::fail(name, problem.detail.as_str(), problem.fix.as_str())
    }

    fn skip(name: &'static str, needs: &str) -> Check {
        Check {
            name,
            outcome: Outcome::Skip,
            detail: format!("not checked: needs {needs}"),
            fix: format!("fix the {needs} check first"),
        }
    }
}

/// Why something a check needs is not there, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub detail: String,
    pub fix: String,
}

impl Problem {
    fn new(detail: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem {
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (fix: {})", self.detail, self.fix)
    }
}

impl std::error::Error for Problem {}

/// Which metadata file the user means, as on the rest of bt-submit's command line.
pub enum Target {
    File(PathBuf),
    Id(BeamtimeId),
    FromDirectory(PathBuf),
}

pub struct Report {
    pub beamtime: Option<String>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn all_passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome == Outcome::Pass)
    }
}

const ASK_ADMIN: &str = "ask the cluster's administrators";

/// Every check, in order. `user` is who runs doctor, as the user database says.
pub fn examine(
    target: &Target,
    slurm: &dyn Slurm,
    user: &Result<Option<String>, LookupError>,
) -> Report {
    let plugin = plugstack::find_plugin(slurm);
    let config = plugin.as_ref().ok().and_then(|p| p.config.as_ref().ok());

    let metadata = metadata::load(target, config);
    let mut checks = vec![checks::metadata(&metadata)];
    let metadata = metadata.ok().map(|trusted| trusted.metadata);
    let online = metadata.as_ref().and_then(|m| m.online.ready());
    checks.push(checks::online_resources(metadata.as_ref(), online));

    let (Some(metadata), Some(online)) = (&metadata, online) else {
        for name in [
            "user",
            "reservations",
            "reservation-access",
            "nodes",
            "partition",
        ] {
            checks.push(Check::skip(name, "online-resources"));
        }
        checks.push(checks::plugin(&plugin, slurm));
        checks.push(Check::skip("beamline-source", "online-resources"));
        return Report {
            beamtime: metadata
                .as_ref()
                .map(|m| m.id.to_string())
                .or(match target {
                    Target::Id(id) => Some(id.to_string()),
                    _ => None,
                }),
            checks,
        };
    };

    checks.push(checks::user(user, &metadata.id, online));
    // One query for both reservation checks.
    let reservations = slurm
        .query("scontrol", &["show", "reservation", "-o"])
        .map(|text| Reservation::parse_all(&text));
    let ours = reservations.as_ref().map(|all| {
        online
            .reservations
            .iter()
            .map(|name| all.iter().find(|r| &r.name == name))
            .collect::<Vec<_>>()
    });
    checks.push(checks::reservations(&ours, online));
    checks.push(checks::reservation_access(&ours, user, slurm));
    checks.push(checks::nodes(online, slurm));
    checks.push(checks::partition(online, slurm));
    checks.push(checks::plugin(&plugin, slurm));
    checks.push(checks::beamline_source(&plugin, metadata));

    Report {
        beamtime: Some(metadata.id.to_string()),
        checks,
    }
}
