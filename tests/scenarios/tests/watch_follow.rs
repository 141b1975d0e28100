//! `bt-submit watch` left running for a beamtime, on the real cluster: a watch started in
//! pre-start follows the beamtime online (the start renames the reservation; the files
//! after it run in the new one and see the beamline, the plan change is logged);
//! `--dry-run` submits nothing and writes no state; `--skip-existing` skips what was
//! there; the default cap of jobs in flight holds; a folder the nodes see elsewhere (the
//! plugin's `source=`, shown to jobs at `target=`) is handed to each job as the job sees
//! it, and SIGHUP neither stops the watch nor loses or doubles a file, nor does a
//! slurmctld restart in the middle of a burst, nor the node's sshd killed during a
//! `--remote` submission.
//!
//! Every test here is `#[ignore]`d: they test bt-submit, not the node's configuration,
//! and run in the watch pass (`--test watch_follow -- --ignored`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use scenarios::{bt_submit, cluster, wait, Background, Beamtime, BeamtimeSpec, UnixUser, NODE};

/// Each job: its phase, reservation, what it sees of /beamline, the size of its file as
/// it found it (so it could open it), and the path it was given.
const REPORT: &str = "#!/bin/bash\n\
echo \"$BEAMTIME_PHASE $SLURM_JOB_RESERVATION [$(ls -A /beamline | xargs)] $(stat -c %s \"$1\") $1\"\n";

/// The test that restarts slurmctld holds this for writing, every other test for reading:
/// none of them makes a reservation or asks for the node's state while the controller is
/// away (the node is "unknown" to it for a moment after its start).
static CONTROLLER: RwLock<()> = RwLock::new(());

fn controller_stays() -> RwLockReadGuard<'static, ()> {
    CONTROLLER.read().unwrap_or_else(|p| p.into_inner())
}

/// The test that kills the harness's sshd holds this for writing, every other test that
/// logs in through it for reading.
static SSHD: RwLock<()> = RwLock::new(());

fn sshd_stays() -> RwLockReadGuard<'static, ()> {
    SSHD.read().unwrap_or_else(|p| p.into_inner())
}

/// A watch of `data` as the beamtime's account, its log in `work/watch.log`.
struct Watching {
    bt: Beamtime,
    data: PathBuf,
    out: PathBuf,
    script: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

impl Watching {
    /// `data` is made by root (the "detector"); the outputs and the state are the account's.
    fn new(bt: &Beamtime, data: PathBuf, label: &str, script: &str) -> Watching {
        let c = cluster();
        let work = c.workdir(&bt.account, label);
        let out = work.join("out");
        fs::create_dir_all(&data).unwrap();
        fs::create_dir(&out).unwrap();
        let u = UnixUser::get(&bt.account);
        chown(&out, Some(u.uid), Some(u.gid)).unwrap();
        let script_path = work.join("analyse.sh");
        fs::write(&script_path, script).unwrap();
        fs::set_permissions(&script_path, fs::Permissions::from_mode(0o755)).unwrap();
        Watching {
            bt: bt.clone(),
            data,
            out,
            script: script_path,
            state: work.join("state.json"),
            log: work.join("watch.log"),
        }
    }

    fn command(&self, extra: &[&str]) -> scenarios::Cmd {
        cluster()
            .as_user(&self.bt.account, bt_submit())
            .arg("watch")
            .arg("--metadata")
            .arg(&self.bt.metadata_path)
            .arg("--state")
            .arg(&self.state)
            .args(["--settle", "0.5"])
            .args(extra)
            .arg(&self.data)
            .arg("--")
            .arg("-o")
            .arg(self.out.join("out-%j.txt"))
            // A pre-start job's note goes to stderr: apart from the report.
            .arg("-e")
            .arg(self.out.join("err-%j.txt"))
            .arg(&self.script)
            .arg("{}")
    }

    /// `bt-submit watch SUBCOMMAND --state … ARGS` (status, resubmit) as the account.
    fn state_command(&self, subcommand: &str, args: &[&str]) -> scenarios::Cmd {
        cluster()
            .as_user(&self.bt.account, bt_submit())
            .args(["watch", subcommand])
            .arg("--state")
            .arg(&self.state)
            .args(args)
    }

