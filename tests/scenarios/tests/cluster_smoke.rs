//! The test cluster itself works as the plugin's tests assume: ordinary jobs run, accounting
//! is enforced, beamtimes made by beamtime-start.sh admit their account only, and nothing
//! here drains the node. Needs `tests/cluster/cluster.sh up` (with or without
//! `--job-container`) and its `env` in the environment; fails otherwise.

use scenarios::{BeamtimeSpec, Cluster, DEFAULT_ACCOUNT, NODE, TEST_USER};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

#[test]
fn ordinary_users_batch_job_completes_with_its_output() {
    let c = Cluster::from_env();
    let wd = c.workdir(TEST_USER, "batch");
    let (job, end) = c.submit_and_wait(
        TEST_USER,
        &wd,
        &["--job-name=smoke"],
        "#!/bin/bash\necho \"hello from job $SLURM_JOB_ID on $SLURMD_NODENAME as $(id -un)\"\necho to-stderr >&2\n",
    );
    end.assert_completed_ok();
    assert_eq!(
        job.stdout().trim(),
        format!("hello from job {} on {NODE} as {TEST_USER}", job.id)
    );
    assert_eq!(job.stderr().trim(), "to-stderr");
    // Slurm opens the output as the user: the file must be theirs.
    let uid = scenarios::UnixUser::get(TEST_USER).uid;
    assert_eq!(std::fs::metadata(&job.stdout_path).unwrap().uid(), uid);
    // Accounting is real: the job is recorded under the user's default account.
    let (state, exit) = c.wait_accounted(job.id, Duration::from_secs(30));
    assert_eq!((state.as_str(), exit.as_str()), ("COMPLETED", "0:0"));
    let acct = c
        .cmd("sacct")
        .args([
            "-n",
            "-P",
            "-X",
            "-j",
            &job.id.to_string(),
            "-o",
            "Account,User",
        ])
        .run();
    acct.assert_success();
    assert_eq!(acct.stdout.trim(), format!("{DEFAULT_ACCOUNT}|{TEST_USER}"));
    c.assert_node_not_drained();
}

#[test]
fn failing_batch_script_is_failed_with_its_exit_code() {
    let c = Cluster::from_env();
    let wd = c.workdir(TEST_USER, "fail");
    let (_, end) = c.submit_and_wait(TEST_USER, &wd, &[], "#!/bin/bash\nexit 3\n");
    assert_eq!(
        (end.state.as_str(), end.exit_code),
        ("FAILED", 3),
        "{end:#?}"
    );
    c.assert_node_not_drained();
}

#[test]
fn srun_runs_a_one_task_job() {
    let c = Cluster::from_env();
    let wd = c.workdir(TEST_USER, "srun");
    let out = c.run_as(TEST_USER, &wd, &["srun", "-n1", "-t", "1", "hostname"]);
    out.assert_success();
    // The node is this machine under another name.
    let host = c.cmd("hostname").run();
    assert_eq!(
        out.stdout.trim(),
        host.assert_success().stdout.trim(),
        "{out}"
    );
    let out = c.run_as(
        TEST_USER,
        &wd,
        &["srun", "-n1", "-t", "1", "printenv", "SLURMD_NODENAME"],
    );
    assert_eq!(out.assert_success().stdout.trim(), NODE, "{out}");
    c.assert_node_not_drained();
}

#[test]
fn salloc_then_srun_runs_steps_in_the_allocation() {
    let c = Cluster::from_env();
    let wd = c.workdir(TEST_USER, "salloc");
    let out = c.run_as(
        TEST_USER,
        &wd,
        &[
            "salloc",
            "-N1",
            "-t",
            "1",
            "srun",
            "-n1",
            "bash",
            "-c",
            "echo step $SLURM_JOB_ID.$SLURM_STEP_ID",
        ],
    );
    out.assert_success();
    assert!(
        out.stdout.trim().starts_with("step ") && out.stdout.trim().ends_with(".0"),
        "{out}"
    );
    c.assert_node_not_drained();
}

#[test]
fn accounting_is_enforced_for_unknown_accounts() {
    let c = Cluster::from_env();
    let wd = c.workdir(TEST_USER, "badacct");
    let out = c.sbatch(
        TEST_USER,
        &wd,
        &["--account=nosuchaccount"],
        "#!/bin/bash\ntrue\n",
    );
    out.assert_failure();
    out.assert_stderr_contains("Invalid account");
}

#[test]
fn beamtime_reservation_admits_its_account_and_refuses_others() {
    let c = Cluster::from_env();
    // Hand-picked: p11's partition ponline_p11 of the test slurm.conf is what this proves.
    let bt = c.start_beamtime(&BeamtimeSpec::new("11099101", "p11", "bttest11"));
    assert_eq!(bt.partition, "ponline_p11");

    let res = c
        .reservation("11099101")
        .expect("reservation 11099101 exists");
    assert_eq!(res["Users"], "bttest11");
    assert_eq!(res["Nodes"], NODE);
    assert!(res["Flags"].contains("IGNORE_JOBS"), "{res:?}");
    let shown = c.cmd("scontrol").args(["show", "res"]).run();
    shown
        .assert_success()
        .assert_stdout_contains("ReservationName=11099101");

    // The beamtime's account submits into its reservation and partition, under the
    // Slurm account named after the beamtime.
    let wd = c.workdir(&bt.account, "bt");
    let args = ["--reservation=11099101", "--partition=ponline_p11"];
    let (job, end) = c.submit_and_wait(
        &bt.account,
        &wd,
        &args,
        "#!/bin/bash\necho $SLURM_JOB_RESERVATION $SLURM_JOB_ACCOUNT\n",
    );
    end.assert_completed_ok();
    assert_eq!(job.stdout().trim(), "11099101 11099101");

    // Anyone else is refused by Slurm itself.
    let wd = c.workdir(TEST_USER, "bt-denied");
    let out = c.sbatch(TEST_USER, &wd, &args, "#!/bin/bash\ntrue\n");
    out.assert_failure().assert_stderr_contains("Access denied");
    let out = c.run_as(
        TEST_USER,
        &wd,
        &["srun", "-n1", "-t", "1", "--reservation=11099101", "true"],
    );
    out.assert_failure().assert_stderr_contains("Access denied");

    // A core reservation leaves the rest of the node to ordinary jobs.
    let out = c.run_as(TEST_USER, &wd, &["srun", "-n1", "-t", "1", "true"]);
    out.assert_success();
    c.assert_node_not_drained();
}

