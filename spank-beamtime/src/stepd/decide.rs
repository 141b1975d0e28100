//! `init_post_opt` in slurmstepd, as root, once per step before any task
//! forks: gathers the facts users cannot forge, lets the policy decide, logs
//! the decision for the admins and exports the job's variables. Never an
//! error to Slurm (that would drain the node for a batch step): every outcome
//! is a [`Verdict`] the tasks act on.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use beamtime::job_cache::{CachedAnswer, JobCache, RunHold};
use beamtime::plugin_config::PluginConfig;
use beamtime::problem::ASK_THE_ADMINS;
use std::path::Path;

use beamtime::beamline::inspect_beamline_folder;
use beamtime::facts::{BeamlineFolder, ControllerJob, StepFacts};
use beamtime::policy::{self, Grant};
use beamtime::refusal::{Refusal, Rule};
use beamtime::trust::TrustPolicy;
use beamtime::untrusted::shown_token;
use slurm_spank::{spank_log_error, spank_log_info, SpankHandle};

use super::mount_failure::MountFailure;
use super::step_namespace::StepNamespace;
use super::{Granted, Verdict};
use crate::load::{account_uid, load_beamtime};
use crate::{ffi, PLUGIN};

/// Who and where, for every log line about this step.
struct Step {
    job: u32,
    step: u32,
    uid: u32,
}

impl Step {
    fn describe(&self, beamtime: &str, node: &str) -> String {
        format!(
            "job={} step={} uid={} beamtime={} node={node}",
            self.job,
            step_name(self.step),
            self.uid,
            shown_token(beamtime)
        )
    }
}

fn step_name(step: u32) -> String {
    match step {
        ffi::BATCH_STEP_ID => "batch".to_owned(),
        ffi::INTERACTIVE_STEP_ID => "interactive".to_owned(),
        n => n.to_string(),
    }
}

/// `config` is the plugstack line, or the refusal the job gets before anything
/// is read: the one a line that did not parse gives every `--beamtime` job, or
/// the job's two different beamtimes (see `option::requested`).
pub fn decide(
    spank: &mut SpankHandle,
    config: Result<&PluginConfig, &Refusal>,
    requested: &str,
) -> Verdict {
    let (Ok(job), Ok(step), Ok(uid)) = (spank.job_id(), spank.job_stepid(), spank.job_uid()) else {
        // Without the job's identity nothing can be checked; fail closed.
        let refusal = Refusal::new(
            Rule::SiteConfiguration,
            "slurmstepd did not tell the plugin the job's id, step or user",
            ASK_THE_ADMINS,
        );
        let node = ffi::slurmd_node_name().unwrap_or_default();
        let step = format!(
            "job=unknown step=unknown uid=unknown beamtime={} node={node}",
            shown_token(requested)
        );
        spank_log_error!("{PLUGIN}: {}", refused_line(&step, &refusal));
        return Verdict::Refused(refusal);
    };
    if step == ffi::EXTERN_STEP_ID {
        return Verdict::Untouched;
    }
    let step = Step { job, step, uid };
    let node = ffi::slurmd_node_name();
    let mut answered_by = None;
    let decided = config.map_err(Refusal::clone).and_then(|config| {
        let loaded = load_beamtime(config, requested)?;
        let mut facts = NodeFacts {
            config,
            trust: &loaded.trust,
            beamtime: requested,
            job,
            uid,
            node: node.clone(),
            answered_by: None,
            cache_hold: None,
        };
        let decided = policy::decide(config, &loaded.metadata, &mut facts);
        answered_by = facts.answered_by;
        let grant = decided?;
        export_environment(spank, &grant)?;
        let cache_hold = facts.cache_hold;
        Ok((grant, loaded.trust, cache_hold))
    });
    let step = step.describe(requested, node.as_deref().unwrap_or_default());
    match decided {
        Ok((grant, trust, cache_hold)) => {
            // Logged by the task once the beamline is mounted (task_root.rs): a
            // step whose mount fails has its refusal as its only decision line.
            let accepted = accepted_line(&step, &grant, answered_by);
            let namespace = step_namespace(spank, &step);
            Verdict::Granted(Box::new(Granted {
                grant,
                trust,
                step,
                accepted,
                namespace,
                _cache_hold: cache_hold,
            }))
        }
        Err(refusal) => {
            spank_log_info!("{PLUGIN}: {}", refused_line(&step, &refusal));
            Verdict::Refused(shown_to_user(refusal, requested))
        }
    }
}

/// How this step's tasks on this node get their namespace. Without a channel
/// each task builds its own, as a one-task step does: slower, never less safe.
fn step_namespace(spank: &SpankHandle, step: &str) -> StepNamespace {
    let made = spank
        .job_local_task_count()
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(StepNamespace::for_tasks);
    made.unwrap_or_else(|error| {
        spank_log_info!("{PLUGIN}: {step}: each task builds its own mount namespace: {error}");
        StepNamespace::OwnTask
    })
}

