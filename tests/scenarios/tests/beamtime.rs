//! spank-beamtime on the real cluster: every user-visible promise of the
//! plugin, each checked for its message, exit status, job state, the node's
//! state and what is left on the host.
//!
//! Run by scripts/test-all.sh with the freshly built plugin in plugstack.conf,
//! once plainly and once with job_container/tmpfs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use scenarios::{
    assert_host_untouched, assert_refused_by_client, cluster, Beamtime, BeamtimeSpec, Cluster,
    Output, UnixUser, NODE, TEST_USER,
};

/// A refused task's exit status (EX_NOPERM).
const REFUSED: i32 = 77;

/// The beamtime most scenarios use: beamline p11, account bttest01, one reservation.
/// Hand-picked: the facility's road, slurm.conf's partition ponline_p11, not `all`.
fn good() -> &'static Beamtime {
    static GOOD: OnceLock<Beamtime> = OnceLock::new();
    GOOD.get_or_init(|| cluster().start_beamtime(&BeamtimeSpec::new("11099001", "p11", "bttest01")))
}

/// The node's refusal as the user sees it on srun's stderr or in the job's .err file.
fn node_refusal(job: impl std::fmt::Display) -> String {
    format!("spank-beamtime: error: job {job} refused on {NODE}: ")
}

/// What a user does to run srun/sbatch without the plugin's client-side checks.
fn bypass_conf(user: &str) -> PathBuf {
    cluster().slurm_conf_without_plugins(user)
}

/// The option as srun/sbatch would pass it to the node, set by hand.
const FORGED_OPTION: &str = "_SLURM_SPANK_OPTION_beamtime_beamtime";

/// srun with the client plugin bypassed and the option forged into the step's environment.
fn bypassed_srun(user: &str, beamtime: &str, extra: &[&str], command: &[&str]) -> Output {
    let c = cluster();
    c.as_user(user, "srun")
        .env("SLURM_CONF", bypass_conf(user))
        .env(FORGED_OPTION, beamtime)
        .args(extra)
        .args(command)
        .run()
}

/// Writes the beamtime's metadata file again, root-owned 0644 as the start script does.
fn rewrite_metadata(bt: &Beamtime, change: impl FnOnce(&mut serde_json::Value)) {
    let mut metadata = bt.metadata();
    change(&mut metadata);
    let text = serde_json::to_string_pretty(&metadata).unwrap();
    let staging = bt.metadata_path.with_extension("new");
    fs::write(&staging, text).unwrap();
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o644)).unwrap();
    fs::rename(&staging, &bt.metadata_path).unwrap();
}

/// Mount points at or below /beamline in the host's mount table.
fn job_container_enabled() -> bool {
    cluster().recorded("job_container") == "1"
}

/// What a job reports about its view of the beamline.
const LOOK_AROUND: &str = r#"#!/bin/bash
echo "user=$(id -un)"
env | grep '^BEAMTIME_' | sort
echo "beamlines=$(ls -A /beamline | tr '\n' ' ')"
echo "current=$(ls -A "/beamline/$BEAMTIME_BEAMLINE/current" | sort | tr '\n' ' ')"
cat "/beamline/$BEAMTIME_BEAMLINE/current/raw/detector.txt"
touch "/beamline/$BEAMTIME_BEAMLINE/current/raw/mine" 2>/dev/null && echo raw=writable || echo raw=read-only
touch "/beamline/$BEAMTIME_BEAMLINE/current/processed/job-$SLURM_JOB_ID" && echo processed=writable
touch "/beamline/$BEAMTIME_BEAMLINE/current/new-file" 2>/dev/null && echo top=writable || echo top=read-only
touch /beamline/intruder 2>/dev/null && echo hide-root=writable || echo hide-root=read-only
echo "core=$BEAMTIME_CORE_PATH"
"#;

