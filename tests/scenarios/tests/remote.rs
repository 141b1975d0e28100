//! `bt-submit --remote` from "the beamline computer": another Unix user who can read the
//! beamtime's key in its shared folder, with no Slurm configuration of its own, submits
//! over the real OpenSSH server the harness runs for the reserved node (cluster.sh
//! `start_sshd`, tests/scenarios/src/sshd.rs) and gets the job id back. The ssh command
//! line, the quoting and the classification of ssh's messages are unit-tested in
//! bt-submit (src/ssh.rs); here they meet ssh, sshd and Slurm.
//!
//! Two beamtimes with fresh ids and beamlines: account bttest800's (two reservations, the
//! id and `<id>_1`, reserved nodes btdown800 — which does not answer — and btnode1) for
//! the submissions, and bttest802's for the refusals, which never submit anything, so
//! that "nothing was submitted" can be checked from accounting at any time. Beamline computers: bttest801 (in bttest800's group), bttest803 (no
//! known_hosts entry), bttest804 (a key of its own), bttest805 (not in the group), bttest806
//! (for whom the first reserved node accepts connections but never speaks ssh).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use scenarios::{bt_submit, cluster, Beamtime, BeamtimeSpec, Output, UnixUser, DOWN_PORT, NODE};

struct Site {
    /// Submissions go here.
    open: Beamtime,
    /// Only refusals: nothing is ever submitted as its account.
    refusing: Beamtime,
}

const BEAMLINE_COMPUTER: &str = "bttest801";

/// The beamtime's key as the facility's start script leaves it on the beamline
/// filesystem: in shared/, readable by the beamtime's group (the beamline computers'
/// users are in it).
fn share_key(bt: &Beamtime) -> PathBuf {
    let key = bt.current_dir.join("shared/id_rsa");
    let mode = fs::metadata(&key)
        .unwrap_or_else(|e| panic!("{}: {e}", key.display()))
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o640,
        "beamtime-start.sh left {} mode {mode:o}, not 0640",
        key.display()
    );
    key
}

fn site() -> &'static Site {
    static SITE: OnceLock<Site> = OnceLock::new();
    SITE.get_or_init(|| {
        let c = cluster();
        let sshd = c.sshd();
        let open = c.start_beamtime(
            &BeamtimeSpec::fresh("bttest800")
                .second_reservation()
                .arg("--reserved-nodes")
                .arg(&format!("btdown800,{NODE}")),
        );
        let refusing = c.start_beamtime(&BeamtimeSpec::fresh("bttest802"));
        for bt in [&open, &refusing] {
            let key = share_key(bt);
            sshd.authorize(&bt.account, &key.with_extension("pub"));
        }
        c.ensure_unix_user(BEAMLINE_COMPUTER, &["bttest800"]);
        sshd.beamline_computer(
            BEAMLINE_COMPUTER,
            &[("btdown800", DOWN_PORT), (NODE, sshd.port)],
            true,
        );
        for (user, groups, known) in [
            ("bttest803", &["bttest802"][..], false),
            ("bttest804", &["bttest802"][..], true),
            ("bttest805", &[][..], true),
            ("bttest802", &[][..], true),
        ] {
            c.ensure_unix_user(user, groups);
            sshd.beamline_computer(user, &[(NODE, sshd.port)], known);
        }
        Site { open, refusing }
    })
}

/// bt-submit as `user` on a beamline computer: no Slurm configuration here (the session
/// on the node gets the cluster's from sshd).
fn remote_submit(user: &str, metadata: &Path, args: &[&str]) -> Output {
    cluster()
        .as_user(user, bt_submit())
        .env_remove("SLURM_CONF")
        .arg("--metadata")
        .arg(metadata)
        .arg("--remote")
        .args(args)
        .timeout(Duration::from_secs(60))
        .run()
}

