//! `bt-submit doctor`: everything that decides whether a beamtime job will
//! run, checked in the order the plugin and Slurm check it, each with a fix.
//!
//! [`examine`] owns that order and what a failed check makes the later ones
//! skip; `checks.rs` makes each check, `metadata.rs` reads the metadata as the
//! plugin would, `render.rs` writes the report as text or JSON. The plugin's
//! line comes from [`Settings`], which reads it for every subcommand
//! (crate::site::plugstack).
//!
//! What Slurm says comes through the settings' [`crate::slurm::query::Slurm`],
//! so the order, the skipping and the messages are tested with canned scontrol
//! output; the real commands are tested on the test cluster
//! (tests/scenarios/tests/doctor.rs, one_configuration.rs).

mod checks;
mod metadata;
mod remote;
mod render;
#[cfg(test)]
mod tests;
mod verdict;

use std::cell::OnceCell;
use std::process::ExitCode;

use beamtime::plugin_config::PluginConfig;
use beamtime::problem::Problem;

use crate::cli::{DoctorArgs, Format};
use crate::commands::submit::current_user;
use crate::failure::Failure;
use crate::output::{write_json, write_stdout};
use crate::site::metadata_file::Target;
use crate::site::plugstack::PluginSetup;
use crate::site::settings::Settings;
use crate::slurm::error::SlurmError;
use crate::slurm::query::Slurm;
use crate::slurm::text::Reservation;
pub use verdict::Identity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Beamtime jobs run, but the site leaves a weakness the admins should fix.
    Warn,
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

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Warn,
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    fn failed(name: &'static str, problem: &Problem) -> Check {
        Check::fail(name, problem.what.as_str(), problem.fix.as_str())
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

pub struct Report {
    pub beamtime: Option<String>,
    pub checks: Vec<Check>,
}

impl Report {
    /// No check failed or was skipped: a warning does not stop a job.
    pub fn all_passed(&self) -> bool {
        self.checks
            .iter()
            .all(|c| matches!(c.outcome, Outcome::Pass | Outcome::Warn))
    }
}

/// The checks as they are made: each is handed to `emit` when it is done, so
/// that a slow answer (a controller that times out) does not hide the ones
/// before it.
struct Checks<'e> {
    made: Vec<Check>,
    emit: &'e mut dyn FnMut(&Check),
}

impl Checks<'_> {
    fn push(&mut self, check: Check) {
        (self.emit)(&check);
        self.made.push(check);
    }

    /// The report of `beamtime` as far as the checks went.
    fn report(self, beamtime: Option<String>) -> Report {
        Report {
            beamtime,
            checks: self.made,
        }
    }
}

/// The checks that ask the controller (or need the plugin's line, which only
/// the controller names), in report order; each is skipped with a pointer to
/// the controller check when this host cannot reach it.
const ASK_THE_CONTROLLER: [&str; 8] = [
    "reservations",
    "reservation-access",
    "nodes",
    "partition",
    "node-verdict",
    "plugin",
    "beamline-source",
    "task-lifetime",
];

