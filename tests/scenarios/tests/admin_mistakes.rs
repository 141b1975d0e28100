//! An admin's plugstack slip fails no one else's job: with a line the plugin
//! cannot parse, jobs without `--beamtime` run as if the plugin were absent,
//! `--beamtime` jobs are refused on both sides (exit 77 in the task, never 0),
//! the node is not drained, and each refusal is one `decision=refused` line in
//! slurmd's log. Also with the plugstack differing between the submitting side
//! and the node (a half-finished rollout).
//!
//! One test, alone in its file: it rewrites plugstack.conf for the whole
//! cluster and restores it when done, even on failure.

use std::path::Path;

use scenarios::{cluster, BeamtimeSpec, Cluster, Output, RestorePlugstack, REFUSED, TEST_USER};

const BAD_ARGUMENT: &str = "no_such_argument=1";
/// What every process that loads the plugin logs about the bad line.
const BAD_LINE_LOGGED: &str =
    "spank-beamtime: plugstack.conf argument 'no_such_argument=1': unknown key";

/// A plugstack.conf line for the installed plugin with `args`.
fn plugstack_line(plugin: &std::path::Path, args: &str) -> String {
    format!("required {} {args}\n", plugin.display())
}

/// srun as `user` in `wd`, with the login side's slurm.conf `conf` (the cluster's
/// own when `None`).
fn srun(c: &Cluster, user: &str, wd: &Path, conf: Option<&Path>, argv: &[&str]) -> Output {
    let mut cmd = c.as_user(user, "srun").cwd(wd);
    if let Some(conf) = conf {
        cmd = cmd.env("SLURM_CONF", conf);
    }
    cmd.args(argv).run()
}

#[track_caller]
fn assert_ran(out: &Output, what: &str) {
    assert!(out.success(), "{what} without --beamtime must run:\n{out}");
}

/// A `--beamtime` step the node refused for the site's bad line.
#[track_caller]
fn assert_refused_by_node(c: &Cluster, out: &Output) {
    let logged = c.assert_refused_by_node(out, &["plugstack.conf argument 'no_such_argument=1'"]);
    assert!(logged.contains(" rule=site-configuration "), "{logged}");
}

/// A `--beamtime` submission `program` refused on the login side for the bad line.
#[track_caller]
fn assert_refused_by_client(out: &Output, program: &str) {
    scenarios::assert_refused_by_client(
        out,
        program,
        &[
            "spank-beamtime: plugstack.conf argument",
            "Ask the cluster's administrators: jobs without --beamtime",
        ],
    );
}

/// Counts `decision=refused rule=RULE` lines for beamtime `id` in new slurmd log text.
fn refused_lines(log: &str, id: &str, rule: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(&format!("beamtime={id} ")))
        .filter(|l| l.contains(&format!("decision=refused rule={rule} ")))
        .count()
}