/// A script in a folder of the beamtime account's that the node sees (the shared
/// filesystem), with `body` after the shebang.
fn script(bt: &Beamtime, label: &str, body: &str) -> (PathBuf, PathBuf) {
    let dir = cluster().workdir(&bt.account, label);
    let path = dir.join("job.sh");
    fs::write(&path, format!("#!/bin/bash\n{body}"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (dir, path)
}

fn text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn remote_sbatch_runs_as_the_beamtime_account_in_its_reservation_and_sees_its_beamline() {
    let c = cluster();
    let bt = &site().open;
    fs::write(bt.current_dir.join("shared/from-the-beamline"), "marker\n").unwrap();
    let (dir, job) = script(
        bt,
        "remote-identity",
        "echo \"user=$(id -un)\"\necho \"reservation=$SLURM_JOB_RESERVATION\"\n\
         cat \"/beamline/$BEAMTIME_BEAMLINE/current/shared/from-the-beamline\"\n",
    );
    let output = dir.join("out.txt");
    let out = remote_submit(
        BEAMLINE_COMPUTER,
        &bt.metadata_path,
        &[
            "--node",
            NODE,
            &format!("--output={}", output.display()),
            job.to_str().unwrap(),
        ],
    );
    out.assert_success();
    let id: u32 = out
        .stdout
        .strip_prefix("Submitted batch job ")
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no 'Submitted batch job ID' line:\n{out}"));
    out.assert_stderr_contains(&format!("bt-submit: submitted on {NODE}"));
    c.wait_job(id, Duration::from_secs(120))
        .assert_completed_ok();
    let said = text(&output);
    assert_eq!(
        said,
        format!("user={}\nreservation={}\nmarker\n", bt.account, bt.id),
        "job output"
    );

    let json = remote_submit(
        BEAMLINE_COMPUTER,
        &bt.metadata_path,
        &[
            "--node",
            NODE,
            "--format",
            "json",
            "--output=/dev/null",
            job.to_str().unwrap(),
        ],
    );
    json.assert_success();
    let value: serde_json::Value =
        serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}:\n{json}"));
    assert_eq!(value["node"], NODE, "{json}");
    assert_eq!(value["cluster"], serde_json::Value::Null, "{json}");
    assert_eq!(value["command"][0], "ssh", "{json}");
    let id = value["jobId"]
        .as_u64()
        .unwrap_or_else(|| panic!("no jobId:\n{json}"));
    c.wait_job(id as u32, Duration::from_secs(120))
        .assert_completed_ok();
}

#[test]
fn the_first_reserved_node_down_the_next_one_is_used() {
    let c = cluster();
    let bt = &site().open;
    let metadata = bt.metadata();
    assert_eq!(
        metadata["onlineAnalysis"]["reservedNodes"][0], "btdown800",
        "the first reserved node must be the one that is down"
    );
    let (_, job) = script(bt, "remote-failover", "true\n");
    let out = remote_submit(
        BEAMLINE_COMPUTER,
        &bt.metadata_path,
        &[
            "--format",
            "json",
            "--output=/dev/null",
            job.to_str().unwrap(),
        ],
    );
    out.assert_success();
    let value: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(value["node"], NODE, "{out}");
    let id = value["jobId"].as_u64().unwrap_or_else(|| panic!("{out}"));
    c.wait_job(id as u32, Duration::from_secs(120))
        .assert_completed_ok();

    // --node on the one that is down: no other is tried, and the exit status says so.
    let down = remote_submit(
        BEAMLINE_COMPUTER,
        &bt.metadata_path,
        &["--node", "btdown800", job.to_str().unwrap()],
    );
    assert_eq!(down.code(), Some(68), "{down}");
    // Named as the metadata names it, not as ssh resolved it (127.0.0.1 port 1).
    down.assert_stderr_contains("none of the reserved nodes answered over ssh: btdown800 (");
    down.assert_stderr_contains("Connection refused");
}

#[test]
fn a_first_node_that_accepts_but_never_speaks_ssh_is_passed_over_after_the_timeout() {
    let c = cluster();
    let bt = &site().open;
    // A port that takes connections (the kernel's backlog) and never says a word: a node
    // whose sshd hangs. For this beamline computer the first reserved node is there.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = mute.local_addr().unwrap().port();
    let user = "bttest806";
    c.ensure_unix_user(user, &["bttest800"]);
    let sshd = c.sshd();
    sshd.beamline_computer(user, &[("btdown800", port), (NODE, sshd.port)], true);
    let (_, job) = script(bt, "remote-mute", "true\n");
    let started = Instant::now();
    let out = remote_submit(
        user,
        &bt.metadata_path,
        &[
            "--format",
            "json",
            "--output=/dev/null",
            job.to_str().unwrap(),
        ],
    );
    let waited = started.elapsed();
    out.assert_success();
    let value: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(value["node"], NODE, "{out}");
    assert!(
        waited >= Duration::from_secs(9),
        "the mute node was given up after {waited:?}, before ssh's ConnectTimeout"
    );
    let id = value["jobId"].as_u64().unwrap_or_else(|| panic!("{out}"));
    c.wait_job(id as u32, Duration::from_secs(120))
        .assert_completed_ok();
    drop(mute);
}

#[test]
fn arguments_with_every_special_character_arrive_intact() {
    let c = cluster();
    let bt = &site().open;
    let (dir, _) = script(bt, "remote-args", "true\n");
    let received = dir.join("received");
    let planted = dir.join("planted");
    let (_, job) = script(
        bt,
        "remote-args-job",
        &format!("printf '%s\\0' \"$@\" >'{}'\n", received.display()),
    );
    let glob = format!("{}/*", dir.display());
    let injected = format!("x; touch {}", planted.display());
    let substituted = format!("$(touch {})", planted.display());
    let backquoted = format!("`touch {}`", planted.display());
    let tricky: Vec<&str> = vec![
        "two words",
        "it's",
        "\"double\"",
        &injected,
        &substituted,
        &backquoted,
        &glob,
        "?[a-z]*",
        "line one\nline two",
        "tab\there",
        "~",
        "#not a comment",
        "-n",
        "$HOME",
        "back\\slash",
        "é ü ß",
        "!event",
        "{a,b}",
        "a|b&c>d<e",
    ];
    let mut args = vec!["--output=/dev/null", job.to_str().unwrap()];
    args.extend(tricky.iter().copied());
    let out = remote_submit(BEAMLINE_COMPUTER, &bt.metadata_path, &args);
    let id = out
        .stdout
        .strip_prefix("Submitted batch job ")
        .and_then(|rest| rest.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("{out}"));
    c.wait_job(id, Duration::from_secs(120))
        .assert_completed_ok();
    let bytes = fs::read(&received).unwrap_or_else(|e| panic!("{}: {e}", received.display()));
    let arrived: Vec<String> = bytes
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    assert_eq!(arrived, tricky, "the job's arguments");
    assert!(
        !planted.exists(),
        "an argument was executed on the node: {}",
        planted.display()
    );
}

#[test]
fn sbatchs_refusal_on_the_node_comes_back_with_its_message_and_status() {
    let bt = &site().open;
    let (_, job) = script(bt, "remote-refused", "true\n");
    let out = remote_submit(
        BEAMLINE_COMPUTER,
        &bt.metadata_path,
        &["--time=not-a-time", job.to_str().unwrap()],
    );
    // What sbatch itself exits with for this refusal (255 on 22.05: not ssh's 255).
    let direct = cluster()
        .cmd("sbatch")
        .args(["--time=not-a-time", "--wrap=true"])
        .run();
    direct.assert_failure();
    assert_eq!(
        out.code(),
        direct.code(),
        "sbatch's own exit status:\n{out}\n{direct}"
    );
    assert_eq!(out.stdout, "", "{out}");
    out.assert_stderr_contains("sbatch: error: Invalid --time specification");
}

#[test]
fn the_controller_is_asked_on_the_node_when_a_reservation_must_be_chosen() {
    let c = cluster();
    let bt = &site().open;
    assert!(
        !Path::new("/etc/slurm/slurm.conf").exists(),
        "this host has a slurm.conf of its own: the beamline computer must have none here"
    );
    let (_, job) = script(bt, "remote-choice", "echo \"$SLURM_JOB_RESERVATION\"\n");
    // -N with two reservations: bt-submit asks which reservation's nodes fit, and without
    // SLURM_CONF or a slurm.conf here it can only have asked on the node.
    let out = remote_submit(
        BEAMLINE_COMPUTER,
        &bt.metadata_path,
        &["-N", "1", "--output=/dev/null", job.to_str().unwrap()],
    );
    out.assert_success();
    out.assert_stderr_contains(&format!("bt-submit: using reservation {} ", bt.id));
    let id = out
        .stdout
        .strip_prefix("Submitted batch job ")
        .and_then(|rest| rest.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let end = c.wait_job(id, Duration::from_secs(120));
    end.assert_completed_ok();
    assert_eq!(
        end.record.get("Reservation").map(String::as_str),
        Some(bt.id.as_str()),
        "{end:#?}"
    );
}

/// No job was ever submitted as the refusing beamtime's account: neither queued nor in
/// accounting.
#[track_caller]
fn assert_nothing_submitted(bt: &Beamtime) {
    let c = cluster();
    let queued = c
        .cmd("squeue")
        .args(["-h", "-u", &bt.account, "-o", "%i"])
        .run();
    queued.assert_success();
    assert_eq!(queued.stdout.trim(), "", "queued as {}", bt.account);
    let accounted = c
        .cmd("sacct")
        .args([
            "-n",
            "-X",
            "-P",
            "-u",
            &bt.account,
            "-S",
            "2000-01-01",
            "-o",
            "JobID",
        ])
        .timeout(Duration::from_secs(20))
        .run();
    accounted.assert_success();
    assert_eq!(accounted.stdout.trim(), "", "accounted for {}", bt.account);
}

#[track_caller]
fn assert_refused(out: &Output, status: i32, needles: &[&str]) {
    assert_eq!(out.code(), Some(status), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    for needle in needles {
        out.assert_stderr_contains(needle);
    }
    out.assert_stderr_contains("nothing was submitted");
}

#[test]
fn an_unknown_host_key_is_refused_with_what_the_admin_must_add() {
    let bt = &site().refusing;
    let (_, job) = script(bt, "remote-unknown-host", "true\n");
    let out = remote_submit("bttest803", &bt.metadata_path, &[job.to_str().unwrap()]);
    assert_refused(
        &out,
        77,
        &[
            &format!("the host key of {NODE} is not in known_hosts"),
            "hint: the cluster's administrators must add",
            "/etc/ssh/ssh_known_hosts",
            // The harness's ssh_config gives the node its sshd's port and a HostKeyAlias.
            &format!(
                "as the line '{NODE} KEY' (ssh_config gives it HostKeyAlias {NODE}): KEY from \
                 ssh-keyscan -p {} 127.0.0.1",
                cluster().sshd().port
            ),
        ],
    );
    assert_nothing_submitted(bt);
}

#[test]
fn a_wrong_key_is_refused_by_the_node() {
    let c = cluster();
    let bt = &site().refusing;
    let user = "bttest804";
    let home = UnixUser::get(user).home;
    let key = home.join("not-the-beamtimes-key");
    if !key.exists() {
        c.as_user(user, "ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .run()
            .assert_success();
    }
    // The metadata as a stale copy would have it: the same beamtime, another key.
    let copy = metadata_copy(bt, user, &key);
    let (_, job) = script(bt, "remote-wrong-key", "true\n");
    let out = remote_submit(user, &copy, &[job.to_str().unwrap()]);
    assert_refused(
        &out,
        77,
        &[
            &format!(
                "{NODE} refused the login as {} with key {}",
                bt.account,
                key.display()
            ),
            "Permission denied (publickey)",
        ],
    );
    assert_nothing_submitted(bt);
}

/// The beamtime's metadata in `user`'s home, naming `key` (absolutely) as its key.
fn metadata_copy(bt: &Beamtime, user: &str, key: &Path) -> PathBuf {
    let u = UnixUser::get(user);
    let mut metadata = bt.metadata();
    metadata["onlineAnalysis"]["sshPrivateKeyPath"] = key.to_string_lossy().into_owned().into();
    let copy = u.home.join(format!("beamtime-metadata-{}.json", bt.id));
    fs::write(&copy, serde_json::to_vec_pretty(&metadata).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
    copy
}

#[test]
fn a_key_the_user_cannot_read_is_refused_before_connecting() {
    let bt = &site().refusing;
    let (_, job) = script(bt, "remote-unreadable", "true\n");
    let key = bt.current_dir.join("shared/id_rsa");
    // bttest805 is not in the beamtime's group: it may read a copy of the metadata, but
    // not the key in the beamtime's shared folder.
    let copy = metadata_copy(bt, "bttest805", &key);
    let out = remote_submit("bttest805", &copy, &[job.to_str().unwrap()]);
    assert_refused(
        &out,
        66,
        &[&format!(
            "the beamtime's ssh key {} (sshPrivateKeyPath)",
            key.display()
        )],
    );
    assert_nothing_submitted(bt);
}

#[test]
fn a_key_of_ones_own_that_is_open_to_others_is_refused_with_the_fix() {
    let bt = &site().refusing;
    let key = bt.current_dir.join("shared/id_rsa");
    let (_, job) = script(bt, "remote-too-open", "true\n");
    // The account itself on the beamline computer: the shared copy of its key is its own
    // and group-readable, which ssh would refuse.
    let out = remote_submit(&bt.account, &bt.metadata_path, &[job.to_str().unwrap()]);
    assert_refused(
        &out,
        77,
        &[
            "is yours and open to others (mode 0640), so ssh would refuse to use it",
            &format!("hint: make it private: chmod 600 {}", key.display()),
        ],
    );
    assert_nothing_submitted(bt);
}