fn put_detector_file(bt: &Beamtime) {
    let raw = bt.current_dir.join("raw/detector.txt");
    fs::write(&raw, format!("frame data of {}\n", bt.id)).unwrap();
    fs::set_permissions(&raw, fs::Permissions::from_mode(0o644)).unwrap();
}

#[track_caller]
fn assert_saw_its_beamline(bt: &Beamtime, output: &str) {
    for expected in [
        format!("user={}", bt.account),
        format!("BEAMTIME_ID={}", bt.id),
        format!("BEAMTIME_BEAMLINE={}", bt.beamline),
        format!("BEAMTIME_BEAMLINE_PATH=/beamline/{}/current", bt.beamline),
        format!("beamlines={} ", bt.beamline),
        "current=beamtime-metadata-".to_owned(),
        format!("frame data of {}", bt.id),
        "raw=read-only".to_owned(),
        "processed=writable".to_owned(),
        "top=read-only".to_owned(),
        "hide-root=read-only".to_owned(),
        "BEAMTIME_CORE_PATH=/asap3/".to_owned(),
    ] {
        assert!(
            output.contains(&expected),
            "job output lacks {expected:?}:\n{output}"
        );
    }
}

#[test]
fn sbatch_job_sees_only_its_own_beamline() {
    let c = cluster();
    let bt = good();
    // Another beamtime on another beamline of the same node: the job must not see it.
    let other = c.start_beamtime(&BeamtimeSpec::fresh("bttest02"));
    put_detector_file(bt);
    put_detector_file(&other);
    let log = c.log_cursor("slurmd.log");

    let wd = c.workdir(&bt.account, "sbatch");
    let job = c.submit_beamtime_job(bt, &wd, &[], LOOK_AROUND);
    let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
    end.assert_completed_ok();
    let output = job.stdout();
    assert_saw_its_beamline(bt, &output);
    assert!(
        !output.contains(&other.beamline),
        "the job saw the other beamline:\n{output}"
    );
    assert!(bt
        .current_dir
        .join(format!("processed/job-{}", job.id))
        .exists());
    assert!(!bt.current_dir.join("raw/mine").exists());

    let logged = log.read_new();
    assert!(
        logged.contains(&format!(
            "spank-beamtime: job={} step=batch uid={} beamtime={} node={NODE} decision=accepted phase=online reservation={}",
            job.id,
            UnixUser::get(&bt.account).uid,
            bt.id,
            bt.reservations[0]
        )),
        "slurmd.log lacks the decision:\n{logged}"
    );
    c.assert_node_not_drained();
    assert_host_untouched();
}

#[test]
fn sbatch_directives_in_the_script_work() {
    let c = cluster();
    let bt = good();
    put_detector_file(bt);
    let script = format!(
        "#!/bin/bash\n#SBATCH --beamtime={}\n#SBATCH --partition={}\n#SBATCH --reservation={}\n{}",
        bt.id,
        bt.partition,
        bt.reservations[0],
        LOOK_AROUND.trim_start_matches("#!/bin/bash\n")
    );
    let wd = c.workdir(&bt.account, "directives");
    let (job, end) = c.submit_and_wait(&bt.account, &wd, &[], &script);
    end.assert_completed_ok();
    assert_saw_its_beamline(bt, &job.stdout());
}

#[test]
fn srun_and_salloc_run_as_the_beamtime() {
    let c = cluster();
    let bt = good();
    put_detector_file(bt);
    let wd = c.workdir(&bt.account, "interactive");
    let show = "echo $BEAMTIME_ID; ls -A /beamline; cat /beamline/p11/current/raw/detector.txt";

    let out = c
        .beamtime_srun(bt)
        .cwd(&wd)
        .args(["bash", "-c", show])
        .run();
    out.assert_success()
        .assert_stdout_contains(&format!("{}\np11\nframe data of {}", bt.id, bt.id));

    let out = c
        .as_user(&bt.account, "salloc")
        .cwd(&wd)
        .args(bt.job_options())
        .args(["srun", "bash", "-c", show])
        .run();
    out.assert_success()
        .assert_stdout_contains(&format!("{}\np11\nframe data of {}", bt.id, bt.id));
    c.assert_node_not_drained();
}