/// The one line every refusal writes to slurmd's log, wherever it is decided
/// (here, or in a task whose mount failed): admins count refusals by `rule=`.
pub fn refused_line(step: &str, refusal: &Refusal) -> String {
    format!(
        "{step} decision=refused rule={} reason=\"{}\"",
        refusal.rule.as_str(),
        refusal.problem.what.escape_default()
    )
}

fn accepted_line(step: &str, grant: &Grant, answered_by: Option<&str>) -> String {
    format!(
        "{step} decision=accepted phase={} reservation={} controller={} source={} target={}",
        grant.phase.as_str(),
        grant.reservation,
        // The policy asks the controller before it grants anything.
        answered_by.unwrap_or("none"),
        grant.source.display(),
        grant.target.display()
    )
}

/// slurmd's log has the refusal in full; the user sees what anybody who names
/// the beamtime may know. The metadata lies in the beamtime's folder, open to
/// its members only, and slurmstepd reads it as root: the account, the file's
/// path and how to log in stay in the log. Members get them from the
/// client-side check, which runs as them, and from `bt-submit show`/`doctor`.
fn shown_to_user(refusal: Refusal, requested: &str) -> Refusal {
    let id = shown_token(requested);
    let members_see =
        format!("its members see the details with `bt-submit doctor --beamtime {id}`");
    match refusal.rule {
        Rule::WrongUser => Refusal::new(
            Rule::WrongUser,
            format!(
                "beamtime {id} jobs run only as the beamtime's own account, and this job's user \
                 is not it"
            ),
            format!(
                "Submit as the beamtime's account; its members see which one with \
                 `bt-submit show --beamtime {id}`"
            ),
        ),
        Rule::NoOnlineResources => Refusal::new(
            Rule::NoOnlineResources,
            format!("beamtime {id} has no online analysis resources yet"),
            format!(
                "Wait until the beamtime has started and its Slurm reservation exists; \
                 {members_see}"
            ),
        ),
        Rule::UnsafeAccount => Refusal::new(
            Rule::UnsafeAccount,
            format!(
                "beamtime {id}'s metadata names an account that this node does not run jobs as \
                 (unknown here, or a system account)"
            ),
            format!("Ask the facility to fix the beamtime's account; {members_see}"),
        ),
        _ => refusal,
    }
}

/// The step's facts as slurmstepd knows them, each gathered only when the
/// policy asks (see [`StepFacts`]).
struct NodeFacts<'c> {
    config: &'c PluginConfig,
    /// Whom the metadata was trusted for; the source folder's copy must be theirs too.
    trust: &'c TrustPolicy,
    beamtime: &'c str,
    job: u32,
    /// `S_JOB_UID`, from the signed credential.
    uid: u32,
    /// Read once, for the decision and for the log line.
    node: Option<String>,
    /// `asked` or `cached`: whether this step cost the controller a query.
    answered_by: Option<&'static str>,
    /// This step's membership in the job's current run on this node, which
    /// keeps the run's cached answer standing for its later steps.
    cache_hold: Option<RunHold>,
}

impl StepFacts for NodeFacts<'_> {
    fn job_uid(&self) -> u32 {
        self.uid
    }

    fn account_uid(&mut self, account: &str) -> Result<Option<u32>, Refusal> {
        account_uid(account)
    }

    fn node(&mut self) -> Result<String, Refusal> {
        self.node.clone().ok_or_else(|| {
            Refusal::new(
                Rule::SiteConfiguration,
                "slurmstepd's environment has no SLURMD_NODENAME",
                ASK_THE_ADMINS,
            )
        })
    }

    fn controller(&mut self) -> Result<ControllerJob, Refusal> {
        let (answer, answered_by, hold) = controller_answer(self.config, self.job, self.uid)?;
        self.answered_by = Some(answered_by);
        self.cache_hold = hold;
        Ok(answer)
    }

    /// Looked at as root before the tasks fork; each task looks again through the
    /// handle it mounts from, so a beamline that moves on in between is not shown.
    fn beamline_folder(&mut self, source: &Path, name: &str) -> Result<BeamlineFolder, Refusal> {
        inspect_beamline_folder(source, name, self.trust).map_err(|error| {
            Refusal::new(
                Rule::MountFailed,
                format!(
                    "the beamline folder could not be set up: {}",
                    MountFailure::of_folder(source.to_owned(), self.beamtime, error)
                ),
                ASK_THE_ADMINS,
            )
        })
    }
}

