//! What became of jobs, as Slurm tells it (`bt-submit watch status` and
//! `resubmit`): first the controller's queue (`squeue --states=all`: pending,
//! running, and ended jobs until its MinJobAge), then, for the jobs it no
//! longer holds, the accounting database (`sacct`), where a site keeps one.

use std::collections::{BTreeMap, BTreeSet};

use crate::slurm::query::Slurm;

/// Job ids per sacct call: a long beamtime has tens of thousands of jobs,
/// more than one command line holds.
const SACCT_JOBS_PER_CALL: usize = 500;

/// A job's state and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Slurm's name for it (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`,
    /// `TIMEOUT`, `CANCELLED` …) and the command that said so.
    Known { state: String, from: &'static str },
    /// Neither the queue nor accounting knows it: why accounting could not
    /// tell (none kept, or it did not answer).
    Unknown(String),
}

impl JobState {
    /// Whether the job ended without doing its work, so that submitting its
    /// file again may help: it failed, ran out of time or memory, or its node
    /// or the job's start failed. A cancelled job was stopped by someone on
    /// purpose and is not counted.
    pub fn failed(&self) -> bool {
        matches!(self, JobState::Known { state, .. } if matches!(
            state.as_str(),
            "FAILED" | "TIMEOUT" | "NODE_FAIL" | "OUT_OF_MEMORY" | "BOOT_FAIL" | "DEADLINE"
        ))
    }

    /// Whether the job is still to run or running.
    pub fn in_flight(&self) -> bool {
        matches!(self, JobState::Known { state, .. } if matches!(
            state.as_str(),
            "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED" | "REQUEUED"
                | "RESIZING" | "SIGNALING" | "STAGE_OUT" | "STOPPED"
        ))
    }

    /// The state's name, or `UNKNOWN`.
    pub fn name(&self) -> &str {
        match self {
            JobState::Known { state, .. } => state,
            JobState::Unknown(_) => "UNKNOWN",
        }
    }
}

/// The state of each of `jobs`. A failed squeue is an error (the controller
/// must answer); a failed sacct leaves the jobs it was asked about unknown,
/// with its reason.
pub fn job_states(
    slurm: &dyn Slurm,
    jobs: &BTreeSet<u64>,
) -> Result<BTreeMap<u64, JobState>, String> {
    let queue = slurm
        .query(
            "squeue",
            &["--me", "--noheader", "--states=all", "--format=%A|%T"],
        )
        .map_err(|error| error.to_string())?;
    let mut states: BTreeMap<u64, JobState> = parse_pairs(&queue)
        .filter(|(job, _)| jobs.contains(job))
        .map(|(job, state)| (job, known(state, "squeue")))
        .collect();
    let rest: Vec<u64> = jobs
        .iter()
        .copied()
        .filter(|job| !states.contains_key(job))
        .collect();
    for chunk in rest.chunks(SACCT_JOBS_PER_CALL) {
        let list = chunk
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let jobs_arg = format!("--jobs={list}");
        let answer = slurm.query(
            "sacct",
            &[
                "--allusers",
                "--allocations",
                "--noheader",
                "--parsable2",
                "--format=JobIDRaw,State",
                &jobs_arg,
            ],
        );
        match answer {
            Ok(out) => {
                for (job, state) in parse_pairs(&out) {
                    if chunk.contains(&job) {
                        states.insert(job, known(state, "sacct"));
                    }
                }
            }
            Err(error) => {
                let why = format!("no longer in the queue, and sacct: {}", error.reason());
                for job in chunk {
                    states.insert(*job, JobState::Unknown(why.clone()));
                }
            }
        }
    }
    for job in jobs {
        states.entry(*job).or_insert_with(|| {
            JobState::Unknown("neither in the queue nor in accounting".to_owned())
        });
    }
    Ok(states)
}

/// `ID|STATE` lines; sacct's `CANCELLED by 1000` is `CANCELLED`.
fn parse_pairs(out: &str) -> impl Iterator<Item = (u64, &str)> {
    out.lines().filter_map(|line| {
        let (job, state) = line.trim().split_once('|')?;
        let state = state.split_whitespace().next()?;
        Some((job.parse().ok()?, state))
    })
}

fn known(state: &str, from: &'static str) -> JobState {
    JobState::Known {
        state: state.to_owned(),
        from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::query::canned::Canned;

    const SQUEUE: &str = "squeue --me --noheader --states=all --format=%A|%T";
    const SACCT: &str =
        "sacct --allusers --allocations --noheader --parsable2 --format=JobIDRaw,State";

    #[test]
    fn the_queue_answers_first_and_accounting_for_the_jobs_it_no_longer_holds() {
        let mut slurm = Canned::default();
        slurm.answer(SQUEUE, "10|RUNNING\n11|COMPLETED\n99|PENDING\n");
        slurm.answer(
            &format!("{SACCT} --jobs=12,13"),
            "12|FAILED\n13|CANCELLED by 1000\n",
        );
        let states = job_states(&slurm, &BTreeSet::from([10, 11, 12, 13])).unwrap();
        let names: Vec<(u64, &str)> = states.iter().map(|(j, s)| (*j, s.name())).collect();
        assert_eq!(
            names,
            [
                (10, "RUNNING"),
                (11, "COMPLETED"),
                (12, "FAILED"),
                (13, "CANCELLED")
            ]
        );
        assert_eq!(
            states[&12],
            JobState::Known {
                state: "FAILED".into(),
                from: "sacct"
            }
        );
        assert!(states[&12].failed() && !states[&13].failed() && !states[&11].failed());
        assert!(states[&10].in_flight() && !states[&11].in_flight());
        assert_eq!(slurm.asked().len(), 2);
    }

    #[test]
    fn without_accounting_the_jobs_the_queue_forgot_are_unknown_and_say_why() {
        let mut slurm = Canned::default();
        slurm.answer(SQUEUE, "");
        slurm.fail(
            &format!("{SACCT} --jobs=5"),
            "sacct: error: Slurm accounting storage is disabled",
        );
        let states = job_states(&slurm, &BTreeSet::from([5])).unwrap();
        let JobState::Unknown(why) = &states[&5] else {
            panic!("{:?}", states[&5]);
        };
        assert!(why.contains("accounting storage is disabled"), "{why}");
        assert!(!states[&5].failed());
    }

    #[test]
    fn a_queue_that_does_not_answer_is_an_error() {
        let slurm = Canned::default();
        assert!(job_states(&slurm, &BTreeSet::from([1])).is_err());
    }
}