#[test]
fn srun_inside_a_beamtime_batch_job_inherits_the_beamtime() {
    let c = cluster();
    let bt = good();
    let wd = c.workdir(&bt.account, "inherit");
    let script = "#!/bin/bash\nsrun bash -c 'echo step=$BEAMTIME_ID; ls -A /beamline'\necho srun-status=$?\n";
    let job = c.submit_beamtime_job(bt, &wd, &[], script);
    let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
    end.assert_completed_ok();
    let output = job.stdout();
    assert!(
        output.contains(&format!("step={}\np11\nsrun-status=0", bt.id)),
        "{output}"
    );
}

#[test]
fn the_second_reservation_of_a_dedicated_beamtime_is_accepted() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest05").second_reservation());
    let log = c.log_cursor("slurmd.log");
    let out = c
        .as_user(&bt.account, "srun")
        .args([
            format!("--beamtime={}", bt.id),
            format!("--partition={}", bt.partition),
        ])
        .arg(format!("--reservation={}_1", bt.id))
        .args(["bash", "-c", "echo $BEAMTIME_ID; ls -A /beamline"])
        .run();
    out.assert_success()
        .assert_stdout_contains(&format!("{}\n{}", bt.id, bt.beamline));
    assert!(log.read_new().contains(&format!(
        "beamtime={0} node=btnode1 decision=accepted phase=online reservation={0}_1",
        bt.id
    )));
}

#[test]
fn another_user_is_refused_before_submitting_and_on_the_node() {
    let c = cluster();
    let bt = good();
    let wd = c.workdir(TEST_USER, "wrong-user");
    // The beamtime folder is open to its members only, so the client cannot even read the file.
    let out = c.sbatch(
        TEST_USER,
        &wd,
        &[&format!("--beamtime={}", bt.id)],
        "#!/bin/bash\ntrue\n",
    );
    assert_refused_by_client(&out, "sbatch", &["you may not look into"]);
    assert!(out.stderr.contains("work as its account"), "{out}");

    // With the client's checks bypassed, the node refuses: srun …
    // The node read the metadata as root; the refused user may not read it, so
    // the account's name stays in slurmd's log.
    let log = c.log_cursor("slurmd.log");
    let out = bypassed_srun(TEST_USER, &bt.id, &[], &["true"]);
    cluster().assert_refused_by_node(
        &out,
        &[&format!(
            "beamtime {} jobs run only as the beamtime's own account",
            bt.id
        )],
    );
    assert!(
        out.stderr
            .contains(&format!("bt-submit show --beamtime {}", bt.id)),
        "no hint:\n{out}"
    );
    assert!(
        !out.stderr.contains(&bt.account),
        "the account leaked to a stranger:\n{out}"
    );
    let logged = log.read_new();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("rule=wrong-user") && l.contains(&bt.account)),
        "slurmd.log lacks the account for the admin:\n{logged}"
    );

    // … and a batch job fails (not the node) with the message in its .err file.
    let out = c
        .as_user(TEST_USER, "sbatch")
        .cwd(&wd)
        .env("SLURM_CONF", bypass_conf(TEST_USER))
        .env(FORGED_OPTION, &bt.id)
        .args(["--parsable", "-o"])
        .arg(wd.join("slurm-%j.out"))
        .arg("-e")
        .arg(wd.join("slurm-%j.err"))
        .args(["--wrap", "echo the payload ran"])
        .run();
    let id = out.job_id();
    let end = c.wait_job(id, scenarios::DEFAULT_TIMEOUT);
    assert_eq!(
        (end.state.as_str(), end.exit_code),
        ("FAILED", REFUSED),
        "{end:#?}"
    );
    let stderr = fs::read_to_string(wd.join(format!("slurm-{id}.err"))).unwrap();
    assert!(stderr.contains(&node_refusal(id)), "{stderr}");
    assert!(
        stderr.contains("jobs run only as the beamtime's own account"),
        "{stderr}"
    );
    let stdout = fs::read_to_string(wd.join(format!("slurm-{id}.out"))).unwrap_or_default();
    assert!(
        !stdout.contains("the payload ran"),
        "the refused job ran: {stdout}"
    );
    c.assert_node_not_drained();
}

