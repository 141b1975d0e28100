//! Whether a job may run as a beamtime, decided from plain values.
//!
//! The plugin gathers the facts it can trust (the job's uid from slurmstepd,
//! reservation and account from the controller, the node name slurmd gave
//! slurmstepd, the metadata read by [`crate::trust`]) and hands them here. What
//! comes back is a [`Grant`] saying exactly what to mount and export, or a
//! [`Refusal`] naming the rule, the value seen, the value expected and the fix.
//! Nothing here touches Slurm or the file system, so every rule has a unit test.

use std::path::PathBuf;

use crate::facts::{BeamlineFolder, ControllerJob, StepFacts};
use crate::id::{Beamline, BeamtimeId};
use crate::metadata::{Metadata, Online, OnlineAnalysis};
use crate::plugin_config::{PluginConfig, Prestart};
use crate::problem::ASK_THE_ADMINS;
use crate::refusal::{Refusal, Rule};

/// Where a beamtime with online resources stands on this node's beamline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The beamline's folder holds this beamtime's own metadata file: its data is there.
    Online,
    /// It does not: the beamtime has not started on the beamline yet (the
    /// facility's pre-start, when only the core filesystem has its folder), or
    /// the beamline has moved on to another beamtime. Jobs run without the
    /// beamline, and see nothing of whichever beamtime the folder holds.
    PreStart,
}

impl Phase {
    /// As `BEAMTIME_PHASE` and the log's `phase=` say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Online => "online",
            Phase::PreStart => "pre-start",
        }
    }
}

/// The phase a beamline folder's contents give; `None` for a folder holding
/// no beamtime's file at all, which the node refuses. bt-submit tells the
/// phase with this too.
pub fn phase_of(holds: BeamlineFolder) -> Option<Phase> {
    match holds {
        BeamlineFolder::ThisBeamtime => Some(Phase::Online),
        BeamlineFolder::Absent | BeamlineFolder::AnotherBeamtime => Some(Phase::PreStart),
        BeamlineFolder::NoBeamtime => None,
    }
}

/// What an accepted job gets: the mount to make and the variables to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub beamtime: BeamtimeId,
    pub beamline: Beamline,
    pub reservation: String,
    /// The beamline folder on the node, bound read-only at `target`.
    pub source: PathBuf,
    pub target: PathBuf,
    /// The folder covered by a private tmpfs so that no other beamline shows.
    pub hide_root: PathBuf,
    /// Subfolders of `source` bound read-write on top.
    pub writable: Vec<String>,
    /// The metadata file's name, which `source` must hold while it is this
    /// beamtime's (a beamline's `current` folder moves on to the next one).
    pub metadata_file_name: String,
    /// Pre-start: only the empty tmpfs over `hide_root`, no beamline.
    pub phase: Phase,
    pub environment: Vec<(&'static str, String)>,
}

/// The facts the rules after [`check_submitter`] look at.
struct Job {
    controller: ControllerJob,
    node: String,
}

/// Whose uid [`check_submitter`] is given, so that its message names the
/// right one: `srun --jobid` by root attaches to a job of another user, and
/// the uid srun runs as is then not the job's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitter {
    /// The user running srun, sbatch or salloc (the courtesy check).
    Client(u32),
    /// The job's user, `S_JOB_UID` (the node's decision).
    Job(u32),
}

/// The checks that need nothing but the metadata and who submits: shared by
/// the courtesy check in srun/sbatch/salloc and the node's decision.
/// `account_uid` looks the beamtime's account up in the user database; it is
/// called only for a beamtime with online resources.
pub fn check_submitter<'m>(
    config: &PluginConfig,
    metadata: &'m Metadata,
    submitter: Submitter,
    account_uid: impl FnOnce(&str) -> Result<Option<u32>, Refusal>,
) -> Result<&'m OnlineAnalysis, Refusal> {
    let id = &metadata.id;
    let online = match &metadata.online {
        Online::Ready(online) => online,
        Online::NotYet => {
            return Err(Refusal::new(
                Rule::NoOnlineResources,
                format!(
                    "beamtime {id} has no online analysis resources yet ({} has no usable \
                     onlineAnalysis block)",
                    metadata.path.display()
                ),
                "Wait until the beamtime has started and its Slurm reservation exists, \
                 or ask the beamline staff to request online resources",
            ))
        }
    };
    let account = &online.user_account;
    let Some(account_uid) = account_uid(account)? else {
        return Err(Refusal::new(
            Rule::UnsafeAccount,
            format!(
                "the beamtime's account '{account}' ({}: onlineAnalysis.userAccount) does not exist on this node",
                metadata.path.display()
            ),
            "Ask the facility to check that the beamtime was started on this node",
        ));
    };
    if account_uid < config.min_uid {
        return Err(Refusal::new(
            Rule::UnsafeAccount,
            format!(
                "the beamtime's account '{account}' ({}: onlineAnalysis.userAccount) is a system \
                 account (uid {account_uid} < {})",
                metadata.path.display(),
                config.min_uid
            ),
            "Refusing to run a beamtime as a system account; ask the facility to fix the metadata",
        ));
    }
    let (uid, who) = match submitter {
        Submitter::Client(uid) => (uid, "you submit as"),
        Submitter::Job(uid) => (uid, "this job's user is"),
    };
    if uid != account_uid {
        return Err(Refusal::new(
            Rule::WrongUser,
            format!(
                "beamtime {id} runs as its account '{account}' (uid {account_uid}), and {who} \
                 uid {uid}"
            ),
            format!(
                "Log in as the beamtime account ({}) and submit from there",
                online.ssh_command()
            ),
        ));
    }
    Ok(online)
}

