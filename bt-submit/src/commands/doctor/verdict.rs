//! What the node decides for this user's jobs, asked of the node's own policy:
//! `policy::check_submitter` for the user check, `policy::decide` for the
//! node-verdict check, over facts gathered here the way the plugin gathers
//! them on the node (uid from the kernel, the account's uid from the user
//! database, the reservation's nodes and the user's default Slurm account from
//! the controller). doctor never restates a rule of the node's, so it cannot
//! say "ok" for a job the node refuses.
//!
//! What the node cannot tell doctor stays doctor's own: who a reservation
//! admits, the partition, the plugin line, and the beamline folder (the
//! beamline-source check; here the folder counts as this beamtime's, so that
//! the verdict is about the rules before it).

use std::cell::OnceCell;

use beamtime::facts::{BeamlineFolder, ControllerJob, StepFacts};
use beamtime::metadata::Metadata;
use beamtime::plugin_config::PluginConfig;
use beamtime::policy::{self, Grant, Submitter};
use beamtime::problem::ASK_THE_ADMINS;
use beamtime::refusal::{Refusal, Rule};
use beamtime::users::LookupError;

use super::Check;
use crate::plan::usable_reservations;
use crate::slurm::query::Slurm;

/// Who runs doctor, and the user database as the node asks it.
pub struct Identity<'u> {
    /// The login name, for a reservation's `Users=` and the accounts query.
    pub name: Result<Option<String>, LookupError>,
    /// The uid jobs submitted from here carry (the node's `S_JOB_UID`).
    pub uid: u32,
    /// The uid of an account by name (`users::uid_of`).
    pub uid_of: &'u dyn Fn(&str) -> Result<Option<u32>, LookupError>,
}

impl Identity<'_> {
    /// As the plugin answers `StepFacts::account_uid`: a user database that
    /// does not answer is the site's to fix.
    fn account_uid(&self, account: &str) -> Result<Option<u32>, Refusal> {
        (self.uid_of)(account).map_err(|error| {
            Refusal::new(Rule::SiteConfiguration, error.to_string(), ASK_THE_ADMINS)
        })
    }
}

/// The node's courtesy check for who submits, as srun and sbatch make it.
pub(super) fn user(config: &PluginConfig, metadata: &Metadata, who: &Identity) -> Check {
    match policy::check_submitter(config, metadata, Submitter::Client(who.uid), |account| {
        who.account_uid(account)
    }) {
        Ok(online) => Check::pass(
            "user",
            format!(
                "you are {} (uid {}), the beamtime's account",
                online.user_account, who.uid
            ),
        ),
        Err(refusal) => {
            let mut check = refused("user", &refusal);
            if let Ok(name) = &who.name {
                let name = name
                    .as_deref()
                    .unwrap_or("a user the user database does not know");
                check.detail = format!("you are {name}; {}", check.detail);
            }
            check
        }
    }
}

/// A refusal of the node's, in the node's words, with the rule it broke.
fn refused(name: &'static str, refusal: &Refusal) -> Check {
    Check::fail(
        name,
        format!(
            "the node refuses ({}): {}",
            refusal.rule.as_str(),
            refusal.problem.what
        ),
        refusal.problem.fix.as_str(),
    )
}

/// Where a job can land: one of the beamtime's reservations that the
/// controller knows, and its nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placement {
    pub reservation: String,
    pub nodes: Vec<String>,
}

