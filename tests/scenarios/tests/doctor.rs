//! `bt-submit doctor` against the real cluster: its scontrol, sacctmgr and
//! plugstack reading, as the beamtime's account and as others. The parsing and
//! every check's failure text are unit-tested in bt-submit (src/commands/doctor/,
//! src/slurm/text.rs); here each check meets the real Slurm, and doctor's
//! verdict meets the node's own for the same job.
//!
//! Nothing here drains the node, downs a partition or rewrites plugstack.conf:
//! other scenarios share the cluster.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use scenarios::{
    bt_submit, cluster, Beamtime, BeamtimeSpec, Cluster, Output, UnixUser, NODE, TEST_USER,
};

fn doctor(user: &str, args: &[&str]) -> Output {
    cluster()
        .as_user(user, bt_submit())
        .arg("doctor")
        .args(args)
        .run()
}

#[test]
fn a_started_beamtime_passes_every_check_for_its_account() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest101").second_reservation());
    let out = doctor(&bt.account, &["--beamtime", &bt.id]);
    out.assert_success();
    for check in [
        "controller",
        "metadata",
        "online-resources",
        "user",
        "reservations",
        "reservation-access",
        "nodes",
        "partition",
        "node-verdict",
        "plugin",
        "beamline-source",
    ] {
        assert!(
            out.doctor_check(check).starts_with("ok   "),
            "{check} did not pass:\n{out}"
        );
    }
    assert!(
        out.doctor_check("reservations")
            .ends_with(&format!("{0}, {0}_1 active", bt.id)),
        "{out}"
    );
    assert!(
        out.doctor_check("nodes").ends_with(&format!("{NODE} up")),
        "{out}"
    );
    assert!(
        out.doctor_check("plugin").contains(&format!(
            "{}/etc/plugstack.conf loads ",
            c.state_dir().display()
        )),
        "{out}"
    );
    assert!(
        out.doctor_check("beamline-source")
            .contains(&format!("{} is there", bt.current_dir.display())),
        "{out}"
    );
    out.assert_stdout_contains("all 12 checks passed");

    let json = doctor(&bt.account, &["--beamtime", &bt.id, "--format", "json"]);
    json.assert_success();
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["ok"], true, "{json}");
    assert_eq!(report["beamtime"], bt.id.as_str());
    assert_eq!(report["checks"].as_array().unwrap().len(), 12);
}

#[test]
fn another_user_is_told_the_beamtime_is_not_theirs_and_exits_1() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest102"));
    let out = doctor(TEST_USER, &["--beamtime", &bt.id]);
    assert_eq!(out.code(), Some(1), "{out}");
    // The beamtime's folder is closed to others: the plugin would not find the file for them either.
    let metadata = out.doctor_check("metadata");
    assert!(metadata.starts_with("FAIL "), "{out}");
    assert!(metadata.contains("you may not look into"), "{out}");
    assert!(out.doctor_check("user").starts_with("skip "), "{out}");
    assert!(out.doctor_check("plugin").starts_with("ok   "), "{out}");

    // Given a root-owned copy of the file, the user and reservation checks speak.
    // Under the facility's name: the plugin, and so doctor, know the id from it.
    let copy = c
        .workdir(TEST_USER, "doctor")
        .join(format!("beamtime-metadata-{}.json", bt.id));
    fs::copy(&bt.metadata_path, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o644)).unwrap();
    let out = doctor(TEST_USER, &["--metadata", copy.to_str().unwrap()]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.doctor_check("metadata").starts_with("ok   "), "{out}");
    assert!(
        out.doctor_check("user").contains(&format!(
            "you are {TEST_USER}; the node refuses (wrong-user): beamtime {} runs as its \
             account '{}'",
            bt.id, bt.account
        )),
        "{out}"
    );
    assert!(
        out.doctor_check("reservation-access").contains(&format!(
            "user {TEST_USER} is not admitted by Users={}",
            bt.account
        )),
        "{out}"
    );

    // The user's own copy is exactly what the plugin refuses.
    let me = UnixUser::get(TEST_USER);
    std::os::unix::fs::chown(&copy, Some(me.uid), Some(me.gid)).unwrap();
    let out = doctor(TEST_USER, &["--metadata", copy.to_str().unwrap()]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.doctor_check("metadata")
            .contains("not by a trusted owner"),
        "{out}"
    );
}

#[test]
fn a_deleted_reservation_fails_the_reservation_check_with_its_name() {
    let c = cluster();
    let bt: Beamtime = c.start_beamtime(&BeamtimeSpec::fresh("bttest103"));
    c.cmd("scontrol")
        .args(["delete", &format!("reservation={}", bt.id)])
        .run()
        .assert_success();
    let out = doctor(&bt.account, &["--beamtime", &bt.id]);
    assert_eq!(out.code(), Some(1), "{out}");
    let reservations = out.doctor_check("reservations");
    assert!(reservations.starts_with("FAIL "), "{out}");
    assert!(
        reservations.ends_with(&format!("reservation {} does not exist", bt.id)),
        "{out}"
    );
    assert!(
        out.doctor_check("reservation-access").starts_with("skip "),
        "{out}"
    );
    assert!(out.doctor_check("nodes").starts_with("ok   "), "{out}");
    assert!(out.doctor_check("partition").starts_with("ok   "), "{out}");
}

