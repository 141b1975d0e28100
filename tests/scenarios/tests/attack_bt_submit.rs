//! The third independent attack (#21) on bt-submit, each finding reproduced as the attack
//! did it on a real cluster, and shown closed:
//! 1. someone who can write a watched folder swaps a watched subfolder for a link to the
//!    watch user's private files: the watch must not submit (or record) a file there;
//! 2. a member of the team that keeps a watch's state in a shared folder plants links
//!    beside the state: the watch must not write through them;
//! 3. sbatch takes any unique prefix of a long option: `--com=mine` must meet the
//!    watch's `--comment` refusal, `--res=other` bt-submit's reservation check;
//! 4. the beamtime account's login script prints to stderr without a final newline:
//!    `--remote` must still see that sbatch ran, and never say "nothing was submitted"
//!    for a job that is queued;
//! 5. a file name holding newlines must not print a forged line into the watch's log;
//!
//! and one of the weaker items, on the node: a beamline folder that holds another
//! beamtime's metadata file besides this one's is refused (account bttest213).
//!
//! The beamtimes have fresh ids and beamlines. Account bttest211 is the watch's user and
//! the victim; the attacker is the Unix user bttest219, in the account's group where a
//! finding needs a folder the team shares. Account bttest212, whose `.bashrc` prints a
//! note, for `--remote` from the beamline computer bttest218 through the harness's real
//! sshd. Each test makes a job or two: they run in every one-node pass.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use scenarios::{bt_submit, cluster, Background, Beamtime, BeamtimeSpec, UnixUser, NODE};

const ATTACKER: &str = "bttest219";

fn beamtime() -> &'static Beamtime {
    static BT: OnceLock<Beamtime> = OnceLock::new();
    BT.get_or_init(|| {
        let c = cluster();
        let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest211"));
        c.ensure_unix_user(ATTACKER, &[bt.account.as_str()]);
        bt
    })
}

/// One test's folders, owned by the beamtime account: the watched folder (`raw`, whose
/// mode the test sets), the job outputs, a private folder (mode 700) holding the file the
/// attacker wants submitted, and where the watch's state and log go.
struct Setup {
    work: PathBuf,
    raw: PathBuf,
    out: PathBuf,
    private: PathBuf,
    log: PathBuf,
}

