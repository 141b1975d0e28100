//! Each check of `bt-submit doctor`, from the facts it needs to a [`Check`];
//! [`super::examine`] decides the order and what runs at all.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use beamtime::id::BeamtimeId;
use beamtime::metadata::{Metadata, OnlineAnalysis};
use beamtime::trust::{distrust, FileFacts};
use beamtime::users::LookupError;

use super::metadata::Trusted;
use super::{Check, Problem, ASK_ADMIN};
use crate::plugstack::{BadLine, PluginSetup, Unavailable, UsableLine};
use crate::slurm_query::{QueryError, Slurm};
use crate::slurm_text::{node_unusable, partition_not_up, AccessList, Reservation};

/// The name shown for a user the user database does not know.
const UNKNOWN_USER: &str = "(unknown user)";

/// The plugin's line, reported only when the plugin cannot use it.
pub(super) fn plugstack_line(bad: &BadLine) -> Check {
    Check::fail(
        "plugstack-line",
        bad.to_string(),
        format!(
            "{ASK_ADMIN} to fix it: jobs without --beamtime are not affected, every --beamtime \
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

pub(super) fn user(
    user: &Result<Option<String>, LookupError>,
    id: &BeamtimeId,
    online: &OnlineAnalysis,
) -> Check {
    let user = match user {
        Ok(name) => name.as_deref().unwrap_or(UNKNOWN_USER),
        Err(error) => {
            return Check::fail(
                "user",
                format!("cannot tell who you are: {error}"),
                format!(
                    "{ASK_ADMIN}: this host's user database must answer; beamtime {id} runs as \
                     its account {}",
                    online.user_account
                ),
            )
        }
    };
    if user == online.user_account {
        Check::pass("user", format!("you are {user}, the beamtime's account"))
    } else {
        Check::fail(
            "user",
            format!(
                "you are {user}, but beamtime {id} runs as its account {}",
                online.user_account
            ),
            format!("log in as the beamtime account: {}", online.ssh_command()),
        )
    }
}

/// The beamtime's reservations in the metadata's order, each as the controller
/// reports it (`None`: it does not exist), or why the controller did not answer.
pub(super) type BeamtimeReservations<'r> = Result<Vec<Option<&'r Reservation>>, &'r QueryError>;

pub(super) fn reservations(found: &BeamtimeReservations, online: &OnlineAnalysis) -> Check {
    let found = match found {
        Err(e) => {
            return Check::fail(
                "reservations",
                e.to_string(),
                format!("check that slurmctld answers (scontrol ping); if not, {ASK_ADMIN}"),
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
                    ASK_ADMIN,
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
            format!("a node must be up and not drained for jobs to start there: {ASK_ADMIN}"),
        )
    }
}

pub(super) fn partition(online: &OnlineAnalysis, slurm: &dyn Slurm) -> Check {
    let partition = &online.partition;
    match slurm.query("scontrol", &["show", "partition", "-o", partition]) {
        Err(e) => Check::fail(
            "partition",
            e.to_string(),
            format!("the metadata names partition {partition}: {ASK_ADMIN}"),
        ),
        Ok(text) => match partition_not_up(text.lines().next().unwrap_or_default()) {
            None => Check::pass("partition", format!("{partition} is UP")),
            Some(why) => Check::fail(
                "partition",
                format!("partition {partition} is not up: {why}"),
                ASK_ADMIN,
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
            format!("{ASK_ADMIN}: install the spank-beamtime package"),
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
                    "{ASK_ADMIN}: this host's slurm.conf (PlugStackConfig) must load the same \
                     plugstack configuration"
                ),
            )
        }
        Err(e) => {
            return Check::fail(
                "plugin",
                e.to_string(),
                format!("{ASK_ADMIN}: srun must work on this host"),
            )
        }
    }
    let kind = if p.required { "required" } else { "optional" };
    Check::pass(
        "plugin",
        format!("{conf} loads {} ({kind}); srun offers --beamtime", p.path),
    )
}

/// The folder the plugin mounts for this beamline, from its `source=`, as
/// the node will find it: reached without a symbolic link, and holding a
/// copy of the beamtime's metadata file under its usual name from one of the
/// trusted owners (task_root.rs `check_source_is_the_beamtimes`: how the
/// plugin knows the beamline's `current` folder is still this beamtime's).
/// Checked from this host where it sees the folder; the nodes may see a
/// file system this host does not mount, which is no failure.
pub(super) fn beamline_source(
    plugin: &Result<PluginSetup, Unavailable>,
    trusted: &Trusted,
) -> Check {
    let line = match plugin {
        Ok(PluginSetup {
            config: Ok(line), ..
        }) => line,
        Ok(_) => return Check::skip("beamline-source", "plugstack-line"),
        Err(_) => return Check::skip("beamline-source", "plugin"),
    };
    let metadata = &trusted.metadata;
    let folder = line.source.expand(&metadata.id, &metadata.beamline);
    let seen_as = line.config.target.expand(&metadata.id, &metadata.beamline);
    let top = fixed_folder(line);
    if !top.exists() {
        return Check::pass(
            "beamline-source",
            format!(
                "{} is not visible from this host ({} is not here), so its copy of the \
                 metadata file cannot be checked from here; the compute nodes must see it",
                folder.display(),
                top.display()
            ),
        );
    }
    if let Some(verdict) = walk_without_links(&folder) {
        return verdict;
    }
    let name = metadata.kind.file_name(&metadata.id);
    let copy = folder.join(&name);
    let fix = format!(
        "the plugin mounts {} only while it holds beamtime {}'s metadata file {name}, owned by \
         {} and not writable by group or others: the facility's start script must put that \
         copy there ({ASK_ADMIN} or the beamline staff)",
        folder.display(),
        metadata.id,
        trusted.owners
    );
    let not_ours = |why: String| {
        Check::fail(
            "beamline-source",
            format!(
                "{} is not beamtime {}'s folder now: {why}",
                folder.display(),
                metadata.id
            ),
            fix.as_str(),
        )
    };
    match fs::symlink_metadata(&copy) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => closed_to_you(&folder),
        Err(e) => not_ours(format!("{}: {e}", copy.display())),
        Ok(m) if m.file_type().is_symlink() => {
            not_ours(format!("{} is a symbolic link", copy.display()))
        }
        Ok(m) => match distrust(&FileFacts::of(&m), &trusted.policy) {
            Some(why) => not_ours(format!("{} is not trusted: {why}", copy.display())),
            None => Check::pass(
                "beamline-source",
                format!(
                    "{} is there and holds the beamtime's {name}, trusted; jobs see it as {}",
                    folder.display(),
                    seen_as.display()
                ),
            ),
        },
    }
}

/// The source template's folder before its first placeholder
/// (`/gpfs/beamline` of `/gpfs/beamline/{beamline}/current`), or the folder
/// above a template without one: the file system the nodes mount it from.
fn fixed_folder(line: &UsableLine) -> PathBuf {
    let text = line.source.as_str();
    match text.find('{') {
        Some(at) => PathBuf::from(&text[..text[..at].rfind('/').unwrap_or(0).max(1)]),
        None => Path::new(text)
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf(),
    }
}

/// Each folder from `/` to `folder` as the plugin opens it: a symbolic link
/// anywhere on the way is refused, so the mount fails. `None` when the walk
/// gets there, else the check's verdict.
fn walk_without_links(folder: &Path) -> Option<Check> {
    let mut walked = PathBuf::new();
    for component in folder.components() {
        walked.push(component);
        match fs::symlink_metadata(&walked) {
            Ok(m) if m.file_type().is_symlink() => {
                return Some(Check::fail(
                    "beamline-source",
                    format!(
                        "{} is a symbolic link, which the plugin does not follow: every job's \
                         mount fails",
                        walked.display()
                    ),
                    format!("{ASK_ADMIN}: source= must name the real folder, without links"),
                ))
            }
            Ok(m) if !m.is_dir() => {
                return Some(Check::fail(
                    "beamline-source",
                    format!("{} is not a folder", walked.display()),
                    ASK_ADMIN,
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Some(closed_to_you(folder))
            }
            Err(e) => {
                return Some(Check::fail(
                    "beamline-source",
                    format!("{}: {e}", walked.display()),
                    "the beamline folder is made when the beamtime starts: ask the beamline \
                     staff",
                ))
            }
        }
    }
    None
}

/// A beamtime's folder is open only to its members; root on the node sees it.
fn closed_to_you(folder: &Path) -> Check {
    Check::pass(
        "beamline-source",
        format!(
            "{} cannot be checked: you may not look into it (a beamtime's folder is open to its \
             members); run doctor as the beamtime's account to check its copy of the metadata \
             file",
            folder.display()
        ),
    )
}