    /// The README's and docs/user.md's watch from the beamline computer, with this cluster's
    /// paths, as `computer`, a participant there (no Slurm; the beamtime's key read through
    /// its group), its state in a folder of its own: over ssh to the reserved node, the beamline folder
    /// mapped from where the beamline computer mounts it to where jobs see it (`target=`).
    /// `extra`: more watch options; `sbatch`: what follows `--`. Also the computer's
    /// folder the command runs in, which holds the state.
    fn command_on_the_beamline_computer(
        &self,
        computer: &str,
        extra: &[&str],
        sbatch: &[&OsStr],
    ) -> (scenarios::Cmd, PathBuf) {
        let c = cluster();
        let sshd = c.sshd();
        // The beamtime's key as the facility leaves it: in shared/, readable by its group.
        let key = self.bt.current_dir.join("shared/id_rsa");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
        sshd.authorize(&self.bt.account, &key.with_extension("pub"));
        c.ensure_unix_user(computer, &[self.bt.account.as_str()]);
        sshd.beamline_computer(computer, &[(NODE, sshd.port)], true);
        let own = c.workdir(computer, "beamline-computer");
        let current = &self.bt.current_dir;
        let seen = format!("/beamline/{}/current", self.bt.beamline);
        let watch = c
            .as_user(computer, bt_submit())
            .env_remove("SLURM_CONF")
            .arg("watch")
            .arg("--metadata")
            .arg(current.join(format!("beamtime-metadata-{}.json", self.bt.id)))
            .args(["--remote", "--settle", "0.5"])
            .arg("--map")
            .arg(format!("{}={seen}", current.display()))
            .args(extra)
            .arg("--state")
            .arg(own.join("state.json"))
            .arg(&self.data)
            .arg("--")
            .args(sbatch);
        (watch.cwd(&own), own)
    }

    fn start(&self, extra: &[&str]) -> Background {
        self.command(extra).spawn(&self.log)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// file → job, from the log's `FILE -> job N` lines.
    fn submissions(&self) -> Vec<(String, u32)> {
        self.log_text()
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once(' ')?;
                let (file, rest) = rest.split_once(" -> job ")?;
                Some((
                    file.to_owned(),
                    rest.split_whitespace().next()?.parse().ok()?,
                ))
            })
            .collect()
    }

    #[track_caller]
    fn wait_for_submissions(&self, n: usize) -> Vec<(String, u32)> {
        wait::poll(Duration::from_secs(60), || {
            let got = self.submissions();
            if got.len() >= n {
                Ok(got)
            } else {
                Err(got.len())
            }
        })
        .unwrap_or_else(|seen| panic!("{seen} of {n} submitted:\n{}", self.log_text()))
    }

    /// The job's report line, once it has ended.
    #[track_caller]
    fn report(&self, job: u32) -> String {
        self.report_in(job, &self.out.join(format!("out-{job}.txt")))
    }

    /// The report line in `path`, the job's output, once the job has ended.
    #[track_caller]
    fn report_in(&self, job: u32, path: &Path) -> String {
        let c = cluster();
        let end = c.wait_job(job, Duration::from_secs(120));
        assert_eq!(end.state, "COMPLETED", "job {job}: {end:?}");
        wait::poll(Duration::from_secs(10), || {
            fs::read_to_string(path)
                .ok()
                .filter(|t| t.ends_with('\n'))
                .ok_or(())
        })
        .unwrap_or_else(|()| panic!("no output {}", path.display()))
        .trim_end()
        .to_owned()
    }

    #[track_caller]
    fn stop(&self, watch: Background) {
        watch.signal(libc::SIGTERM);
        let status = watch.wait(Duration::from_secs(30));
        assert!(status.success(), "{status}:\n{}", self.log_text());
    }
}

fn write(path: &Path, bytes: usize) {
    fs::write(path, vec![b'x'; bytes]).unwrap();
}