fn setup(label: &str, raw_mode: u32) -> Setup {
    let c = cluster();
    let bt = beamtime();
    let u = UnixUser::get(&bt.account);
    let work = c.workdir(&bt.account, label);
    let (raw, out, private) = (work.join("raw"), work.join("out"), work.join("private"));
    for (dir, mode) in [(&raw, raw_mode), (&out, 0o755), (&private, 0o700)] {
        fs::create_dir(dir).unwrap();
        chown(dir, Some(u.uid), Some(u.gid)).unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
    }
    let secret = private.join("n1.h5");
    fs::write(&secret, "the watch user's own data\n").unwrap();
    chown(&secret, Some(u.uid), Some(u.gid)).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(
        work.join("analyse.sh"),
        "#!/bin/bash\necho \"analysed $1\"\n",
    )
    .unwrap();
    fs::set_permissions(work.join("analyse.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    Setup {
        log: work.join("watch.log"),
        work,
        raw,
        out,
        private,
    }
}

impl Setup {
    /// `bt-submit watch` on `raw` as the beamtime account, with the state at `state`.
    fn watch(&self, state: &Path, extra: &[&str]) -> Background {
        let c = cluster();
        let bt = beamtime();
        c.as_user(&bt.account, bt_submit())
            .arg("watch")
            .arg("--metadata")
            .arg(&bt.metadata_path)
            .arg("--state")
            .arg(state)
            .args(["--settle", "0.5"])
            .args(extra)
            // The node sees the test's folder where this host does.
            .arg("--map")
            .arg(format!("{0}={0}", self.raw.display()))
            .arg(&self.raw)
            .arg("--")
            .arg("-o")
            .arg(self.out.join("out-%j.txt"))
            .arg(self.work.join("analyse.sh"))
            .cwd(&self.out)
            .spawn(&self.log)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log says `name` was submitted (the watch is alive and has looked).
    #[track_caller]
    fn wait_submitted(&self, name: &str) {
        scenarios::wait::poll(Duration::from_secs(60), || {
            if self.log_text().contains(&format!(" {name} -> job ")) {
                Ok(())
            } else {
                Err(())
            }
        })
        .unwrap_or_else(|()| {
            panic!(
                "{name} was not submitted; the watch's log:\n{}",
                self.log_text()
            )
        });
    }

    /// Stops the watch with SIGTERM; it must end well.
    #[track_caller]
    fn stop(&self, watch: Background) {
        watch.signal(libc::SIGTERM);
        let status = watch.wait(Duration::from_secs(30));
        assert!(
            status.success(),
            "the watch ended with {status}:\n{}",
            self.log_text()
        );
    }
}

/// Runs a shell command as the attacker; it must succeed.
#[track_caller]
fn as_attacker(script: &str) {
    cluster()
        .as_user(ATTACKER, "/bin/sh")
        .args(["-ec", script])
        .run()
        .assert_success();
}

/// Finding 1. The attacker can write the watched folder (mode 777, as a beamline's raw
/// folder written by several detectors' accounts may be). It makes a subfolder, waits for
/// the watch to watch it, moves it to a hidden name, puts a link to the victim's private
/// folder in its place and closes a file of the private file's name in the moved folder.
/// Before #21 the event was mapped back by the old name and resolved through the link:
/// the watch submitted (and recorded the size of) the victim's mode-600 file.
#[test]
fn a_subfolder_swapped_for_a_link_does_not_make_the_watch_submit_a_file_outside_its_folder() {
    let s = setup("attack-swap", 0o777);
    let state = s.work.join("state.json");
    // Polling rarely: what the watch does here, inotify makes it do.
    let watch = s.watch(&state, &["--poll-interval", "60"]);
    let raw = s.raw.display();
    as_attacker(&format!("mkdir {raw}/scan && echo x > {raw}/first.h5"));
    s.wait_submitted("first.h5");
    as_attacker(&format!(
        "mv {raw}/scan {raw}/.scan && ln -s {private} {raw}/scan && echo forged > {raw}/.scan/n1.h5 \
         && echo x > {raw}/second.h5",
        private = s.private.display()
    ));
    s.wait_submitted("second.h5");
    // Longer than the settle time and a pass of the loop: a wrong submission would be made.
    std::thread::sleep(Duration::from_secs(3));
    s.stop(watch);
    let log = s.log_text();
    assert!(
        !log.contains("n1.h5 -> job"),
        "the watch submitted through the link:\n{log}"
    );
    let recorded = fs::read_to_string(&state).unwrap();
    assert!(
        !recorded.contains("n1.h5"),
        "the state records a file outside the folder:\n{recorded}"
    );
    for output in fs::read_dir(&s.out).unwrap() {
        let text = fs::read_to_string(output.unwrap().path()).unwrap();
        assert!(
            !text.contains("n1.h5"),
            "a job was given the private file: {text}"
        );
    }
    cluster().assert_node_not_drained();
}

/// Finding 2. A team keeps the watch's state in the beamtime's group-writable folder so
/// that any member can restart it. The attacker, a member, plants `state.json.new` as a
/// link to the watch user's private file and `other.json.lock` as a link to a file that
/// does not exist yet. Before #21 the watch truncated and overwrote the private file, and
/// created the lock link's target.
#[test]
fn links_planted_beside_a_shared_state_are_not_written_through() {
    let s = setup("attack-state", 0o755);
    let bt = beamtime();
    let shared = s.work.join("team-state");
    fs::create_dir(&shared).unwrap();
    let account = UnixUser::get(&bt.account);
    chown(&shared, Some(account.uid), Some(account.gid)).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o2770)).unwrap();
    let secret = s.private.join("n1.h5");
    let created = s.private.join("created-by-lock");
    as_attacker(&format!(
        "ln -s {secret} {shared}/state.json.new && ln -s {created} {shared}/other.json.lock",
        secret = secret.display(),
        created = created.display(),
        shared = shared.display()
    ));

    // Without saying the folder is shared, the watch refuses it and says why.
    let refused = cluster()
        .as_user(&bt.account, bt_submit())
        .arg("watch")
        .arg("--metadata")
        .arg(&bt.metadata_path)
        .arg("--state")
        .arg(shared.join("state.json"))
        .arg("--map")
        .arg(format!("{0}={0}", s.raw.display()))
        .arg(&s.raw)
        .arg("--")
        .arg(s.work.join("analyse.sh"))
        .timeout(Duration::from_secs(30))
        .run();
    refused
        .assert_failure()
        .assert_stderr_contains("can be written by others");
    refused.assert_stderr_contains("--shared-state");

    // Said so, it runs, and writes its state without touching the link's target.
    let watch = s.watch(&shared.join("state.json"), &["--shared-state"]);
    fs::write(s.raw.join("a.h5"), "data\n").unwrap();
    s.wait_submitted("a.h5");
    s.stop(watch);
    assert_eq!(
        fs::read_to_string(&secret).unwrap(),
        "the watch user's own data\n"
    );
    let state = fs::symlink_metadata(shared.join("state.json")).unwrap();
    assert!(state.is_file(), "the state is no plain file: {state:?}");

    // A lock that is a link is refused, and nothing is created where it points.
    let other = cluster()
        .as_user(&bt.account, bt_submit())
        .arg("watch")
        .arg("--metadata")
        .arg(&bt.metadata_path)
        .args(["--shared-state", "--state"])
        .arg(shared.join("other.json"))
        .arg("--map")
        .arg(format!("{0}={0}", s.raw.display()))
        .arg(&s.raw)
        .arg("--")
        .arg(s.work.join("analyse.sh"))
        .timeout(Duration::from_secs(30))
        .run();
    other
        .assert_failure()
        .assert_stderr_contains("is a symbolic link");
    assert!(!created.exists(), "the lock link's target was created");
}

