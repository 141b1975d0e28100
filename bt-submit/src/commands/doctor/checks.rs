//! Each check of `bt-submit doctor`, from the facts it needs to a [`Check`];
//! [`super::examine`] decides the order and what runs at all.

use std::fs;

use beamtime::metadata::{Metadata, OnlineAnalysis};
use beamtime::users::LookupError;

use super::metadata::Trusted;
use beamtime::problem::ASK_THE_ADMINS;

use super::{Check, Problem};
use crate::site::phase::{self, Fault, State};
use crate::site::plugstack::{BadLine, PluginSetup, Unavailable};
use crate::slurm::error::{SlurmError, SlurmErrorKind};
use crate::slurm::query::Slurm;
use crate::slurm::text::{node_unusable, partition_not_up, AccessList, Reservation};

/// The name shown for a user the user database does not know.
const UNKNOWN_USER: &str = "(unknown user)";

/// Whether this host reaches the Slurm controller, from doctor's first
/// question to it (`scontrol show config`, for the plugin's line): every later
/// check that asks the controller is skipped when it does not answer, so that
/// one cause is told once. A host without scontrol, or without a Slurm
/// configuration, is no Slurm host at all: the beamline computer, which
/// submits with --remote.
pub(super) fn controller(plugin: &Result<PluginSetup, Unavailable>) -> Check {
    const NAME: &str = "controller";
    let error = match plugin {
        Err(Unavailable::Query(error)) => error,
        // It answered; what it said about the plugin is the plugin check's.
        _ => return Check::pass(NAME, "slurmctld answers (scontrol show config)"),
    };
    let no_configuration = match &error.kind {
        SlurmErrorKind::CannotRun(_) => true,
        SlurmErrorKind::Failed { stderr, .. } => {
            stderr.contains("Could not establish a configuration source")
        }
    };
    if no_configuration {
        Check::fail(
            NAME,
            format!("this is no Slurm host: {error}"),
            "on the beamline computer, submit with bt-submit --remote (docs/admin.md, \"On the \
             beamline computer\"); on a cluster host, the Slurm client commands and their \
             configuration must be installed: ask the cluster's administrators",
        )
    } else {
        Check::fail(
            NAME,
            format!("this host cannot reach the Slurm controller: {error}"),
            format!(
                "every other Slurm check needs it: if `scontrol ping` says DOWN here, {ASK_THE_ADMINS} \
                 (slurmctld down, or this host cut off from it); a job cannot be submitted from here \
                 until it answers"
            ),
        )
    }
}

/// The plugin's line, reported only when the plugin cannot use it.
pub(super) fn plugstack_line(bad: &BadLine) -> Check {
    Check::fail(
        "plugstack-line",
        bad.to_string(),
        format!(
            "{ASK_THE_ADMINS} to fix it: jobs without --beamtime are not affected, every --beamtime \
             job is refused until then"
        ),
    )
}

pub(super) fn metadata(loaded: &Result<Trusted, Problem>) -> Check {
    match loaded {
        Ok(trusted) => {
            let metadata = &trusted.metadata;
            let found = match &trusted.found_through {
                Some(how) => format!(", found through {how}"),
                None => String::new(),
            };
            Check::pass(
                "metadata",
                format!(
                    "{} (beamtime {}, beamline {}), trusted (owned by {}, not writable by \
                     others){found}",
                    metadata.path.display(),
                    metadata.id,
                    metadata.beamline,
                    trusted.owners
                ),
            )
        }
        Err(problem) => Check::failed("metadata", problem),
    }
}

pub(super) fn online_resources(
    metadata: Option<&Metadata>,
    online: Option<&OnlineAnalysis>,
) -> Check {
    match (metadata, online) {
        (None, _) => Check::skip("online-resources", "metadata"),
        (Some(m), None) => Check::fail(
            "online-resources",
            format!(
                "{} has no usable onlineAnalysis block: the beamtime's Slurm resources do not \
                 exist yet",
                m.path.display()
            ),
            "wait until the beamtime has started, or ask the beamline staff to request online \
             resources",
        ),
        (Some(_), Some(o)) => Check::pass(
            "online-resources",
            format!(
                "partition {}, reservations {}, nodes {}, account {}",
                o.partition,
                o.reservations.join(","),
                o.reserved_nodes.join(","),
                o.user_account
            ),
        ),
    }
}

/// The beamtime's reservations in the metadata's order, each as the controller
/// reports it (`None`: it does not exist), or why the controller did not answer.
pub(super) type BeamtimeReservations<'r> = Result<Vec<Option<&'r Reservation>>, &'r SlurmError>;

