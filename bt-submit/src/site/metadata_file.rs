//! Which metadata file a command means: `--metadata FILE`, `--beamtime ID`
//! (searched on the search path, settings.rs), or the beamtime folder around
//! the working folder.
//!
//! Whose files count is the plugin's rule where bt-submit can know it: for an
//! id searched where the plugin searches (its line's `metadata=`, no search
//! path of the user's own), only files of its trusted owners, chosen
//! by the function the plugin chooses with (`trust::load_trusted_metadata`), so
//! a copy the plugin skips is skipped here too (and, when nothing else is
//! found, named as the reason). Around the working folder, a file of the
//! user's own, root's or a trusted owner's; another user's is named and not
//! used. `--metadata FILE` and a search path of the user's own are the
//! user's explicit choice (doctor says whether the plugin would trust it).

use std::env;
use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use beamtime::discovery::{find_by_id, find_from_dir, read_metadata_file, DiscoveryError};
use beamtime::id::BeamtimeId;
use beamtime::metadata::Metadata;
use beamtime::problem::ASK_THE_ADMINS;
use beamtime::refusal::{Refusal, Rule};
use beamtime::trust::{load_trusted_metadata, TrustPolicy};
use beamtime::users;

use crate::cli::Source;
use crate::failure::{Failure, Status};
use crate::site::settings::{Origin, Settings};

/// Which metadata file the user means: the one reading of `--metadata`,
/// `--beamtime` and the working folder for every command, doctor included.
pub enum Target {
    File(PathBuf),
    Id(BeamtimeId),
    FromDirectory(PathBuf),
}

impl Target {
    /// `--metadata FILE` first, then `--beamtime ID`, else the folder bt-submit runs in.
    pub fn of(source: &Source) -> Result<Target, Failure> {
        Ok(match (&source.metadata, &source.beamtime) {
            (Some(path), _) => Target::File(absolute(path)?),
            (None, Some(id)) => Target::Id(id.clone()),
            (None, None) => Target::FromDirectory(current_dir()?),
        })
    }
}

