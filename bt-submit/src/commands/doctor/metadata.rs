//! The metadata as the plugin would read it: found through the plugin's own
//! `metadata=` patterns and accepted only from its trusted owners, resolved by
//! the same function the plugin uses. Without a line the plugin can use,
//! bt-submit's own search path (or the defaults) and root as owner.
//!
//! Which file the user means is the one rule of site/metadata_file.rs
//! ([`Target`]), and whom the plugin trusts is its `plugin_trust`. What differs
//! from the other commands' road there is essential to doctor's question
//! ("would the node take this job?"): a file named with `--metadata`, found
//! around the working folder, or on a search path of the user's own, goes
//! through the plugin's search and trust checks too, where submit and show take
//! it as the user's explicit choice; and an id is looked up where the plugin
//! looks, whatever bt-submit's own settings say.

use std::path::Path;

use beamtime::discovery::{find_from_dir, SearchPath, SearchPattern};
use beamtime::id::BeamtimeId;
use beamtime::metadata::{Metadata, MetadataKind};
use beamtime::plugin_config::OwnerSpec;
use beamtime::trust::{load_trusted_metadata, TrustPolicy};

use super::{Problem, Target};
use crate::site::metadata_file::plugin_trust;
use crate::site::plugstack::{PluginSetup, UsableLine};
use crate::site::settings::{Origin, Search, Settings};

/// Metadata that passed the plugin's trust checks.
pub(super) struct Trusted {
    pub metadata: Metadata,
    /// Whom it was trusted from; the source folder's copy must be theirs too.
    pub policy: TrustPolicy,
    /// The same owners as the line names them, for the report.
    pub owners: String,
    /// How a file looked up by id was found, for the report.
    pub found_through: Option<String>,
}

pub(super) fn load(target: &Target, settings: &Settings) -> Result<Trusted, Problem> {
    let usable = settings
        .plugin()
        .as_ref()
        .ok()
        .and_then(|setup| setup.config.as_ref().ok().map(|line| (setup, line)));
    let root = [OwnerSpec::Uid(0)];
    let owners = usable.map_or(&root[..], |(_, line)| &line.config.trusted_owners);
    let policy = plugin_trust(settings)
        .map_err(|failure| failure.problem)?
        .unwrap_or(TrustPolicy { owners: vec![0] });
    let owner_names: Vec<String> = owners
        .iter()
        .map(|o| match o {
            OwnerSpec::Uid(uid) => format!("uid {uid}"),
            OwnerSpec::Name(name) => name.clone(),
        })
        .collect();
    let (id, search, found_through) = match target {
        Target::Id(id) => {
            let (search, found_through) = search_path(settings, usable)?;
            (id.clone(), search, Some(found_through))
        }
        Target::File(path) => {
            let (id, search) = exactly(path)?;
            (id, search, None)
        }
        Target::FromDirectory(dir) => {
            let (id, search) = exactly(&find_from_dir(dir).map_err(|e| {
                Problem::new(
                    e.to_string(),
                    "run doctor in the beamtime folder, or use --beamtime ID",
                )
            })?)?;
            (id, search, None)
        }
    };
    let metadata = load_trusted_metadata(&id, &search, &policy).map_err(|refusal| {
        let fix = if refusal.problem.fix.is_empty() {
            "check the beamtime id (bt-submit show); its file appears when the beamtime starts"
                .to_owned()
        } else {
            lowercase_first(&refusal.problem.fix)
        };
        let searched = match &found_through {
            Some(how) => format!("; search path: {how}"),
            None => String::new(),
        };
        // Without the plugin's own line, this was not the plugin's search.
        let fix = match settings.plugin() {
            Ok(PluginSetup { config: Err(_), .. }) => {
                format!("fix the plugstack-line check first; then {fix}")
            }
            _ => fix,
        };
        Problem::new(format!("{}{searched}", refusal.problem.what), fix)
    })?;
    Ok(Trusted {
        metadata,
        policy,
        owners: owner_names.join(" or "),
        found_through,
    })
}

/// Where the plugin looks, when its line can be used: that decides the job,
/// whatever bt-submit's own settings say (which the report then mentions).
/// Without such a line, where bt-submit looks.
fn search_path(
    settings: &Settings,
    usable: Option<(&PluginSetup, &UsableLine)>,
) -> Result<(SearchPath, String), Problem> {
    let own = settings.own_search_path().map_err(|e| {
        Problem::new(
            e.to_string(),
            "fix BEAMTIME_METADATA_PATH or the config file, or use --metadata FILE",
        )
    })?;
    if let Some((setup, line)) = usable {
        let plugin = Origin::of_plugin(setup, &line.config);
        let how = match own {
            Some(own) => format!(
                "{plugin}, where the plugin looks; bt-submit itself searches {} first",
                own.origin
            ),
            None => plugin.to_string(),
        };
        return Ok((line.config.metadata.clone(), how));
    }
    let search = own.unwrap_or_else(|| Search {
        path: SearchPath::default(),
        origin: match settings.plugin() {
            Ok(_) => Origin::Defaults {
                why: "the plugin's line is wrong, see plugstack-line".to_owned(),
            },
            Err(unavailable) => Origin::plugin_unread(unavailable),
        },
    });
    Ok((search.path, search.origin.to_string()))
}

/// A search path that finds just this file, so that a named file goes through
/// the plugin's own lookup and trust checks; like the plugin, it needs the
/// facility's file name to know the id.
fn exactly(path: &Path) -> Result<(BeamtimeId, SearchPath), Problem> {
    let named_by_id = "name the beamtime with --beamtime ID";
    let unnamed = || {
        Problem::new(
            format!(
                "{}: the plugin only reads files named beamtime-metadata-<id>.json or \
                 commissioning-metadata-<id>.json",
                path.display()
            ),
            named_by_id,
        )
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(unnamed)?;
    let (kind, id) = MetadataKind::from_file_name(name).ok_or_else(unnamed)?;
    let id = BeamtimeId::parse(id)
        .map_err(|e| Problem::new(format!("{}: {e}", path.display()), named_by_id))?;
    let folder = path.parent().unwrap_or(Path::new("/"));
    let pattern = format!("{}/{}{{id}}.json", folder.display(), kind.file_prefix());
    let pattern = SearchPattern::parse(&pattern).map_err(|e| {
        Problem::new(
            format!("{}: {e}", path.display()),
            "copy the file to a folder without * { } in its path, or use --beamtime ID",
        )
    })?;
    Ok((id, SearchPath::new(vec![pattern])))
}

/// The library's fixes are sentences; doctor prints them after "fix: ".
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}
