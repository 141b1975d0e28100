//! A burst of 500 jobs, beamtime and ordinary ones interleaved, some with
//! concurrent steps on the node: every outcome right, no drained node,
//! nothing left on the host.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use scenarios::{BeamtimeSpec, Cluster, TEST_USER};

const JOBS: usize = 500;

#[test]
fn a_burst_of_mixed_jobs_all_end_right_and_leave_nothing_behind() {
    let c = Cluster::from_env();
    let bt = c.start_beamtime(&BeamtimeSpec::new("11099030", "p50", "bttest30").partition("all").cores(4));
    let beamtime_args = [
        format!("--beamtime={}", bt.id),
        "--partition=all".to_owned(),
        format!("--reservation={}", bt.reservations[0]),
    ];
    let beamtime_args: Vec<&str> = beamtime_args.iter().map(String::as_str).collect();
    let bt_dir = c.workdir(&bt.account, "load");
    let plain_dir = c.workdir(TEST_USER, "load");

    // Every tenth beamtime job runs two tasks at once, each building its own namespace.
    let beamtime_job = "#!/bin/bash\necho \"$BEAMTIME_ID $(ls -A /beamline)\"\n";
    let two_step_job = "#!/bin/bash\n#SBATCH -n 2\nsrun -n 2 bash -c 'echo \"$BEAMTIME_ID $(ls -A /beamline)\"' | sort\n";
    let plain_job = "#!/bin/bash\necho \"plain $(ls -A /beamline | wc -l) ${BEAMTIME_ID:-none}\"\n";

    let started = Instant::now();
    let mut submitted = Vec::with_capacity(JOBS);
    for n in 0..JOBS {
        let job = if n % 2 == 1 {
            c.submit(TEST_USER, &plain_dir, &[], plain_job)
        } else if n % 20 == 0 {
            c.submit(&bt.account, &bt_dir, &beamtime_args, two_step_job)
        } else {
            c.submit(&bt.account, &bt_dir, &beamtime_args, beamtime_job)
        };
        submitted.push((n, job));
    }
    let submitted_after = started.elapsed();

    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for (n, job) in &submitted {
        let end = c.wait_job(job.id, Duration::from_secs(600));
        *states.entry(end.state.clone()).or_default() += 1;
        end.assert_completed_ok();
        let expected = if n % 2 == 1 {
            "plain 0 none\n".to_owned()
        } else if n % 20 == 0 {
            format!("{id} p50\n{id} p50\n", id = bt.id)
        } else {
            format!("{} p50\n", bt.id)
        };
        assert_eq!(job.stdout(), expected, "job {} (#{n})", job.id);
    }
    eprintln!(
        "{JOBS} jobs: submitted in {submitted_after:.1?}, all ended after {:.1?}: {states:?}",
        started.elapsed()
    );
    c.assert_node_not_drained();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(" /beamline"), "mounts left on the host");
    assert_eq!(fs::read_dir("/beamline").unwrap().count(), 0, "/beamline on the host is not empty");
}
