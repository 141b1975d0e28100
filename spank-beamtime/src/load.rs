//! Reading the beamtime a job names, the same way on both sides: srun, sbatch
//! and salloc read it as the submitting user for the courtesy check, and
//! slurmstepd as root for the decision, so the two agree on the file.

use beamtime::id::BeamtimeId;
use beamtime::metadata::Metadata;
use beamtime::plugin_config::PluginConfig;
use beamtime::problem::ASK_THE_ADMINS;
use beamtime::refusal::{Refusal, Rule};
use beamtime::trust::{load_trusted_metadata, OwnerError, TrustPolicy};

/// The beamtime's metadata, and whom it was trusted for (the node checks the
/// source folder's copy of the file against the same owners).
pub struct Loaded {
    pub metadata: Metadata,
    pub trust: TrustPolicy,
}

pub fn load_beamtime(config: &PluginConfig, requested: &str) -> Result<Loaded, Refusal> {
    let id = BeamtimeId::parse(requested).map_err(|e| {
        Refusal::new(
            Rule::InvalidBeamtimeId,
            format!("--beamtime: {e}"),
            "Give the beamtime id from the beamtime's metadata file, e.g. --beamtime=11099001",
        )
    })?;
    // Owner names are resolved only now, so jobs without --beamtime cost no NSS lookup.
    let trust = TrustPolicy::resolve(&config.trusted_owners).map_err(|error| {
        let fix = match error {
            OwnerError::NoSuchUser(_) => {
                format!("{ASK_THE_ADMINS} to fix trusted_owners= in plugstack.conf")
            }
            OwnerError::Lookup(_) => ASK_THE_ADMINS.to_owned(),
        };
        Refusal::new(Rule::SiteConfiguration, error.to_string(), fix)
    })?;
    let metadata = load_trusted_metadata(&id, &config.metadata, &trust)?;
    Ok(Loaded { metadata, trust })
}

/// The uid of the beamtime's account in the user database, as a refusal when
/// the database cannot answer (which is not the same as "no such user").
pub fn account_uid(account: &str) -> Result<Option<u32>, Refusal> {
    beamtime::users::uid_of(account)
        .map_err(|error| Refusal::new(Rule::SiteConfiguration, error.to_string(), ASK_THE_ADMINS))
}
