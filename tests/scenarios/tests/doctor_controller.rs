//! `bt-submit doctor` on a host that cannot reach the Slurm controller, and on one that is
//! no Slurm host at all (the beamline computer): one cause, told once, every check that
//! would ask the controller skipped, a non-zero exit within 15 s, each line written as its
//! check finishes. The order and the skipping are unit-tested in bt-submit
//! (src/commands/doctor/tests.rs); here scontrol itself meets a controller that is not
//! there.
//!
//! The controller this host sees is the cluster's, moved in a copy of slurm.conf: to a
//! port where nothing listens (a stopped slurmctld: the connection is refused), and to a
//! port that takes connections and never answers (a hung one). Stopping the cluster's own
//! slurmctld would fail the scenarios that run beside these.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scenarios::{bt_submit, cluster, Beamtime, BeamtimeSpec, Output};

/// The bound for a host whose controller is gone.
const WITHIN: Duration = Duration::from_secs(15);

/// The checks that ask the controller, as doctor orders them after the user check.
const ASK_THE_CONTROLLER: [&str; 8] = [
    "reservations",
    "reservation-access",
    "nodes",
    "partition",
    "node-verdict",
    "plugin",
    "beamline-source",
    "task-lifetime",
];

/// A copy of the cluster's slurm.conf, readable by `bt`'s account, whose controller
/// listens on `port` of the same address.
fn slurm_conf_with_controller_port(bt: &Beamtime, label: &str, port: u16) -> PathBuf {
    let c = cluster();
    let dir = c.workdir(&bt.account, label);
    let text = fs::read_to_string(c.slurm_conf()).expect("read slurm.conf");
    assert!(
        text.lines().any(|l| l.starts_with("SlurmctldPort=")),
        "the cluster's slurm.conf names no SlurmctldPort:\n{text}"
    );
    let conf: String = text
        .lines()
        .map(|line| match line.starts_with("SlurmctldPort=") {
            true => format!("SlurmctldPort={port}\n"),
            false => format!("{line}\n"),
        })
        .collect();
    let path = dir.join("slurm.conf");
    fs::write(&path, conf).expect("write slurm.conf");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod slurm.conf");
    path
}

/// doctor for `bt`'s metadata, as its account, with this slurm.conf, or with none.
fn doctor_with(bt: &Beamtime, slurm_conf: Option<&Path>) -> Output {
    let cmd = cluster().as_user(&bt.account, bt_submit());
    let cmd = match slurm_conf {
        Some(conf) => cmd.env("SLURM_CONF", conf),
        None => cmd.env_remove("SLURM_CONF"),
    };
    cmd.args(["doctor", "--metadata"])
        .arg(&bt.metadata_path)
        .timeout(Duration::from_secs(120))
        .run()
}

/// One FAIL, the controller's, first; the metadata still checked; every check that asks
/// the controller skipped with a pointer to it; exit 1 within the bound.
#[track_caller]
fn assert_one_cause(out: &Output, cause: &str) {
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.elapsed < WITHIN,
        "doctor took {:?}, more than {WITHIN:?}:\n{out}",
        out.elapsed
    );
    let controller = out.doctor_check("controller");
    assert!(
        controller.starts_with(&format!("FAIL controller         {cause}")),
        "{out}"
    );
    let failed: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL "))
        .collect();
    assert_eq!(failed, [controller], "{out}");
    assert!(out.doctor_check("metadata").starts_with("ok   "), "{out}");
    for check in ASK_THE_CONTROLLER {
        assert!(
            out.doctor_check(check)
                .ends_with("not checked: needs controller"),
            "{check}:\n{out}"
        );
    }
}

#[test]
fn a_stopped_controller_is_one_cause_and_doctor_ends_at_once() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest110"));
    // A port nobody listens on: bound, then let go.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = slurm_conf_with_controller_port(&bt, "ctld-stopped", port);
    let out = doctor_with(&bt, Some(&conf));
    assert_one_cause(&out, "this host cannot reach the Slurm controller: ");
    assert!(
        out.stdout.contains("fix: every other Slurm check needs it"),
        "{out}"
    );
    eprintln!("doctor with a stopped controller: {:?}", out.elapsed);
}

#[test]
fn a_controller_that_never_answers_is_asked_once() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest111"));
    // Takes connections (the kernel's backlog) and never says a word: a hung slurmctld.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = mute.local_addr().unwrap().port();
    let conf = slurm_conf_with_controller_port(&bt, "ctld-mute", port);
    let out = doctor_with(&bt, Some(&conf));
    assert_one_cause(&out, "this host cannot reach the Slurm controller: ");
    eprintln!("doctor with a mute controller: {:?}", out.elapsed);
    drop(mute);
}

#[test]
fn without_slurm_doctor_points_to_remote() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest112"));
    // The beamline computer: no slurm.conf, and no DNS record of a controller to fetch
    // one from (configless Slurm), so scontrol has no configuration at all.
    let default_conf = Path::new("/etc/slurm/slurm.conf");
    assert!(
        !default_conf.exists(),
        "{} exists on this host: the test cluster's hosts have no Slurm configuration of \
         their own (SLURM_CONF names the test cluster's)",
        default_conf.display()
    );
    let out = doctor_with(&bt, None);
    assert_one_cause(&out, "this is no Slurm host: ");
    assert!(out.stdout.contains("bt-submit --remote"), "{out}");
}