#[test]
fn a_bad_plugstack_line_fails_only_beamtime_jobs_on_either_side_and_drains_nothing() {
    let c = cluster();
    let (plugin, good_args) = c.installed_plugin();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest81"));
    let wd = c.workdir(&bt.account, "admin-mistakes");
    let plain_wd = c.workdir(TEST_USER, "admin-mistakes-plain");
    let payload = ["bash", "-c", "echo payload-ran"];
    let _restore = RestorePlugstack::new(c);

    // 1. The whole cluster (login side and node) has the bad line.
    c.set_plugstack(Some(&plugin), &format!("{good_args} {BAD_ARGUMENT}"));
    let out = c.run_as(TEST_USER, &plain_wd, &["srun", "true"]);
    assert_ran(&out, "srun");
    assert!(
        out.stderr.contains(BAD_LINE_LOGGED),
        "the bad line is not shown:\n{out}"
    );
    let job = c.submit(TEST_USER, &plain_wd, &[], "#!/bin/bash\necho plain-ran\n");
    c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT)
        .assert_completed_ok();
    assert!(job.stdout().contains("plain-ran"), "{}", job.stdout());
    let out = c.run_as(TEST_USER, &plain_wd, &["salloc", "true"]);
    assert_ran(&out, "salloc");

    let args = bt.job_options();
    let beamtime_payload: Vec<&str> = args.iter().map(String::as_str).chain(payload).collect();
    let out = srun(c, &bt.account, &wd, None, &beamtime_payload);
    assert_refused_by_client(&out, "srun");
    let out = c.sbatch(
        &bt.account,
        &wd,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "#!/bin/bash\necho payload-ran\n",
    );
    assert_refused_by_client(&out, "sbatch");
    let out = c
        .as_user(&bt.account, "salloc")
        .cwd(&wd)
        .args(&args)
        .arg("true")
        .run();
    assert_refused_by_client(&out, "salloc");

    // The client bypassed (a slurm.conf without the plugin): the node refuses in the
    // task, srun ends 77 — not 0 as when init failed on the node — and nothing drains.
    let log = c.log_cursor("slurmd.log");
    let bypass = c.slurm_conf_without_plugins(&bt.account);
    let out = c
        .as_user(&bt.account, "srun")
        .cwd(&wd)
        .env("SLURM_CONF", &bypass)
        .env("_SLURM_SPANK_OPTION_beamtime_beamtime", &bt.id)
        .args(&args[1..])
        .args(payload)
        .run();
    assert_refused_by_node(c, &out);
    let batch = c
        .as_user(&bt.account, "sbatch")
        .cwd(&wd)
        .env("SLURM_CONF", &bypass)
        .env("_SLURM_SPANK_OPTION_beamtime_beamtime", &bt.id)
        .args(["--parsable", "-o"])
        .arg(wd.join("slurm-%j.out"))
        .args(&args[1..])
        .args(["--wrap", "echo payload-ran"])
        .run();
    let id = batch.job_id();
    let end = c.wait_job(id, scenarios::DEFAULT_TIMEOUT);
    assert_eq!(
        (end.state.as_str(), end.exit_code),
        ("FAILED", REFUSED),
        "{end:#?}"
    );
    c.assert_node_not_drained();
    // slurmd writes the batch step's line by itself: wait for it, then count.
    let logged = scenarios::wait::poll(scenarios::DEFAULT_TIMEOUT, || {
        let text = log.read_new();
        if refused_lines(&text, &bt.id, "site-configuration") >= 2 {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .unwrap_or_else(|text| panic!("slurmd.log lacks the two refusals:\n{text}"));
    assert_eq!(
        refused_lines(&logged, &bt.id, "site-configuration"),
        2,
        "one line per refused step:\n{logged}"
    );
    assert!(
        logged.contains(BAD_LINE_LOGGED),
        "slurmstepd did not log the bad line:\n{logged}"
    );

    // 2. A half-finished rollout: the node has the bad line, the login side a good one.
    let good_client = c.slurm_conf_with_plugstack(
        &bt.account,
        "good-login-side",
        &plugstack_line(&plugin, &good_args),
    );
    let out = srun(c, &bt.account, &wd, Some(&good_client), &beamtime_payload);
    assert_refused_by_node(c, &out);
    let out = srun(c, TEST_USER, &plain_wd, Some(&good_client), &["true"]);
    assert_ran(&out, "srun on a good login side");

    // 3. The other way round: the node is right again, the login side has the bad line.
    c.set_plugstack(Some(&plugin), &good_args);
    let bad_client = c.slurm_conf_with_plugstack(
        &bt.account,
        "bad-login-side",
        &plugstack_line(&plugin, &format!("{good_args} {BAD_ARGUMENT}")),
    );
    let out = srun(c, &bt.account, &wd, Some(&bad_client), &beamtime_payload);
    assert_refused_by_client(&out, "srun");
    let out = srun(c, TEST_USER, &plain_wd, Some(&bad_client), &["true"]);
    assert_ran(&out, "srun on a bad login side");
    assert!(out.stderr.contains(BAD_LINE_LOGGED), "{out}");
    // And the beamtime runs once both sides are right.
    let out = srun(c, &bt.account, &wd, None, &beamtime_payload);
    out.assert_success().assert_stdout_contains("payload-ran");
    c.assert_node_not_drained();
}
