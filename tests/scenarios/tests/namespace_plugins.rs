//! Slurm 25.11's namespace plugins, which replace job_container/tmpfs: namespace/tmpfs
//! (`cluster.sh up --job-container` from 25.11 on) and namespace/linux
//! (`cluster.sh up --namespace-linux`: the job's own mount, pid and user namespaces,
//! namespace.yaml). Under each, a beamtime job sees its own beamline and no other, a job
//! of someone else is refused by the node, a job without --beamtime sees an empty
//! /beamline, and the node is never drained.
//!
//! #[ignore]d: they need one of those configurations, which the passes `namespace-tmpfs`
//! and `namespace-linux` of scripts/lib.sh bring up and run them in with --ignored.

use scenarios::{assert_host_untouched, cluster, Beamtime, BeamtimeSpec, TEST_USER};

/// The namespace plugin this cluster was brought up with, as `cluster.sh up` recorded
/// it; a cluster without one is the wrong configuration for this file.
fn expected_namespace_type() -> &'static str {
    let c = cluster();
    assert_eq!(
        c.recorded("job_container"),
        "1",
        "namespace_plugins.rs needs a cluster brought up with --job-container (Slurm 25.11+) or --namespace-linux"
    );
    if c.recorded("namespace_linux") == "1" {
        "namespace/linux"
    } else {
        "namespace/tmpfs"
    }
}

fn submit_args(bt: &Beamtime) -> Vec<String> {
    vec![
        format!("--beamtime={}", bt.id),
        format!("--partition={}", bt.partition),
        format!("--reservation={}", bt.reservations[0]),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// What a job reports: its beamline view and the namespaces it runs in.
const LOOK_AROUND: &str = r#"#!/bin/bash
echo "user=$(id -un)"
echo "beamlines=$(ls -A /beamline | tr '\n' ' ')"
cat "/beamline/$BEAMTIME_BEAMLINE/current/raw/detector.txt"
touch "/beamline/$BEAMTIME_BEAMLINE/current/raw/mine" 2>/dev/null && echo raw=writable || echo raw=read-only
touch "/beamline/$BEAMTIME_BEAMLINE/current/processed/job-$SLURM_JOB_ID" && echo processed=writable
echo "pid_ns=$(readlink /proc/self/ns/pid)"
echo "user_ns=$(readlink /proc/self/ns/user)"
"#;

fn put_detector_file(bt: &Beamtime) {
    let raw = bt.current_dir.join("raw/detector.txt");
    std::fs::write(&raw, format!("frame data of {}\n", bt.id)).unwrap();
}

/// This test process's namespace of `kind` (`pid`, `user`): the host's, as slurmd has it.
fn host_namespace(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap_or_else(|e| panic!("cannot read /proc/self/ns/{kind}: {e}"))
        .display()
        .to_string()
}

fn line_value<'a>(output: &'a str, key: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("job output has no {key}=:\n{output}"))
}

#[test]
#[ignore = "needs namespace/tmpfs or namespace/linux (scripts/lib.sh passes namespace-tmpfs, namespace-linux)"]
fn the_configured_namespace_plugin_is_in_use() {
    let c = cluster();
    let expected = expected_namespace_type();
    let config = c.cmd("scontrol").args(["show", "config"]).run();
    config.assert_success();
    let configured = config
        .stdout
        .lines()
        .find(|line| line.starts_with("NamespaceType"))
        .unwrap_or_else(|| {
            panic!(
                "scontrol show config has no NamespaceType (Slurm before 25.11?):\n{}",
                config.stdout
            )
        });
    assert!(
        configured.contains(expected),
        "expected {expected}, slurmctld says: {configured}"
    );
}

#[test]
#[ignore = "needs namespace/tmpfs or namespace/linux (scripts/lib.sh passes namespace-tmpfs, namespace-linux)"]
fn a_beamtime_job_sees_its_own_beamline_and_no_other_inside_the_plugins_namespaces() {
    let c = cluster();
    let expected = expected_namespace_type();
    let bt = c.start_beamtime(&BeamtimeSpec::new("11099241", "p241", "bttest241").partition("all"));
    let other =
        c.start_beamtime(&BeamtimeSpec::new("11099242", "p242", "bttest242").partition("all"));
    put_detector_file(&bt);
    put_detector_file(&other);

    let wd = c.workdir(&bt.account, "namespaces");
    let (job, end) = c.submit_and_wait(&bt.account, &wd, &strs(&submit_args(&bt)), LOOK_AROUND);
    end.assert_completed_ok();
    let output = job.stdout();
    for wanted in [
        format!("user={}", bt.account),
        format!("beamlines={} ", bt.beamline),
        format!("frame data of {}", bt.id),
        "raw=read-only".to_owned(),
        "processed=writable".to_owned(),
    ] {
        assert!(
            output.contains(&wanted),
            "job output lacks {wanted:?}:\n{output}"
        );
    }
    assert!(
        !output.contains(&other.beamline),
        "the job saw the other beamline:\n{output}"
    );
    assert!(bt
        .current_dir
        .join(format!("processed/job-{}", job.id))
        .exists());
    assert!(!bt.current_dir.join("raw/mine").exists());

    // namespace/linux with CLONE_NEWPID and CLONE_NEWUSER puts the job in pid and user
    // namespaces of its own; namespace/tmpfs makes only a mount namespace.
    let own_namespaces = expected == "namespace/linux";
    for kind in ["pid", "user"] {
        let job_ns = line_value(&output, &format!("{kind}_ns"));
        assert_eq!(
            job_ns != host_namespace(kind),
            own_namespaces,
            "{expected}: the job's {kind} namespace is {job_ns}, the host's {}",
            host_namespace(kind)
        );
    }
    c.assert_node_not_drained();
    assert_host_untouched();
}

#[test]
#[ignore = "needs namespace/tmpfs or namespace/linux (scripts/lib.sh passes namespace-tmpfs, namespace-linux)"]
fn another_users_beamtime_job_is_refused_by_the_node_and_the_node_stays_up() {
    let c = cluster();
    expected_namespace_type();
    let bt = c.start_beamtime(&BeamtimeSpec::new("11099243", "p243", "bttest243").partition("all"));
    // With the client's checks bypassed (plugstack without the plugin, the option forged
    // into the step's environment), as a user could: the node must refuse.
    let out = c
        .as_user(TEST_USER, "srun")
        .env("SLURM_CONF", c.slurm_conf_without_plugins(TEST_USER))
        .env("_SLURM_SPANK_OPTION_beamtime_beamtime", &bt.id)
        .args(["bash", "-c", "echo payload-ran"])
        .run();
    c.assert_refused_by_node(
        &out,
        &[&format!(
            "beamtime {} jobs run only as the beamtime's own account",
            bt.id
        )],
    );
}

#[test]
#[ignore = "needs namespace/tmpfs or namespace/linux (scripts/lib.sh passes namespace-tmpfs, namespace-linux)"]
fn a_job_without_beamtime_sees_an_empty_beamline() {
    let c = cluster();
    expected_namespace_type();
    let wd = c.workdir(TEST_USER, "namespaces-plain");
    let (job, end) = c.submit_and_wait(
        TEST_USER,
        &wd,
        &[],
        "#!/bin/bash\necho \"entries=$(ls -A /beamline | wc -l) ${BEAMTIME_ID:-none}\"\n",
    );
    end.assert_completed_ok();
    assert_eq!(job.stdout().trim(), "entries=0 none");
    c.assert_node_not_drained();
}
