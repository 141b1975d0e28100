//! `bt-submit watch` on the real cluster: files arriving in a folder while a
//! "detector" (this test) writes them — at once, slowly, renamed into place, in
//! new subfolders — become exactly one job each, run as the beamtime's account
//! with its beamline, each seeing its whole file; a watch killed with SIGKILL and
//! started again mid-burst still makes exactly one job per file; a file still
//! being written is not submitted; `--max-in-flight 4` never has more than 4
//! jobs queued or running; a failed sbatch is retried until it succeeds. With
//! `--each folder`, scan folders — written at once, file by file, renamed into place —
//! become one job each once complete (by settling or by their done file), each seeing its
//! whole scan, and none again after a restart.
//!
//! Beamtime 11099850 (beamline p850, account bttest850), shared by these tests; 11099851
//! (p851, bttest851) for the watch on "the beamline computer" (user bttest852, in
//! bttest851's group, no Slurm configuration) that submits over ssh with `--remote`.
//!
//! Every test here is `#[ignore]`d: they test bt-submit, not the node's configuration, and
//! make some 450 jobs, so scripts/test-all.sh runs them once, in a pass of their own
//! (`cargo test -p scenarios --test watch -- --ignored`), not in every one-node pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use scenarios::{bt_submit, cluster, Background, Beamtime, BeamtimeSpec, UnixUser, NODE};

fn beamtime() -> &'static Beamtime {
    static BT: OnceLock<Beamtime> = OnceLock::new();
    BT.get_or_init(|| {
        cluster().start_beamtime(
            &BeamtimeSpec::new("11099850", "p850", "bttest850")
                .partition("all")
                .cores(4),
        )
    })
}

/// Each job reports its beamtime, what it sees of its beamline, the size of its file as
/// the job found it, and the file.
const REPORT: &str =
    "#!/bin/bash\necho \"$BEAMTIME_ID $(ls -A /beamline) $(stat -c %s \"$1\") $1\"\n";

/// For a scan folder: the number of files in it as the job found them, instead of the size.
const SCAN_REPORT: &str =
    "#!/bin/bash\necho \"$BEAMTIME_ID $(ls -A /beamline) $(find \"$1\" -type f | wc -l) $1\"\n";

/// One test's folders, all owned by the beamtime account: the data folder the watch
/// looks at (written by root, the "detector"), the job outputs, the script and the state.
struct Setup {
    data: PathBuf,
    out: PathBuf,
    script: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

fn setup(label: &str, script: &str) -> Setup {
    let c = cluster();
    let bt = beamtime();
    let work = c.workdir(&bt.account, label);
    let data = work.join("raw");
    let out = work.join("out");
    for dir in [&data, &out] {
        fs::create_dir(dir).unwrap();
    }
    let u = UnixUser::get(&bt.account);
    chown(&out, Some(u.uid), Some(u.gid)).unwrap();
    let script_path = work.join("analyse.sh");
    fs::write(&script_path, script).unwrap();
    fs::set_permissions(&script_path, fs::Permissions::from_mode(0o755)).unwrap();
    Setup {
        state: work.join("watch-state.json"),
        log: work.join("watch.log"),
        data,
        out,
        script: script_path,
    }
}

impl Setup {
    /// Starts `bt-submit watch` as the beamtime account; `extra` are watch options.
    fn start(&self, extra: &[&str], sbatch: &[&str]) -> Background {
        self.start_with_path(extra, sbatch, None)
    }