pub(super) fn reservations(found: &BeamtimeReservations, online: &OnlineAnalysis) -> Check {
    let found = match found {
        Err(e) => {
            return Check::fail(
                "reservations",
                e.to_string(),
                format!("check that slurmctld answers (scontrol ping); if not, {ASK_THE_ADMINS}"),
            )
        }
        Ok(found) => found,
    };
    let problems: Vec<String> = online
        .reservations
        .iter()
        .zip(found)
        .filter_map(|(name, r)| match r {
            None => Some(format!("reservation {name} does not exist")),
            Some(r) if !r.is_active() => Some(format!(
                "reservation {name} is {} (StartTime={} EndTime={})",
                r.state, r.start_time, r.end_time
            )),
            Some(_) => None,
        })
        .collect();
    if problems.is_empty() {
        Check::pass(
            "reservations",
            format!("{} active", online.reservations.join(", ")),
        )
    } else {
        Check::fail(
            "reservations",
            problems.join("; "),
            "the facility's start script creates them when the beamtime starts: ask the beamline \
             staff",
        )
    }
}

/// Whether the reservations that exist admit this user, as Slurm would decide.
pub(super) fn reservation_access(
    found: &BeamtimeReservations,
    user: &Result<Option<String>, LookupError>,
    slurm: &dyn Slurm,
) -> Check {
    let Ok(found) = found else {
        return Check::skip("reservation-access", "reservations");
    };
    let existing: Vec<&Reservation> = found.iter().flatten().copied().collect();
    if existing.is_empty() {
        return Check::skip("reservation-access", "reservations");
    }
    // Users= and Accounts= are about a name; a failed lookup leaves none to ask about.
    let Ok(user) = user else {
        return Check::skip("reservation-access", "user");
    };
    let user = user.as_deref().unwrap_or(UNKNOWN_USER);
    let needs_accounts = existing.iter().any(|r| r.accounts != AccessList::Unset);
    let accounts = if needs_accounts {
        match slurm.query(
            "sacctmgr",
            &[
                "-n",
                "-P",
                "show",
                "assoc",
                &format!("where user={user}"),
                "format=account",
            ],
        ) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
            Err(e) => {
                return Check::fail(
                    "reservation-access",
                    format!(
                        "a reservation limits Accounts=, and your Slurm accounts cannot be \
                         listed: {e}"
                    ),
                    ASK_THE_ADMINS,
                )
            }
        }
    } else {
        Vec::new()
    };
    let refused: Vec<String> = existing
        .iter()
        .filter_map(|r| {
            r.refuses(user, &accounts)
                .map(|why| format!("{}: {why}", r.name))
        })
        .collect();
    if refused.is_empty() {
        let names: Vec<&str> = existing.iter().map(|r| r.name.as_str()).collect();
        Check::pass(
            "reservation-access",
            format!("{user} may use {}", names.join(", ")),
        )
    } else {
        Check::fail(
            "reservation-access",
            refused.join("; "),
            "submit as the beamtime's account (see the user check); if you are, ask the beamline \
             staff to fix the reservation",
        )
    }
}

pub(super) fn nodes(online: &OnlineAnalysis, slurm: &dyn Slurm) -> Check {
    let down: Vec<String> = online
        .reserved_nodes
        .iter()
        .filter_map(
            |node| match slurm.query("scontrol", &["show", "node", "-o", node]) {
                Ok(text) => node_unusable(text.lines().next().unwrap_or_default())
                    .map(|why| format!("{node}: {why}")),
                Err(e) => Some(format!("{node}: {e}")),
            },
        )
        .collect();
    if down.is_empty() {
        Check::pass("nodes", format!("{} up", online.reserved_nodes.join(", ")))
    } else {
        Check::fail(
            "nodes",
            down.join("; "),
            format!("a node must be up and not drained for jobs to start there: {ASK_THE_ADMINS}"),
        )
    }
}

pub(super) fn partition(online: &OnlineAnalysis, slurm: &dyn Slurm) -> Check {
    let partition = &online.partition;
    match slurm.query("scontrol", &["show", "partition", "-o", partition]) {
        Err(e) => Check::fail(
            "partition",
            e.to_string(),
            format!("the metadata names partition {partition}: {ASK_THE_ADMINS}"),
        ),
        Ok(text) => match partition_not_up(text.lines().next().unwrap_or_default()) {
            None => Check::pass("partition", format!("{partition} is UP")),
            Some(why) => Check::fail(
                "partition",
                format!("partition {partition} is not up: {why}"),
                ASK_THE_ADMINS,
            ),
        },
    }
}

