//! `task_init`, as the job's user, in each task just before it execs the
//! user's program: the task's stdio is the user's now, so a refusal is said
//! here, once per node, and the task ends with the refusal's status.

use std::io::Write;
use std::path::Path;

use beamtime::policy::{Grant, Phase};
use beamtime::refusal::Refusal;
use slurm_spank::SpankHandle;

use super::Verdict;
use crate::{ffi, EXIT_REFUSED, PLUGIN};

pub fn enforce(spank: &mut SpankHandle, verdict: &Verdict) {
    // One message per node is enough.
    let first_task = spank.task_id().map_or(true, |task| task == 0);
    let refusal = match verdict {
        Verdict::Refused(refusal) => refusal,
        Verdict::Granted(granted) if granted.grant.phase == Phase::PreStart => {
            if first_task {
                // Nothing to do if stderr is gone: the task runs all the same.
                let _ = writeln!(std::io::stderr(), "{}", pre_start_note(&granted.grant));
            }
            return;
        }
        Verdict::Granted(granted) => {
            if first_task {
                let note = std::env::current_dir()
                    .ok()
                    .and_then(|cwd| working_directory_note(&granted.grant, &cwd));
                if let Some(note) = note {
                    let _ = writeln!(std::io::stderr(), "{note}");
                }
            }
            return;
        }
        Verdict::Untouched => return,
    };
    // Every task stops.
    if first_task {
        let job = spank.job_id().map(|j| j.to_string()).unwrap_or_default();
        let node = ffi::slurmd_node_name().unwrap_or_default();
        // Nothing to do if stderr is gone (srun killed): the task exits all the same.
        let _ = writeln!(std::io::stderr(), "{}", refusal_line(&job, &node, refusal));
    }
    ffi::exit_task(EXIT_REFUSED);
}

/// Why the beamline is not there, and when it will be.
fn pre_start_note(grant: &Grant) -> String {
    format!(
        "{PLUGIN}: beamtime {} has not started on beamline {} yet (BEAMTIME_PHASE=pre-start): \
         {} appears in jobs that start after the beamtime has; until then its data is on \
         the core filesystem (BEAMTIME_CORE_PATH)",
        grant.beamtime,
        grant.beamline,
        grant.target.display()
    )
}

/// slurmstepd changes into the step's working directory twice: once before
/// it forks the tasks, in the node's own mount namespace, where a folder
/// below the hide root does not exist (it says "couldn't chdir … going to
/// /tmp instead" on the task's stderr, and no plugin hook runs earlier), and
/// again in each task after the plugin has shown the beamline. A task that
/// does run below the hide root is told so, lest the first message send its
/// user after a problem that is not there.
fn working_directory_note(grant: &Grant, cwd: &Path) -> Option<String> {
    (cwd != grant.hide_root && cwd.starts_with(&grant.hide_root)).then(|| {
        format!(
            "{PLUGIN}: the task runs in {cwd}, inside the job's view of the beamline; if \
             slurmstepd said that it couldn't chdir there and went to /tmp, that was \
             before the view existed, and the task's directory is right",
            cwd = cwd.display()
        )
    })
}

fn refusal_line(job: &str, node: &str, refusal: &Refusal) -> String {
    format!("{PLUGIN}: error: job {job} refused on {node}: {refusal}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamtime::refusal::Rule;

    fn grant(phase: Phase) -> Grant {
        Grant {
            beamtime: beamtime::id::BeamtimeId::parse("11099031").unwrap(),
            beamline: beamtime::id::Beamline::parse("p31").unwrap(),
            reservation: "11099031".into(),
            source: "/srv/p31/current".into(),
            target: "/beamline/p31/current".into(),
            hide_root: "/beamline".into(),
            writable: vec![],
            metadata_file_name: "beamtime-metadata-11099031.json".into(),
            phase,
            environment: vec![],
        }
    }

    #[test]
    fn a_pre_start_task_is_told_why_the_beamline_is_missing_and_where_its_data_is() {
        let grant = grant(Phase::PreStart);
        let note = pre_start_note(&grant);
        assert!(
            note.starts_with(
                "spank-beamtime: beamtime 11099031 has not started on beamline p31 yet"
            ),
            "{note}"
        );
        assert!(
            note.contains("/beamline/p31/current appears in jobs that start after"),
            "{note}"
        );
        assert!(note.contains("BEAMTIME_CORE_PATH"), "{note}");
        assert!(
            !note.contains("/srv"),
            "the node's own path is not the user's business: {note}"
        );
    }

    #[test]
    fn a_task_below_the_hide_root_is_told_its_directory_is_right() {
        let grant = grant(Phase::Online);
        let note = working_directory_note(&grant, Path::new("/beamline/p31/current/processed"))
            .expect("a note");
        assert!(
            note.starts_with("spank-beamtime: the task runs in /beamline/p31/current/processed,"),
            "{note}"
        );
        for elsewhere in ["/tmp", "/beamline", "/beamlines/x", "/home/u"] {
            assert_eq!(
                working_directory_note(&grant, Path::new(elsewhere)),
                None,
                "{elsewhere}"
            );
        }
    }

    #[test]
    fn the_user_reads_job_node_problem_and_fix_on_one_line() {
        let refusal = Refusal::new(Rule::WrongNode, "node x is not reserved", "Ask the staff");
        assert_eq!(
            refusal_line("42", "btnode1", &refusal),
            "spank-beamtime: error: job 42 refused on btnode1: node x is not reserved. Ask the staff"
        );
    }
}