    /// [`Setup::start`] with `bin` first on PATH.
    fn start_with_path(&self, extra: &[&str], sbatch: &[&str], bin: Option<&Path>) -> Background {
        let c = cluster();
        let bt = beamtime();
        let mut cmd = c.as_user(&bt.account, bt_submit());
        if let Some(bin) = bin {
            cmd = cmd.env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
            );
        }
        cmd.arg("watch")
            .arg("--metadata")
            .arg(&bt.metadata_path)
            .arg("--state")
            .arg(&self.state)
            .args(extra)
            // The node sees the test's folder where this host does.
            .arg("--map")
            .arg(format!("{0}={0}", self.data.display()))
            .arg(&self.data)
            .arg("--")
            .arg("-o")
            .arg(self.out.join("out-%j.txt"))
            .args(sbatch)
            .arg(&self.script)
            .arg("{}")
            .cwd(&self.out)
            .spawn(&self.log)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The file → job lines of the watch's log, every one of them.
    fn submissions(&self) -> Vec<(String, u32)> {
        self.log_text()
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once(' ')?;
                let (file, rest) = rest.split_once(" -> job ")?;
                let job = rest.split_whitespace().next()?.parse().ok()?;
                Some((file.to_owned(), job))
            })
            .collect()
    }

    /// Waits until the log has `n` submissions; panics with the log otherwise.
    #[track_caller]
    fn wait_for_submissions(&self, n: usize, timeout: Duration) -> Vec<(String, u32)> {
        scenarios::wait::poll(timeout, || {
            let got = self.submissions();
            if got.len() >= n {
                Ok(got)
            } else {
                Err(got.len())
            }
        })
        .unwrap_or_else(|seen| {
            panic!(
                "{seen} of {n} files submitted within {timeout:?}; the watch's log:\n{}",
                self.log_text()
            )
        })
    }

    /// Stops the watch with SIGTERM: it must end by itself, with status 0.
    #[track_caller]
    fn stop(&self, watch: Background) {
        watch.signal(libc::SIGTERM);
        let status = watch.wait(Duration::from_secs(30));
        assert!(
            status.success(),
            "the watch ended with {status} after SIGTERM; its log:\n{}",
            self.log_text()
        );
        assert!(
            self.log_text().contains("stopping on SIGTERM"),
            "{}",
            self.log_text()
        );
    }
}

/// Writes a file as a detector does and returns its final size: at once, slowly
/// (kept open, growing for a while), or written under a hidden name and renamed
/// into place.
#[derive(Clone, Copy)]
enum Arrival {
    AtOnce,
    Slowly,
    Renamed,
}

fn write_file(path: &Path, size: usize, arrival: Arrival) {
    let bytes = vec![b'x'; size];
    match arrival {
        Arrival::AtOnce => fs::write(path, &bytes).unwrap(),
        Arrival::Slowly => {
            let mut file = fs::File::create(path).unwrap();
            for chunk in bytes.chunks(size.div_ceil(4)) {
                file.write_all(chunk).unwrap();
                file.flush().unwrap();
                thread::sleep(Duration::from_millis(400));
            }
        }
        Arrival::Renamed => {
            let name = path.file_name().unwrap().to_string_lossy();
            let hidden = path.with_file_name(format!(".{name}.part"));
            fs::write(&hidden, &bytes).unwrap();
            fs::rename(&hidden, path).unwrap();
        }
    }
}

/// 200 files: 120 at once, 40 renamed into place, 40 in 4 new subfolders, every tenth
/// written slowly; paced over ~8 s. `at_file(n)` runs before file n. Returns each
/// file's path and final size.
fn burst(data: &Path, mut at_file: impl FnMut(usize)) -> BTreeMap<PathBuf, usize> {
    let mut expected = BTreeMap::new();
    let mut slow = Vec::new();
    for n in 0..200 {
        at_file(n);
        let folder = if n >= 160 {
            let sub = data.join(format!("scan_{:03}", (n - 160) / 10));
            fs::create_dir_all(&sub).unwrap();
            sub
        } else {
            data.to_path_buf()
        };
        let path = folder.join(format!("frame_{n:04}.h5"));
        let size = 1000 + n * 37;
        let arrival = match n {
            n if n % 10 == 3 => Arrival::Slowly,
            n if (120..160).contains(&n) => Arrival::Renamed,
            _ => Arrival::AtOnce,
        };
        expected.insert(path.clone(), size);
        if matches!(arrival, Arrival::Slowly) {
            slow.push(thread::spawn(move || write_file(&path, size, arrival)));
        } else {
            write_file(&path, size, arrival);
        }
        thread::sleep(Duration::from_millis(40));
    }
    for writer in slow {
        writer.join().unwrap();
    }
    expected
}

