//! The harness's own claims about plugstack.conf, proven with the btprobe plugin
//! (tests/cluster/probe/btprobe.c, which only records which hooks ran where):
//! - after `cluster.sh plugstack`, every context loads the new stack, the spank
//!   job_prolog/job_epilog included (those need the slurmd restart that it does);
//! - the helpers report the ways a node-side plugin failure looks on a batch job:
//!   held after a prolog error; after a remote init error "COMPLETED" on Slurm 22.05,
//!   requeued from 24.11 on (recorded per release as the `init_failure` figure) — all
//!   with a drained node, which `assert_node_not_drained` must catch; from 25.05 on, with
//!   `slurm_spank_init_failure_mode = ESPANK_JOB_FAILURE`, failed and the node left alone.
//!
//! It rewrites plugstack.conf and drains the node on purpose, so it is the only test in
//! this file (cargo runs test files one after another); the original plugstack and the
//! node's state are restored even when it fails.

use scenarios::probe::{self, build_probe, fresh_records_dir, record_lines, records, Control};
use scenarios::{Cluster, RestorePlugstack, TEST_USER};
use std::path::Path;
use std::time::Duration;

#[test]
fn plugstack_changes_reach_every_context_and_failures_are_reported() {
    let c = Cluster::from_env();
    c.assert_node_not_drained();
    let base = probe::probe_dir(&c, "plugstack");
    let control = Control::new(&base);
    let so = build_probe(&c, &base, "btprobe.so", &[]);
    let _restore = RestorePlugstack::new(&c);
    let user = scenarios::UnixUser::get(TEST_USER);
    let wd = c.workdir(TEST_USER, "probe");

    // 1. Every context loads the new stack.
    let out = fresh_records_dir(&base, "ok");
    c.set_plugstack(
        Some(&so),
        &format!("dir={} ctl={}", out.display(), control.path.display()),
    );
    c.run_as(TEST_USER, &wd, &["srun", "-n1", "-t", "1", "true"])
        .assert_success();
    let (job, end) = c.submit_and_wait(TEST_USER, &wd, &[], "#!/bin/bash\ntrue\n");
    end.assert_completed_ok();
    let want = [
        "init-slurmd",
        "init-local",
        "init_post_opt-local",
        "init-allocator",
        "init_post_opt-allocator",
        "init-remote",
        "init_post_opt-remote",
        "task_init-remote",
        "job_prolog-job_script",
        "job_epilog-job_script",
    ];
    let got = records(&out, &want);
    for w in want {
        assert!(
            got.contains(w),
            "hook {w} did not run after `cluster.sh plugstack`; ran: {got:?}"
        );
    }
    // Who runs what, as spank-semantics.md says: the client and the task as the user,
    // slurmstepd's init and the prolog as root.
    assert!(record_lines(&out, "init-local").contains(&format!("uid={}", user.uid)));
    assert!(record_lines(&out, "task_init-remote")
        .contains(&format!("uid={} job={}", user.uid, job.id)));
    assert!(record_lines(&out, "init-remote").contains(&format!("uid=0 job={}", job.id)));
    assert!(record_lines(&out, "job_prolog-job_script").contains(&format!("uid=0 job={}", job.id)));
    c.assert_node_not_drained();

    // 2. A failing spank prolog: the batch job is requeued and held, the node drained.
    //    (The control file switches the failing hook: no plugstack rewrite, no restart.)
    control.fail("job_prolog", "job_script", -1);
    let job = c.submit(TEST_USER, &wd, &[], "#!/bin/bash\ntrue\n");
    let end = c.wait_job(job.id, Duration::from_secs(60));
    control.fail_nothing();
    assert!(end.requeued_held(), "expected a held job: {end:#?}");
    let node = c.node_state();
    assert!(
        node.state.starts_with("drain") && node.reason.contains("Prolog"),
        "{node:?}"
    );
    let caught = std::panic::catch_unwind(|| c.assert_node_not_drained());
    assert!(
        caught.is_err(),
        "assert_node_not_drained accepted a drained node"
    );
    c.cmd("scancel")
        .arg(job.id.to_string())
        .run()
        .assert_success();
    c.resume_node();
    c.assert_node_not_drained();

    // 3. A failing remote init in a batch step: the script never runs. What becomes of
    //    the job and the node depends on the release (fail_remote_init); a release not
    //    measured yet fails there with what it did, to be added.
    let (slurm, release) = probe::slurm_release(&c);
    let job_container = c.recorded("job_container") == "1";
    let expected: &[InitFailure] = match release.as_str() {
        "22.05" => &[InitFailure::Completed],
        // With the job container the init fails in the extern step ("_spawn_job_container:
        // Plugin stack initialization failed"); 25.05 requeued the job and drained the node
        // in one run, and left the node in service in another.
        "25.05" if job_container => &[InitFailure::Requeued, InitFailure::RequeuedNodeUp],
        "23.11" | "24.11" | "25.05" | "25.11" | "26.05" => &[InitFailure::Requeued],
        other => {
            panic!("Slurm {other}: what a failed remote init does was not measured on this release")
        }
    };
    fail_remote_init(&c, &control, &base, &wd, &slurm, "default", expected);
    // From 25.05 on a plugin may declare its init failures the job's fault instead of
    // the node's (slurm_spank_init_failure_mode), as spank-beamtime does there.
    if probe::release_at_least(&release, 25, 5) {
        fail_remote_init(
            &c,
            &control,
            &base,
            &wd,
            &slurm,
            "ESPANK_JOB_FAILURE",
            &[InitFailure::Failed],
        );
    }
}