/// A detector writing `count` files into `data`, one every 0.3 s (file n has n + 1 bytes),
/// while a test breaks something under the watch.
fn detector(data: &Path, count: usize) -> std::thread::JoinHandle<()> {
    let data = data.to_owned();
    std::thread::spawn(move || {
        for n in 0..count {
            write(&data.join(format!("f{n:02}.h5")), n + 1);
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}

/// The node's sshd, killed by a test: started again when this goes, also when the test
/// fails, so that the other tests' logins work.
struct SshdDown<'a> {
    harness: &'a dyn Fn(&str),
}

impl Drop for SshdDown<'_> {
    fn drop(&mut self) {
        (self.harness)("start-sshd");
    }
}

/// Whether `pid`, just sent SIGSTOP, is stopped: one that was already on its way out
/// (exiting, or a zombie) is not held, and the test waits for the next.
fn held(pid: u32) -> bool {
    wait::poll(Duration::from_secs(1), || {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| ())?;
        let state = status
            .lines()
            .find_map(|line| line.strip_prefix("State:"))
            .map(str::trim_start)
            .unwrap_or_default();
        state.starts_with('T').then_some(()).ok_or(())
    })
    .is_ok()
}

/// Every job Slurm's controller holds for `account` (ended ones too, for MinJobAge), with
/// its comment: Slurm's view of what a watch submitted, whatever the watch logged.
#[track_caller]
fn slurm_jobs(account: &str) -> BTreeMap<u32, String> {
    let queue = cluster()
        .cmd("squeue")
        .args(["-h", "-t", "all", "-u", account, "-o", "%i %k"])
        .run();
    queue.assert_success();
    queue
        .stdout
        .lines()
        .map(|line| {
            let (job, comment) = line.split_once(' ').unwrap_or((line, ""));
            (
                job.parse().unwrap_or_else(|_| panic!("{queue}")),
                comment.to_owned(),
            )
        })
        .collect()
}

/// An sbatch running as `uid`: on the node (here, the same machine), in a session of the
/// node's sshd.
fn sbatch_running_as(uid: u32) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let status = fs::read_to_string(entry.path().join("status")).ok()?;
        let field = |name: &str| status.lines().find_map(|line| line.strip_prefix(name));
        let name = field("Name:")?.trim();
        let real_uid: u32 = field("Uid:")?.split_whitespace().next()?.parse().ok()?;
        // One that has exited (a zombie) is past holding.
        let ended = field("State:")?.trim_start().starts_with('Z');
        (name == "sbatch" && real_uid == uid && !ended).then_some(pid)
    })
}

/// Every submission of the log, each file once, as a map file → job.
#[track_caller]
fn once_each(w: &Watching, submissions: &[(String, u32)]) -> BTreeMap<String, u32> {
    let mut jobs = BTreeMap::new();
    for (file, job) in submissions {
        assert!(
            jobs.insert(file.clone(), *job).is_none(),
            "{file} submitted twice:\n{}",
            w.log_text()
        );
    }
    jobs
}