/// The node's decision for a job that asked for `metadata.id`: who submits
/// first (free, then one user-database lookup), then the node, then the
/// controller, then the site's own rules.
pub fn decide(
    config: &PluginConfig,
    metadata: &Metadata,
    facts: &mut impl StepFacts,
) -> Result<Grant, Refusal> {
    let online = check_submitter(
        config,
        metadata,
        Submitter::Job(facts.job_uid()),
        |account| facts.account_uid(account),
    )?;
    let node = facts.node()?;
    let controller = facts.controller()?;
    let job = Job { controller, node };
    let id = &metadata.id;
    let valid = online.reservations.join(", ");

    let reservation = match &job.controller.reservation {
        None => {
            return Err(Refusal::new(
                Rule::NoReservation,
                format!("the job runs outside a reservation; beamtime {id} jobs must run in one of its reservations ({valid})"),
                format!(
                    "Submit with --reservation={} (bt-submit adds it for you)",
                    online.reservations[0]
                ),
            ))
        }
        Some(reservation) => reservation,
    };
    // `--reservation=A,B` lets Slurm pick; the controller then reports the list
    // it was given, not the one the job runs in, so nothing can be checked.
    if reservation.contains(',') {
        return Err(Refusal::new(
            Rule::WrongReservation,
            format!(
                "the job was submitted with a list of reservations ('{reservation}'), and Slurm \
                 tells the plugin that list, not the reservation the job runs in; beamtime {id} \
                 jobs name one of its reservations ({valid})"
            ),
            format!(
                "Submit with one reservation, e.g. --reservation={} (bt-submit picks one for you)",
                online.reservations[0]
            ),
        ));
    }
    if !online.reservations.iter().any(|r| r == reservation) {
        return Err(Refusal::new(
            Rule::WrongReservation,
            format!(
                "the job runs in reservation '{reservation}', which is not one of beamtime {id}'s ({valid})"
            ),
            format!("Submit with --reservation={} (bt-submit adds it for you)", online.reservations[0]),
        ));
    }

    // Listed is not enough: a file that names another beamtime's reservation
    // (a copy-paste slip, a tampered file) must not open that reservation's jobs
    // to this beamtime's data.
    if !id.owns_reservation(reservation) {
        return Err(Refusal::new(
            Rule::WrongReservation,
            format!(
                "the job runs in reservation '{reservation}', which beamtime {id}'s metadata lists but \
                 which is not named after it ({id} or {id}_<n>)"
            ),
            "Ask the beamline staff to fix onlineAnalysis.slurmReservation in the metadata file",
        ));
    }

    if config.check_nodes && !online.reserved_nodes.iter().any(|n| n == &job.node) {
        return Err(Refusal::new(
            Rule::WrongNode,
            format!(
                "node {} is not one of beamtime {id}'s reserved nodes ({})",
                job.node,
                online.reserved_nodes.join(", ")
            ),
            "Ask the beamline staff to check the reservation: its nodes and the metadata's \
             reservedNodes disagree",
        ));
    }

    if let Some(expected) = config.expected_account(id, &online.user_account) {
        let seen = job.controller.account.as_deref().unwrap_or("(none)");
        if seen != expected {
            return Err(Refusal::new(
                Rule::WrongAccount,
                format!(
                    "the job's Slurm account is '{seen}', beamtime {id} jobs must use '{expected}'"
                ),
                format!(
                    "Submit with --account={expected}, or leave --account out to use your default"
                ),
            ));
        }
    }

    let Some(source) = &config.source else {
        return Err(Refusal::new(
            Rule::SiteConfiguration,
            "the site has not configured where beamline data lives (source= in plugstack.conf)",
            format!("{ASK_THE_ADMINS} to set source= for spank-beamtime"),
        ));
    };
    let beamline = &metadata.beamline;
    let source = source.expand(id, beamline);
    let metadata_file_name = metadata.kind.file_name(id);
    let holds = facts.beamline_folder(&source, &metadata_file_name)?;
    let phase = match phase_of(holds) {
        Some(phase) => phase,
        None => {
            return Err(Refusal::new(
                Rule::MountFailed,
                format!(
                    "the beamline folder could not be set up: {} holds no beamtime's metadata \
                     file, not even {metadata_file_name}: is the beamline file system mounted \
                     on this node?",
                    source.display()
                ),
                ASK_THE_ADMINS,
            ))
        }
    };
    if phase == Phase::PreStart && config.prestart == Prestart::Refuse {
        return Err(Refusal::new(
            Rule::PreStart,
            format!(
                "beamtime {id} has not started on beamline {beamline} yet (or the beamline has \
                 moved on): its beamline folder does not hold it"
            ),
            "This site runs beamtime jobs only once the beamtime has started on its \
             beamline (prestart=refuse); submit again then",
        ));
    }
    let target = config.target.expand(id, beamline);
    let mut environment = vec![
        ("BEAMTIME_ID", id.to_string()),
        ("BEAMTIME_BEAMLINE", beamline.to_string()),
        ("BEAMTIME_BEAMLINE_PATH", target.display().to_string()),
        ("BEAMTIME_PHASE", phase.as_str().to_owned()),
    ];
    if let Some(core) = &metadata.core_path {
        environment.push(("BEAMTIME_CORE_PATH", core.display().to_string()));
    }
    Ok(Grant {
        beamtime: id.clone(),
        beamline: beamline.clone(),
        reservation: reservation.clone(),
        source,
        target,
        hide_root: config.target.hide_root().to_path_buf(),
        writable: config.writable.clone(),
        metadata_file_name,
        phase,
        environment,
    })
}

#[cfg(test)]
mod tests;
