//! Issue #17, findings 5–7, on the real cluster: an independent attack, made as a hostile
//! cluster user would, found metadata key variants taken silently, a forged id copied into
//! slurmd's log in full, and messages that misled. Each test repeats the attack as the
//! issue tells it and checks the new outcome; the file runs in both one-node
//! configurations (plain, and `cluster.sh up --job-container`).
//!
//! Accounts bttest700–bttest749; each beamtime gets a fresh id and beamline.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use scenarios::{
    assert_host_untouched, assert_refused_by_client, cluster, Beamtime, BeamtimeSpec, Output,
    UnixUser, REFUSED,
};

/// How Slurm hands `--beamtime` to slurmstepd in the job's environment.
const OPTION_VARIABLE: &str = "_SLURM_SPANK_OPTION_beamtime_beamtime";

/// How sbatch and salloc hand `--beamtime` on to the steps of their allocation.
const INHERITED_VARIABLE: &str = "SLURM_SPANK__SLURM_SPANK_OPTION_beamtime_beamtime";

/// What every refusal of a metadata file ends with: the facility writes these files.
const REPORT: &str = "report the file to the beamline staff";

fn beamtime(spec: BeamtimeSpec) -> Beamtime {
    cluster().start_beamtime(&spec.partition("all"))
}

/// srun as the beamtime's account with the client side skipped (a slurm.conf without the
/// plugin) and `--beamtime` forged into the environment as `value`: what any user can do,
/// so that only the node decides.
fn bypassed_srun(bt: &Beamtime, wd: &Path, value: &str, command: &[&str]) -> Output {
    let c = cluster();
    c.as_user(&bt.account, "srun")
        .cwd(wd)
        .env("SLURM_CONF", c.slurm_conf_without_plugins(&bt.account))
        .env(OPTION_VARIABLE, value)
        .args([
            "--partition=all",
            &format!("--reservation={}", bt.reservations[0]),
        ])
        .args(command)
        .run()
}

/// Writes a metadata file as the facility's start script would (root, 0644, renamed into
/// place): only the content is hostile.
fn write_metadata(path: &Path, document: &serde_json::Value) {
    let staging = path.with_extension("new");
    fs::write(&staging, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o644)).unwrap();
    fs::rename(&staging, path).unwrap();
}

// ------------------------------------------------------------------------------------------
// Finding 5: metadata key variants

/// The metadata with one key renamed; `from` is `key` or `block.key`.
fn renamed(bt: &Beamtime, from: &str, to: &str) -> serde_json::Value {
    let mut document = bt.metadata();
    let (object, name) = match from.split_once('.') {
        Some((block, name)) => (&mut document[block], name),
        None => (&mut document, from),
    };
    let object = object.as_object_mut().expect("an object");
    let value = object
        .remove(name)
        .unwrap_or_else(|| panic!("the start script's file has no {from}"));
    object.insert(to.to_owned(), value);
    document
}

/// The attack of finding 5, one file at a time: the node (client skipped) and sbatch
/// (the client) both refuse it with `expected`, nothing runs, and the beamtime's own file
/// runs again afterwards.
#[track_caller]
fn assert_variant_refused(
    bt: &Beamtime,
    original: &serde_json::Value,
    hostile: &serde_json::Value,
    expected: &str,
) {
    let c = cluster();
    let wd = c.workdir(&bt.account, "variant");
    write_metadata(&bt.metadata_path, hostile);
    let message = format!("{}: {expected}", bt.metadata_path.display());
    let node = bypassed_srun(bt, &wd, &bt.id, &["echo", "payload-ran"]);
    cluster().assert_refused_by_node(&node, &[&message, REPORT]);
    let client = c.sbatch(
        &bt.account,
        &wd,
        &bt.job_options()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "#!/bin/bash\necho payload-ran\n",
    );
    assert_refused_by_client(&client, "sbatch", &[&message, REPORT]);
    write_metadata(&bt.metadata_path, original);
    bypassed_srun(bt, &wd, &bt.id, &["echo", "payload-ran"])
        .assert_success()
        .assert_stdout_contains("payload-ran");
    assert_host_untouched();
}

