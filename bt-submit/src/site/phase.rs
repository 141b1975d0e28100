//! Where a beamtime stands on its beamline, and what that means for its jobs:
//! `bt-submit show` prints it, doctor's beamline-source check judges it.
//!
//! The plugin decides the phase on the node (`beamtime::policy::decide`) from
//! what the beamline folder its `source=` names holds. bt-submit looks at the
//! same folder with the same walk (`walk::open_folder`, following no link) and
//! the same library function (`beamline::beamline_folder`), so both say the same
//! wherever this host sees that folder as the nodes do. Where it does not (a
//! file system only the nodes mount, a folder closed to this user, no plugin
//! line to read), the phase is the node's to decide, and bt-submit says so.

use std::io;
use std::path::{Path, PathBuf};

use beamtime::beamline::{inspect_beamline_folder, FolderError};
use beamtime::facts::BeamlineFolder;
use beamtime::metadata::Metadata;
use beamtime::plugin_config::{Prestart, TargetTemplate};
use beamtime::policy::{phase_of, Phase};
use beamtime::trust::TrustPolicy;
use beamtime::walk::WalkError;
use serde_json::{json, Value};

use crate::site::plugstack::{BadLine, UsableLine};
use crate::site::settings::Settings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// No usable onlineAnalysis block: the plugin refuses every `--beamtime` job.
    NoOnlineResources,
    /// What the node decides, as this host sees the folder; `refused` with
    /// `prestart=refuse` in pre-start.
    Decided { phase: Phase, refused: bool },
    /// The node refuses the beamtime's jobs over its beamline folder (rule
    /// `mount-failed`).
    Broken(Fault),
    /// This host cannot tell: the node decides.
    OnTheNode,
}

/// What is wrong with a beamline folder the node refuses to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A symbolic link on the way to it: `source=` must name the real folder.
    Link,
    /// It holds no trusted copy of any beamtime's metadata file, or an
    /// untrusted (or linked) copy of this one's: not what the start script leaves.
    Copy,
    /// It cannot be opened for another reason (the error says which).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub state: State,
    /// One sentence: the phase, and what it means for jobs.
    pub note: String,
}

impl Standing {
    /// `phase`, `jobs` and `phaseNote` for `show --format json`: `phase` is
    /// the plugin's `BEAMTIME_PHASE` word or `no-online-resources`, `jobs`
    /// `run` or `refused` (as far as the phase goes); both null when the node
    /// decides.
    pub fn json(&self) -> Value {
        let (phase, jobs) = match &self.state {
            State::NoOnlineResources => (Some("no-online-resources"), Some("refused")),
            State::Decided { phase, refused } => (
                Some(phase.as_str()),
                Some(if *refused { "refused" } else { "run" }),
            ),
            State::Broken(_) => (None, Some("refused")),
            State::OnTheNode => (None, None),
        };
        json!({ "phase": phase, "jobs": jobs, "phaseNote": self.note })
    }
}

/// Where `metadata`'s beamtime stands: `target` is where jobs see the
/// beamline, `line` the plugin's line with the owners a folder's copy must
/// come from, or why it could not be read.
pub fn standing(
    metadata: &Metadata,
    target: &TargetTemplate,
    line: Result<(&UsableLine, &TrustPolicy), String>,
) -> Standing {
    let at = Names::new(metadata, target);
    if metadata.online.ready().is_none() {
        return Standing {
            state: State::NoOnlineResources,
            note: "no-online-resources: the beamtime has no Slurm resources yet, so its \
                   --beamtime jobs are refused until the facility creates them"
                .to_owned(),
        };
    }
    let (line, policy) = match line {
        Ok(known) => known,
        Err(why) => {
            return at.on_the_node(
                &format!("the plugin's line could not be read here ({why})"),
                None,
            )
        }
    };
    let folder = line.source.expand(&metadata.id, &metadata.beamline);
    let prestart = line.config.prestart;
    let top = fixed_folder(line);
    if !top.exists() {
        return at.on_the_node(
            &format!(
                "{} is not visible from this host ({} is not here)",
                folder.display(),
                top.display()
            ),
            Some((&folder, prestart)),
        );
    }
    match inspect_beamline_folder(&folder, &at.file_name, policy) {
        Ok(holds) => at.judged(&folder, holds, prestart),
        // root on the node looks into every folder; this user may not (a
        // beamtime's folder is open only to its members).
        Err(FolderError::Walk(WalkError::Io { error, .. }) | FolderError::List(error))
            if error.kind() == io::ErrorKind::PermissionDenied =>
        {
            at.closed(&folder, prestart)
        }
        Err(FolderError::Walk(WalkError::UntrustedLink { link, .. })) => broken(
            Fault::Link,
            format!(
                "{} is a symbolic link, which the plugin does not follow: every job's mount \
                 fails",
                link.display()
            ),
        ),
        Err(FolderError::Walk(WalkError::Io { at: path, error })) => broken(
            Fault::Other,
            format!("cannot open {}: {error}", path.display()),
        ),
        // A walk that follows no link ends in neither.
        Err(FolderError::Walk(
            error @ (WalkError::FileIsLink | WalkError::TooManyLinks { .. }),
        )) => broken(
            Fault::Other,
            format!("{} cannot be walked: {error:?}", folder.display()),
        ),
        Err(FolderError::List(error)) => broken(
            Fault::Other,
            format!("cannot list {}: {error}", folder.display()),
        ),
        Err(FolderError::Copy(why)) => broken(
            Fault::Copy,
            format!(
                "{} is not beamtime {}'s folder now: {why}",
                folder.display(),
                metadata.id
            ),
        ),
    }
}