#[test]
#[ignore = "bt-submit watch: the watch pass runs it (--ignored)"]
fn a_watch_started_in_pre_start_follows_the_beamtime_online() {
    let _controller = controller_stays();
    let c = cluster();
    let spec = BeamtimeSpec::fresh("bttest860");
    let bt = c.start_beamtime(&spec.clone().pre_start());
    // The core path: the same on every host, and in jobs of both phases.
    let core = PathBuf::from(
        bt.metadata()["corePath"]
            .as_str()
            .expect("a pre-start beamtime has a core path"),
    );
    let w = Watching::new(&bt, core.join("raw"), "follow", REPORT);
    let watch = w.start(&[]);
    write(&w.data.join("before.h5"), 3);
    let before = w.wait_for_submissions(1);
    let report = w.report(before[0].1);
    assert!(
        report.starts_with(&format!("pre-start {} [] 3 ", bt.id)),
        "{report}"
    );

    // The start: the beamline folder, the reservation renamed, the old one gone.
    let renamed = format!("{}_1", bt.id);
    c.start_beamtime(&spec.reservations(&[&renamed]));
    let changed = wait::poll(Duration::from_secs(60), || {
        let log = w.log_text();
        if log.contains("the beamtime's metadata changed: plan") {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .unwrap_or_else(|log| panic!("no plan change logged:\n{log}"));
    assert!(
        changed.contains(&format!("plan reservation {}, ", bt.id))
            && changed.contains(&format!(" -> reservation {renamed}, ")),
        "{changed}"
    );
    write(&w.data.join("after.h5"), 5);
    let all = w.wait_for_submissions(2);
    let jobs = once_each(&w, &all);
    let report = w.report(jobs["after.h5"]);
    assert_eq!(
        report,
        format!(
            "online {renamed} [{}] 5 {}",
            bt.beamline,
            w.data.join("after.h5").display()
        )
    );
    w.stop(watch);
    c.assert_node_not_drained();
}

#[test]
#[ignore = "bt-submit watch: the watch pass runs it (--ignored)"]
fn dry_run_submits_nothing_and_writes_no_state_and_skip_existing_skips_what_was_there() {
    let _controller = controller_stays();
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest861"));
    let data = c.workdir(&bt.account, "safe-start-data").join("raw");
    let w = Watching::new(&bt, data, "safe-start", REPORT);
    let map = format!("--map={0}={0}", w.data.display());
    for n in 0..3 {
        write(&w.data.join(format!("old{n}.h5")), 1);
    }
    let out = w.command(&[&map, "--dry-run"]).run();
    out.assert_success();
    for n in 0..3 {
        let path = w.data.join(format!("old{n}.h5"));
        assert!(
            out.stdout.lines().any(|line| line
                .starts_with(&format!("old{n}.h5: sbatch --parsable "))
                && line.contains(&format!("--reservation={}", bt.reservations[0]))
                && line.ends_with(&format!("{} {}", w.script.display(), path.display()))),
            "{out}"
        );
    }
    assert!(!w.state.exists(), "--dry-run wrote {}", w.state.display());
    assert!(!w.state.with_extension("json.lock").exists());
    let queued = c
        .cmd("squeue")
        .args(["-h", "-u", &bt.account, "-o", "%i"])
        .run();
    assert_eq!(queued.stdout.trim(), "", "--dry-run submitted: {queued}");

    let watch = w.start(&[&map, "--skip-existing"]);
    let skipped = wait::poll(Duration::from_secs(30), || {
        let log = w.log_text();
        if log.contains("--skip-existing: 3 files already there recorded as skipped") {
            Ok(())
        } else {
            Err(log)
        }
    });
    skipped.unwrap_or_else(|log| panic!("{log}"));
    write(&w.data.join("new.h5"), 2);
    let submissions = w.wait_for_submissions(1);
    assert_eq!(
        w.report(submissions[0].1),
        format!(
            "online {} [{}] 2 {}",
            bt.reservations[0],
            bt.beamline,
            w.data.join("new.h5").display()
        )
    );
    // A look long enough for a second walk: nothing old comes after.
    std::thread::sleep(Duration::from_secs(3));
    w.stop(watch);
    let jobs = once_each(&w, &w.submissions());
    assert_eq!(
        jobs.keys().collect::<Vec<_>>(),
        ["new.h5"],
        "{}",
        w.log_text()
    );
}

#[test]
#[ignore = "bt-submit watch: the watch pass runs it (--ignored)"]
fn the_default_cap_keeps_at_most_50_jobs_in_flight() {
    let _controller = controller_stays();
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest862"));
    let data = c.workdir(&bt.account, "cap-data").join("raw");
    let w = Watching::new(&bt, data, "cap", "#!/bin/bash\nsleep 300\n");
    for n in 0..60 {
        write(&w.data.join(format!("f{n:02}.h5")), 1);
    }
    let map = format!("--map={0}={0}", w.data.display());
    let watch = w.start(&[&map]);
    let waiting = wait::poll(Duration::from_secs(120), || {
        let log = w.log_text();
        if log.contains(
            "waiting: 50 of this watch's jobs are pending or running (--max-in-flight 50)",
        ) {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .unwrap_or_else(|log| panic!("the cap was never reached:\n{log}"));
    assert!(
        waiting.contains(", at most 50 jobs in flight)"),
        "{waiting}"
    );
    // Two more looks: still 50, none of the other 10.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        once_each(&w, &w.submissions()).len(),
        50,
        "{}",
        w.log_text()
    );
    let queued = c
        .cmd("squeue")
        .args(["-h", "-u", &bt.account, "-o", "%i"])
        .run();
    assert_eq!(queued.stdout.lines().count(), 50, "{queued}");
    w.stop(watch);
    c.cmd("scancel")
        .args(["-u", &bt.account])
        .run()
        .assert_success();
}

#[test]
#[ignore = "bt-submit watch: the watch pass runs it (--ignored)"]
fn a_folder_the_nodes_see_elsewhere_is_handed_to_jobs_as_they_see_it_and_sighup_loses_nothing() {
    let _controller = controller_stays();
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest863"));
    // The beamline folder as this host (and the nodes) have it: the plugin's source=.
    let w = Watching::new(&bt, bt.current_dir.join("raw"), "mapped", REPORT);
    let seen = PathBuf::from(format!("/beamline/{}/current/raw", bt.beamline));
    // A run before this one on the same cluster left its jobs (MinJobAge).
    let before = slurm_jobs(&bt.account);
    // Without --map: the site's source= and target= say where jobs see it.
    let watch = w.start(&[]);
    let mut expected = BTreeMap::new();
    for n in 0..6 {
        let name = format!("f{n}.h5");
        write(&w.data.join(&name), n + 1);
        expected.insert(name, n + 1);
        if n == 2 {
            // To the whole process group, as a logout's hangup comes.
            watch.signal_group(libc::SIGHUP);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let submissions = w.wait_for_submissions(6);
    let log = w.log_text();
    assert!(
        log.contains("SIGHUP: reading the beamtime's metadata again"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{} seen by jobs as {}",
            w.data.display(),
            seen.display()
        )),
        "{log}"
    );
    let jobs = once_each(&w, &submissions);
    assert_eq!(jobs.len(), 6, "{log}");
    // Slurm's view: these six jobs and no other of the account's (a file submitted twice
    // without a log line would show here).
    let mut in_slurm = slurm_jobs(&bt.account);
    in_slurm.retain(|job, _| !before.contains_key(job));
    assert_eq!(
        in_slurm.keys().copied().collect::<BTreeSet<_>>(),
        jobs.values().copied().collect::<BTreeSet<_>>(),
        "{log}"
    );
    for (name, size) in &expected {
        assert_eq!(
            w.report(jobs[name]),
            format!(
                "online {} [{}] {size} {}",
                bt.reservations[0],
                bt.beamline,
                seen.join(name).display()
            )
        );
    }
    w.stop(watch);
    c.assert_node_not_drained();
}

#[test]
#[ignore = "bt-submit watch: the watch pass runs it (--ignored)"]
fn a_reservation_gone_fails_the_file_and_a_watch_refused_for_good_exits_69() {
    let _controller = controller_stays();
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest864"));
    let data = c.workdir(&bt.account, "refused-data").join("raw");
    let w = Watching::new(&bt, data, "refused", REPORT);
    let map = format!("--map={0}={0}", w.data.display());
    let watch = w.start(&[&map, "--give-up-after", "10"]);
    // The facility removes the reservation; the metadata still names it.
    c.cmd("scontrol")
        .args(["delete", &format!("reservation={}", bt.reservations[0])])
        .run()
        .assert_success();
    write(&w.data.join("refused.h5"), 1);
    let status = watch.wait(Duration::from_secs(60));
    let log = w.log_text();
    assert_eq!(status.code(), Some(69), "{status}:\n{log}");
    assert!(
        log.contains("refused.h5: failed: sbatch failed (exit status 1): ")
            && log.contains("refused 3 times in a way no retry can fix"),
        "{log}"
    );
    assert!(
        log.contains("error: every submission for 10 s was refused in a way no retry can fix")
            && log.contains("1 files failed"),
        "{log}"
    );
    assert!(w.submissions().is_empty(), "{log}");

    // The failure is in the state: watch status shows it, a restart with
    // the same plan leaves the file alone, watch resubmit tries it again.
    let standing = || {
        let out = w.state_command("status", &["--format", "json"]).run();
        out.assert_success();
        let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let files = status["files"].as_array().unwrap().clone();
        assert_eq!(files.len(), 1, "{status:#}");
        assert_eq!(files[0]["file"], "refused.h5", "{status:#}");
        files[0]["standing"].as_str().unwrap().to_owned()
    };
    assert_eq!(standing(), "failed");
    // The log is appended to: the restart's part is what follows.
    let before = w.log_text().len();
    let since_restart = || w.log_text()[before..].to_owned();
    let again = w.start(&[&map]);
    let kept = "1 files failed with this plan before, not tried again until it changes";
    wait::poll(Duration::from_secs(30), || {
        since_restart().contains(kept).then_some(()).ok_or(())
    })
    .unwrap_or_else(|()| panic!("no {kept:?}:\n{}", w.log_text()));
    w.stop(again);
    let restarted = since_restart();
    assert!(!restarted.contains("refused.h5"), "{restarted}");
    let resubmit = w.state_command("resubmit", &[]).run();
    resubmit.assert_success();
    resubmit.assert_stdout_contains("refused.h5: failed (\"sbatch failed (exit status 1): ");
    resubmit.assert_stdout_contains("1 marked");
    assert_eq!(standing(), "refused");
    c.assert_node_not_drained();
}

#[test]
#[ignore = "bt-submit watch: the watch pass runs it (--ignored)"]
fn a_slurmctld_restart_in_the_middle_of_a_burst_loses_and_doubles_nothing() {
    let _restart = CONTROLLER.write().unwrap_or_else(|p| p.into_inner());
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest865"));
    let data = c.workdir(&bt.account, "ctld-restart-data").join("raw");
    let w = Watching::new(&bt, data, "ctld-restart", REPORT);
    let map = format!("--map={0}={0}", w.data.display());
    let watch = w.start(&[&map, "--max-in-flight", "0"]);
    let count = 40;
    // The detector keeps writing while the controller is down.
    let detector = detector(&w.data, count);
    w.wait_for_submissions(10);
    c.cmd(scenarios::Cluster::repo_root().join("tests/cluster/cluster.sh"))
        .arg("restart-slurmctld")
        .timeout(Duration::from_secs(120))
        .run()
        .assert_success();
    assert!(
        !detector.is_finished(),
        "the burst ended before the restart did:\n{}",
        w.log_text()
    );
    detector.join().unwrap();
    let submissions = w.wait_for_submissions(count);
    let jobs = once_each(&w, &submissions);
    assert_eq!(jobs.len(), count, "{}", w.log_text());
    for (file, job) in &jobs {
        let size = file[1..3].parse::<usize>().unwrap() + 1;
        let report = w.report(*job);
        assert!(
            report.ends_with(&format!(" {size} {}", w.data.join(file).display())),
            "{report}"
        );
    }
    // A job submitted twice would have written an output of its own.
    let outputs = fs::read_dir(&w.out)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("out-")
        })
        .count();
    assert_eq!(outputs, count, "{}", w.log_text());
    w.stop(watch);
    c.assert_node_not_drained();
}

#[test]
#[ignore = "bt-submit watch: the watch pass runs it (--ignored)"]
fn the_documented_beamline_computer_watch_hands_each_job_a_path_it_can_open() {
    let _controller = controller_stays();
    let _sshd = sshd_stays();
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest867"));
    let computer = "bttest866";
    let seen = PathBuf::from(format!("/beamline/{}/current", bt.beamline));
    let w = Watching::new(&bt, bt.current_dir.join("raw"), "documented", REPORT);
    // As the docs have it: the script in shared/, each job's output in processed/ named
    // after its file, both at paths the node has (here the beamline computer's too).
    let script = bt.current_dir.join("shared/analyse.sh");
    fs::copy(&w.script, &script).unwrap();
    let output = bt.current_dir.join("processed/{stem}.out");
    write(&w.data.join("before.h5"), 1);
    let (watch, _) = w.command_on_the_beamline_computer(
        computer,
        &["--skip-existing", "--pattern", "*.h5"],
        &[
            "-o".as_ref(),
            output.as_os_str(),
            script.as_os_str(),
            "{}".as_ref(),
        ],
    );
    let watch = watch.spawn(&w.log);
    wait::poll(Duration::from_secs(30), || {
        let log = w.log_text();
        if log.contains("--skip-existing: 1 files already there recorded as skipped") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .unwrap_or_else(|log| panic!("{log}"));
    write(&w.data.join("after.h5"), 7);
    let submissions = w.wait_for_submissions(1);
    let jobs = once_each(&w, &submissions);
    assert_eq!(
        jobs.keys().collect::<Vec<_>>(),
        ["after.h5"],
        "{}",
        w.log_text()
    );
    assert_eq!(
        w.report_in(
            jobs["after.h5"],
            &bt.current_dir.join("processed/after.out")
        ),
        format!(
            "online {} [{}] 7 {}",
            bt.reservations[0],
            bt.beamline,
            seen.join("raw/after.h5").display()
        )
    );
    w.stop(watch);
    c.assert_node_not_drained();
}

#[test]
#[ignore = "bt-submit watch: the watch pass runs it (--ignored)"]
fn an_sshd_killed_during_a_remote_burst_loses_and_doubles_nothing() {
    let _controller = controller_stays();
    let _kill = SSHD.write().unwrap_or_else(|p| p.into_inner());
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest868"));
    let computer = "bttest869";
    // A folder of this run's own: a run before it on the same cluster left its files.
    let run = format!("raw/run-{}", std::process::id());
    let seen = PathBuf::from(format!("/beamline/{}/current/{run}", bt.beamline));
    let w = Watching::new(&bt, bt.current_dir.join(&run), "sshd-kill", REPORT);
    // A run before this one on the same cluster left its jobs (MinJobAge).
    let before = slurm_jobs(&bt.account);
    let logins = c.log_cursor("sshd.log");
    let output = w.out.join("out-%j.txt");
    let (watch, own) = w.command_on_the_beamline_computer(
        computer,
        &[],
        &[
            "-o".as_ref(),
            output.as_os_str(),
            w.script.as_os_str(),
            "{}".as_ref(),
        ],
    );
    let watch = watch.spawn(&w.log);
    let count = 40;
    // The detector keeps writing while the node's sshd is down.
    let detector = detector(&w.data, count);
    w.wait_for_submissions(10);
    let harness = |command: &str| {
        c.cmd(scenarios::Cluster::repo_root().join("tests/cluster/cluster.sh"))
            .arg(command)
            .timeout(Duration::from_secs(60))
            .run()
            .assert_success();
    };
    // The kill lands in a submission: the sbatch that the watch's ssh runs on the node is
    // held (stopped) there, and dies with sshd and the session, wherever it was; the
    // watch's ssh learns only that its connection is gone.
    let account = UnixUser::get(&bt.account);
    wait::poll(Duration::from_secs(30), || {
        sbatch_running_as(account.uid)
            .filter(|&sbatch| {
                // SAFETY: kill(2) on a pid just read from /proc; if that sbatch ended
                // meanwhile the call fails and the next submission is waited for.
                let stopped = unsafe { libc::kill(sbatch as libc::pid_t, libc::SIGSTOP) == 0 };
                stopped && held(sbatch)
            })
            .ok_or(())
    })
    .unwrap_or_else(|()| panic!("no submission caught running:\n{}", w.log_text()));
    // Measured before the kill: the watch may log the outage (once) while the harness is
    // still killing.
    let killed_at = w.log_text().len();
    harness("kill-sshd");
    // Whatever fails below, the next tests find sshd up again.
    let sshd_down = SshdDown { harness: &harness };
    assert!(
        !detector.is_finished(),
        "the burst ended before sshd was killed:\n{}",
        w.log_text()
    );
    let outage = "none of the reserved nodes answered over ssh";
    wait::poll(Duration::from_secs(30), || {
        w.log_text()[killed_at..]
            .contains(outage)
            .then_some(())
            .ok_or(())
    })
    .unwrap_or_else(|()| panic!("no {outage:?} after the kill:\n{}", w.log_text()));
    // Down a few seconds more: several files come complete meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    drop(sshd_down);
    detector.join().unwrap();

    let jobs = once_each(&w, &w.wait_for_submissions(count));
    assert_eq!(jobs.len(), count, "{}", w.log_text());
    // The held submission: told as one whose answer was lost, looked up in Slurm, never
    // taken for a refusal.
    let log = w.log_text();
    assert!(
        log.contains("bt-submit cannot tell whether anything was submitted; asking Slurm for its job by its comment before it is submitted again"),
        "{log}"
    );
    assert!(!log.contains("refused for good"), "{log}");
    // The running watch's own count, once a minute, agrees.
    let counted = format!("counters: seen {count}, waiting to be complete 0, submitted {count}, ");
    wait::poll(Duration::from_secs(90), || {
        w.log_text().contains(&counted).then_some(()).ok_or(())
    })
    .unwrap_or_else(|()| panic!("no {counted:?}:\n{}", w.log_text()));
    assert!(
        w.log_text().contains(", refused and not yet submitted 0"),
        "{}",
        w.log_text()
    );
    // Slurm's view: every job of the beamtime's account, each with its comment and the
    // file it was given. A file submitted twice, or a job the watch lost track of, shows
    // here even when the log does not.
    let mut in_slurm = slurm_jobs(&bt.account);
    in_slurm.retain(|job, _| !before.contains_key(job));
    assert_eq!(
        in_slurm.keys().copied().collect::<BTreeSet<_>>(),
        jobs.values().copied().collect::<BTreeSet<_>>(),
        "Slurm's jobs are not the log's: {in_slurm:?}\n{}",
        w.log_text()
    );
    for (file, job) in &jobs {
        assert!(
            in_slurm[job].starts_with("bt-submit-watch:"),
            "job {job}: {}",
            in_slurm[job]
        );
        let size = file[1..3].parse::<usize>().unwrap() + 1;
        assert_eq!(
            w.report(*job),
            format!(
                "online {} [{}] {size} {}",
                bt.reservations[0],
                bt.beamline,
                seen.join(file).display()
            )
        );
    }
    w.stop(watch);
    // One shared connection served the burst before the kill, one after the restart.
    let accepted = format!("Accepted publickey for {} ", bt.account);
    let connections = logins.read_new().matches(&accepted).count();
    assert!(
        (1..=2).contains(&connections),
        "{count} submissions over {connections} ssh connections"
    );
    // What watch status says, over the same road: each file submitted once, to its job.
    let status = c
        .as_user(computer, bt_submit())
        .env_remove("SLURM_CONF")
        .args([
            "watch",
            "status",
            "--remote",
            "--format",
            "json",
            "--metadata",
        ])
        .arg(
            bt.current_dir
                .join(format!("beamtime-metadata-{}.json", bt.id)),
        )
        .arg("--state")
        .arg(own.join("state.json"))
        .cwd(&own)
        .run();
    status.assert_success();
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let standing: BTreeMap<String, (String, u32, String)> = status["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_owned(),
                (
                    f["standing"].as_str().unwrap().to_owned(),
                    f["job"].as_u64().unwrap() as u32,
                    f["jobState"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (String, u32, String)> = jobs
        .iter()
        .map(|(file, job)| {
            (
                file.clone(),
                ("submitted".to_owned(), *job, "COMPLETED".to_owned()),
            )
        })
        .collect();
    assert_eq!(standing, expected, "{status:#}");
    c.assert_node_not_drained();
}