/// What a release does with a batch job whose step's remote init failed.
#[derive(Debug, PartialEq)]
enum InitFailure {
    /// `COMPLETED 0:0` without output, the node drained (22.05).
    Completed,
    /// Requeued (`Restarts` ≥ 1) and pending, the node drained (24.11 on): held
    /// (`launch_failed_requeued_held`), or still waiting for the `BeginTime` Slurm gives
    /// a requeued job — both seen on 24.11's plain cluster.
    Requeued,
    /// Requeued and pending as above, the node left in service (seen once on 25.05 with
    /// the job container).
    RequeuedNodeUp,
    /// Ended as failed, the node left in service (25.05 on, with ESPANK_JOB_FAILURE).
    Failed,
}

impl InitFailure {
    fn drains_the_node(&self) -> bool {
        matches!(self, InitFailure::Completed | InitFailure::Requeued)
    }
}

/// Runs a batch job under `so` failing its remote init, records the outcome as the
/// `init_failure` figure and checks it is one of `expected`; leaves the node in service.
fn fail_remote_init(
    c: &Cluster,
    control: &Control,
    base: &Path,
    wd: &Path,
    slurm: &str,
    mode: &str,
    expected: &[InitFailure],
) {
    let defines: &[&str] = match mode {
        "ESPANK_JOB_FAILURE" => &["-DBTPROBE_JOB_FAILURE"],
        _ => &[],
    };
    let so = build_probe(c, base, &format!("btprobe-{mode}.so"), defines);
    let out = fresh_records_dir(base, &format!("init-{mode}"));
    c.set_plugstack(
        Some(&so),
        &format!("dir={} ctl={}", out.display(), control.path.display()),
    );
    control.fail("init", "remote", -1);
    let job = c.submit(TEST_USER, wd, &[], "#!/bin/bash\necho ran\n");
    let record = probe::settle(c, job.id);
    control.fail_nothing();
    let field = |key: &str| record.get(key).cloned().unwrap_or_default();
    let node = c.node_state();
    scenarios::figures::record(
        "init_failure",
        serde_json::json!({
            "slurm": slurm,
            "failure_mode": mode,
            "job_container": c.recorded("job_container") == "1",
            "job_state": field("JobState"),
            "job_reason": field("Reason"),
            "restarts": field("Restarts"),
            "exit_code": field("ExitCode"),
            "node_state": node.state,
            "node_reason": node.reason,
        }),
    );
    assert!(
        !job.stdout_path.exists(),
        "the batch script ran despite the failed init"
    );
    let drained = node.state.starts_with("drain");
    let outcome = match (field("JobState").as_str(), drained) {
        ("COMPLETED", _) => InitFailure::Completed,
        ("PENDING", true) => InitFailure::Requeued,
        ("PENDING", false) => InitFailure::RequeuedNodeUp,
        ("FAILED", _) => InitFailure::Failed,
        (other, _) => panic!("job {}: unexpected state {other}: {record:#?}", job.id),
    };
    assert!(
        expected.contains(&outcome),
        "{outcome:?}, expected one of {expected:?}: {record:#?}; {node:?}"
    );
    assert_eq!(drained, outcome.drains_the_node(), "{node:?}");
    if matches!(outcome, InitFailure::Requeued | InitFailure::RequeuedNodeUp) {
        c.cmd("scancel")
            .arg(job.id.to_string())
            .run()
            .assert_success();
    }
    if drained {
        c.resume_node();
    }
    c.assert_node_not_drained();
}