/// The configuration comes from the controller's PlugStackConfig; whether the
/// plugin really loads into this host's srun (its own slurm.conf, its own
/// copy of the files) only srun can tell: it lists plugin options in --help.
/// The line's arguments are the plugstack-line check's.
pub(super) fn plugin(plugin: &Result<PluginSetup, Unavailable>, slurm: &dyn Slurm) -> Check {
    let p = match plugin {
        Err(unavailable) => {
            return Check::fail("plugin", unavailable.to_string(), unavailable.fix())
        }
        Ok(p) => p,
    };
    let conf = p.conf_file.display();
    if let Err(e) = fs::metadata(&p.path) {
        return Check::fail(
            "plugin",
            format!("{conf} names {}: {e}", p.path),
            format!("{ASK_THE_ADMINS}: install the spank-beamtime package"),
        );
    }
    match slurm.query("srun", &["--help"]) {
        Ok(help) if help.contains("--beamtime=") => {}
        Ok(_) => {
            return Check::fail(
                "plugin",
                format!(
                    "{conf} names {}, but srun here does not offer --beamtime: it does not load \
                     the plugin",
                    p.path
                ),
                format!(
                    "{ASK_THE_ADMINS}: this host's slurm.conf (PlugStackConfig) must load the same \
                     plugstack configuration"
                ),
            )
        }
        Err(e) => {
            return Check::fail(
                "plugin",
                e.to_string(),
                format!("{ASK_THE_ADMINS}: srun must work on this host"),
            )
        }
    }
    let kind = if p.required { "required" } else { "optional" };
    Check::pass(
        "plugin",
        format!("{conf} loads {} ({kind}); srun offers --beamtime", p.path),
    )
}

/// The folder the plugin mounts for this beamline, from its `source=`, and
/// so the beamtime's phase, decided as the node decides it (crate::site::phase):
/// online when the folder holds a trusted copy of the beamtime's metadata
/// file, pre-start (jobs run without the beamline) when it is missing or holds
/// another beamtime's. A pre-start beamtime passes unless `prestart=refuse`;
/// a folder the node refuses fails; one this host cannot see or look into is
/// the node's to decide, which is no failure.
pub(super) fn beamline_source(
    plugin: &Result<PluginSetup, Unavailable>,
    trusted: &Trusted,
) -> Check {
    const NAME: &str = "beamline-source";
    let line = match plugin {
        Ok(PluginSetup {
            config: Ok(line), ..
        }) => line,
        Ok(_) => return Check::skip(NAME, "plugstack-line"),
        Err(_) => return Check::skip(NAME, "plugin"),
    };
    let metadata = &trusted.metadata;
    let standing = phase::standing(metadata, &line.config.target, Ok((line, &trusted.policy)));
    let folder = line.source.expand(&metadata.id, &metadata.beamline);
    let fix = match standing.state {
        State::NoOnlineResources => return Check::skip(NAME, "online-resources"),
        State::Decided { refused: false, .. } | State::OnTheNode => {
            return Check::pass(NAME, standing.note)
        }
        State::Decided { refused: true, .. } => format!(
            "wait until beamtime {} has started on beamline {} (the beamline staff know when): \
             this site runs beamtime jobs only then",
            metadata.id, metadata.beamline
        ),
        State::Broken(Fault::Link) => {
            format!("{ASK_THE_ADMINS}: source= must name the real folder, without links")
        }
        State::Broken(Fault::Copy) => format!(
            "the plugin mounts {} only while it holds beamtime {}'s metadata file {}, owned by \
             {} and not writable by group or others: the facility's start script must put that \
             copy there ({ASK_THE_ADMINS} or the beamline staff)",
            folder.display(),
            metadata.id,
            metadata.kind.file_name(&metadata.id),
            trusted.owners
        ),
        State::Broken(Fault::Other) => ASK_THE_ADMINS.to_owned(),
    };
    Check::fail(NAME, standing.note, fix)
}

/// Whether a task can outlive its job, and with it the beamline view the
/// plugin gave it: only proctrack/cgroup finds every process of a job,
/// including one that left its session (`setsid`); linuxproc and pgid lose it
/// (security.md, #17 finding 3). Beamtime jobs run either way: a warning.
pub(super) fn task_lifetime(plugin: &Result<PluginSetup, Unavailable>) -> Check {
    const NAME: &str = "task-lifetime";
    let Ok(setup) = plugin else {
        return Check::skip(NAME, "plugin");
    };
    match setup.proctrack.as_deref() {
        Some("proctrack/cgroup") => Check::pass(
            NAME,
            "ProctrackType=proctrack/cgroup: no process of a job outlives it",
        ),
        Some(other) => Check::warn(
            NAME,
            format!(
                "ProctrackType={other}: a process that leaves its session (setsid) outlives \
                 its job, and keeps the beamline it was shown"
            ),
            format!("{ASK_THE_ADMINS}: set ProctrackType=proctrack/cgroup in slurm.conf"),
        ),
        None => Check::warn(
            NAME,
            "scontrol show config names no ProctrackType: whether a process can outlive its \
             job is not known",
            format!("{ASK_THE_ADMINS}: set ProctrackType=proctrack/cgroup in slurm.conf"),
        ),
    }
}
