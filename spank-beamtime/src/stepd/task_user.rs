//! `task_init`, as the job's user, in each task just before it execs the
//! user's program: the task's stdio is the user's now, so a refusal is said
//! here, once per node, and the task ends with the refusal's status.

use std::io::Write;

use beamtime::policy::Refusal;
use slurm_spank::SpankHandle;

use super::Verdict;
use crate::{ffi, EXIT_REFUSED, PLUGIN};

pub fn enforce(spank: &mut SpankHandle, verdict: &Verdict) {
    let Verdict::Refused(refusal) = verdict else {
        return;
    };
    // One message per node is enough; every task still stops.
    if spank.task_id().map_or(true, |task| task == 0) {
        let job = spank.job_id().map(|j| j.to_string()).unwrap_or_default();
        let node = ffi::slurmd_node_name().unwrap_or_default();
        // Nothing to do if stderr is gone (srun killed): the task exits all the same.
        let _ = writeln!(std::io::stderr(), "{}", refusal_line(&job, &node, refusal));
    }
    ffi::exit_task(EXIT_REFUSED);
}

fn refusal_line(job: &str, node: &str, refusal: &Refusal) -> String {
    format!("{PLUGIN}: error: job {job} refused on {node}: {refusal}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamtime::policy::Rule;

    #[test]
    fn the_user_reads_job_node_problem_and_fix_on_one_line() {
        let refusal = Refusal::new(Rule::WrongNode, "node x is not reserved", "Ask the staff");
        assert_eq!(
            refusal_line("42", "btnode1", &refusal),
            "spank-beamtime: error: job 42 refused on btnode1: node x is not reserved. Ask the staff"
        );
    }
}