#[test]
fn a_job_outside_the_reservation_is_refused_even_with_a_forged_environment() {
    let c = cluster();
    let bt = good();
    let wd = c.workdir(&bt.account, "no-reservation");
    let out = c
        .as_user(&bt.account, "srun")
        .cwd(&wd)
        .args([
            format!("--beamtime={}", bt.id),
            format!("--partition={}", bt.partition),
        ])
        .args(["echo", "the payload ran"])
        .run();
    cluster().assert_refused_by_node(&out, &["the job runs outside a reservation"]);
    assert!(
        out.stderr
            .contains(&format!("Submit with --reservation={}", bt.id)),
        "{out}"
    );
    assert!(!out.stdout.contains("the payload ran"), "{out}");

    // The step environment is the user's: the plugin asks the controller instead.
    // (SLURM_RESERVATION would be a real request for the reservation, read by srun.)
    let out = c
        .as_user(&bt.account, "srun")
        .cwd(&wd)
        .env("SLURM_JOB_RESERVATION", &bt.id)
        .args([
            format!("--beamtime={}", bt.id),
            format!("--partition={}", bt.partition),
        ])
        .args(["echo", "the payload ran"])
        .run();
    cluster().assert_refused_by_node(&out, &["the job runs outside a reservation"]);
}

#[test]
fn a_reservation_that_is_not_the_beamtimes_is_refused() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest06"));
    // An admin's reservation that happens to admit the beamtime account.
    let maintenance = format!("maintenance_{}", bt.beamline);
    c.create_reservation(&maintenance, &bt.account);
    let out = c
        .as_user(&bt.account, "srun")
        .args([
            &format!("--beamtime={}", bt.id),
            "--partition=all",
            &format!("--reservation={maintenance}"),
            "true",
        ])
        .run();
    cluster().assert_refused_by_node(
        &out,
        &[&format!(
            "the job runs in reservation '{maintenance}', which is not one of beamtime {0}'s ({0})",
            bt.id
        )],
    );
}

#[test]
fn a_node_outside_reserved_nodes_is_refused() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest07"));
    rewrite_metadata(&bt, |m| {
        m["onlineAnalysis"]["reservedNodes"] = serde_json::json!(["max-p3a999"])
    });
    let out = c.beamtime_srun(&bt).arg("true").run();
    cluster().assert_refused_by_node(
        &out,
        &[&format!(
            "node btnode1 is not one of beamtime {}'s reserved nodes (max-p3a999)",
            bt.id
        )],
    );
}

#[test]
fn hostile_ids_are_refused_on_both_sides() {
    let c = cluster();
    let wd = c.workdir(TEST_USER, "hostile");
    for id in [
        "../../etc",
        "11099001/..",
        "a\nb",
        "é",
        &"9".repeat(200),
        ".hidden",
        "-x",
    ] {
        let out = c.sbatch(
            TEST_USER,
            &wd,
            &[&format!("--beamtime={id}")],
            "#!/bin/bash\ntrue\n",
        );
        assert_refused_by_client(&out, "sbatch", &["invalid beamtime id"]);
        let out = bypassed_srun(TEST_USER, id, &[], &["true"]);
        cluster().assert_refused_by_node(&out, &["invalid beamtime id"]);
        assert!(
            !out.stderr.contains("a\nb"),
            "a raw newline reached the message:\n{out}"
        );
    }
}

/// A beamtime without online resources whose metadata the test then damages.
fn damaged_beamtime(account: &str) -> Beamtime {
    cluster().start_beamtime(&BeamtimeSpec::fresh(account).no_online())
}