#[test]
fn beamtime_folder_and_metadata_look_like_the_facilitys() {
    let c = Cluster::from_env();
    // Hand-picked: the facility's layout on p21, in slurm.conf's ponline_p21, is what this proves.
    let bt = c.start_beamtime(
        &BeamtimeSpec::new("11099105", "p21", "bttest15").reservations(&["11099105", "11099105_1"]),
    );

    // Keys sorted, 4-space indent, as the facility writes it: re-serialising the parsed
    // file that way (serde_json's map is sorted) must give the same text.
    let text = std::fs::read_to_string(&bt.metadata_path).unwrap();
    let meta = bt.metadata();
    let mut canonical = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    serde::Serialize::serialize(
        &meta,
        &mut serde_json::Serializer::with_formatter(&mut canonical, fmt),
    )
    .unwrap();
    assert_eq!(text.trim_end(), String::from_utf8(canonical).unwrap());
    assert_eq!(meta["beamtimeId"], "11099105");
    assert_eq!(meta["beamline"], "p21");
    let oa = &meta["onlineAnalysis"];
    assert_eq!(oa["userAccount"], "bttest15");
    assert_eq!(oa["slurmPartition"], "ponline_p21");
    assert_eq!(
        oa["slurmReservation"],
        serde_json::json!(["11099105", "11099105_1"])
    );
    assert_eq!(oa["reservedNodes"], serde_json::json!([NODE]));
    assert_eq!(oa["sshPrivateKeyPath"], "shared/id_rsa");

    // Trusted owner: root, not writable by anyone else.
    let m = std::fs::metadata(&bt.metadata_path).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o644));
    assert_eq!(bt.metadata_path.parent().unwrap(), bt.current_dir);
    let user = scenarios::UnixUser::get("bttest15");
    for (sub, uid, mode) in [
        ("", 0, 0o750),
        ("raw", 0, 0o750),
        ("processed", user.uid, 0o2770),
        ("shared", user.uid, 0o2770),
        ("scratch_bl", user.uid, 0o2770),
    ] {
        let m = std::fs::metadata(bt.current_dir.join(sub)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (uid, user.gid, mode),
            "current/{sub}"
        );
    }
    // Both reservations work for the account; an ordinary user cannot even read the folder.
    let wd = c.workdir("bttest15", "bt2");
    let (_, end) = c.submit_and_wait(
        "bttest15",
        &wd,
        &["--reservation=11099105_1", "-p", "ponline_p21"],
        "#!/bin/bash\ntrue\n",
    );
    end.assert_completed_ok();
    let out = c.run_as(
        TEST_USER,
        &c.workdir(TEST_USER, "peek"),
        &["ls", bt.current_dir.to_str().unwrap()],
    );
    out.assert_failure()
        .assert_stderr_contains("Permission denied");
    c.assert_node_not_drained();
}

#[test]
fn beamtime_without_online_resources_has_no_reservation() {
    let c = Cluster::from_env();
    // Hand-picked: the step below asks for slurm.conf's ponline_p07, a beamline's own partition.
    let bt = c.start_beamtime(&BeamtimeSpec::new("11099103", "p07", "bttest13").no_online());
    assert!(bt.reservations.is_empty());
    assert!(c.reservation("11099103").is_none());
    assert!(bt.metadata().get("onlineAnalysis").is_none());
    // The account still exists in Slurm and may run ordinary jobs.
    let wd = c.workdir("bttest13", "noonline");
    let out = c.run_as(
        "bttest13",
        &wd,
        &["srun", "-n1", "-t", "1", "-p", "ponline_p07", "true"],
    );
    out.assert_success();
}

/// /tmp is private to each job exactly when the cluster runs job_container/tmpfs
/// (namespace/tmpfs, under the key NamespaceType, from Slurm 25.11 on).
#[test]
fn job_tmp_matches_the_job_container_configuration() {
    let c = Cluster::from_env();
    let config = c.cmd("scontrol").args(["show", "config"]).run();
    config.assert_success();
    let tmpfs = config.stdout.lines().any(|l| {
        (l.starts_with("JobContainerType") && l.contains("job_container/tmpfs"))
            || (l.starts_with("NamespaceType") && l.contains("namespace/tmpfs"))
    });
    let wd = c.workdir(TEST_USER, "jobtmp");
    let marker = format!(
        "/tmp/bt-harness-{}-{}",
        std::process::id(),
        wd.file_name().unwrap().to_string_lossy()
    );
    let (_, end) = c.submit_and_wait(
        TEST_USER,
        &wd,
        &[],
        &format!("#!/bin/bash\ntouch {marker}\n"),
    );
    end.assert_completed_ok();
    let on_host = std::path::Path::new(&marker).exists();
    let _ = std::fs::remove_file(&marker);
    assert_eq!(
        on_host, !tmpfs,
        "job_container/tmpfs configured: {tmpfs}; job's /tmp file visible on the host: {on_host}"
    );
}
