//! Remote context: slurmstepd on a compute node, once per job step.
//!
//! - `decide` runs in `init_post_opt`, as root, before any task forks. It only
//!   records a verdict: an error returned here would make slurmd drain the node
//!   for a batch step, and a user's mistake must never do that.
//! - `prepare_task` runs in `task_init_privileged`, as root, in each task's
//!   forked child after any job-container join; it builds the mount namespace.
//! - `enforce` runs in `task_init`, as the job's user, with the task's stdio
//!   wired to the user: a refused task says why there and exits before exec.

use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use beamtime::job_cache::{CachedAnswer, JobCache};
use beamtime::plugin_config::PluginConfig;
use beamtime::policy::{self, ControllerJob, Grant, JobFacts, Refusal, Rule};
use beamtime::trust::TrustPolicy;
use slurm_spank::{spank_log_error, spank_log_info, spank_log_verbose, SpankHandle};

use crate::{ffi, load_beamtime, namespace, EXIT_REFUSED, PLUGIN};

/// What this step's tasks get.
#[derive(Debug, Default)]
pub enum Verdict {
    /// No `--beamtime`, or the extern step: the plugin stays out of the way.
    #[default]
    Untouched,
    /// What to mount, and whom to trust for the check that the source
    /// folder still belongs to the beamtime when the task mounts it.
    Granted(Grant, TrustPolicy),
    Refused(Refusal),
}

/// Who and where, for every log line about this step.
struct Step {
    job: u32,
    step: u32,
    uid: u32,
}