/// Both sides refuse: sbatch before a job exists, and the node when the client is bypassed.
#[track_caller]
fn assert_refused_everywhere(bt: &Beamtime, expected: &str) {
    let c = cluster();
    let wd = c.workdir(&bt.account, "refused");
    let out = c.sbatch(
        &bt.account,
        &wd,
        &[&format!("--beamtime={}", bt.id), "--partition=all"],
        "#!/bin/bash\ntrue\n",
    );
    assert_refused_by_client(&out, "sbatch", &[expected]);
    let out = bypassed_srun(&bt.account, &bt.id, &["--partition=all"], &["true"]);
    cluster().assert_refused_by_node(&out, &[expected]);
}

#[test]
fn missing_metadata_is_refused() {
    let bt = damaged_beamtime("bttest10");
    fs::remove_file(&bt.metadata_path).unwrap();
    assert_refused_everywhere(&bt, &format!("no metadata file for beamtime {}", bt.id));
}

#[test]
fn malformed_metadata_is_refused_with_file_and_position() {
    let bt = damaged_beamtime("bttest11");
    fs::write(
        &bt.metadata_path,
        format!(
            "{{\n    \"beamtimeId\": \"{}\",\n    \"beamline\": \n",
            bt.id
        ),
    )
    .unwrap();
    assert_refused_everywhere(&bt, &format!("{}:4:", bt.metadata_path.display()));
}

#[test]
fn symlinked_metadata_is_refused() {
    let bt = damaged_beamtime("bttest12");
    let real = bt.current_dir.join("shared/real-metadata.json");
    fs::rename(&bt.metadata_path, &real).unwrap();
    std::os::unix::fs::symlink(&real, &bt.metadata_path).unwrap();
    assert_refused_everywhere(&bt, "is not trusted: it is a symbolic link");
}

#[test]
fn metadata_of_an_untrusted_owner_is_refused() {
    let bt = damaged_beamtime("bttest13");
    let account = UnixUser::get(&bt.account).uid;
    std::os::unix::fs::chown(&bt.metadata_path, Some(account), None).unwrap();
    assert_refused_everywhere(
        &bt,
        &format!("owned by uid {account}, not by a trusted owner (uid 0)"),
    );
}

#[test]
fn group_writable_metadata_is_refused() {
    let bt = damaged_beamtime("bttest14");
    fs::set_permissions(&bt.metadata_path, fs::Permissions::from_mode(0o664)).unwrap();
    assert_refused_everywhere(&bt, "writable by group or others (mode 0664)");
}

#[test]
fn pre_start_metadata_is_refused_as_not_ready() {
    let bt = damaged_beamtime("bttest15");
    rewrite_metadata(&bt, |m| {
        m["onlineAnalysis"] = serde_json::json!({
            "reservedNodes": [], "slurmPartition": null, "slurmReservation": null,
            "userAccount": null, "sshPrivateKeyPath": null, "sshPublicKeyPath": null
        })
    });
    assert_refused_everywhere(
        &bt,
        &format!("beamtime {} has no online analysis resources yet", bt.id),
    );
}

#[test]
fn a_job_without_beamtime_is_untouched() {
    let c = cluster();
    let log = c.log_cursor("slurmd.log");
    let wd = c.workdir(TEST_USER, "plain");
    let script = "#!/bin/bash\nenv | grep -c '^BEAMTIME_' || true\nls -A /beamline | wc -l\ngrep -c ' /beamline' /proc/self/mountinfo || true\n";
    let (job, end) = c.submit_and_wait(TEST_USER, &wd, &[], script);
    end.assert_completed_ok();
    assert_eq!(
        job.stdout(),
        "0\n0\n0\n",
        "the plain job saw something of the plugin"
    );
    let out = c.run_as(
        TEST_USER,
        &wd,
        &["srun", "bash", "-c", "ls -A /beamline | wc -l"],
    );
    out.assert_success().assert_stdout_contains("0");
    let logged = log.read_new();
    assert!(
        !logged
            .lines()
            .any(|l| l.contains("spank-beamtime") && l.contains(&format!("job={} ", job.id))),
        "the plugin logged about a plain job:\n{logged}"
    );
}

