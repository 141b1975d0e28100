//! `bt-submit doctor` and the node under the site's `account=` rule: the job's
//! Slurm account (the user's default, as bt-submit adds no `--account`) must be
//! the one the line names. doctor used to leave this rule out and say "ok" for
//! a job the node refused; now it asks the node's policy, with the default
//! account the controller reports, and says what the node says.
//!
//! One test, alone in its file: it rewrites plugstack.conf for the whole
//! cluster and restores it when done, even on failure.

use scenarios::{bt_submit, BeamtimeSpec, Cluster, RestorePlugstack};

#[test]
fn doctor_says_what_the_node_says_about_the_jobs_slurm_account() {
    let c = Cluster::from_env();
    let (plugin, good_args) = c.installed_plugin();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest109"));
    let wd = c.workdir(&bt.account, "doctor-account");
    let _restore = RestorePlugstack::new(&c);
    let doctor = || {
        c.as_user(&bt.account, bt_submit())
            .cwd(&wd)
            .args(["doctor", "--beamtime", &bt.id])
            .run()
    };

    // The beamtime's account submits with its default Slurm account, the
    // beamtime's own (beamtime-start.sh); the site asks for another one.
    c.set_plugstack(Some(&plugin), &format!("{good_args} account=bt_{{id}}"));
    let node_says = format!(
        "the job's Slurm account is '{}', beamtime {} jobs must use 'bt_{}'",
        bt.slurm_account, bt.id, bt.id
    );
    let out = doctor();
    assert_eq!(out.code(), Some(1), "{out}");
    let verdict = out.doctor_check("node-verdict");
    assert!(verdict.starts_with("FAIL "), "{out}");
    assert!(
        verdict.contains(&format!("the node refuses (wrong-account): {node_says}")),
        "{out}"
    );
    let srun = c.run_as(
        &bt.account,
        &wd,
        &[
            "srun",
            &format!("--beamtime={}", bt.id),
            &format!("--partition={}", bt.partition),
            &format!("--reservation={}", bt.reservations[0]),
            "true",
        ],
    );
    assert!(!srun.success(), "{srun}");
    assert!(srun.stderr.contains(&node_says), "{srun}");
    c.assert_node_not_drained();

    // The rule met: doctor and the node agree the other way too.
    c.set_plugstack(Some(&plugin), &format!("{good_args} account={{id}}"));
    let out = doctor();
    out.assert_success();
    assert!(
        out.doctor_check("node-verdict").starts_with("ok   "),
        "{out}"
    );
}