pub fn load_metadata(source: &Source, settings: &Settings) -> Result<Metadata, Failure> {
    // Only an id needs the search path, and so perhaps the plugstack.
    let (path, origin) = match Target::of(source)? {
        Target::File(path) => (path, None),
        Target::Id(id) => {
            let search = settings.search_path()?;
            // Where the plugin searches, bt-submit chooses as the plugin does;
            // a search path of the user's own is the user's choice, like
            // --metadata, and costs no scontrol.
            let plugins_search = matches!(search.origin, Origin::Plugstack { .. });
            if let Some(policy) = plugins_search
                .then(|| plugin_trust(settings))
                .transpose()?
                .flatten()
            {
                return load_trusted_metadata(&id, &search.path, &policy)
                    .map_err(|refusal| refused(refusal, &search.origin));
            }
            // Without the plugin's line bt-submit cannot tell whom the plugin
            // trusts: the first file on the search path, as found.
            let path = find_by_id(&search.path, &id)
                .map_err(|error| discovery_failure(error, Some(&search.origin)))?;
            (path, Some(search.origin))
        }
        Target::FromDirectory(dir) => {
            let path = find_from_dir(&dir).map_err(|error| discovery_failure(error, None))?;
            check_owner(&path, settings)?;
            (path, None)
        }
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

/// The owners the plugin trusts, when its line can be read and used.
pub fn plugin_trust(settings: &Settings) -> Result<Option<TrustPolicy>, Failure> {
    let Ok(setup) = settings.plugin() else {
        return Ok(None);
    };
    let Ok(line) = &setup.config else {
        return Ok(None);
    };
    TrustPolicy::resolve(&line.config.trusted_owners)
        .map(Some)
        .map_err(|error| {
            Failure::new(
                Status::Config,
                format!("{}: {error}", setup.location()),
                format!(
                    "{ASK_THE_ADMINS}: the plugin refuses every --beamtime job until \
                     trusted_owners is fixed"
                ),
            )
        })
}

/// The plugin's refusal of the files on the search path, as bt-submit's failure.
fn refused(refusal: Refusal, origin: &Origin) -> Failure {
    let status = match refusal.rule {
        Rule::MetadataNotFound | Rule::MetadataUntrusted => Status::NoInput,
        Rule::MetadataAmbiguous | Rule::MetadataInvalid => Status::DataError,
        _ => Status::Config,
    };
    let hint = match refusal.rule {
        Rule::MetadataNotFound => format!(
            "the search path is {origin}; name the file with --metadata FILE, or set \
             BEAMTIME_METADATA_PATH to search elsewhere"
        ),
        _ if refusal.problem.fix.is_empty() => {
            "name another metadata file with --metadata FILE".to_owned()
        }
        _ => refusal.problem.fix,
    };
    Failure::new(status, refusal.problem.what, hint)
}

/// A metadata file found around the working folder is the user's own, root's
/// or a trusted owner's: a beamtime's settings are not taken from another
/// user's file. Checked on the file that is then read (a link in the user's
/// own tree is followed, as the read follows it).
fn check_owner(path: &Path, settings: &Settings) -> Result<(), Failure> {
    let mut owners = plugin_trust(settings)?.map_or_else(Vec::new, |policy| policy.owners);
    owners.extend([0, users::current_uid()]);
    // O_NONBLOCK: a FIFO under the metadata file's name must not hang the open.
    let owner = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .and_then(|file| file.metadata())
    {
        Ok(facts) => facts.uid(),
        // The read that follows says why it cannot be read.
        Err(_) => return Ok(()),
    };
    if owners.contains(&owner) {
        return Ok(());
    }
    Err(Failure::new(
        Status::DataError,
        format!(
            "{} is owned by uid {owner}, who is neither you, root nor an owner the plugin \
             trusts: bt-submit takes no beamtime's settings from another user's file",
            path.display()
        ),
        "run bt-submit in the beamtime's own folder, or use --beamtime ID or --metadata FILE",
    ))
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use beamtime::id::BeamtimeId;

    use super::*;
    use crate::testing::ScratchPlugstack;

    const GOOD: &str =
        include_str!("../../../beamtime/tests/fixtures/beamtime-metadata-11099001.json");

    fn by_id(scratch: &ScratchPlugstack) -> Result<Metadata, Failure> {
        let environment = |name: &str| scratch.variable(name);
        let source = Source {
            metadata: None,
            beamtime: Some(BeamtimeId::parse("11099001").unwrap()),
        };
        load_metadata(&source, &Settings::new(&scratch.slurm, &environment))
    }

    /// A copy in folder `name` of the scratch folder with this mode.
    fn copy(scratch: &ScratchPlugstack, name: &str, mode: u32) -> PathBuf {
        let folder = scratch.dir.join(name);
        fs::create_dir_all(&folder).unwrap();
        let path = folder.join("beamtime-metadata-11099001.json");
        fs::write(&path, GOOD).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn me(scratch: &ScratchPlugstack) -> u32 {
        fs::metadata(&scratch.dir).unwrap().uid()
    }

    #[test]
    fn by_id_a_copy_the_plugin_skips_is_skipped_and_named_when_nothing_else_is_found() {
        let scratch = ScratchPlugstack::new("metadata-file");
        // Writable by others: the plugin skips it; the second pattern's is trusted.
        copy(&scratch, "first", 0o666);
        let trusted = copy(&scratch, "second", 0o644);
        scratch.line(&format!(
            "metadata={} metadata={} trusted_owners={} source=/srv/{{beamline}}",
            scratch.path("first/beamtime-metadata-{id}.json"),
            scratch.path("second/beamtime-metadata-{id}.json"),
            me(&scratch)
        ));
        let metadata = by_id(&scratch).unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(metadata.path, trusted);

        fs::remove_file(&trusted).unwrap();
        let failure = by_id(&scratch).unwrap_err();
        assert_eq!(failure.status, Status::NoInput);
        assert_eq!(
            failure.problem.what,
            format!(
                "metadata file {} is not trusted: it is writable by group or others (mode 0666)",
                scratch.path("first/beamtime-metadata-11099001.json")
            )
        );
    }

    #[test]
    fn by_id_only_the_plugins_trusted_owners_count() {
        let scratch = ScratchPlugstack::new("metadata-file");
        let mine = copy(&scratch, "first", 0o644);
        let stranger = me(&scratch) + 4_000_000;
        scratch.line(&format!(
            "metadata={} trusted_owners={stranger} source=/srv/{{beamline}}",
            scratch.path("first/beamtime-metadata-{id}.json"),
        ));
        let failure = by_id(&scratch).unwrap_err();
        assert_eq!(
            failure.problem.what,
            format!(
                "metadata file {} is not trusted: it is owned by uid {}, not by a trusted owner \
                 (uid {stranger})",
                mine.display(),
                me(&scratch)
            )
        );
    }

    #[test]
    fn around_the_working_folder_the_users_own_file_counts() {
        let scratch = ScratchPlugstack::new("metadata-file");
        let mine = copy(&scratch, "first", 0o644);
        let environment = |name: &str| scratch.variable(name);
        let settings = Settings::new(&scratch.slurm, &environment);
        // No plugin line: root and the user only.
        assert_eq!(check_owner(&mine, &settings), Ok(()));
    }
}