#[test]
fn bt_submit_submits_a_beamtime_job() {
    let c = cluster();
    let bt = good();
    put_detector_file(bt);
    let bt_submit = scenarios::bt_submit();
    let wd = c.workdir(&bt.account, "bt-submit");
    let script = wd.join("look.sh");
    fs::write(&script, LOOK_AROUND).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let out = c
        .as_user(&bt.account, &bt_submit)
        .cwd(&wd)
        .arg("--metadata")
        .arg(&bt.metadata_path)
        .args(["--parsable", "-o"])
        .arg(wd.join("out-%j.txt"))
        .arg(&script)
        .run();
    let id = out.job_id();
    c.wait_job(id, scenarios::DEFAULT_TIMEOUT)
        .assert_completed_ok();
    assert_saw_its_beamline(
        bt,
        &fs::read_to_string(wd.join(format!("out-{id}.txt"))).unwrap(),
    );
}

#[test]
fn the_beamline_and_job_container_tmpfs_work_together() {
    let c = cluster();
    let bt = good();
    let wd = c.workdir(&bt.account, "container");
    let marker = format!("/tmp/spank-beamtime-marker-{}", std::process::id());
    let script = format!("#!/bin/bash\ntouch {marker}\nls -A /beamline\n");
    let job = c.submit_beamtime_job(bt, &wd, &[], &script);
    let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
    end.assert_completed_ok();
    assert_eq!(job.stdout(), "p11\n");
    let visible_on_host = Path::new(&marker).exists();
    let _ = fs::remove_file(&marker);
    assert_eq!(
        visible_on_host,
        !job_container_enabled(),
        "/tmp must be private to the job exactly when job_container/tmpfs is configured"
    );
}

#[test]
fn fifty_jobs_in_a_row_leave_nothing_behind() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest20").cores(2));
    let wd = c.workdir(&bt.account, "fifty");
    let mut ids = Vec::new();
    for n in 0..50 {
        let script = format!(
            "#!/bin/bash\ntouch /beamline/{}/current/processed/job-{n}\n",
            bt.beamline
        );
        ids.push(c.submit_beamtime_job(&bt, &wd, &[], &script).id);
    }
    for id in ids {
        c.wait_job(id, Duration::from_secs(300))
            .assert_completed_ok();
    }
    for n in 0..50 {
        assert!(
            bt.current_dir.join(format!("processed/job-{n}")).exists(),
            "job {n} left no file"
        );
    }
    c.assert_node_not_drained();
    assert_host_untouched();
}

#[test]
fn a_writable_subfolder_swapped_for_a_symlink_is_refused() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest21"));
    let victim = c.start_beamtime(&BeamtimeSpec::fresh("bttest22").no_online());
    // A site where members may write the top of the beamline folder: a participant
    // swaps processed/ for a link to another beamtime's folder, hoping for it read-write.
    std::os::unix::fs::chown(&bt.current_dir, Some(UnixUser::get(&bt.account).uid), None).unwrap();
    let wd = c.workdir(&bt.account, "swap");
    let current = bt.current_dir.display().to_string();
    let swap = format!(
        "mv {current}/processed {current}/processed.real && ln -s {}/processed {current}/processed",
        victim.current_dir.display()
    );
    c.run_as(&bt.account, &wd, &["bash", "-c", &swap])
        .assert_success();

    let job = c.submit_beamtime_job(&bt, &wd, &[], "#!/bin/bash\necho the payload ran\n");
    let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
    assert_eq!(
        (end.state.as_str(), end.exit_code),
        ("FAILED", REFUSED),
        "{end:#?}"
    );
    let stderr = job.stderr();
    assert!(stderr.contains(&node_refusal(job.id)), "{stderr}");
    assert!(
        stderr.contains(&format!("{current}/processed is a symbolic link")),
        "{stderr}"
    );
    assert!(!job.stdout().contains("the payload ran"));
    c.assert_node_not_drained();
    assert_host_untouched();
}