/// Every check, in order, for `who` runs doctor; each is given to `emit` as
/// soon as it is made.
pub fn examine(
    target: &Target,
    settings: &Settings,
    who: &Identity,
    emit: &mut dyn FnMut(&Check),
) -> Report {
    let slurm = settings.slurm();
    // The first question to the controller (`scontrol show config`, for the
    // plugin's line) also tells whether this host reaches it at all: one
    // cause, told once, instead of every later query failing (and waiting)
    // on its own.
    let plugin = settings.plugin();
    let mut checks = Checks {
        made: Vec::new(),
        emit,
    };
    let controller = checks::controller(plugin);
    let reachable = controller.outcome == Outcome::Pass;
    checks.push(controller);
    // A line the plugin cannot use refuses every --beamtime job, whatever
    // else is right, so it comes first; the rest is checked without it.
    if let Ok(setup) = plugin {
        if let Err(bad) = &setup.config {
            checks.push(checks::plugstack_line(bad));
        }
    }

    let trusted = metadata::load(target, settings);
    checks.push(checks::metadata(&trusted));
    let trusted = trusted.ok();
    let metadata = trusted.as_ref().map(|t| &t.metadata);
    let online = metadata.and_then(|m| m.online.ready());
    checks.push(checks::online_resources(metadata, online));
    let beamtime = metadata.map(|m| m.id.to_string()).or(match target {
        Target::Id(id) => Some(id.to_string()),
        _ => None,
    });

    let (Some(trusted), Some(online)) = (&trusted, online) else {
        checks.push(Check::skip("user", "online-resources"));
        for name in ASK_THE_CONTROLLER {
            checks.push(match name {
                _ if !reachable => Check::skip(name, "controller"),
                "plugin" => checks::plugin(plugin, slurm),
                "task-lifetime" => checks::task_lifetime(plugin),
                _ => Check::skip(name, "online-resources"),
            });
        }
        return checks.report(beamtime);
    };

    let metadata = &trusted.metadata;
    // The node's own rules, with the plugin line's settings (min_uid,
    // check_nodes, account=); without a usable line, the plugin's defaults, so
    // that the user is still checked (the plugstack-line or plugin check says
    // that every job is refused until the line is fixed).
    let usable_line = match plugin {
        Ok(PluginSetup {
            config: Ok(line), ..
        }) => Some(&line.config),
        _ => None,
    };
    let defaults = PluginConfig::parse([]).ok();
    let user_check = match usable_line.or(defaults.as_ref()) {
        Some(config) => verdict::user(config, metadata, who),
        None => Check::skip("user", "plugin"),
    };
    let user_passed = user_check.outcome == Outcome::Pass;
    checks.push(user_check);
    if !reachable {
        for name in ASK_THE_CONTROLLER {
            checks.push(Check::skip(name, "controller"));
        }
        return checks.report(beamtime);
    }
    let user = &who.name;
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
    checks.push(node_verdict(
        usable_line,
        user_passed,
        &ours,
        trusted,
        who,
        slurm,
    ));
    checks.push(checks::plugin(plugin, slurm));
    checks.push(checks::beamline_source(plugin, trusted));
    checks.push(checks::task_lifetime(plugin));

    checks.report(beamtime)
}

/// The node's verdict (verdict.rs) for the reservations the controller knows;
/// it needs the plugin's own line, since its rules depend on it, and a user
/// the node admits at all.
fn node_verdict(
    config: Option<&PluginConfig>,
    user_passed: bool,
    ours: &Result<Vec<Option<&Reservation>>, &SlurmError>,
    trusted: &metadata::Trusted,
    who: &Identity,
    slurm: &dyn Slurm,
) -> Check {
    const NAME: &str = "node-verdict";
    let Some(config) = config else {
        return Check::skip(NAME, "plugin");
    };
    if !user_passed {
        return Check::skip(NAME, "user");
    }
    let Ok(ours) = ours else {
        return Check::skip(NAME, "reservations");
    };
    let existing: Vec<(&str, &str)> = ours
        .iter()
        .flatten()
        .map(|r| (r.name.as_str(), r.nodes.as_str()))
        .collect();
    let placements = match verdict::placements(slurm, &existing) {
        Ok(placements) => placements,
        Err(check) => return check,
    };
    let metadata = &trusted.metadata;
    let user_account = metadata
        .online
        .ready()
        .map(|online| online.user_account.as_str())
        .unwrap_or_default();
    let name = who.name.as_ref().ok().and_then(|name| name.as_deref());
    let account = verdict::DefaultAccount {
        slurm,
        user: name,
        needed: config
            .expected_account(&metadata.id, user_account)
            .is_some(),
        answer: OnceCell::new(),
    };
    verdict::node_verdict(config, metadata, &placements, |reservation, node| {
        verdict::Gathered {
            who,
            reservation: reservation.to_owned(),
            node: node.to_owned(),
            account: &account,
        }
    })
}

pub fn run(args: &DoctorArgs, settings: &Settings) -> Result<ExitCode, Failure> {
    let source = &args.source;
    let target = Target::of(source)?;
    let who = Identity {
        name: current_user(),
        uid: beamtime::users::current_uid(),
        uid_of: &beamtime::users::uid_of,
    };
    let make_checks = |emit: &mut dyn FnMut(&Check)| match args.remote {
        true => remote::examine(source, args.node.as_deref(), settings, emit),
        false => examine(&target, settings, &who, emit),
    };
    let report = match args.format {
        Format::Text => {
            // Each line as its check is made; the first failed write (a
            // closed pipe ends quietly in write_stdout) stops the writing.
            write_stdout(Report::heading(&target).as_bytes())?;
            let mut written = Ok(());
            let report = make_checks(&mut |check| {
                if written.is_ok() {
                    written = write_stdout(check.text().as_bytes());
                }
            });
            written?;
            write_stdout(report.summary().as_bytes())?;
            report
        }
        Format::Json => {
            let report = make_checks(&mut |_| {});
            write_json(&report.json())?;
            report
        }
    };
    // A failed check is no error of bt-submit's: the report on stdout
    // already says what failed and what to do.
    Ok(if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