/// What the sentences name.
struct Names<'m> {
    metadata: &'m Metadata,
    seen_as: PathBuf,
    file_name: String,
}

impl<'m> Names<'m> {
    fn new(metadata: &'m Metadata, target: &TargetTemplate) -> Names<'m> {
        Names {
            metadata,
            seen_as: target.expand(&metadata.id, &metadata.beamline),
            file_name: metadata.kind.file_name(&metadata.id),
        }
    }

    /// What the node makes of a folder that holds `holds`.
    fn judged(&self, folder: &Path, holds: BeamlineFolder, prestart: Prestart) -> Standing {
        match phase_of(holds) {
            Some(phase) => self.decided(folder, phase, holds, prestart),
            None => broken(
                Fault::Copy,
                format!(
                    "{} holds no beamtime's metadata file, not even {}: the plugin refuses the \
                     beamtime's jobs (an unmounted file system's mount point looks like this)",
                    folder.display(),
                    self.file_name
                ),
            ),
        }
    }

    fn decided(
        &self,
        folder: &Path,
        phase: Phase,
        holds: BeamlineFolder,
        prestart: Prestart,
    ) -> Standing {
        let (id, beamline, seen_as) = (
            &self.metadata.id,
            &self.metadata.beamline,
            self.seen_as.display(),
        );
        let refused = phase == Phase::PreStart && prestart == Prestart::Refuse;
        let note = match phase {
            Phase::Online => format!(
                "online: {} is there and holds the beamtime's {}, trusted; jobs see it as \
                 {seen_as}",
                folder.display(),
                self.file_name
            ),
            Phase::PreStart => {
                let holds = match holds {
                    BeamlineFolder::Absent => format!("{} does not exist yet", folder.display()),
                    _ => format!(
                        "{} holds another beamtime's metadata file, not {}",
                        folder.display(),
                        self.file_name
                    ),
                };
                let jobs = if refused {
                    "this site refuses its --beamtime jobs until the beamtime starts \
                     (prestart=refuse)"
                        .to_owned()
                } else {
                    format!(
                        "jobs run without {seen_as} until the beamtime starts \
                         (BEAMTIME_PHASE=pre-start){}",
                        self.core_path()
                    )
                };
                format!(
                    "pre-start: {holds}: beamtime {id} has not started on beamline {beamline} \
                     yet (or the beamline has moved on); {jobs}"
                )
            }
        };
        Standing {
            state: State::Decided { phase, refused },
            note,
        }
    }

    /// `; its data is on the core filesystem at …`, when the metadata names it.
    fn core_path(&self) -> String {
        match &self.metadata.core_path {
            Some(core) => format!(
                "; its data is on the core filesystem at {} (BEAMTIME_CORE_PATH)",
                core.display()
            ),
            None => String::new(),
        }
    }

    fn closed(&self, folder: &Path, prestart: Prestart) -> Standing {
        self.on_the_node(
            &format!(
                "{} cannot be looked into by you (a beamtime's folder is open only to its \
                 members: run this as beamtime {}'s account)",
                folder.display(),
                self.metadata.id
            ),
            Some((folder, prestart)),
        )
    }

    /// `why` this host cannot tell; `known`: the folder and `prestart=` the node uses.
    fn on_the_node(&self, why: &str, known: Option<(&Path, Prestart)>) -> Standing {
        let seen_as = self.seen_as.display();
        let note = match known {
            Some((folder, prestart)) => format!(
                "{why}, so the phase is decided on the node: jobs see {seen_as} once {} holds \
                 the beamtime's {}, and before that {}",
                folder.display(),
                self.file_name,
                match prestart {
                    Prestart::Run => "run without it (BEAMTIME_PHASE=pre-start)",
                    Prestart::Refuse => "are refused (prestart=refuse)",
                }
            ),
            None => format!(
                "{why}, so the phase is decided on the node: jobs see {seen_as} once the beamline \
                 folder there holds the beamtime's {}",
                self.file_name
            ),
        };
        Standing {
            state: State::OnTheNode,
            note,
        }
    }
}

fn broken(fault: Fault, why: String) -> Standing {
    Standing {
        state: State::Broken(fault),
        note: why,
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

/// [`standing`] with the plugin's line and target from `settings`; a line the
/// plugin cannot use is an error, as everywhere else in bt-submit.
pub fn from_settings(metadata: &Metadata, settings: &Settings) -> Result<Standing, BadLine> {
    let target = settings.target()?;
    let setup = match settings.plugin() {
        Ok(setup) => setup,
        Err(unavailable) => return Ok(standing(metadata, &target, Err(unavailable.to_string()))),
    };
    let line = setup.config.as_ref().map_err(BadLine::clone)?;
    Ok(match TrustPolicy::resolve(&line.config.trusted_owners) {
        Ok(policy) => standing(metadata, &target, Ok((line, &policy))),
        Err(error) => standing(
            metadata,
            &target,
            Err(format!("its trusted owners cannot be looked up: {error}")),
        ),
    })
}
