//! `bt-submit doctor` against the real cluster: its scontrol, sacctmgr and
//! plugstack reading, as the beamtime's account and as others. The parsing and
//! every check's failure text are unit-tested in bt-submit (src/doctor.rs,
//! src/slurm_text.rs); here each check meets the real Slurm.
//!
//! Nothing here drains the node, downs a partition or rewrites plugstack.conf:
//! other scenarios share the cluster.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use scenarios::{bt_submit, cluster, Beamtime, BeamtimeSpec, Output, UnixUser, NODE, TEST_USER};

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
    let bt = c.start_beamtime(
        &BeamtimeSpec::new("11099101", "p11", "bttest101")
            .reservations(&["11099101", "11099101_1"]),
    );
    let out = doctor(&bt.account, &["--beamtime", &bt.id]);
    out.assert_success();
    for check in [
        "metadata",
        "online-resources",
        "user",
        "reservations",
        "reservation-access",
        "nodes",
        "partition",
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
            .ends_with("11099101, 11099101_1 active"),
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
    out.assert_stdout_contains("all 10 checks passed");

    let json = doctor(&bt.account, &["--beamtime", &bt.id, "--format", "json"]);
    json.assert_success();
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["ok"], true, "{json}");
    assert_eq!(report["beamtime"], bt.id.as_str());
    assert_eq!(report["checks"].as_array().unwrap().len(), 10);
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
            "you are {TEST_USER}, but beamtime {} runs as its account {}",
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
