//! `bt-submit doctor`: everything that decides whether a beamtime job will
//! run, checked in the order the plugin and Slurm check it, each with a fix.
//!
//! What Slurm says comes through [`Slurm`], so the order, the skipping and the
//! messages are tested with canned scontrol output; the real commands are
//! tested on the test cluster (tests/scenarios/tests/doctor.rs).

use std::fs;
use std::path::{Path, PathBuf};

use beamtime::discovery::{find_from_dir, SearchPath, SearchPattern};
use beamtime::id::BeamtimeId;
use beamtime::metadata::{Metadata, MetadataKind};
use beamtime::plugin_config::{OwnerSpec, PluginConfig};
use beamtime::trust::{load_trusted_metadata, TrustPolicy};
use serde_json::{json, Value};

use crate::slurm_text::{
    is_beamtime_plugin, node_unusable, parse_plugstack, partition_not_up, plugstack_config,
    PlugstackLine, Reservation,
};

/// Runs Slurm's query commands; the real one is [`SlurmCommands`].
pub trait Slurm {
    /// The program's stdout when it exits 0, otherwise a one-line reason.
    fn query(&self, program: &str, args: &[&str]) -> Result<String, String>;
}

pub struct SlurmCommands;

impl Slurm for SlurmCommands {
    fn query(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let shown = format!("{program} {}", args.join(" "));
        let output = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run '{shown}': {e}"))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        let said = if said.is_empty() {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        } else {
            said
        };
        Err(format!(
            "'{shown}' failed ({}): {}",
            output.status,
            said.replace('\n', "; ")
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Not checked because an earlier check it needs failed.
    Skip,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
        }
    }
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
    fn skip(name: &'static str, needs: &str) -> Check {
        Check {
            name,
            outcome: Outcome::Skip,
            detail: format!("not checked: needs {needs}"),
            fix: format!("fix the {needs} check first"),
        }
    }
}

/// Which metadata file the user means, as on the rest of bt-submit's command line.
pub enum Target {
    File(PathBuf),
    Id(BeamtimeId),
    FromDirectory(PathBuf),
}

/// Who runs doctor, as far as it matters.
pub struct Caller {
    pub name: Option<String>,
    /// Resolves trusted_owners names the way the plugin does (NSS).
    pub uid_of: fn(&str) -> Option<u32>,
}