/// Every job ended well, saw its beamline, and its own whole file; one job per file.
#[track_caller]
fn assert_one_whole_file_per_job(
    setup: &Setup,
    expected: &BTreeMap<PathBuf, usize>,
    submissions: &[(String, u32)],
) {
    let c = cluster();
    let bt = beamtime();
    let jobs: BTreeSet<u32> = submissions.iter().map(|(_, job)| *job).collect();
    assert_eq!(
        jobs.len(),
        submissions.len(),
        "a job id was logged twice:\n{}",
        setup.log_text()
    );
    let mut seen: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for job in &jobs {
        c.wait_job(*job, Duration::from_secs(600))
            .assert_completed_ok();
        let out = setup.out.join(format!("out-{job}.txt"));
        let text = fs::read_to_string(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let fields: Vec<&str> = text.trim_end().splitn(4, ' ').collect();
        assert_eq!(
            fields[..2],
            [bt.id.as_str(), bt.beamline.as_str()],
            "job {job}: {text}"
        );
        let path = PathBuf::from(fields[3]);
        let size: usize = fields[2].parse().unwrap();
        assert_eq!(
            Some(&size),
            expected.get(&path),
            "job {job} saw {} with {size} bytes (a scan folder: files)",
            path.display()
        );
        assert!(
            seen.insert(path.clone(), size).is_none(),
            "{} was submitted twice",
            path.display()
        );
    }
    assert_eq!(seen, *expected, "files without a job");
    // No job beyond those in the log (a duplicate the log missed would show here).
    let outputs = fs::read_dir(&setup.out).unwrap().count();
    assert_eq!(
        outputs,
        expected.len(),
        "job outputs in {}",
        setup.out.display()
    );
    c.assert_node_not_drained();
}

#[test]
#[ignore = "bt-submit watch: scripts/test-all.sh runs it in a pass of its own (--ignored)"]
fn two_hundred_files_arriving_every_way_make_exactly_two_hundred_jobs() {
    let s = setup("watch-200", REPORT);
    let watch = s.start(&["--pattern", "*.h5", "--settle", "3"], &[]);
    let expected = burst(&s.data, |_| {});
    let submissions = s.wait_for_submissions(200, Duration::from_secs(300));
    // Nothing more comes: the watch has seen every file.
    thread::sleep(Duration::from_secs(4));
    let submissions_after = s.submissions();
    s.stop(watch);
    assert_eq!(submissions_after.len(), 200, "{}", s.log_text());
    assert_one_whole_file_per_job(&s, &expected, &submissions);
    let log = s.log_text();
    for why in ["(closed after writing)", "(renamed into place)"] {
        assert!(log.contains(why), "no file was {why}:\n{log}");
    }
}

#[test]
#[ignore = "bt-submit watch: scripts/test-all.sh runs it in a pass of its own (--ignored)"]
fn a_watch_killed_and_restarted_mid_burst_still_makes_one_job_per_file() {
    let s = setup("watch-kill", REPORT);
    // Without inotify, as on GPFS for files written on another host: found by looking.
    let options = ["--no-inotify", "--settle", "1", "--poll-interval", "0.5"];
    let mut watch = Some(s.start(&options, &[]));
    let expected = burst(&s.data, |n| {
        if n == 70 || n == 140 {
            // SIGKILL: no chance to finish what it was doing, e.g. a submission.
            watch.take().unwrap().signal(libc::SIGKILL);
            thread::sleep(Duration::from_millis(600));
            watch = Some(s.start(&options, &[]));
        }
    });
    let submissions = s.wait_for_submissions(200, Duration::from_secs(300));
    thread::sleep(Duration::from_secs(3));
    let submissions_after = s.submissions();
    s.stop(watch.take().unwrap());
    assert_eq!(submissions_after.len(), 200, "{}", s.log_text());
    let starts = s.log_text().matches(" watching ").count();
    assert_eq!(
        starts,
        3,
        "the watch was not restarted twice:\n{}",
        s.log_text()
    );
    assert_one_whole_file_per_job(&s, &expected, &submissions);
}

#[test]
#[ignore = "bt-submit watch: scripts/test-all.sh runs it in a pass of its own (--ignored)"]
fn a_watch_killed_after_sbatch_made_the_job_but_before_it_recorded_it_does_not_submit_again() {
    let s = setup("watch-crash", REPORT);
    let name = format!("crash-{}", std::process::id());
    // The real sbatch, which then takes 10 s to return: the watch dies in that window,
    // after Slurm has the job and before the watch has written its id down.
    let bin = s.data.parent().unwrap().join("bin");
    fs::create_dir(&bin).unwrap();
    let slow_sbatch = bin.join("sbatch");
    fs::write(
        &slow_sbatch,
        "#!/bin/sh
/usr/bin/sbatch \"$@\"\nstatus=$?\nsleep 10\nexit $status\n",
    )
    .unwrap();
    fs::set_permissions(&slow_sbatch, fs::Permissions::from_mode(0o755)).unwrap();
    let watch = s.start_with_path(&["--settle", "0.5"], &["-J", &name], Some(&bin));
    let path = s.data.join("one.h5");
    fs::write(&path, b"crash").unwrap();
    let c = cluster();
    let bt = beamtime();
    let made = scenarios::wait::poll(Duration::from_secs(30), || {
        let out = c
            .cmd("squeue")
            .args([
                "-h",
                "-t",
                "all",
                "-u",
                &bt.account,
                "-n",
                &name,
                "-o",
                "%i",
            ])
            .run();
        match out.stdout.trim().parse::<u32>() {
            Ok(job) => Ok(job),
            Err(_) => Err(out.stdout),
        }
    })
    .unwrap_or_else(|seen| panic!("no job made: {seen:?}\n{}", s.log_text()));
    watch.signal(libc::SIGKILL);
    drop(watch);
    assert_eq!(s.submissions(), [], "{}", s.log_text());
    let watch = s.start(&["--settle", "0.5"], &["-J", &name]);
    let submissions = s.wait_for_submissions(1, Duration::from_secs(30));
    assert_eq!(
        submissions,
        [("one.h5".to_owned(), made)],
        "{}",
        s.log_text()
    );
    assert!(
        s.log_text().contains(
            "one.h5 -> job {made} (its submission was interrupted; Slurm has the job)"
                .replace("{made}", &made.to_string())
                .as_str()
        ),
        "{}",
        s.log_text()
    );
    thread::sleep(Duration::from_secs(3));
    assert_eq!(s.submissions().len(), 1, "{}", s.log_text());
    s.stop(watch);
    let mut expected = BTreeMap::new();
    expected.insert(path, 5);
    assert_one_whole_file_per_job(&s, &expected, &submissions);
}

#[test]
#[ignore = "bt-submit watch: scripts/test-all.sh runs it in a pass of its own (--ignored)"]
fn a_file_still_being_written_is_not_submitted_until_it_settles() {
    let s = setup("watch-slow", REPORT);
    let watch = s.start(
        &["--no-inotify", "--settle", "2", "--poll-interval", "0.5"],
        &[],
    );
    let path = s.data.join("growing.h5");
    let mut file = fs::File::create(&path).unwrap();
    // Written for 8 s, with pauses up to 1.5 s (shorter than the settle time).
    for pause in [500, 1500, 700, 1500, 1000, 1200, 1500, 100] {
        file.write_all(&[b'y'; 4096]).unwrap();
        file.flush().unwrap();
        thread::sleep(Duration::from_millis(pause));
        assert_eq!(
            s.submissions(),
            [],
            "submitted while being written:\n{}",
            s.log_text()
        );
    }
    file.write_all(&[b'y'; 4096]).unwrap();
    drop(file);
    let written = Instant::now();
    let submissions = s.wait_for_submissions(1, Duration::from_secs(60));
    let after = written.elapsed();
    s.stop(watch);
    assert!(
        after >= Duration::from_secs(2),
        "submitted {after:?} after the last write, before the settle time"
    );
    let mut expected = BTreeMap::new();
    expected.insert(path, 9 * 4096);
    assert_one_whole_file_per_job(&s, &expected, &submissions);
}

#[test]
#[ignore = "bt-submit watch: scripts/test-all.sh runs it in a pass of its own (--ignored)"]
fn max_in_flight_4_never_has_more_than_4_jobs_queued_or_running() {
    let name = format!("inflight-{}", std::process::id());
    let s = setup("watch-inflight", &format!("{REPORT}sleep 3\n"));
    let bt = beamtime();
    let files = 16;
    for n in 0..files {
        fs::write(s.data.join(format!("f{n:02}.dat")), vec![b'z'; 100 + n]).unwrap();
    }
    // Counts the jobs of this test (its job name) that Slurm has pending or running.
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let (stop, most) = (stop.clone(), most.clone());
        let (c, account, name) = (cluster().clone(), bt.account.clone(), name.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = c
                    .cmd("squeue")
                    .args(["-h", "-u", &account, "-n", &name, "-o", "%i %T"])
                    .run();
                let now = out.stdout.lines().count();
                most.fetch_max(now, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let watch = s.start(&["--settle", "0.5", "--max-in-flight", "4"], &["-J", &name]);
    let submissions = s.wait_for_submissions(files, Duration::from_secs(300));
    s.stop(watch);
    let mut expected = BTreeMap::new();
    for n in 0..files {
        expected.insert(s.data.join(format!("f{n:02}.dat")), 100 + n);
    }
    assert_one_whole_file_per_job(&s, &expected, &submissions);
    stop.store(true, Ordering::SeqCst);
    monitor.join().unwrap();
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 4, "{most} jobs were queued or running at once");
    assert_eq!(most, 4, "the watch never used its 4 places");
    assert!(
        s.log_text()
            .contains("waiting: 4 of this watch's jobs are pending or running"),
        "{}",
        s.log_text()
    );
}

#[test]
#[ignore = "bt-submit watch: scripts/test-all.sh runs it in a pass of its own (--ignored)"]
fn a_failed_submission_is_reported_and_retried_until_it_succeeds() {
    let s = setup("watch-retry", REPORT);
    // sbatch cannot read the script: a real sbatch failure, until the mode is fixed.
    fs::set_permissions(&s.script, fs::Permissions::from_mode(0o600)).unwrap();
    let watch = s.start(&["--settle", "0.5"], &[]);
    let path = s.data.join("only.h5");
    fs::write(&path, b"data").unwrap();
    let failed = scenarios::wait::poll(Duration::from_secs(30), || {
        let log = s.log_text();
        if log.contains("failure 2") {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .unwrap_or_else(|log| panic!("no second failure logged:\n{log}"));
    assert!(
        failed.contains("only.h5: not submitted: sbatch failed")
            && failed.contains("trying again in 2 s (failure 1)")
            && failed.contains("trying again in 4 s (failure 2)"),
        "{failed}"
    );
    fs::set_permissions(&s.script, fs::Permissions::from_mode(0o755)).unwrap();
    let submissions = s.wait_for_submissions(1, Duration::from_secs(30));
    s.stop(watch);
    let mut expected = BTreeMap::new();
    expected.insert(path, 4);
    assert_one_whole_file_per_job(&s, &expected, &submissions);
}

#[test]
#[ignore = "bt-submit watch: scripts/test-all.sh runs it in a pass of its own (--ignored)"]
fn a_watch_on_the_beamline_computer_submits_over_ssh_and_counts_its_jobs_there() {
    let c = cluster();
    let sshd = c.sshd();
    let bt = c.start_beamtime(&BeamtimeSpec::new("11099851", "p851", "bttest851").partition("all"));
    // The beamtime's key as the facility leaves it: in shared/, readable by its group.
    let key = bt.current_dir.join("shared/id_rsa");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    sshd.authorize(&bt.account, &key.with_extension("pub"));
    let computer = "bttest852";
    c.ensure_unix_user(computer, &[bt.account.as_str()]);
    sshd.beamline_computer(computer, &[(NODE, sshd.port)], true);

    let work = c.workdir(&bt.account, "watch-remote");
    let data = work.join("raw");
    let out = work.join("out");
    fs::create_dir(&data).unwrap();
    fs::create_dir(&out).unwrap();
    let u = UnixUser::get(&bt.account);
    chown(&out, Some(u.uid), Some(u.gid)).unwrap();
    let script = work.join("analyse.sh");
    fs::write(
        &script,
        "#!/bin/bash\necho \"$(id -un) $SLURM_JOB_RESERVATION $1\"\nsleep 2\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let own = c.workdir(computer, "watch-remote-state");
    let log = own.join("watch.log");
    let watch = c
        .as_user(computer, bt_submit())
        .env_remove("SLURM_CONF")
        .arg("watch")
        .arg("--metadata")
        .arg(&bt.metadata_path)
        .args([
            "--remote",
            "--node",
            NODE,
            "--settle",
            "0.5",
            "--max-in-flight",
            "1",
        ])
        .arg("--state")
        .arg(own.join("state.json"))
        .arg("--map")
        .arg(format!("{0}={0}", data.display()))
        .arg(&data)
        .arg("--")
        .arg("-o")
        .arg(out.join("out-%j.txt"))
        .arg(&script)
        .arg("{}")
        .cwd(&own)
        .spawn(&log);
    let files: Vec<PathBuf> = (0..3).map(|n| data.join(format!("f{n}.h5"))).collect();
    for file in &files {
        fs::write(file, b"remote").unwrap();
    }
    let text = || fs::read_to_string(&log).unwrap_or_default();
    let jobs: Vec<(String, u32)> = scenarios::wait::poll(Duration::from_secs(120), || {
        let found: Vec<(String, u32)> = text()
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once(' ')?;
                let (file, rest) = rest.split_once(" -> job ")?;
                let (job, rest) = rest.split_once(' ')?;
                assert!(rest.starts_with(&format!("on {NODE} ")), "{line}");
                Some((file.to_owned(), job.parse().ok()?))
            })
            .collect();
        if found.len() == 3 {
            Ok(found)
        } else {
            Err(found.len())
        }
    })
    .unwrap_or_else(|n| panic!("{n} of 3 files submitted; the watch's log:\n{}", text()));
    watch.signal(libc::SIGTERM);
    assert!(watch.wait(Duration::from_secs(30)).success(), "{}", text());
    // squeue over ssh said the one job in flight was still there.
    assert!(
        text().contains("waiting: 1 of this watch's jobs are pending or running"),
        "{}",
        text()
    );
    let mut seen = BTreeSet::new();
    for (file, job) in &jobs {
        c.wait_job(*job, Duration::from_secs(120))
            .assert_completed_ok();
        let said = fs::read_to_string(out.join(format!("out-{job}.txt"))).unwrap();
        let path = data.join(file);
        assert_eq!(
            said,
            format!("{} {} {}\n", bt.account, bt.id, path.display()),
            "job {job}"
        );
        assert!(seen.insert(path), "{file} submitted twice");
    }
    assert_eq!(seen, files.into_iter().collect::<BTreeSet<_>>());
}

/// Writes `count` frames into `folder` (made if need be), `pause` apart.
fn write_scan(folder: &Path, count: usize, pause: Duration) {
    fs::create_dir_all(folder).unwrap();
    for n in 0..count {
        write_file(
            &folder.join(format!("frame_{n:04}.h5")),
            2000,
            Arrival::AtOnce,
        );
        thread::sleep(pause);
    }
}

#[test]
#[ignore = "bt-submit watch: scripts/test-all.sh runs it in a pass of its own (--ignored)"]
fn each_scan_folder_becomes_one_job_once_nothing_in_it_changes() {
    let s = setup("watch-scans", SCAN_REPORT);
    let options = [
        "--each",
        "folder",
        "--pattern",
        "scan_*",
        "--settle",
        "2",
        "--poll-interval",
        "0.5",
    ];
    let watch = s.start(&options, &[]);
    let mut expected = BTreeMap::new();
    // At once, with a subfolder of its own.
    write_scan(&s.data.join("scan_000"), 10, Duration::ZERO);
    write_scan(&s.data.join("scan_000/dark"), 3, Duration::ZERO);
    expected.insert(s.data.join("scan_000"), 13);
    // Prepared under a hidden name and renamed into place whole.
    write_scan(&s.data.join(".scan_001.tmp"), 7, Duration::ZERO);
    fs::rename(s.data.join(".scan_001.tmp"), s.data.join("scan_001")).unwrap();
    expected.insert(s.data.join("scan_001"), 7);
    // Neither a scan folder nor in one: no job.
    write_scan(&s.data.join("calibration"), 2, Duration::ZERO);
    write_file(&s.data.join("scan_notes.h5"), 10, Arrival::AtOnce);
    // Frame by frame, each pause shorter than the settle time: never submitted early.
    let slow = s.data.join("scan_002");
    fs::create_dir(&slow).unwrap();
    for n in 0..8 {
        write_file(
            &slow.join(format!("frame_{n:04}.h5")),
            4096,
            if n % 3 == 0 {
                Arrival::Slowly
            } else {
                Arrival::AtOnce
            },
        );
        thread::sleep(Duration::from_millis(900));
        assert!(
            !s.submissions()
                .iter()
                .any(|(folder, _)| folder == "scan_002"),
            "scan_002 submitted while its frames were still coming:\n{}",
            s.log_text()
        );
    }
    expected.insert(slow, 8);
    let submissions = s.wait_for_submissions(3, Duration::from_secs(120));
    thread::sleep(Duration::from_secs(3));
    let submissions_after = s.submissions();
    s.stop(watch);
    assert_eq!(submissions_after.len(), 3, "{}", s.log_text());
    assert_one_whole_file_per_job(&s, &expected, &submissions);
}

#[test]
#[ignore = "bt-submit watch: scripts/test-all.sh runs it in a pass of its own (--ignored)"]
fn with_a_done_file_a_scan_waits_for_it_and_a_restart_submits_no_scan_twice() {
    let s = setup("watch-done", SCAN_REPORT);
    let options = [
        "--each",
        "folder",
        "--done-file",
        "scan.done",
        "--settle",
        "1",
        "--poll-interval",
        "0.5",
    ];
    let watch = s.start(&options, &[]);
    let scan = s.data.join("scan_100");
    write_scan(&scan, 5, Duration::from_millis(100));
    // A pause four times the settle time: without its done file the scan is not complete.
    thread::sleep(Duration::from_secs(4));
    assert_eq!(
        s.submissions(),
        [],
        "submitted without its done file:\n{}",
        s.log_text()
    );
    write_file(&scan.join("master.h5"), 100, Arrival::AtOnce);
    fs::write(scan.join("scan.done"), b"").unwrap();
    let first = s.wait_for_submissions(1, Duration::from_secs(60));
    // Its job has seen the scan before anything else is added to it.
    cluster()
        .wait_job(first[0].1, Duration::from_secs(120))
        .assert_completed_ok();
    assert!(
        s.log_text().contains("scan_100 -> job")
            && s.log_text().contains("(its done file is there)"),
        "{}",
        s.log_text()
    );
    s.stop(watch);
    // While the watch is down, the finished scan gets one more file and a new scan comes.
    fs::write(scan.join("late.txt"), b"late").unwrap();
    let next = s.data.join("scan_101");
    write_scan(&next, 4, Duration::ZERO);
    fs::write(next.join("scan.done"), b"").unwrap();
    let watch = s.start(&options, &[]);
    let submissions = s.wait_for_submissions(2, Duration::from_secs(60));
    thread::sleep(Duration::from_secs(2));
    let submissions_after = s.submissions();
    s.stop(watch);
    assert_eq!(submissions_after.len(), 2, "{}", s.log_text());
    assert_eq!(submissions[0], first[0]);
    assert_eq!(submissions[1].0, "scan_101", "{}", s.log_text());
    let mut expected = BTreeMap::new();
    // Five frames, the master file and the done file; late.txt came after its job.
    expected.insert(scan, 7);
    expected.insert(next, 5);
    assert_one_whole_file_per_job(&s, &expected, &submissions);
}