impl Step {
    fn describe(&self, beamtime: &str) -> String {
        format!(
            "job={} step={} uid={} beamtime={}",
            self.job,
            step_name(self.step),
            self.uid,
            beamtime.escape_default()
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

pub fn decide(spank: &mut SpankHandle, config: &PluginConfig, requested: &str) -> Verdict {
    let (Ok(job), Ok(step), Ok(uid)) = (spank.job_id(), spank.job_stepid(), spank.job_uid()) else {
        // Without the job's identity nothing can be checked; fail closed.
        let refusal = Refusal::new(
            Rule::SiteConfiguration,
            "slurmstepd did not tell the plugin the job's id, step or user",
            "Report this to the cluster admins",
        );
        spank_log_error!("{PLUGIN}: refused: {refusal}");
        return Verdict::Refused(refusal);
    };
    if step == ffi::EXTERN_STEP_ID {
        return Verdict::Untouched;
    }
    let step = Step { job, step, uid };
    let node = ffi::slurmd_node_name().unwrap_or_default();
    let granted = judge(config, requested, uid, job).and_then(|judged| {
        export_environment(spank, &judged.grant)?;
        spank_log_info!(
            "{PLUGIN}: {} node={node} decision=accepted reservation={} controller={} source={} target={}",
            step.describe(requested),
            judged.grant.reservation,
            judged.answered_by,
            judged.grant.source.display(),
            judged.grant.target.display()
        );
        Ok(Verdict::Granted(judged.grant, judged.trust))
    });
    granted.unwrap_or_else(|refusal| {
        spank_log_info!(
            "{PLUGIN}: {} node={node} decision=refused rule={} reason=\"{}\"",
            step.describe(requested),
            refusal.rule.as_str(),
            refusal.problem.escape_default()
        );
        // Logged in full; the user sees the short form.
        if refusal.rule == Rule::WrongUser {
            Verdict::Refused(without_account_details(requested))
        } else {
            Verdict::Refused(refusal)
        }
    })
}

/// slurmstepd reads metadata as root, but the user who is refused may not be
/// allowed to read it (a beamtime's folder is open to its members only): the
/// account and how to log in as it stay in slurmd's log. Members learn them
/// from `bt-submit show` or from the client-side check, which runs as them.
fn without_account_details(requested: &str) -> Refusal {
    Refusal::new(
        Rule::WrongUser,
        format!(
            "beamtime {} jobs run only as the beamtime's own account, and this job's user is not it",
            requested.escape_default()
        ),
        format!(
            "Submit as the beamtime's account; its members see which one with \
             `bt-submit show --beamtime {}`",
            requested.escape_default()
        ),
    )
}

/// Gathers the trusted facts in order of cost, stopping at the first refusal:
/// a wrong user never costs a controller query.
fn judge(config: &PluginConfig, requested: &str, uid: u32, job: u32) -> Result<Judged, Refusal> {
    let loaded = load_beamtime(config, requested)?;
    let (metadata, account_uid) = (&loaded.metadata, loaded.account_uid);
    policy::check_submitter(config, metadata, uid, account_uid)?;
    let node = ffi::slurmd_node_name().ok_or_else(|| {
        Refusal::new(
            Rule::SiteConfiguration,
            "slurmstepd's environment has no SLURMD_NODENAME",
            "Report this to the cluster admins",
        )
    })?;
    let (controller, answered_by) = controller_answer(config, job, uid)?;
    let grant = policy::decide(
        config,
        metadata,
        &JobFacts {
            uid,
            account_uid,
            controller,
            node,
        },
    )?;
    Ok(Judged {
        grant,
        trust: loaded.trust,
        answered_by,
    })
}

struct Judged {
    grant: Grant,
    trust: TrustPolicy,
    /// `asked` or `cached`: whether this step cost the controller a query.
    answered_by: &'static str,
}

/// The job's reservation and account: from the node's job cache when an
/// earlier step of the job stored them recently, else from the controller.
/// A cache that cannot be used only costs the query.
fn controller_answer(
    config: &PluginConfig,
    job: u32,
    uid: u32,
) -> Result<(ControllerJob, &'static str), Refusal> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cache = if config.job_cache.is_zero() {
        None
    } else {
        JobCache::open(&config.state_dir, config.job_cache, ffi::effective_uid())
            .map_err(|why| spank_log_info!("{PLUGIN}: job={job} job cache not used: {why}"))
            .ok()
    };
    if let Some(cache) = &cache {
        match cache.lookup(job, uid, now) {
            Ok(Some(controller)) => return Ok((controller, "cached")),
            Ok(None) => {}
            Err(why) => spank_log_info!("{PLUGIN}: job={job} cached answer not used: {why}"),
        }
    }
    let controller = ffi::controller_job(job).map_err(|why| {
        Refusal::new(
            Rule::ControllerUnavailable,
            why,
            "The plugin cannot check the job's reservation without the controller; \
             resubmit in a minute, and tell the cluster admins if it keeps happening",
        )
    })?;
    if let Some(cache) = &cache {
        let answer = CachedAnswer {
            job,
            uid,
            fetched_at: now,
            controller: controller.clone(),
        };
        if let Err(why) = cache.store(&answer) {
            spank_log_info!("{PLUGIN}: job={job} answer not cached: {why}");
        }
    }
    Ok((controller, "asked"))
}

fn export_environment(spank: &mut SpankHandle, grant: &Grant) -> Result<(), Refusal> {
    for (name, value) in &grant.environment {
        spank.setenv(name, value, true).map_err(|e| {
            Refusal::new(
                Rule::SiteConfiguration,
                format!("cannot set {name} in the job's environment: {e}"),
                "Report this to the cluster admins",
            )
        })?;
    }
    Ok(())
}

pub fn prepare_task(verdict: &mut Verdict) {
    if let Verdict::Granted(grant, trust) = verdict {
        let started = Instant::now();
        let shown = namespace::show_beamline(grant, trust);
        // For admins weighing the cost on nodes with large mount tables (bench/ reads it too).
        spank_log_verbose!(
            "{PLUGIN}: beamtime={} mount namespace set up in {} us",
            grant.beamtime,
            started.elapsed().as_micros()
        );
        if let Err(why) = shown {
            // Info, not error: slurmstepd copies its errors to the user's stderr, where
            // task_init's refusal already says this once.
            spank_log_info!("{PLUGIN}: beamtime={} mount failed: {why}", grant.beamtime);
            *verdict = Verdict::Refused(Refusal::new(
                Rule::MountFailed,
                format!("the beamline folder could not be set up: {why}"),
                "Report this to the cluster admins",
            ));
        }
    }
}

pub fn enforce(spank: &mut SpankHandle, verdict: &Verdict) {
    let Verdict::Refused(refusal) = verdict else {
        return;
    };
    // One message per node is enough; every task still stops.
    if spank.task_id().map_or(true, |task| task == 0) {
        let job = spank.job_id().map(|j| j.to_string()).unwrap_or_default();
        let node = ffi::slurmd_node_name().unwrap_or_default();
        // Nothing to do if stderr is gone (srun killed): the task exits all the same.
        let _ = writeln!(
            std::io::stderr(),
            "{PLUGIN}: error: job {job} refused on {node}: {refusal}"
        );
    }
    ffi::exit_task(EXIT_REFUSED);
}