/// The job's reservation and account: from the node's job cache when an
/// earlier step of the job's current run on this node stored them recently,
/// else from the controller. A cache that cannot be used only costs the query.
fn controller_answer(
    config: &PluginConfig,
    job: u32,
    uid: u32,
) -> Result<(ControllerJob, &'static str, Option<RunHold>), Refusal> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let joined = if config.job_cache.is_zero() {
        None
    } else {
        JobCache::open(&config.state_dir, config.job_cache, ffi::effective_uid())
            .and_then(|cache| cache.join_run(job).map(|run| (cache, run)))
            .map_err(|why| spank_log_info!("{PLUGIN}: job={job} job cache not used: {why}"))
            .ok()
    };
    if let Some((cache, run)) = &joined {
        match cache.lookup(job, uid, run, now) {
            Ok(Some(controller)) => {
                return Ok((controller, "cached", joined.map(|(_, run)| run)));
            }
            Ok(None) => {}
            Err(why) => spank_log_info!("{PLUGIN}: job={job} cached answer not used: {why}"),
        }
    }
    let controller = ffi::controller_job(job).map_err(|why| {
        Refusal::new(
            Rule::ControllerUnavailable,
            why.to_string(),
            format!(
                "The plugin cannot check the job's reservation without the controller; \
                 resubmit in a minute, and if it keeps happening, {ASK_THE_ADMINS}"
            ),
        )
    })?;
    let Some((cache, run)) = joined else {
        return Ok((controller, "asked", None));
    };
    let answer = CachedAnswer {
        job,
        uid,
        run: run.run().to_owned(),
        fetched_at: now,
        controller: controller.clone(),
    };
    if let Err(why) = cache.store(&answer) {
        spank_log_info!("{PLUGIN}: job={job} answer not cached: {why}");
    }
    Ok((controller, "asked", Some(run)))
}

fn export_environment(spank: &mut SpankHandle, grant: &Grant) -> Result<(), Refusal> {
    for (name, value) in &grant.environment {
        spank.setenv(name, value, true).map_err(|e| {
            Refusal::new(
                Rule::SiteConfiguration,
                format!("cannot set {name} in the job's environment: {e}"),
                ASK_THE_ADMINS,
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn special_steps_are_logged_by_name() {
        assert_eq!(step_name(ffi::BATCH_STEP_ID), "batch");
        assert_eq!(step_name(ffi::INTERACTIVE_STEP_ID), "interactive");
        assert_eq!(step_name(3), "3");
    }

    #[test]
    fn a_forged_id_cannot_break_the_log_line() {
        let step = Step {
            job: 7,
            step: 0,
            uid: 5005,
        };
        assert_eq!(
            step.describe("1109\nfake decision=accepted", "btnode1"),
            "job=7 step=0 uid=5005 beamtime=\"1109\\nfake decision=accepted\" node=btnode1"
        );
        let forged = "1".repeat(100_000);
        let line = step.describe(&forged, "btnode1");
        assert!(line.len() < 200, "{line}");
        assert!(
            line.contains("… (100000 characters) node=btnode1"),
            "{line}"
        );
    }

    #[test]
    fn the_accept_line_says_where_and_whether_the_controller_was_asked() {
        let grant = Grant {
            beamtime: beamtime::id::BeamtimeId::parse("11099001").unwrap(),
            beamline: beamtime::id::Beamline::parse("p11").unwrap(),
            reservation: "11099001_1".into(),
            source: PathBuf::from("/srv/p11/current"),
            target: PathBuf::from("/beamline/p11/current"),
            hide_root: PathBuf::from("/beamline"),
            writable: vec![],
            metadata_file_name: "beamtime-metadata-11099001.json".into(),
            phase: beamtime::policy::Phase::Online,
            environment: vec![],
        };
        assert_eq!(
            accepted_line("job=7", &grant, Some("cached")),
            "job=7 decision=accepted phase=online reservation=11099001_1 controller=cached \
             source=/srv/p11/current target=/beamline/p11/current"
        );
    }

    #[test]
    fn the_user_is_told_no_account_path_or_login_of_the_beamtime() {
        let path = "/gpfs/p11/current/beamtime-metadata-11099001.json";
        let cases = [
            (
                Rule::WrongUser,
                "beamtime 11099001 runs as its account 'bttest01' (uid 5001), and this job's user is uid 1000",
                "Log in as the beamtime account (ssh -i /gpfs/p11/current/shared/key -l bttest01 n1)",
            ),
            (
                Rule::NoOnlineResources,
                "beamtime 11099001 has no online analysis resources yet (/gpfs/p11/current/beamtime-metadata-11099001.json has no usable onlineAnalysis block)",
                "Wait",
            ),
            (
                Rule::UnsafeAccount,
                "the beamtime's account 'daemon' (/gpfs/p11/current/beamtime-metadata-11099001.json: onlineAnalysis.userAccount) is a system account (uid 1 < 1000)",
                "Refusing",
            ),
        ];
        for (rule, problem, fix) in cases {
            let shown = shown_to_user(Refusal::new(rule, problem, fix), "11099001");
            assert_eq!(shown.rule, rule);
            let text = shown.to_string();
            for secret in ["bttest01", "daemon", "ssh", path, "/gpfs"] {
                assert!(!text.contains(secret), "{rule:?} shows {secret:?}: {text}");
            }
            assert!(text.contains("bt-submit"), "{text}");
        }
        let other = Refusal::new(Rule::WrongNode, "node x", "fix");
        assert_eq!(shown_to_user(other.clone(), "11099001"), other);
    }
}