/// `Beamline`, `OnlineAnalysis` and `UserAccount` used to be ignored (the beamtime then
/// looked unstarted, or ran on without the key), and with both `corePath` and `core-path`
/// one silently won. Now each is refused as ambiguous, naming both spellings.
#[test]
fn key_variants_and_two_spellings_of_one_key_are_refused_naming_both() {
    let bt = beamtime(BeamtimeSpec::fresh("bttest700"));
    let original = bt.metadata();
    bypassed_srun(
        &bt,
        &cluster().workdir(&bt.account, "control"),
        &bt.id,
        &["echo", "payload-ran"],
    )
    .assert_success()
    .assert_stdout_contains("payload-ran");

    let misspelled = [
        (
            "beamline",
            "Beamline",
            "Beamline: expected the key beamline, spelled exactly so",
        ),
        (
            "onlineAnalysis",
            "OnlineAnalysis",
            "OnlineAnalysis: expected the key onlineAnalysis, spelled exactly so",
        ),
        (
            "onlineAnalysis.userAccount",
            "UserAccount",
            "onlineAnalysis.UserAccount: expected the key onlineAnalysis.userAccount, spelled \
             exactly so; a key spelled otherwise is ambiguous",
        ),
    ];
    for (from, to, expected) in misspelled {
        assert_variant_refused(&bt, &original, &renamed(&bt, from, to), expected);
    }

    let mut both = original.clone();
    both["core-path"] = serde_json::json!("/asap3/petra3/gpfs/p790/2024/data/11099790");
    assert_variant_refused(
        &bt,
        &original,
        &both,
        "core-path and corePath are two spellings of one key; a file may name each key once, \
         so which value counts is ambiguous",
    );

    let mut both = original.clone();
    both["Beamline"] = serde_json::json!("p790");
    assert_variant_refused(
        &bt,
        &original,
        &both,
        "Beamline and beamline are two spellings of one key",
    );
}

// ------------------------------------------------------------------------------------------
// Finding 6: input copied into logs unbounded

/// A 100,000-character id, with a forged log line in it, given to the node (client
/// skipped) and to srun: neither slurmd's log nor the user's terminal gets more than the
/// first 80 characters, escaped, and the length.
#[test]
fn a_forged_100000_character_id_reaches_the_log_cut_and_escaped() {
    let c = cluster();
    let bt = beamtime(BeamtimeSpec::fresh("bttest701"));
    let wd = c.workdir(&bt.account, "huge-id");
    let forged = format!(
        "1\nspank-beamtime: job=1 decision=accepted {}",
        "7".repeat(100_000)
    );
    let length = forged.chars().count();
    let log = c.log_cursor("slurmd.log");

    let node = bypassed_srun(&bt, &wd, &forged, &["echo", "payload-ran"]);
    cluster().assert_refused_by_node(&node, &[&format!("… ({length} characters)")]);
    let line = c.refusal_logged_once(&node);
    assert!(line.contains("rule=invalid-beamtime-id"), "{line}");
    assert!(
        line.contains("beamtime=\"1\\nspank-beamtime: job=1 decision=accepted 777"),
        "the id is not shown escaped: {line}"
    );
    assert!(
        line.len() < 1500,
        "{} characters logged: {line:.300}",
        line.len()
    );

    let client = c
        .as_user(&bt.account, "srun")
        .cwd(&wd)
        .arg(format!("--beamtime={forged}"))
        .args(["--partition=all", "echo", "payload-ran"])
        .run();
    assert_refused_by_client(
        &client,
        "srun",
        &[
            "invalid beamtime id \"1\\nspank-beamtime",
            &format!("… ({length} characters)"),
        ],
    );
    assert!(
        client.stderr.len() < 1500,
        "{} characters shown:\n{:.300}",
        client.stderr.len(),
        client.stderr
    );

    let written = log.read_new();
    let longest = written.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1500, "slurmd.log got a {longest}-character line");
    assert!(
        !written.contains(&"7".repeat(200)),
        "slurmd.log holds the forged id in full"
    );
    assert!(
        !written
            .lines()
            .any(|l| l.starts_with("spank-beamtime: job=1 decision=accepted")),
        "the forged line made it into slurmd.log as a line of its own"
    );
}

// ------------------------------------------------------------------------------------------
// Finding 7: messages that mislead