#[test]
fn a_beamline_that_moved_on_to_another_beamtime_shows_none_of_it() {
    let c = cluster();
    let old = c.start_beamtime(&BeamtimeSpec::fresh("bttest23"));
    // The old beamtime's metadata stays on the core filesystem …
    let core = c
        .state_dir()
        .join(format!("core/{}/{}", old.beamline, old.id));
    fs::create_dir_all(&core).unwrap();
    fs::copy(
        &old.metadata_path,
        core.join(format!("beamtime-metadata-{}.json", old.id)),
    )
    .unwrap();
    // … while the beamline's current folder now belongs to the next beamtime;
    // the old reservation is still there.
    let next = BeamtimeSpec::fresh("bttest24")
        .on_beamline(&old.beamline)
        .no_online();
    c.cmd(Cluster::repo_root().join("slurm-conf-examples/beamtime-start.sh"))
        .args([
            "--id",
            &next.id,
            "--beamline",
            &next.beamline,
            "--account",
            &next.account,
            "--partition",
            "all",
            "--no-online",
            "--replace",
        ])
        .timeout(Duration::from_secs(180))
        .run()
        .assert_success();

    // The old beamtime's jobs still run (its reservation is there), but as before the
    // beamtime started: the beamline folder holds the next beamtime now, and none of
    // it shows.
    let log = c.log_cursor("slurmd.log");
    let out = c
        .beamtime_srun(&old)
        .args([
            "bash",
            "-c",
            &format!(
                "echo phase=$BEAMTIME_PHASE; ls -A /beamline; ls /beamline/{}/current 2>&1 || true",
                old.beamline
            ),
        ])
        .run();
    out.assert_success()
        .assert_stdout_contains("phase=pre-start\n");
    assert!(
        out.stdout.contains("No such file or directory"),
        "the beamline shows:\n{out}"
    );
    assert!(
        !out.stdout.contains(&next.id),
        "the next beamtime shows:\n{out}"
    );
    assert!(
        out.stderr.contains(&format!(
            "beamtime {} has not started on beamline {} yet",
            old.id, old.beamline
        )),
        "no note:\n{out}"
    );
    assert_host_untouched();
    let logged = log.read_new();
    assert!(
        logged
            .lines()
            .any(|l| l.contains(&format!("beamtime={} ", old.id))
                && l.contains("decision=accepted phase=pre-start ")),
        "{logged}"
    );
}

#[test]
fn sbatch_export_none_still_gets_its_beamline() {
    let c = cluster();
    let bt = good();
    let wd = c.workdir(&bt.account, "export-none");
    let job = c.submit_beamtime_job(
        bt,
        &wd,
        &["--export=NONE"],
        "#!/bin/bash\n/bin/ls -A /beamline\necho \"$BEAMTIME_ID\"\n",
    );
    let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
    end.assert_completed_ok();
    assert_eq!(job.stdout(), format!("p11\n{}\n", bt.id));
}

#[test]
fn metadata_listing_another_beamtimes_reservation_is_refused_there() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest25"));
    // Another beamtime's reservation that also admits this account, and a metadata
    // file that lists it (a copy-paste slip at the facility, or a tampered file).
    c.create_reservation("11099026", "bttest25");
    rewrite_metadata(&bt, |m| {
        m["onlineAnalysis"]["slurmReservation"] = serde_json::json!([bt.id, "11099026"])
    });
    let out = c
        .as_user(&bt.account, "srun")
        .args([
            &format!("--beamtime={}", bt.id),
            "--partition=all",
            "--reservation=11099026",
            "true",
        ])
        .run();
    cluster().assert_refused_by_node(
        &out,
        &[&format!(
            "reservation '11099026', which beamtime {}'s metadata lists but which is not named \
             after it",
            bt.id
        )],
    );
}