/// Finding 5. A file whose name holds newlines and a whole log line, as someone who can
/// write the watched folder may create it: the watch's log must keep one line per event.
#[test]
fn a_file_name_with_newlines_cannot_forge_a_line_in_the_watchs_log() {
    let s = setup("attack-log", 0o777);
    let watch = s.watch(&s.work.join("state.json"), &[]);
    let forged =
        "x\n2026-12-07T00:00:00.000Z important.h5 -> job 4711 (closed after writing)\ny.h5";
    as_attacker(&format!(
        "printf data > '{}/{forged}' && echo x > {}/after.h5",
        s.raw.display(),
        s.raw.display()
    ));
    s.wait_submitted("after.h5");
    scenarios::wait::poll(Duration::from_secs(30), || {
        if s.log_text().contains("important.h5") {
            Ok(())
        } else {
            Err(())
        }
    })
    .unwrap_or_else(|()| panic!("the forged name was never logged:\n{}", s.log_text()));
    s.stop(watch);
    let log = s.log_text();
    assert!(
        !log.lines()
            .any(|line| line.starts_with("2026-12-07T00:00:00.000Z")),
        "a forged line:\n{log}"
    );
    assert!(
        log.contains(r#""x\n2026-12-07T00:00:00.000Z important.h5 -> job 4711"#),
        "the name is not shown escaped:\n{log}"
    );
}

/// Finding 4. The beamtime account's `.bashrc` (which bash reads for a command over ssh)
/// writes a quota note to stderr without a final newline. Before #21 the start mark was
/// then not at the start of a line: sbatch queued the job on the node and bt-submit said
/// "ssh to … failed: …; nothing was submitted" (exit status 126).
#[test]
fn a_login_message_without_a_final_newline_does_not_hide_that_sbatch_ran() {
    let c = cluster();
    let sshd = c.sshd();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest212"));
    let key = bt.current_dir.join("shared/id_rsa");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    sshd.authorize(&bt.account, &key.with_extension("pub"));
    let computer = "bttest218";
    c.ensure_unix_user(computer, &[bt.account.as_str()]);
    sshd.beamline_computer(computer, &[(NODE, sshd.port)], true);
    let account = UnixUser::get(&bt.account);
    let bashrc = account.home.join(".bashrc");
    fs::write(&bashrc, "printf 'quota: 91%% of your home is used' >&2\n").unwrap();
    chown(&bashrc, Some(account.uid), Some(account.gid)).unwrap();

    let dir = c.workdir(&bt.account, "attack-login-message");
    let job = dir.join("job.sh");
    fs::write(&job, "#!/bin/bash\necho ran\n").unwrap();
    fs::set_permissions(&job, fs::Permissions::from_mode(0o755)).unwrap();
    let out = c
        .as_user(computer, bt_submit())
        .env_remove("SLURM_CONF")
        .arg("--metadata")
        .arg(&bt.metadata_path)
        .args(["--remote", "--node", NODE])
        .arg(format!("--output={}", dir.join("out.txt").display()))
        .arg(&job)
        .timeout(Duration::from_secs(60))
        .run();
    fs::remove_file(&bashrc).unwrap();
    out.assert_success();
    assert!(!out.stderr.contains("nothing was submitted"), "{out}");
    let id: u32 = out
        .stdout
        .strip_prefix("Submitted batch job ")
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no job id:\n{out}"));
    c.wait_job(id, Duration::from_secs(120))
        .assert_completed_ok();
    assert_eq!(fs::read_to_string(dir.join("out.txt")).unwrap(), "ran\n");
}

/// Finding 3. sbatch reads `--com=mine` as `--comment=mine` and `--res=other` as
/// `--reservation=other` (getopt_long takes any unique prefix). Before #21 the watch took
/// `--com=mine` (its job really had Comment=mine, and crash recovery, which finds a job by
/// the watch's own comment, could not find it), and bt-submit passed `--res=other` on to
/// sbatch beside the beamtime's own reservation.
#[test]
fn sbatch_abbreviations_meet_the_same_checks_as_the_full_options() {
    let c = cluster();
    let bt = beamtime();
    let s = setup("attack-abbreviations", 0o755);
    let job = s.work.join("analyse.sh");
    let watch = c
        .as_user(&bt.account, bt_submit())
        .arg("watch")
        .arg("--metadata")
        .arg(&bt.metadata_path)
        .arg("--state")
        .arg(s.work.join("state.json"))
        .arg(&s.raw)
        .args(["--", "--com=mine"])
        .arg(&job)
        .timeout(Duration::from_secs(30))
        .run();
    assert_eq!(watch.code(), Some(64), "{watch}");
    watch.assert_stderr_contains("gives each job its own --comment");
    assert!(
        !s.work.join("state.json").exists(),
        "the watch started: {watch}"
    );

    let submit = c
        .as_user(&bt.account, bt_submit())
        .arg("--metadata")
        .arg(&bt.metadata_path)
        .arg("--res=other")
        .arg(&job)
        .cwd(&s.out)
        .timeout(Duration::from_secs(30))
        .run();
    assert_eq!(submit.code(), Some(65), "{submit}");
    submit.assert_stderr_contains(&format!(
        "reservation other is not one of beamtime {}'s reservations",
        bt.id
    ));
    assert_eq!(submit.stdout, "", "{submit}");
}

/// A weaker item of #21: a beamline folder holding two beamtimes' metadata files (a
/// leftover of a beamtime switch) was accepted online for both; only the folder's own
/// permissions kept the other beamtime's account out. Now whose folder it is cannot be
/// told, and every job of either is refused on the node with the reason in its one
/// decision line.
#[test]
fn a_beamline_folder_holding_another_beamtimes_metadata_too_is_refused() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest213"));
    let leftover = bt.current_dir.join("beamtime-metadata-11099298.json");
    fs::copy(&bt.metadata_path, &leftover).unwrap();
    let log = c.log_cursor("slurmd.log");
    let wd = c.workdir(&bt.account, "two-beamtimes");
    let args = [
        format!("--beamtime={}", bt.id),
        "--partition=all".to_owned(),
        format!("--reservation={}", bt.reservations[0]),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let job = c.submit(&bt.account, &wd, &args, "#!/bin/bash\necho payload-ran\n");
    let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
    fs::remove_file(&leftover).unwrap();
    assert_eq!(
        (end.state.as_str(), end.exit_code),
        ("FAILED", scenarios::REFUSED),
        "{end:#?}"
    );
    assert!(!job.stdout().contains("payload-ran"), "the refused job ran");
    // The log escapes the apostrophes of the reason: the needle has none.
    let why = "it holds beamtime-metadata-11099298.json too, another beamtime";
    let logged = log.read_new();
    let mine: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains(&format!("job={} ", job.id)) && l.contains("decision="))
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "one decision line for the batch step:\n{logged}"
    );
    assert!(
        mine[0].contains("decision=refused rule=mount-failed") && mine[0].contains(why),
        "{}",
        mine[0]
    );
    c.assert_node_not_drained();
}