/// `-D /beamline/<bl>/current/processed`: slurmstepd says it could not change there and
/// goes to /tmp (it tries once in the node's own namespace, before any plugin hook), yet
/// the task does run there; the plugin now says so, for srun and for a batch job.
#[test]
fn a_working_directory_in_the_beamline_is_right_and_the_task_says_so() {
    let c = cluster();
    let bt = beamtime(BeamtimeSpec::fresh("bttest702"));
    let wd = c.workdir(&bt.account, "chdir");
    let inside = format!("/beamline/{}/current/processed", bt.beamline);
    let note =
        format!("spank-beamtime: the task runs in {inside}, inside the job's view of the beamline");

    let out = c
        .as_user(&bt.account, "srun")
        .cwd(&wd)
        .args(bt.job_options())
        .args(["-D", &inside, "readlink", "/proc/self/cwd"])
        .run();
    out.assert_success();
    assert_eq!(out.stdout.trim(), inside, "{out}");
    out.assert_stderr_contains(&note);

    let mut args = bt.job_options();
    args.extend(["-D".to_owned(), inside.clone()]);
    let (job, end) = c.submit_and_wait(
        &bt.account,
        &wd,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "#!/bin/bash\nreadlink /proc/self/cwd\n",
    );
    assert_eq!(
        (end.state.as_str(), end.exit_code),
        ("COMPLETED", 0),
        "{end:?}\n{}",
        job.stderr()
    );
    assert_eq!(job.stdout().trim(), inside);
    assert!(job.stderr().contains(&note), "{}", job.stderr());

    // A folder that does not exist inside the view either: no note, the task is in /tmp.
    let missing = format!("/beamline/{}/current/no-such-folder", bt.beamline);
    let out = c
        .as_user(&bt.account, "srun")
        .cwd(&wd)
        .args(bt.job_options())
        .args(["-D", &missing, "readlink", "/proc/self/cwd"])
        .run();
    out.assert_success();
    assert_eq!(out.stdout.trim(), "/tmp", "{out}");
    assert!(
        !out.stderr.contains("spank-beamtime: the task runs in"),
        "{out}"
    );
    c.assert_node_not_drained();
}

/// `--reservation=ID,ID_1`, both the beamtime's: Slurm reports the list, not the
/// reservation the job runs in, so the job is refused, as a list.
#[test]
fn a_list_of_the_beamtimes_reservations_is_refused_as_a_list() {
    let c = cluster();
    let bt = beamtime(BeamtimeSpec::fresh("bttest703").second_reservation());
    let list = format!("{0},{0}_1", bt.id);
    let wd = c.workdir(&bt.account, "reservation-list");
    let out = c
        .as_user(&bt.account, "srun")
        .cwd(&wd)
        .args([
            &format!("--beamtime={}", bt.id),
            "--partition=all",
            &format!("--reservation={list}"),
            "echo",
            "payload-ran",
        ])
        .run();
    cluster().assert_refused_by_node(
        &out,
        &[
            &format!(
                "the job was submitted with a list of reservations ('{list}'), and Slurm tells \
                 the plugin that list, not the reservation the job runs in"
            ),
            &format!("Submit with one reservation, e.g. --reservation={}", bt.id),
        ],
    );
    assert!(!out.stderr.contains("the job runs in reservation"), "{out}");
    let line = c.refusal_logged_once(&out);
    assert!(line.contains("rule=wrong-reservation"), "{line}");
}

/// root attaching to the beamtime account's job (`srun --jobid`): srun's check is about
/// who runs srun, and says so, instead of calling the job root's.
#[test]
fn attaching_to_another_users_job_names_who_submits() {
    let c = cluster();
    let bt = beamtime(BeamtimeSpec::fresh("bttest704"));
    let wd = c.workdir(&bt.account, "attach");
    let job = c.submit(
        &bt.account,
        &wd,
        &bt.job_options()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "#!/bin/bash\nsleep 120\n",
    );
    let _cancel = Cancel(job.id);
    scenarios::wait::poll(std::time::Duration::from_secs(60), || {
        let state = c
            .job_record(job.id)
            .and_then(|r| r.get("JobState").cloned());
        if state.as_deref() == Some("RUNNING") {
            Ok(())
        } else {
            Err(state)
        }
    })
    .unwrap_or_else(|state| panic!("job {} is not running: {state:?}", job.id));

    let jobid = job.id.to_string();
    let attach = [
        "--jobid",
        &jobid,
        "--overlap",
        &format!("--beamtime={}", bt.id),
        "id",
        "-u",
    ];
    let out = c.cmd("srun").cwd(&wd).args(attach).run();
    assert_refused_by_client(
        &out,
        "srun",
        &[&format!(
            "beamtime {} runs as its account '{}' (uid {}), and you submit as uid 0",
            bt.id,
            bt.account,
            UnixUser::get(&bt.account).uid
        )],
    );
    assert!(!out.stderr.contains("this job"), "{out}");

    // The job's own user attaches and runs.
    let out = c.as_user(&bt.account, "srun").cwd(&wd).args(attach).run();
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        UnixUser::get(&bt.account).uid.to_string(),
        "{out}"
    );
    c.assert_node_not_drained();
}

