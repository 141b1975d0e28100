//! Which metadata file a command means: `--metadata FILE`, `--beamtime ID`
//! (searched on the search path, settings.rs), or the beamtime folder around
//! the working folder.

use std::env;
use std::path::{Path, PathBuf};

use beamtime::discovery::{find_by_id, find_from_dir, read_metadata_file, DiscoveryError};
use beamtime::metadata::Metadata;

use crate::cli::Source;
use crate::failure::{Failure, Status};
use crate::site::settings::{Origin, Settings};

pub fn load_metadata(source: &Source, settings: &Settings) -> Result<Metadata, Failure> {
    // Only an id needs the search path, and so perhaps the plugstack.
    let (path, origin) = match (&source.metadata, &source.beamtime) {
        (Some(path), _) => (absolute(path)?, None),
        (None, Some(id)) => {
            let search = settings.search_path()?;
            let path = find_by_id(&search.path, id)
                .map_err(|error| discovery_failure(error, Some(&search.origin)))?;
            (path, Some(search.origin))
        }
        (None, None) => (
            find_from_dir(&current_dir()?).map_err(|error| discovery_failure(error, None))?,
            None,
        ),
    };
    let metadata = read_metadata_file(&path).map_err(|error| {
        let status = if error.is_unreadable() {
            Status::NoInput
        } else {
            Status::DataError
        };
        Failure::new(
            status,
            error.to_string(),
            "name another metadata file with --metadata FILE, or the beamtime with --beamtime ID",
        )
    })?;
    if let (Some(id), Some(origin)) = (&source.beamtime, &origin) {
        if &metadata.id != id {
            return Err(Failure::new(
                Status::DataError,
                format!(
                    "{} was found for beamtime {id} but belongs to beamtime {}",
                    path.display(),
                    metadata.id
                ),
                format!("check the metadata search path, which is {origin}"),
            ));
        }
    }
    Ok(metadata)
}

/// `origin`: where the search path came from, for a lookup by id.
fn discovery_failure(error: DiscoveryError, origin: Option<&Origin>) -> Failure {
    let (status, hint) = match &error {
        DiscoveryError::NotFound { .. } => (
            Status::NoInput,
            format!(
                "{}name the file with --metadata FILE, or set BEAMTIME_METADATA_PATH to search \
                 elsewhere",
                origin
                    .map(|o| format!("the search path is {o}; "))
                    .unwrap_or_default()
            ),
        ),
        DiscoveryError::NoBeamtimeFolder { .. } => (
            Status::NoInput,
            "run bt-submit inside the beamtime folder, or use --beamtime ID or --metadata FILE"
                .to_owned(),
        ),
        DiscoveryError::Ambiguous { .. } | DiscoveryError::AmbiguousFolder { .. } => (
            Status::DataError,
            "choose one with --metadata FILE".to_owned(),
        ),
        _ => (
            Status::Config,
            "fix BEAMTIME_METADATA_PATH or the config file, or use --metadata FILE".to_owned(),
        ),
    };
    Failure::new(status, error.to_string(), hint)
}

pub fn current_dir() -> Result<PathBuf, Failure> {
    env::current_dir().map_err(|error| {
        Failure::new(
            Status::NoInput,
            format!("cannot tell the current folder: {error}"),
            "use --beamtime ID, or --metadata with an absolute path",
        )
    })
}

// Relative key paths in a metadata file are resolved against the file's
// folder, so the file's own path must be absolute for them to work elsewhere.
pub fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        current_dir()?.join(path)
    })
}