pub struct Report {
    pub beamtime: Option<String>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn all_passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome == Outcome::Pass)
    }

    pub fn text(&self) -> String {
        let mut out = match &self.beamtime {
            Some(id) => format!("bt-submit doctor: beamtime {id}\n"),
            None => "bt-submit doctor: no beamtime\n".to_owned(),
        };
        for check in &self.checks {
            let mark = match check.outcome {
                Outcome::Pass => "ok  ",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            out.push_str(&format!("{mark} {:<18} {}\n", check.name, check.detail));
            if !check.fix.is_empty() && check.outcome == Outcome::Fail {
                out.push_str(&format!("     {:<18} fix: {}\n", "", check.fix));
            }
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .count();
        let skipped = self
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Skip)
            .count();
        if failed == 0 && skipped == 0 {
            out.push_str(&format!(
                "all {} checks passed: beamtime jobs can run\n",
                self.checks.len()
            ));
        } else {
            out.push_str(&format!(
                "{failed} failed, {skipped} not checked, of {} checks: a beamtime job would not run; start with the first FAIL\n",
                self.checks.len()
            ));
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "beamtime": self.beamtime,
            "ok": self.all_passed(),
            "checks": self.checks.iter().map(|c| json!({
                "check": c.name,
                "result": c.outcome.as_str(),
                "detail": c.detail,
                "fix": c.fix,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Where the plugin is configured and with what, as this host's Slurm sees it.
struct PluginSetup {
    conf_file: PathBuf,
    path: String,
    required: bool,
    config: Result<PluginConfig, String>,
}

const ASK_ADMIN: &str = "ask the cluster's administrators";

pub fn examine(target: &Target, slurm: &dyn Slurm, caller: &Caller) -> Report {
    let plugin = find_plugin(slurm);
    let config = plugin.as_ref().ok().and_then(|p| p.config.as_ref().ok());
    let mut checks = Vec::new();

    let metadata = load_metadata(target, config, caller);
    checks.push(match &metadata {
        Ok((metadata, trust)) => Check::pass(
            "metadata",
            format!(
                "{} (beamtime {}, beamline {}), {trust}",
                metadata.path.display(),
                metadata.id,
                metadata.beamline
            ),
        ),
        Err((detail, fix)) => Check::fail("metadata", detail, fix),
    });
    let metadata = metadata.ok().map(|(m, _)| m);
    let online = metadata.as_ref().and_then(|m| m.online.ready().cloned());

    checks.push(match (&metadata, &online) {
        (None, _) => Check::skip("online-resources", "metadata"),
        (Some(m), None) => Check::fail(
            "online-resources",
            format!("{} has no usable onlineAnalysis block: the beamtime's Slurm resources do not exist yet", m.path.display()),
            "wait until the beamtime has started, or ask the beamline staff to request online resources",
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
    });

    let Some(online) = &online else {
        for name in [
            "user",
            "reservations",
            "reservation-access",
            "nodes",
            "partition",
        ] {
            checks.push(Check::skip(name, "online-resources"));
        }
        checks.push(plugin_check(&plugin, slurm));
        checks.push(Check::skip("beamline-source", "online-resources"));
        return Report {
            beamtime: metadata.map(|m| m.id.to_string()).or(match target {
                Target::Id(id) => Some(id.to_string()),
                _ => None,
            }),
            checks,
        };
    };
    let metadata = metadata.expect("online resources come from metadata");

    let user = caller
        .name
        .clone()
        .unwrap_or_else(|| "(unknown user)".to_owned());
    checks.push(if user == online.user_account {
        Check::pass("user", format!("you are {user}, the beamtime's account"))
    } else {
        Check::fail(
            "user",
            format!(
                "you are {user}, but beamtime {} runs as its account {}",
                metadata.id, online.user_account
            ),
            format!("log in as the beamtime account: {}", online.ssh_command()),
        )
    });

    let reservations = slurm
        .query("scontrol", &["show", "reservation", "-o"])
        .map(|text| Reservation::parse_all(&text));
    let mine: Result<Vec<Option<&Reservation>>, &String> = reservations.as_ref().map(|all| {
        online
            .reservations
            .iter()
            .map(|name| all.iter().find(|r| &r.name == name))
            .collect()
    });
    checks.push(match &mine {
        Err(e) => Check::fail("reservations", e.as_str(), "check that slurmctld answers (scontrol ping); if not, ask the cluster's administrators"),
        Ok(found) => {
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
                Check::pass("reservations", format!("{} active", online.reservations.join(", ")))
            } else {
                Check::fail(
                    "reservations",
                    problems.join("; "),
                    "the facility's start script creates them when the beamtime starts: ask the beamline staff",
                )
            }
        }
    });

    checks.push(match &mine {
        Err(_) => Check::skip("reservation-access", "reservations"),
        Ok(found) => {
            let existing: Vec<&Reservation> = found.iter().flatten().copied().collect();
            if existing.is_empty() {
                Check::skip("reservation-access", "reservations")
            } else {
                access_check(&existing, &user, slurm)
            }
        }
    });

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
    checks.push(if down.is_empty() {
        Check::pass("nodes", format!("{} up", online.reserved_nodes.join(", ")))
    } else {
        Check::fail(
            "nodes",
            down.join("; "),
            format!("a node must be up and not drained for jobs to start there: {ASK_ADMIN}"),
        )
    });

    checks.push(
        match slurm.query("scontrol", &["show", "partition", "-o", &online.partition]) {
            Err(e) => Check::fail(
                "partition",
                e,
                format!(
                    "the metadata names partition {}: {ASK_ADMIN}",
                    online.partition
                ),
            ),
            Ok(text) => match partition_not_up(text.lines().next().unwrap_or_default()) {
                None => Check::pass("partition", format!("{} is UP", online.partition)),
                Some(why) => Check::fail(
                    "partition",
                    format!("partition {} is not up: {why}", online.partition),
                    ASK_ADMIN,
                ),
            },
        },
    );

    checks.push(plugin_check(&plugin, slurm));

    checks.push(match &plugin {
        Err(_) => Check::skip("beamline-source", "plugin"),
        Ok(PluginSetup { config: Err(_), .. }) => Check::skip("beamline-source", "plugin"),
        Ok(PluginSetup { config: Ok(config), conf_file, .. }) => match &config.source {
            None => Check::fail(
                "beamline-source",
                format!("{} sets no source=, so the plugin refuses every --beamtime job", conf_file.display()),
                format!("{ASK_ADMIN} to add source=<the beamline folder, with {{beamline}}> to the plugin's line"),
            ),
            Some(template) => {
                let path = template.expand(&metadata.id, &metadata.beamline);
                match fs::metadata(&path) {
                    Ok(m) if m.is_dir() => Check::pass("beamline-source", format!("{} is there", path.display())),
                    Ok(_) => Check::fail("beamline-source", format!("{} is not a folder", path.display()), ASK_ADMIN),
                    Err(e) => Check::fail(
                        "beamline-source",
                        format!("{}: {e}", path.display()),
                        "the beamline folder is made when the beamtime starts: ask the beamline staff",
                    ),
                }
            }
        },
    });

    Report {
        beamtime: Some(metadata.id.to_string()),
        checks,
    }
}

fn access_check(existing: &[&Reservation], user: &str, slurm: &dyn Slurm) -> Check {
    let needs_accounts = existing
        .iter()
        .any(|r| r.accounts != crate::slurm_text::AccessList::Unset);
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
                    "a reservation limits Accounts=, and your Slurm accounts cannot be listed: {e}"
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
            "submit as the beamtime's account (see the user check); if you are, ask the beamline staff to fix the reservation",
        )
    }
}

/// The configuration comes from the controller's PlugStackConfig; whether the
/// plugin really loads into this host's srun (its own slurm.conf, its own
/// copy of the files) only srun can tell: it lists plugin options in --help.
fn plugin_check(plugin: &Result<PluginSetup, (String, String)>, slurm: &dyn Slurm) -> Check {
    match plugin {
        Err((detail, fix)) => Check::fail("plugin", detail.as_str(), fix.as_str()),
        Ok(p) => {
            let conf = p.conf_file.display();
            if let Err(e) = &p.config {
                return Check::fail(
                    "plugin",
                    format!("{conf}: the plugin's arguments are wrong: {e}"),
                    format!("{ASK_ADMIN}: every srun/sbatch fails until the line is fixed (see spank-beamtime(8))"),
                );
            }
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
                        format!("{conf} names {}, but srun here does not offer --beamtime: it does not load the plugin", p.path),
                        format!("{ASK_ADMIN}: this host's slurm.conf (PlugStackConfig) must load the same plugstack configuration"),
                    )
                }
                Err(e) => return Check::fail("plugin", e, format!("{ASK_ADMIN}: srun must work on this host")),
            }
            let kind = if p.required { "required" } else { "optional" };
            Check::pass(
                "plugin",
                format!("{conf} loads {} ({kind}); srun offers --beamtime", p.path),
            )
        }
    }
}

/// The beamtime plugin's line in the plugstack configuration Slurm uses here.
fn find_plugin(slurm: &dyn Slurm) -> Result<PluginSetup, (String, String)> {
    let config = slurm.query("scontrol", &["show", "config"]).map_err(|e| {
        (
            e,
            "check that slurmctld answers (scontrol ping) and that SLURM_CONF, if set, is right"
                .to_owned(),
        )
    })?;
    let top = plugstack_config(&config).ok_or_else(|| {
        (
            "scontrol show config names no PlugStackConfig".to_owned(),
            format!("{ASK_ADMIN} to set PlugStackConfig in slurm.conf"),
        )
    })?;
    let mut files = vec![PathBuf::from(&top)];
    let mut index = 0;
    while index < files.len() {
        let file = files[index].clone();
        index += 1;
        let text = fs::read_to_string(&file).map_err(|e| {
            (
                format!(
                    "cannot read the plugstack configuration {}: {e}",
                    file.display()
                ),
                format!(
                    "{ASK_ADMIN}: srun and sbatch read this file as you, so it must be readable"
                ),
            )
        })?;
        for line in parse_plugstack(&text) {
            match line {
                PlugstackLine::Include(pattern) => {
                    // A file that includes itself, directly or not, is read once.
                    for included in expand_include(&file, &pattern) {
                        if !files.contains(&included) {
                            files.push(included);
                        }
                    }
                }
                PlugstackLine::Plugin {
                    required,
                    path,
                    args,
                } if is_beamtime_plugin(&path) => {
                    return Ok(PluginSetup {
                        conf_file: file,
                        path,
                        required,
                        config: PluginConfig::parse(args.iter().map(String::as_str))
                            .map_err(|e| e.to_string()),
                    })
                }
                PlugstackLine::Plugin { .. } => {}
            }
        }
    }
    Err((
        format!("no spank_beamtime plugin in {top} or the files it includes: srun and sbatch do not know --beamtime"),
        format!("{ASK_ADMIN}: install the spank-beamtime package (it adds /etc/slurm/plugstack.conf.d/beamtime.conf)"),
    ))
}

/// Slurm's `include` takes a glob; the forms used in practice are a file or
/// `folder/*.conf`, so `*` is supported in the last component only.
fn expand_include(from: &Path, pattern: &str) -> Vec<PathBuf> {
    let pattern = match Path::new(pattern) {
        p if p.is_absolute() => p.to_path_buf(),
        p => from.parent().unwrap_or(Path::new("/")).join(p),
    };
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![pattern];
    };
    let folder = pattern.parent().unwrap_or(Path::new("/"));
    let mut found: Vec<PathBuf> = fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.len() >= prefix.len() + suffix.len() && n.starts_with(prefix) && n.ends_with(suffix)
        })
        .map(|n| folder.join(n))
        .collect();
    found.sort();
    found
}