/// The node's verdict for a job in each placement and on each of its nodes.
/// A refusal in a reservation bt-submit plans fails; one only in a listed
/// reservation bt-submit never plans (`plan::usable_reservations`) warns, since
/// bt-submit's jobs still run.
pub(super) fn node_verdict<F: StepFacts>(
    config: &PluginConfig,
    metadata: &Metadata,
    placements: &[Placement],
    mut facts_for: impl FnMut(&str, &str) -> F,
) -> Check {
    const NAME: &str = "node-verdict";
    let planned: Vec<&String> = metadata
        .online
        .ready()
        .map(|online| usable_reservations(metadata, online))
        .unwrap_or_default();
    let mut admitted: Vec<&str> = Vec::new();
    let mut refusals: Vec<(bool, String, Refusal)> = Vec::new();
    for placement in placements {
        let mut all_nodes = true;
        for node in &placement.nodes {
            let verdict: Result<Grant, Refusal> = policy::decide(
                config,
                metadata,
                &mut facts_for(&placement.reservation, node),
            );
            if let Err(refusal) = verdict {
                all_nodes = false;
                let planned_here = planned.contains(&&placement.reservation);
                let place = format!("reservation {} on {node}", placement.reservation);
                // One line per distinct refusal: a rule about the user or
                // the account says the same on every node.
                if !refusals.iter().any(|(_, _, seen)| seen == &refusal) {
                    refusals.push((planned_here, place, refusal));
                }
            }
        }
        if all_nodes && !placement.nodes.is_empty() {
            admitted.push(&placement.reservation);
        }
    }
    let Some((_, place, first)) = refusals.first() else {
        return if admitted.is_empty() {
            Check::skip(NAME, "reservations")
        } else {
            Check::pass(
                NAME,
                format!(
                    "the node's rules admit your jobs in {}",
                    admitted.join(", ")
                ),
            )
        };
    };
    let detail = refusals
        .iter()
        .map(|(_, place, refusal)| {
            format!(
                "{place}: the node refuses ({}): {}",
                refusal.rule.as_str(),
                refusal.problem.what
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let fix = first.problem.fix.clone();
    if admitted.is_empty() || refusals.iter().any(|(planned_here, _, _)| *planned_here) {
        Check::fail(NAME, detail, fix)
    } else {
        Check::warn(
            NAME,
            format!("{detail}; bt-submit uses {} instead", admitted.join(", ")),
            format!("{place} is listed in the metadata: {fix}"),
        )
    }
}

/// The facts of a job in `reservation` on `node`, gathered on this host as
/// slurmstepd gathers them on the node.
pub(super) struct Gathered<'g> {
    pub who: &'g Identity<'g>,
    pub reservation: String,
    pub node: String,
    pub account: &'g DefaultAccount<'g>,
}

impl StepFacts for Gathered<'_> {
    fn job_uid(&self) -> u32 {
        self.who.uid
    }
    fn account_uid(&mut self, account: &str) -> Result<Option<u32>, Refusal> {
        self.who.account_uid(account)
    }
    fn node(&mut self) -> Result<String, Refusal> {
        Ok(self.node.clone())
    }
    fn controller(&mut self) -> Result<ControllerJob, Refusal> {
        Ok(ControllerJob {
            reservation: Some(self.reservation.clone()),
            account: self.account.get()?,
            batch: true,
        })
    }
    fn beamline_folder(&mut self, _: &std::path::Path, _: &str) -> Result<BeamlineFolder, Refusal> {
        // The beamline-source check's to judge (see the module's comment).
        Ok(BeamlineFolder::ThisBeamtime)
    }
}

/// The Slurm account a job gets when it names none (bt-submit adds none): the
/// user's default account, asked of the controller once, and only where the
/// site's `account=` makes the node look at it.
pub(super) struct DefaultAccount<'a> {
    pub slurm: &'a dyn Slurm,
    pub user: Option<&'a str>,
    pub needed: bool,
    pub answer: OnceCell<Result<Option<String>, Refusal>>,
}

impl DefaultAccount<'_> {
    fn get(&self) -> Result<Option<String>, Refusal> {
        if !self.needed {
            return Ok(None);
        }
        self.answer
            .get_or_init(|| {
                let Some(user) = self.user else {
                    return Err(Refusal::new(
                        Rule::ControllerUnavailable,
                        "your Slurm account cannot be looked up: the user database does not \
                         know your name",
                        ASK_THE_ADMINS,
                    ));
                };
                self.slurm
                    .query(
                        "sacctmgr",
                        &["-n", "-P", "show", "user", user, "format=defaultaccount"],
                    )
                    .map(|text| {
                        text.lines()
                            .map(str::trim)
                            .find(|line| !line.is_empty())
                            .map(str::to_owned)
                    })
                    .map_err(|error| {
                        Refusal::new(
                            Rule::ControllerUnavailable,
                            error.to_string(),
                            format!(
                                "check that slurmdbd answers (sacctmgr show user); if not, \
                                 {ASK_THE_ADMINS}"
                            ),
                        )
                    })
            })
            .clone()
    }
}

/// The nodes of each of the beamtime's reservations that the controller
/// knows, in Slurm's own expansion of its node list.
pub(super) fn placements(
    slurm: &dyn Slurm,
    existing: &[(&str, &str)],
) -> Result<Vec<Placement>, Check> {
    existing
        .iter()
        .map(|(reservation, node_list)| {
            let nodes = slurm
                .query("scontrol", &["show", "hostnames", node_list])
                .map_err(|error| {
                    Check::fail(
                        "node-verdict",
                        error.to_string(),
                        format!("check that slurmctld answers (scontrol ping); if not, {ASK_THE_ADMINS}"),
                    )
                })?;
            Ok(Placement {
                reservation: (*reservation).to_owned(),
                nodes: nodes
                    .lines()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}
