//! Which `--beamtime` a process acts on. Slurm hands the option over in more
//! than one way, and a user can set each of them: srun, sbatch and salloc must
//! check the id slurmstepd will decide on, or refuse where the two could differ.

use crate::refusal::{Refusal, Rule};
use crate::untrusted::shown_token;

/// How Slurm hands the option to slurmstepd when it is not in the launch
/// message (a batch step): the job's environment. Any user can set it, with
/// `--export=NONE,_SLURM_SPANK_OPTION_beamtime_beamtime=…` on Slurm 22.05.
pub const OPTION_VARIABLE: &str = "_SLURM_SPANK_OPTION_beamtime_beamtime";

/// How sbatch and salloc hand `--beamtime` on to the job's environment, where
/// srun and slurmstepd read it (`SLURM_SPANK_` + the option variable: Slurm's
/// spank_job_env, see sbatch.c `_set_spank_env`). sbatch and salloc write it
/// from their own option, after the plugin ran in them.
pub const INHERITED_VARIABLE: &str = "SLURM_SPANK__SLURM_SPANK_OPTION_beamtime_beamtime";

/// The process the plugin runs in, as far as the option is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// sbatch or salloc: they write [`INHERITED_VARIABLE`] from their own
    /// option, so whatever the environment held before is not handed on.
    Submitter,
    /// srun: its option travels in the launch message, and its environment,
    /// [`INHERITED_VARIABLE`] included, becomes the step's.
    Launcher,
    /// slurmstepd: the option from the launch message or the job's
    /// environment, and the [`INHERITED_VARIABLE`] of the step's environment.
    Node,
}

/// The id `reader` acts on: the option Slurm gives it, or — on the node only —
/// the inherited variable (`sbatch --export=NONE` on 22.05 drops the option
/// variable from a batch step but keeps `SLURM*` names, and without it the
/// batch script would run without its beamline while its srun steps got it).
/// Where both are present they must agree: an option that differs from the
/// inherited one was set by hand (an `--export` list, a shell variable) or
/// asks a step of one beamtime's allocation to be another beamtime, and which
/// one counts must not depend on which side reads it. srun and slurmstepd see
/// the same pair and refuse alike; sbatch and salloc cannot see their
/// `--export` list, so for a batch step only the node can refuse.
/// Both values are as untrusted as the option itself.
pub fn requested_beamtime(
    reader: Reader,
    option: Option<String>,
    inherited: impl FnOnce() -> Option<String>,
) -> Result<Option<String>, Refusal> {
    let inherited = match reader {
        Reader::Submitter => return Ok(option),
        Reader::Launcher | Reader::Node => inherited(),
    };
    match (option, inherited) {
        (Some(option), Some(inherited)) if option != inherited => Err(Refusal::new(
            Rule::ConflictingBeamtime,
            format!(
                "the job names two beamtimes: the --beamtime option Slurm hands over (from the \
                 command line, or {OPTION_VARIABLE} in the job's environment) says {}, and \
                 {INHERITED_VARIABLE}, which sbatch and salloc set from their --beamtime, says {}",
                shown_token(&option),
                shown_token(&inherited)
            ),
            format!(
                "Give one --beamtime and set neither variable yourself (in an --export list or \
                 the shell); a step runs in the beamtime of its allocation, so start another \
                 beamtime's jobs outside it (unset {INHERITED_VARIABLE})"
            ),
        )),
        (Some(option), _) => Ok(Some(option)),
        (None, inherited) if reader == Reader::Node => Ok(inherited),
        (None, _) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(id: &str) -> Option<String> {
        Some(id.to_owned())
    }

    #[test]
    fn the_option_is_taken_when_the_inherited_variable_agrees_or_is_absent() {
        for reader in [Reader::Submitter, Reader::Launcher, Reader::Node] {
            let chosen = requested_beamtime(reader, some("11099001"), || some("11099001"));
            assert_eq!(chosen, Ok(some("11099001")), "{reader:?}");
            let chosen = requested_beamtime(reader, some("11099001"), || None);
            assert_eq!(chosen, Ok(some("11099001")), "{reader:?}");
        }
    }

    #[test]
    fn only_slurmstepd_falls_back_to_the_inherited_variable() {
        assert_eq!(
            requested_beamtime(Reader::Node, None, || some("11099002")),
            Ok(some("11099002"))
        );
        assert_eq!(
            requested_beamtime(Reader::Launcher, None, || some("11099002")),
            Ok(None)
        );
        let never_read = || -> Option<String> { panic!("sbatch reads no inherited variable") };
        assert_eq!(
            requested_beamtime(Reader::Submitter, None, never_read),
            Ok(None)
        );
        assert_eq!(requested_beamtime(Reader::Node, None, || None), Ok(None));
    }

    #[test]
    fn two_different_ids_are_refused_alike_by_srun_and_the_node_naming_both() {
        for reader in [Reader::Launcher, Reader::Node] {
            let refusal = requested_beamtime(reader, some("11099002"), || some("11099001"))
                .expect_err("two ids");
            assert_eq!(refusal.rule, Rule::ConflictingBeamtime);
            let text = refusal.to_string();
            assert!(text.contains("says 11099002, and"), "{text}");
            assert!(
                text.contains(&format!("{INHERITED_VARIABLE}, which")),
                "{text}"
            );
            assert!(text.contains("says 11099001"), "{text}");
        }
        // sbatch and salloc replace the inherited variable with their own option.
        let chosen = requested_beamtime(Reader::Submitter, some("11099002"), || some("11099001"));
        assert_eq!(chosen, Ok(some("11099002")));
    }

    #[test]
    fn hostile_values_in_the_refusal_are_escaped_and_cut() {
        let forged = format!("1\n{}", "1".repeat(100_000));
        let refusal = requested_beamtime(Reader::Node, Some(forged), || some("11099001"))
            .expect_err("two ids");
        let text = refusal.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.len() < 1000, "{text}");
    }
}