/// The metadata as the plugin would read it: found through the plugin's own
/// `metadata=` patterns and accepted only from its trusted owners. Without a
/// readable plugin configuration, bt-submit's search path and root as owner.
fn load_metadata(
    target: &Target,
    config: Option<&PluginConfig>,
    caller: &Caller,
) -> Result<(Metadata, String), (String, String)> {
    let owners = config.map_or(vec![OwnerSpec::Uid(0)], |c| c.trusted_owners.clone());
    let mut uids = Vec::new();
    for owner in &owners {
        match owner {
            OwnerSpec::Uid(uid) => uids.push(*uid),
            OwnerSpec::Name(name) => match (caller.uid_of)(name) {
                Some(uid) => uids.push(uid),
                None => {
                    return Err((
                        format!("trusted_owners names {name}, which is not a user here"),
                        format!(
                        "{ASK_ADMIN}: the plugin refuses every --beamtime job until this is fixed"
                    ),
                    ))
                }
            },
        }
    }
    let owner_names: Vec<String> = owners
        .iter()
        .map(|o| match o {
            OwnerSpec::Uid(uid) => format!("uid {uid}"),
            OwnerSpec::Name(name) => name.clone(),
        })
        .collect();
    let (id, search) = match target {
        Target::Id(id) => match config {
            Some(config) => (id.clone(), config.metadata.clone()),
            None => (
                id.clone(),
                SearchPath::from_environment().map_err(|e| {
                    (
                        e.to_string(),
                        "fix BEAMTIME_METADATA_PATH or the config file, or use --metadata FILE"
                            .to_owned(),
                    )
                })?,
            ),
        },
        Target::File(path) => exactly(path)?,
        Target::FromDirectory(dir) => exactly(&find_from_dir(dir).map_err(|e| {
            (
                e.to_string(),
                "run doctor in the beamtime folder, or use --beamtime ID".to_owned(),
            )
        })?)?,
    };
    let metadata =
        load_trusted_metadata(&id, &search, &TrustPolicy { owners: uids }).map_err(|refusal| {
            let fix = if refusal.fix.is_empty() {
                "check the beamtime id (bt-submit show); its file appears when the beamtime starts"
                    .to_owned()
            } else {
                lowercase_first(&refusal.fix)
            };
            (refusal.problem, fix)
        })?;
    Ok((
        metadata,
        format!(
            "trusted (owned by {}, not writable by others)",
            owner_names.join(" or ")
        ),
    ))
}

