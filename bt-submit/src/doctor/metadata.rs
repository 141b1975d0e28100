//! The metadata as the plugin would read it: found through the plugin's own
//! `metadata=` patterns and accepted only from its trusted owners, resolved by
//! the same function the plugin uses. Without a readable plugin configuration,
//! bt-submit's search path and root as owner.

use std::path::Path;

use beamtime::discovery::{find_from_dir, SearchPath, SearchPattern};
use beamtime::id::BeamtimeId;
use beamtime::metadata::{Metadata, MetadataKind};
use beamtime::plugin_config::{OwnerSpec, PluginConfig};
use beamtime::trust::{load_trusted_metadata, TrustPolicy};

use super::{Problem, Target, ASK_ADMIN};

/// Metadata that passed the plugin's trust checks.
pub(super) struct Trusted {
    pub metadata: Metadata,
    /// Whom it was trusted from, for the report.
    pub trust: String,
}

pub(super) fn load(target: &Target, config: Option<&PluginConfig>) -> Result<Trusted, Problem> {
    let root = [OwnerSpec::Uid(0)];
    let owners = config.map_or(&root[..], |c| &c.trusted_owners);
    let policy = TrustPolicy::resolve(owners).map_err(|error| {
        Problem::new(
            error.to_string(),
            format!("{ASK_ADMIN}: the plugin refuses every --beamtime job until this is fixed"),
        )
    })?;
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
                    Problem::new(
                        e.to_string(),
                        "fix BEAMTIME_METADATA_PATH or the config file, or use --metadata FILE",
                    )
                })?,
            ),
        },
        Target::File(path) => exactly(path)?,
        Target::FromDirectory(dir) => exactly(&find_from_dir(dir).map_err(|e| {
            Problem::new(
                e.to_string(),
                "run doctor in the beamtime folder, or use --beamtime ID",
            )
        })?)?,
    };
    let metadata = load_trusted_metadata(&id, &search, &policy).map_err(|refusal| {
        let fix = if refusal.fix.is_empty() {
            "check the beamtime id (bt-submit show); its file appears when the beamtime starts"
                .to_owned()
        } else {
            lowercase_first(&refusal.fix)
        };
        Problem::new(refusal.problem, fix)
    })?;
    Ok(Trusted {
        metadata,
        trust: format!(
            "trusted (owned by {}, not writable by others)",
            owner_names.join(" or ")
        ),
    })
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
