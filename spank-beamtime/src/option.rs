//! `--beamtime=<id>`: its registration and where a step finds its value.

use beamtime::refusal::Refusal;
use beamtime::requested::{requested_beamtime, Reader, INHERITED_VARIABLE};
use slurm_spank::{Context, SpankHandle, SpankOption};

/// The option users give: `--beamtime=<id>`.
pub const OPTION: &str = "beamtime";

/// Registered in srun, sbatch, salloc and slurmstepd: sbatch and `#SBATCH`
/// lines reject an option the allocator context does not know.
pub fn register(spank: &mut SpankHandle) -> Result<(), Box<dyn std::error::Error>> {
    spank.register_option(SpankOption::new(OPTION).takes_value("id").usage(
        "Run as beamtime <id>: in its reservation, with its beamline data at \
         /beamline/<beamline>/current",
    ))?;
    Ok(())
}

/// The `--beamtime` a job carries in this process: the option's value as
/// Slurm gives it (or, on the node, the inherited one), and the refusal the
/// job gets when the two ways Slurm hands it over disagree.
pub struct Requested {
    pub id: String,
    pub refused: Option<Refusal>,
}

/// The `--beamtime` this process sees, if any; which one counts is the
/// library's rule ([`requested_beamtime`]), the same in every process.
pub fn requested(spank: &SpankHandle) -> Option<Requested> {
    let reader = match spank.context() {
        Ok(Context::Remote) => Reader::Node,
        Ok(Context::Local) => Reader::Launcher,
        _ => Reader::Submitter,
    };
    let option = spank
        .get_option_value_os(OPTION)
        .map(|value| value.to_string_lossy().into_owned());
    // spank_getenv reads the step's environment and works in slurmstepd only;
    // srun's own environment is the process's.
    let inherited = || match reader {
        Reader::Node => spank.getenv(INHERITED_VARIABLE).ok().flatten(),
        Reader::Launcher | Reader::Submitter => std::env::var(INHERITED_VARIABLE).ok(),
    };
    match requested_beamtime(reader, option.clone(), inherited) {
        Ok(id) => id.map(|id| Requested { id, refused: None }),
        Err(refusal) => Some(Requested {
            id: option.unwrap_or_default(),
            refused: Some(refusal),
        }),
    }
}