/// A search path that finds just this file, so that a named file goes through
/// the plugin's own lookup and trust checks; like the plugin, it needs the
/// facility's file name to know the id.
fn exactly(path: &Path) -> Result<(BeamtimeId, SearchPath), (String, String)> {
    let unnamed = || {
        (
            format!(
                "{}: the plugin only reads files named beamtime-metadata-<id>.json or \
                 commissioning-metadata-<id>.json",
                path.display()
            ),
            "name the beamtime with --beamtime ID".to_owned(),
        )
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(unnamed)?;
    let (kind, id) = MetadataKind::from_file_name(name).ok_or_else(unnamed)?;
    let id = BeamtimeId::parse(id).map_err(|e| {
        (
            format!("{}: {e}", path.display()),
            "name the beamtime with --beamtime ID".to_owned(),
        )
    })?;
    let folder = path.parent().unwrap_or(Path::new("/"));
    let pattern = format!("{}/{}{{id}}.json", folder.display(), kind.file_prefix());
    let pattern = SearchPattern::parse(&pattern).map_err(|e| {
        (
            format!("{}: {e}", path.display()),
            "copy the file to a folder without * { } in its path, or use --beamtime ID".to_owned(),
        )
    })?;
    Ok((id, SearchPath::new(vec![pattern])))
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const GOOD: &str =
        include_str!("../../beamtime/tests/fixtures/beamtime-metadata-11099001.json");

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/scontrol/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A scratch folder with a plugstack.conf and a beamline folder, and
    /// scontrol answers keyed by their arguments.
    struct World {
        dir: PathBuf,
        answers: HashMap<String, Result<String, String>>,
    }

    impl World {
        fn new() -> World {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "bt-doctor-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(dir.join("p11/current")).unwrap();
            fs::create_dir_all(dir.join("plugstack.conf.d")).unwrap();
            fs::write(dir.join("spank_beamtime.so"), "").unwrap();
            let mut world = World {
                dir,
                answers: HashMap::new(),
            };
            let me = fs::metadata(&world.dir).unwrap().uid();
            world.plugstack(&format!("trusted_owners={me}"));
            let metadata = world
                .dir
                .join("p11/current/beamtime-metadata-11099001.json");
            fs::write(&metadata, GOOD).unwrap();
            fs::set_permissions(&metadata, fs::Permissions::from_mode(0o644)).unwrap();
            let show_config = fixture("show-config.txt").replace(
                "/var/lib/spank-beamtime-h7/etc/plugstack.conf",
                &world.dir.join("plugstack.conf").display().to_string(),
            );
            world.answer("scontrol show config", Ok(show_config));
            world.answer("srun --help", Ok(fixture("srun-help.txt")));
            world.answer(
                "scontrol show reservation -o",
                Ok(fixture("reservations.txt")),
            );
            world.answer(
                "scontrol show partition -o ponline_p11",
                Ok(fixture("partition-up.txt")),
            );
            world
        }

        /// The fixture's reserved node is max-p3a901; it answers with a
        /// captured line of btnode1.
        fn with_nodes(mut self, line: &str) -> World {
            self.answer(
                "scontrol show node -o max-p3a901",
                Ok(line.replace("btnode1", "max-p3a901")),
            );
            self
        }

        fn plugstack(&mut self, extra: &str) {
            let d = self.dir.display();
            fs::write(
                self.dir.join("plugstack.conf"),
                format!("include {d}/plugstack.conf.d/*.conf\n"),
            )
            .unwrap();
            fs::write(
                self.dir.join("plugstack.conf.d/beamtime.conf"),
                format!("# comment\nrequired {d}/spank_beamtime.so metadata={d}/*/current/beamtime-metadata-{{id}}.json source={d}/{{beamline}}/current {extra}\n"),
            )
            .unwrap();
        }

        fn answer(&mut self, args: &str, answer: Result<String, String>) {
            self.answers.insert(args.to_owned(), answer);
        }

        fn examine_as(&self, user: &str) -> Report {
            let caller = Caller {
                name: Some(user.to_owned()),
                uid_of: |_| None,
            };
            examine(
                &Target::Id(BeamtimeId::parse("11099001").unwrap()),
                self,
                &caller,
            )
        }
    }

    impl Slurm for World {
        fn query(&self, program: &str, args: &[&str]) -> Result<String, String> {
            let key = format!("{program} {}", args.join(" "));
            self.answers
                .get(&key)
                .cloned()
                .unwrap_or_else(|| Err(format!("'{key}' failed: no such thing")))
        }
    }

    impl Drop for World {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn outcomes(report: &Report) -> Vec<(&'static str, Outcome)> {
        report.checks.iter().map(|c| (c.name, c.outcome)).collect()
    }

    fn check<'r>(report: &'r Report, name: &str) -> &'r Check {
        report.checks.iter().find(|c| c.name == name).unwrap()
    }

    const ORDER: [&str; 9] = [
        "metadata",
        "online-resources",
        "user",
        "reservations",
        "reservation-access",
        "nodes",
        "partition",
        "plugin",
        "beamline-source",
    ];

    #[test]
    fn a_ready_beamtime_passes_every_check_in_order() {
        let world = World::new().with_nodes(&fixture("node-idle.txt"));
        let report = world.examine_as("bttest01");
        let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
        assert_eq!(names, ORDER);
        assert!(report.all_passed(), "{}", report.text());
        assert!(
            report
                .text()
                .ends_with("all 9 checks passed: beamtime jobs can run\n"),
            "{}",
            report.text()
        );
        assert_eq!(report.json()["ok"], true);
        assert_eq!(report.json()["checks"][7]["result"], "pass");
    }

    #[test]
    fn the_wrong_user_is_told_how_to_log_in_and_is_not_admitted_by_the_reservation() {
        let world = World::new().with_nodes(&fixture("node-idle.txt"));
        let report = world.examine_as("btalice");
        let user = check(&report, "user");
        assert_eq!(user.outcome, Outcome::Fail);
        assert_eq!(
            user.detail,
            "you are btalice, but beamtime 11099001 runs as its account bttest01"
        );
        assert!(
            user.fix.starts_with("log in as the beamtime account: ssh "),
            "{}",
            user.fix
        );
        let access = check(&report, "reservation-access");
        assert_eq!(access.outcome, Outcome::Fail);
        assert!(
            access
                .detail
                .contains("11099001: user btalice is not admitted by Users=bttest01"),
            "{}",
            access.detail
        );
        assert!(!report.all_passed());
        let text = report.text();
        assert!(text.contains("FAIL user "), "{text}");
        assert!(
            text.contains("fix: log in as the beamtime account"),
            "{text}"
        );
        assert!(text.ends_with("2 failed, 0 not checked, of 9 checks: a beamtime job would not run; start with the first FAIL\n"), "{text}");
    }

    #[test]
    fn missing_or_inactive_reservations_drained_nodes_and_a_down_partition_fail() {
        let mut world = World::new().with_nodes(&fixture("node-drained.txt"));
        let inactive =
            fixture("reservation-inactive-negated-user.txt").replace("future", "11099001");
        world.answer("scontrol show reservation -o", Ok(inactive));
        world.answer(
            "scontrol show partition -o ponline_p11",
            Ok(fixture("partition-down.txt")),
        );
        let report = world.examine_as("bttest01");
        let res = check(&report, "reservations");
        assert_eq!(res.outcome, Outcome::Fail);
        assert!(
            res.detail
                .contains("reservation 11099001 is INACTIVE (StartTime=2026-11-27T13:19:33"),
            "{}",
            res.detail
        );
        // The inactive one exists and excludes exactly this user.
        assert_eq!(check(&report, "reservation-access").outcome, Outcome::Fail);
        let nodes = check(&report, "nodes");
        assert_eq!(nodes.outcome, Outcome::Fail);
        assert!(
            nodes
                .detail
                .starts_with("max-p3a901: State=IDLE+DRAIN+RESERVED, reason: disk full"),
            "{}",
            nodes.detail
        );
        assert_eq!(
            check(&report, "partition").detail,
            "partition ponline_p11 is not up: State=DOWN"
        );
        assert_eq!(check(&report, "plugin").outcome, Outcome::Pass);

        world.answer(
            "scontrol show reservation -o",
            Ok(fixture("reservation-accounts.txt")),
        );
        let report = world.examine_as("bttest01");
        assert_eq!(
            check(&report, "reservations").detail,
            "reservation 11099001 does not exist"
        );
        assert_eq!(check(&report, "reservation-access").outcome, Outcome::Skip);
    }

    #[test]
    fn an_unanswering_controller_fails_the_checks_that_ask_it() {
        let mut world = World::new();
        world.answer(
            "scontrol show reservation -o",
            Err("'scontrol show reservation -o' failed: Unable to contact slurm controller".into()),
        );
        let report = world.examine_as("bttest01");
        assert_eq!(check(&report, "reservations").outcome, Outcome::Fail);
        assert!(check(&report, "reservations").fix.contains("scontrol ping"));
        assert_eq!(check(&report, "reservation-access").outcome, Outcome::Skip);
        assert!(check(&report, "nodes")
            .detail
            .contains("max-p3a901: 'scontrol show node -o max-p3a901' failed"));
    }

    #[test]
    fn an_accounts_reservation_asks_sacctmgr_for_the_users_accounts() {
        let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
        let line = fixture("reservation-accounts.txt").replace("acct", "11099001");
        world.answer("scontrol show reservation -o", Ok(line));
        world.answer(
            "sacctmgr -n -P show assoc where user=bttest01 format=account",
            Ok("11099001\n".into()),
        );
        let access = check(&world.examine_as("bttest01"), "reservation-access").clone();
        assert_eq!(access.outcome, Outcome::Fail);
        assert!(
            access
                .detail
                .contains("none of your Slurm accounts (11099001) is admitted by Accounts=btusers"),
            "{}",
            access.detail
        );
        world.answer(
            "sacctmgr -n -P show assoc where user=bttest01 format=account",
            Ok("btusers\n".into()),
        );
        assert_eq!(
            check(&world.examine_as("bttest01"), "reservation-access").outcome,
            Outcome::Pass
        );
    }

    #[test]
    fn without_metadata_only_the_plugin_is_checked() {
        let world = World::new();
        let caller = Caller {
            name: Some("bttest01".into()),
            uid_of: |_| None,
        };
        let report = examine(
            &Target::Id(BeamtimeId::parse("11099077").unwrap()),
            &world,
            &caller,
        );
        assert_eq!(check(&report, "metadata").outcome, Outcome::Fail);
        assert!(
            check(&report, "metadata").detail.contains("11099077"),
            "{}",
            check(&report, "metadata").detail
        );
        let expected: Vec<(&str, Outcome)> = ORDER
            .iter()
            .map(|n| match *n {
                "metadata" => (*n, Outcome::Fail),
                "plugin" => (*n, Outcome::Pass),
                _ => (*n, Outcome::Skip),
            })
            .collect();
        assert_eq!(outcomes(&report), expected);
        assert_eq!(report.json()["checks"][1]["result"], "skip");
        assert_eq!(report.json()["beamtime"], "11099077");
    }

    #[test]
    fn metadata_of_an_untrusted_owner_fails_with_the_owner_named() {
        let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
        world.plugstack("trusted_owners=4000000");
        let report = world.examine_as("bttest01");
        let m = check(&report, "metadata");
        assert_eq!(m.outcome, Outcome::Fail);
        assert!(
            m.detail.contains("not by a trusted owner (uid 4000000)"),
            "{}",
            m.detail
        );
    }

    #[test]
    fn plugstack_mistakes_and_a_missing_source_are_reported_with_the_file() {
        let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
        let me = fs::metadata(&world.dir).unwrap().uid();
        world.plugstack(&format!("trusted_owners={me} colour=blue"));
        let report = world.examine_as("bttest01");
        let plugin = check(&report, "plugin");
        assert_eq!(plugin.outcome, Outcome::Fail);
        assert!(
            plugin
                .detail
                .contains("beamtime.conf: the plugin's arguments are wrong"),
            "{}",
            plugin.detail
        );
        assert!(plugin.detail.contains("colour"), "{}", plugin.detail);
        assert_eq!(check(&report, "beamline-source").outcome, Outcome::Skip);

        let d = world.dir.display();
        fs::write(world.dir.join("plugstack.conf.d/beamtime.conf"), format!("optional {d}/spank_beamtime.so trusted_owners={me} metadata={d}/*/current/beamtime-metadata-{{id}}.json\n")).unwrap();
        let report = world.examine_as("bttest01");
        assert!(check(&report, "plugin")
            .detail
            .ends_with("spank_beamtime.so (optional); srun offers --beamtime"));
        let source = check(&report, "beamline-source");
        assert_eq!(source.outcome, Outcome::Fail);
        assert!(
            source.detail.contains("sets no source="),
            "{}",
            source.detail
        );

        fs::write(
            world.dir.join("plugstack.conf.d/beamtime.conf"),
            "# nothing\n",
        )
        .unwrap();
        let report = world.examine_as("bttest01");
        assert!(
            check(&report, "plugin")
                .detail
                .starts_with("no spank_beamtime plugin in "),
            "{}",
            check(&report, "plugin").detail
        );
    }

    #[test]
    fn a_named_file_or_folder_goes_through_the_same_trust_checks() {
        let world = World::new().with_nodes(&fixture("node-idle.txt"));
        let caller = Caller {
            name: Some("bttest01".into()),
            uid_of: |_| None,
        };
        let file = world
            .dir
            .join("p11/current/beamtime-metadata-11099001.json");
        for target in [
            Target::File(file.clone()),
            Target::FromDirectory(world.dir.join("p11/current")),
        ] {
            let report = examine(&target, &world, &caller);
            assert!(report.all_passed(), "{}", report.text());
        }
        let renamed = world.dir.join("p11/current/my-copy.json");
        fs::copy(&file, &renamed).unwrap();
        let report = examine(&Target::File(renamed), &world, &caller);
        let m = check(&report, "metadata");
        assert_eq!(m.outcome, Outcome::Fail);
        assert!(m.detail.ends_with("my-copy.json: the plugin only reads files named beamtime-metadata-<id>.json or commissioning-metadata-<id>.json"), "{}", m.detail);
    }

    #[test]
    fn a_plugstack_that_includes_itself_is_read_once() {
        let world = World::new().with_nodes(&fixture("node-idle.txt"));
        let top = world.dir.join("plugstack.conf");
        let text = fs::read_to_string(&top).unwrap();
        fs::write(&top, format!("include {}\n{text}", top.display())).unwrap();
        assert!(world.examine_as("bttest01").all_passed());
    }

    #[test]
    fn a_configured_plugin_that_srun_does_not_load_fails() {
        let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
        let help = fixture("srun-help.txt");
        let start = help.find("Options provided by plugins:").unwrap();
        let end = help.find("GPU scheduling options:").unwrap();
        world.answer(
            "srun --help",
            Ok(format!("{}{}", &help[..start], &help[end..])),
        );
        let plugin = check(&world.examine_as("bttest01"), "plugin").clone();
        assert_eq!(plugin.outcome, Outcome::Fail);
        assert!(
            plugin
                .detail
                .ends_with("but srun here does not offer --beamtime: it does not load the plugin"),
            "{}",
            plugin.detail
        );
        world.answer(
            "srun --help",
            Err("cannot run 'srun --help': No such file or directory (os error 2)".into()),
        );
        let plugin = check(&world.examine_as("bttest01"), "plugin").clone();
        assert_eq!(
            plugin.detail,
            "cannot run 'srun --help': No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_missing_beamline_folder_fails_the_last_check() {
        let world = World::new().with_nodes(&fixture("node-idle.txt"));
        // The metadata stays readable through the plugin's pattern; only the folder the plugin mounts goes.
        let d = world.dir.display();
        let me = fs::metadata(&world.dir).unwrap().uid();
        fs::write(world.dir.join("plugstack.conf.d/beamtime.conf"), format!("required {d}/spank_beamtime.so trusted_owners={me} metadata={d}/*/current/beamtime-metadata-{{id}}.json source={d}/gone/{{beamline}}\n")).unwrap();
        let report = world.examine_as("bttest01");
        let source = check(&report, "beamline-source");
        assert_eq!(source.outcome, Outcome::Fail);
        assert!(
            source
                .detail
                .ends_with("gone/p11: No such file or directory (os error 2)"),
            "{}",
            source.detail
        );
    }
}