/// `scontrol show config` reports the controller's PlugStackConfig; a host
/// whose own slurm.conf loads another plugstack is caught through srun.
#[test]
fn a_host_whose_srun_does_not_load_the_plugin_fails_the_plugin_check() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest104"));
    // A slurm.conf with an empty plugstack: a login node without the package.
    let slurm_conf = c.slurm_conf_without_plugins(&bt.account);
    let out = c
        .as_user(&bt.account, bt_submit())
        .env("SLURM_CONF", &slurm_conf)
        .args(["doctor", "--metadata"])
        .arg(&bt.metadata_path)
        .run();
    assert_eq!(out.code(), Some(1), "{out}");
    let plugin = out.doctor_check("plugin");
    assert!(plugin.starts_with("FAIL "), "{out}");
    assert!(
        plugin.ends_with("but srun here does not offer --beamtime: it does not load the plugin"),
        "{out}"
    );
    for check in [
        "metadata",
        "user",
        "reservations",
        "nodes",
        "beamline-source",
    ] {
        assert!(
            out.doctor_check(check).starts_with("ok   "),
            "{check}:\n{out}"
        );
    }
}

/// srun as `user` of a beamtime job in `reservation`, as the node judges it.
fn srun_in(c: &Cluster, user: &str, bt: &Beamtime, reservation: &str) -> Output {
    c.as_user(user, "srun")
        .cwd(c.workdir(user, "doctor-verdict"))
        .args([
            format!("--beamtime={}", bt.id),
            format!("--partition={}", bt.partition),
            format!("--reservation={reservation}"),
            "-N1".to_owned(),
            "true".to_owned(),
        ])
        .run()
}

/// A metadata file whose account is a system account (uid below min_uid):
/// doctor used to pass the user check by name; now it refuses as srun does.
#[test]
fn a_system_account_is_refused_by_doctor_in_the_words_srun_refuses_it() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest107"));
    // The facility's file (root's), rewritten as a slip would leave it: the
    // account `daemon`, uid 1 on Debian.
    let mut metadata: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&bt.metadata_path).unwrap()).unwrap();
    metadata["onlineAnalysis"]["userAccount"] = "daemon".into();
    fs::write(&bt.metadata_path, metadata.to_string()).unwrap();

    let system_account = "is a system account (uid 1 < 1000)";
    let out = doctor(&bt.account, &["--beamtime", &bt.id]);
    assert_eq!(out.code(), Some(1), "{out}");
    let user = out.doctor_check("user");
    assert!(
        user.starts_with("FAIL ")
            && user.contains("the node refuses (unsafe-account): the beamtime's account 'daemon'")
            && user.ends_with(system_account),
        "{out}"
    );
    assert!(
        out.doctor_check("node-verdict").starts_with("skip "),
        "{out}"
    );

    let srun = srun_in(c, &bt.account, &bt, &bt.id);
    assert!(!srun.success(), "{srun}");
    assert!(srun.stderr.contains(system_account), "{srun}");
    c.assert_node_not_drained();
}

/// A reservation the metadata lists but that is not named after the beamtime
/// (here listed first): doctor used to pass it, the planner used to plan it,
/// and the node refuses jobs in it. Now doctor says the node's words, and
/// bt-submit plans the beamtime's own reservation.
#[test]
fn a_listed_reservation_not_named_after_the_beamtime_is_what_the_node_refuses() {
    let c = cluster();
    let spec = BeamtimeSpec::fresh("bttest108");
    let foreign = &format!("maint{}", spec.id);
    let bt = c.start_beamtime(&spec.clone().reservations(&[foreign, &spec.id]));
    let node_says = format!(
        "the job runs in reservation '{foreign}', which beamtime {}'s metadata lists but which \
         is not named after it",
        bt.id
    );

    let out = doctor(&bt.account, &["--beamtime", &bt.id]);
    out.assert_success();
    let verdict = out.doctor_check("node-verdict");
    assert!(verdict.starts_with("warn "), "{out}");
    assert!(
        verdict.contains(&format!(
            "the node refuses (wrong-reservation): {node_says}"
        )),
        "{out}"
    );
    assert!(
        verdict.ends_with(&format!("bt-submit uses {} instead", bt.id)),
        "{out}"
    );

    let srun = srun_in(c, &bt.account, &bt, foreign);
    assert!(!srun.success(), "{srun}");
    assert!(srun.stderr.contains(&node_says), "{srun}");
    c.assert_node_not_drained();

    let planned = c
        .as_user(&bt.account, bt_submit())
        .cwd(c.workdir(&bt.account, "doctor-verdict"))
        .args(["--beamtime", &bt.id, "--dry-run", "--wrap", "true"])
        .run();
    planned.assert_success();
    assert!(
        planned
            .stdout
            .contains(&format!("--reservation={} ", bt.id)),
        "{planned}"
    );
    let foreign_named = c
        .as_user(&bt.account, bt_submit())
        .args([
            "--beamtime",
            &bt.id,
            "--reservation",
            foreign,
            "--dry-run",
            "--wrap",
            "true",
        ])
        .run();
    assert_eq!(foreign_named.code(), Some(65), "{foreign_named}");
    assert!(
        foreign_named
            .stderr
            .contains("which its metadata lists but which is not named after it"),
        "{foreign_named}"
    );
}
