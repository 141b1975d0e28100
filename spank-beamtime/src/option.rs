//! `--beamtime=<id>`: its registration and where a step finds its value.

use std::ffi::OsString;

use slurm_spank::{Context, SpankHandle, SpankOption};

/// The option users give: `--beamtime=<id>`.
pub const OPTION: &str = "beamtime";

/// How sbatch and salloc hand `--beamtime` on to the job's environment, where
/// srun and slurmstepd read it (spank_process_env_options in Slurm's plugstack.c).
pub const INHERITED_OPTION: &str = "SLURM_SPANK__SLURM_SPANK_OPTION_beamtime_beamtime";

/// Registered in srun, sbatch, salloc and slurmstepd: sbatch and `#SBATCH`
/// lines reject an option the allocator context does not know.
pub fn register(spank: &mut SpankHandle) -> Result<(), Box<dyn std::error::Error>> {
    spank.register_option(SpankOption::new(OPTION).takes_value("id").usage(
        "Run as beamtime <id>: in its reservation, with its beamline data at \
         /beamline/<beamline>/current",
    ))?;
    Ok(())
}

/// The `--beamtime` value this process sees, if any.
pub fn requested(spank: &SpankHandle) -> Option<String> {
    let remote = matches!(spank.context(), Ok(Context::Remote));
    let inherited = || spank.getenv(INHERITED_OPTION).ok().flatten();
    let option = spank
        .get_option_value_os(OPTION)
        .map(|value| value.into_owned());
    choose(option, remote, inherited)
}

/// The option's own value wins. Only slurmstepd falls back to the inherited
/// variable: `sbatch --export=NONE` (or a list) drops the option's own
/// variable from the batch step but keeps this one, as Slurm keeps `SLURM*`
/// names, and without it the batch script would run without its beamline
/// while its srun steps got it. It is as untrusted as the option itself.
fn choose(
    option: Option<OsString>,
    remote: bool,
    inherited: impl FnOnce() -> Option<String>,
) -> Option<String> {
    match option {
        Some(value) => Some(value.to_string_lossy().into_owned()),
        None if remote => inherited(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_wins_over_the_inherited_variable() {
        let option = Some(OsString::from("11099001"));
        let chosen = choose(option, true, || Some("11099002".to_owned()));
        assert_eq!(chosen.as_deref(), Some("11099001"));
    }

    #[test]
    fn only_slurmstepd_falls_back_to_the_inherited_variable() {
        let inherited = || Some("11099002".to_owned());
        assert_eq!(choose(None, true, inherited).as_deref(), Some("11099002"));
        let never_read = || -> Option<String> { panic!("read outside slurmstepd") };
        assert_eq!(choose(None, false, never_read), None);
        assert_eq!(choose(None, true, || None), None);
    }

    #[test]
    fn a_value_that_is_not_utf8_is_kept_visible_not_dropped() {
        use std::os::unix::ffi::OsStringExt;
        let option = Some(OsString::from_vec(b"1109\xff".to_vec()));
        let chosen = choose(option, false, || None).expect("a value");
        assert!(chosen.starts_with("1109"), "{chosen}");
    }
}