/// Cancels the job when the test ends, passed or not: a job left sleeping in the
/// beamtime's one-core reservation would keep the next run's job pending.
struct Cancel(u32);

impl Drop for Cancel {
    fn drop(&mut self) {
        cluster().cmd("scancel").arg(self.0.to_string()).run();
    }
}

/// The Slurm release the cluster runs, as (major, minor).
fn slurm_release() -> (u32, u32) {
    let out = cluster().cmd("sinfo").arg("--version").run();
    out.assert_success();
    let version = out
        .stdout
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_owned();
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => panic!("cannot read the Slurm release from {out}"),
    }
}

/// `sbatch --export=NONE,_SLURM_SPANK_OPTION_beamtime_beamtime=OTHER --beamtime=ID`: sbatch
/// checks ID, and on 22.05 the batch step's option is OTHER (the listed variable is kept,
/// sbatch's own is not). The node now refuses the two ids, naming both; 24.05 and later
/// overwrite the listed variable with sbatch's own, and the job runs as ID. Never as OTHER.
#[test]
fn a_forged_option_in_the_export_list_is_refused_naming_both_ids() {
    let c = cluster();
    let bt = beamtime(BeamtimeSpec::fresh("bttest705"));
    let other = "11099749";
    let wd = c.workdir(&bt.account, "export-list");
    let mut args = bt.job_options();
    args.push(format!("--export=NONE,{OPTION_VARIABLE}={other}"));
    let (job, end) = c.submit_and_wait(
        &bt.account,
        &wd,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "#!/bin/bash\necho \"payload-ran BEAMTIME_ID=$BEAMTIME_ID\"\n",
    );
    let both = format!(
        "the job names two beamtimes: the --beamtime option Slurm hands over (from the command \
         line, or {OPTION_VARIABLE} in the job's environment) says {other}, and \
         {INHERITED_VARIABLE}, which sbatch and salloc set from their --beamtime, says {}",
        bt.id
    );
    if slurm_release() < (24, 5) {
        assert_eq!(
            (end.state.as_str(), end.exit_code),
            ("FAILED", REFUSED),
            "{end:?}"
        );
        assert!(!job.stdout().contains("payload-ran"), "{}", job.stdout());
        assert!(job.stderr().contains(&both), "{}", job.stderr());
    } else {
        assert_eq!(
            (end.state.as_str(), end.exit_code),
            ("COMPLETED", 0),
            "{end:?}\n{}",
            job.stderr()
        );
        assert_eq!(
            job.stdout().trim(),
            format!("payload-ran BEAMTIME_ID={}", bt.id)
        );
    }

    // The same two ids in srun: its client and the node (client skipped) refuse alike.
    let out = c
        .as_user(&bt.account, "srun")
        .cwd(&wd)
        .env(INHERITED_VARIABLE, other)
        .args(bt.job_options())
        .args(["echo", "payload-ran"])
        .run();
    let srun_both = format!("says {}, and {INHERITED_VARIABLE}", bt.id);
    assert_refused_by_client(&out, "srun", &[&srun_both, &format!("says {other}")]);
    let out = c
        .as_user(&bt.account, "srun")
        .cwd(&wd)
        .env("SLURM_CONF", c.slurm_conf_without_plugins(&bt.account))
        .env(OPTION_VARIABLE, &bt.id)
        .env(INHERITED_VARIABLE, other)
        .args([
            "--partition=all",
            &format!("--reservation={}", bt.reservations[0]),
        ])
        .args(["echo", "payload-ran"])
        .run();
    cluster().assert_refused_by_node(&out, &[&srun_both, &format!("says {other}")]);
    let line = c.refusal_logged_once(&out);
    assert!(line.contains("rule=conflicting-beamtime"), "{line}");
    c.assert_node_not_drained();
}
