//! Issue #17, findings 1–4: what a beamtime's own account can do with the job's runs, its
//! reservation, its tasks' lifetime and the names in its beamline folder. Each test plays
//! the attack as the issue wrote it, on the real cluster, and asserts what holds now
//! (docs/security.md, "Independent attack (#17)").
//!
//! Accounts bttest750–bttest799; each test's beamtime has a fresh id and beamline.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use scenarios::{wait, Beamtime, BeamtimeSpec, Cluster, Job, LogCursor, DEFAULT_TIMEOUT};

fn beamtime(c: &Cluster, account: &str) -> Beamtime {
    c.start_beamtime(&BeamtimeSpec::fresh(account).cores(1))
}

/// The `nth` (from 1) decision line of the plugin for `step` of `job`, once slurmstepd has
/// logged it (slurmd.log is written asynchronously; a requeued job logs one per run).
/// `seen` is what the log held since `log` was placed, for the messages.
#[track_caller]
fn decision_line(log: &LogCursor, seen: &mut String, job: u32, step: &str, nth: usize) -> String {
    let needle = format!("spank-beamtime: job={job} step={step} ");
    let timeout = Duration::from_secs(60);
    wait::poll(timeout, || {
        *seen = log.read_new();
        seen.lines()
            .filter(|line| line.contains(&needle) && line.contains("decision="))
            .nth(nth - 1)
            .map(str::to_owned)
            .ok_or(())
    })
    .unwrap_or_else(|()| {
        panic!(
            "{} has no decision {nth} for job {job} step {step} after {timeout:?}:\n{seen}",
            log.path.display()
        )
    })
}

/// The controller's `JobState` of `job`, waited for until `wanted` says yes.
#[track_caller]
fn wait_state(c: &Cluster, job: u32, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    let timeout = Duration::from_secs(60);
    wait::poll(timeout, || {
        let state = c
            .job_record(job)
            .and_then(|r| r.get("JobState").cloned())
            .unwrap_or_default();
        if wanted(&state) {
            Ok(state)
        } else {
            Err(state)
        }
    })
    .unwrap_or_else(|last| {
        panic!(
            "job {job} is not {what} after {timeout:?} (JobState={last}): {:#?}",
            c.job_record(job)
        )
    })
}

/// `scontrol ARGS` as the job's owner, which must succeed: every step of the attack is
/// something Slurm lets the owner do.
#[track_caller]
fn scontrol_as(c: &Cluster, job: &Job, args: &[&str]) {
    c.as_user(&job.user, "scontrol")
        .args(args)
        .run()
        .assert_success();
}

/// Finding 1: the owner requeues a running beamtime job, clears its reservation while it
/// is pending and lets it start again at once. Its first run was accepted; the second run
/// runs outside any reservation, and its batch step must be refused, not accepted from
/// the answer the first run left in the node's job cache.
#[test]
fn a_requeued_job_that_runs_again_outside_the_reservation_is_refused() {
    let c = Cluster::from_env();
    let bt = beamtime(&c, "bttest750");
    let wd = c.workdir(&bt.account, "requeue");
    let log = c.log_cursor("slurmd.log");
    let mut seen = String::new();
    let job = c.submit_beamtime_job(
        &bt,
        &wd,
        &["--open-mode=append"],
        "#!/bin/bash\necho \"run-sees $(ls -A /beamline)\"\nsleep 600\n",
    );

    let first = decision_line(&log, &mut seen, job.id, "batch", 1);
    assert!(
        first.contains("decision=accepted") && first.contains("controller=asked"),
        "the first run's batch step: {first}"
    );
    wait_state(&c, job.id, "running", |s| s == "RUNNING");
    // Slurm may report the job running before the batch step has created its output file.
    wait::poll(DEFAULT_TIMEOUT, || {
        std::fs::read_to_string(&job.stdout_path)
            .unwrap_or_default()
            .contains(&format!("run-sees {}", bt.beamline))
            .then_some(())
            .ok_or(())
    })
    .unwrap_or_else(|()| panic!("the first run saw no beamline: {}", job.stdout()));

    scontrol_as(&c, &job, &["requeue", &job.id.to_string()]);
    wait_state(&c, job.id, "pending again", |s| s == "PENDING");
    let id = format!("JobId={}", job.id);
    scontrol_as(&c, &job, &["update", &id, "Reservation="]);
    // Slurm holds a requeued job back for a while; its owner may start it at once. A few
    // seconds' grace: a launch onto a node still ending the first run failed with exit 1.
    scontrol_as(&c, &job, &["update", &id, "StartTime=now+5"]);

    let end = c.wait_job(job.id, Duration::from_secs(180));
    let second = decision_line(&log, &mut seen, job.id, "batch", 2);
    assert_ne!(second, first, "no second run was logged:\n{seen}");
    assert!(
        second.contains("decision=refused rule=no-reservation"),
        "the second run, outside the reservation: {second}"
    );
    let record = c.job_record(job.id).unwrap_or_default();
    assert_eq!(
        record.get("Restarts").map(String::as_str),
        Some("1"),
        "{record:#?}"
    );
    // scontrol leaves the key out for a job without a reservation.
    assert!(
        matches!(
            record.get("Reservation").map(String::as_str),
            None | Some("(null)")
        ),
        "{record:#?}"
    );
    // The refused task exits 77. With job_container/tmpfs, Slurm 22.05 may fail the quick
    // restart itself first (the batch step cannot join the job's namespace: "container_g_join
    // failed", exit 1), after the plugin's decision above and before any task runs.
    let container_failed = job.stderr().contains("container_g_join failed");
    assert!(
        end.state == "FAILED" && (end.exit_code == 77 || (container_failed && end.exit_code == 1)),
        "{end:#?}\n{}",
        job.stderr()
    );
    assert_eq!(
        job.stdout().matches("run-sees").count(),
        1,
        "the second run's program ran: {}",
        job.stdout()
    );
    c.assert_node_not_drained();
}

/// Finding 1 for srun steps, whose `S_SLURM_RESTART_COUNT` is 0 in every run: a batch
/// job without `--beamtime` whose srun steps ask for the beamtime. Its first run's step is
/// accepted and stored the answer; after the same requeue as above, the second run's step
/// (outside any reservation) must ask again and be refused.
#[test]
fn a_requeued_jobs_srun_step_outside_the_reservation_is_refused() {
    let c = Cluster::from_env();
    let bt = beamtime(&c, "bttest756");
    let wd = c.workdir(&bt.account, "requeue-srun");
    let log = c.log_cursor("slurmd.log");
    let mut seen = String::new();
    let script = format!(
        "#!/bin/bash\nrun=${{SLURM_RESTART_COUNT:-0}}\n\
         srun --beamtime={id} -n1 bash -c 'echo step-sees $(ls -A /beamline)'\n\
         echo $? >{wd}/rc-$run\nsleep 600\n",
        id = bt.id,
        wd = wd.display()
    );
    let job = c.submit(
        &bt.account,
        &wd,
        &[
            "--partition=all",
            &format!("--reservation={}", bt.id),
            "--open-mode=append",
        ],
        &script,
    );
    wait_for(&wd.join("rc-0"), "the first run's step");
    let first = decision_line(&log, &mut seen, job.id, "0", 1);
    assert!(
        first.contains("decision=accepted"),
        "the first run's step: {first}"
    );
    assert_eq!(
        std::fs::read_to_string(wd.join("rc-0")).unwrap().trim(),
        "0"
    );

    scontrol_as(&c, &job, &["requeue", &job.id.to_string()]);
    wait_state(&c, job.id, "pending again", |s| s == "PENDING");
    let id = format!("JobId={}", job.id);
    scontrol_as(&c, &job, &["update", &id, "Reservation="]);
    scontrol_as(&c, &job, &["update", &id, "StartTime=now+5"]);
    let second_ran = wait::poll(Duration::from_secs(60), || {
        if wd.join("rc-1").exists() {
            return Ok(true);
        }
        // With job_container/tmpfs Slurm 22.05 fails this quick restart itself (see above).
        match c
            .job_record(job.id)
            .and_then(|r| r.get("JobState").cloned())
        {
            Some(state) if state == "FAILED" => Ok(false),
            _ => Err(()),
        }
    })
    .unwrap_or_else(|()| {
        panic!(
            "the second run neither ran its step nor ended: {:#?}",
            c.job_record(job.id)
        )
    });
    let _ = c.cmd("scancel").arg(job.id.to_string()).run();
    if second_ran {
        let second = decision_line(&log, &mut seen, job.id, "0", 2);
        assert_ne!(
            second, first,
            "the second run's step logged no decision:\n{seen}"
        );
        assert!(
            second.contains("decision=refused rule=no-reservation"),
            "the second run's step, outside the reservation: {second}"
        );
        assert_eq!(
            std::fs::read_to_string(wd.join("rc-1")).unwrap().trim(),
            "77"
        );
    } else {
        assert!(
            job.stderr().contains("container_g_join failed"),
            "the second run failed for another reason: {}",
            job.stderr()
        );
    }
    assert_eq!(
        job.stdout().matches("step-sees").count(),
        1,
        "the second run's step saw the beamline: {}",
        job.stdout()
    );
    c.assert_node_not_drained();
}

/// A process of the test's own, leading a process group of its own; dropping it kills
/// that group by its id, so no command it started runs on after it.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the group is this child's own.
        unsafe { libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Finding 4: where the beamline folder itself is writable by the account, the account
/// swaps the names of `processed` (writable=) and `scratch_bl` (meant read-only) in a loop
/// while steps start. The writable mount used to land on whichever folder held the name.
/// Now no step gets a writable mount there: each is refused with a message for the admins,
/// and no write lands anywhere. In the facility's layout (the folder root's) the same
/// step writes to processed.
#[test]
fn writable_subfolders_are_refused_where_the_account_can_swap_their_names() {
    let c = Cluster::from_env();
    let bt = beamtime(&c, "bttest753");
    let account = scenarios::UnixUser::get(&bt.account);
    let current = bt.current_dir.clone();
    let (processed, scratch) = (current.join("processed"), current.join("scratch_bl"));
    let markers = |folder: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(folder)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("marker-"))
            .map(|e| e.path())
            .collect()
    };
    // An earlier run's accepted step left its marker (and the loop may have moved it).
    for marker in markers(&processed).into_iter().chain(markers(&scratch)) {
        std::fs::remove_file(marker).unwrap();
    }
    // The site's mistake the attack needs: the account may rename what is in current/.
    std::os::unix::fs::chown(&current, Some(account.uid), None).unwrap();
    let swap = format!(
        "cd {} && while :; do mv processed x && mv scratch_bl processed && mv x scratch_bl; done",
        current.display()
    );
    // setpriv execs bash as the account (runuser would fork it and leave it running when
    // killed), so the pid dropped is the loop's own.
    let swapper = Background(
        std::process::Command::new("setpriv")
            .arg(format!("--reuid={}", account.uid))
            .arg(format!("--regid={}", account.gid))
            .args(["--init-groups", "--", "bash", "-c", &swap])
            .process_group(0)
            .spawn()
            .expect("start the renaming loop"),
    );
    let wd = c.workdir(&bt.account, "swap-names");
    let target = format!("/beamline/{}/current/processed", bt.beamline);
    let step = |n: usize| {
        c.run_as(
            &bt.account,
            &wd,
            &[
                "srun",
                &format!("--beamtime={}", bt.id),
                "--partition=all",
                &format!("--reservation={}", bt.id),
                "-n1",
                "bash",
                "-c",
                &format!("touch {target}/marker-{n} && echo wrote marker-{n}"),
            ],
        )
    };
    for n in 0..8 {
        let out = step(n);
        assert_eq!(out.code(), Some(77), "step {n} was not refused:\n{out}");
        assert!(
            out.stderr.contains("cannot be made writable")
                && out.stderr.contains(&format!(
                    "{}: it is owned by uid {}",
                    current.display(),
                    account.uid
                ))
                && out
                    .stderr
                    .contains("writable= is honoured only in a beamline folder"),
            "step {n} does not tell the admins why and what to do:\n{out}"
        );
    }
    let mut swapper = swapper;
    assert!(
        matches!(swapper.0.try_wait(), Ok(None)),
        "the renaming loop stopped early (it needs current/ writable by the account)"
    );
    drop(swapper);
    if !processed.exists() || !scratch.exists() {
        // Stopped between two renames: put the names back.
        let _ = std::fs::rename(
            current.join("x"),
            if processed.exists() {
                &scratch
            } else {
                &processed
            },
        );
    }
    for folder in [&processed, &scratch] {
        let landed = markers(folder);
        assert!(
            landed.is_empty(),
            "writes landed in {}: {landed:?}",
            folder.display()
        );
    }

    // The facility's layout: current/ is root's, the names cannot move.
    std::os::unix::fs::chown(&current, Some(0), None).unwrap();
    let out = step(99);
    out.assert_success();
    assert!(
        processed.join("marker-99").exists(),
        "the accepted step did not write to processed:\n{out}"
    );
    c.assert_node_not_drained();
    scenarios::assert_host_untouched();
}

/// The pids of the processes of `uid` whose command line is exactly `argv`.
fn processes_of(uid: u32, argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            use std::os::unix::fs::MetadataExt;
            let owned = std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == uid);
            owned && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted)
        })
        .collect()
}

/// Finding 3: a task that leaves its session outlives its job under proctrack/linuxproc
/// (the test cluster's), and with it the beamline view the plugin gave it, readable
/// through /proc/PID/root by the account. Slurm's process tracking decides this, not the
/// plugin: the defence is proctrack/cgroup, which the admin guide requires, and
/// `bt-submit doctor` warns on a cluster without it. This asserts both halves here: the
/// leftover (the documented residual of linuxproc) and the warning.
#[test]
fn a_task_that_leaves_its_session_outlives_its_job_only_without_proctrack_cgroup() {
    let c = Cluster::from_env();
    let bt = beamtime(&c, "bttest752");
    let account = scenarios::UnixUser::get(&bt.account);
    let config = c.cmd("scontrol").args(["show", "config"]).run();
    config.assert_success();
    let proctrack = config
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("ProctrackType"))
        .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
        .expect("scontrol show config names no ProctrackType");
    let wd = c.workdir(&bt.account, "outlive");
    let sleeper = ["sleep", "97"];
    c.run_as(
        &bt.account,
        &wd,
        &[
            "srun",
            &format!("--beamtime={}", bt.id),
            "--partition=all",
            &format!("--reservation={}", bt.id),
            "-n1",
            "bash",
            "-c",
            "setsid -f sh -c 'exec sleep 97' </dev/null >/dev/null 2>&1",
        ],
    )
    .assert_success();
    // srun has returned: the step and its job have ended.
    let left = wait::poll(Duration::from_secs(10), || {
        let left = processes_of(account.uid, &sleeper);
        if left.is_empty() {
            Err(left)
        } else {
            Ok(left)
        }
    });
    let doctor = c
        .as_user(&bt.account, scenarios::bt_submit())
        .args(["doctor", "--beamtime", &bt.id])
        .run();
    let lifetime = doctor.doctor_check("task-lifetime").to_owned();
    match proctrack.as_str() {
        "proctrack/linuxproc" => {
            let left = left.unwrap_or_else(|_| panic!("no task outlived the job under linuxproc"));
            let pid = left[0];
            let view = format!("/proc/{pid}/root/beamline/{}/current", bt.beamline);
            let seen = c.run_as(&bt.account, &wd, &["ls", "-A", &view]);
            for pid in &left {
                // This test's own leftover, ended by its pid.
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
            }
            assert!(
                seen.success() && seen.stdout.contains("raw"),
                "the leftover of a beamtime task should still show the beamline there \
                 (docs/security.md, #17 finding 3):\n{seen}"
            );
            assert!(
                lifetime.starts_with("warn ")
                    && lifetime.contains("ProctrackType=proctrack/linuxproc"),
                "doctor does not warn about linuxproc:\n{doctor}"
            );
            doctor.assert_success();
            doctor.assert_stdout_contains("ProctrackType=proctrack/cgroup in slurm.conf");
        }
        "proctrack/cgroup" => {
            assert!(
                left.is_err(),
                "a task outlived its job under proctrack/cgroup: {left:?}"
            );
            assert!(lifetime.starts_with("ok "), "{doctor}");
        }
        other => panic!("this test knows linuxproc and cgroup, not {other}"),
    }
    c.assert_node_not_drained();
}

/// Waits until `path` exists (a job's script touches it).
#[track_caller]
fn wait_for(path: &std::path::Path, what: &str) {
    wait::for_path(path, Duration::from_secs(60), what);
}

/// Finding 2, first direction: the owner clears the reservation of a running beamtime
/// job. Slurm allows it; the plugin's job cache keeps answering for the job's later
/// steps on the node until `job_cache_seconds` end (docs/security.md says exactly this).
/// Asserted here as documented: the step after the change is accepted from the cache.
#[test]
fn a_reservation_cleared_on_a_running_job_is_seen_only_when_the_cached_answer_ends() {
    let c = Cluster::from_env();
    let bt = beamtime(&c, "bttest754");
    let wd = c.workdir(&bt.account, "cleared");
    let log = c.log_cursor("slurmd.log");
    let mut seen = String::new();
    let script = format!(
        "#!/bin/bash\nsrun -n1 true && touch {wd}/first\nwhile [ ! -e {wd}/go ]; do sleep 0.2; done\n\
         srun -n1 bash -c 'echo later-sees $(ls -A /beamline)'\n",
        wd = wd.display()
    );
    let job = c.submit_beamtime_job(&bt, &wd, &[], &script);
    wait_for(&wd.join("first"), "the job's first step");
    scontrol_as(
        &c,
        &job,
        &["update", &format!("JobId={}", job.id), "Reservation="],
    );
    let record = c.job_record(job.id).unwrap_or_default();
    assert!(
        matches!(
            record.get("Reservation").map(String::as_str),
            None | Some("(null)")
        ),
        "Slurm kept the reservation: {record:#?}"
    );
    std::fs::write(wd.join("go"), "").unwrap();
    let end = c.wait_job(job.id, DEFAULT_TIMEOUT);
    end.assert_completed_ok();
    let later = decision_line(&log, &mut seen, job.id, "1", 1);
    assert!(
        later.contains("decision=accepted")
            && later.contains(&format!("reservation={}", bt.id))
            && later.contains("controller=cached"),
        "the step after the change: {later}"
    );
    assert!(
        job.stdout()
            .contains(&format!("later-sees {}", bt.beamline)),
        "{}",
        job.stdout()
    );
    c.assert_node_not_drained();
}

/// Finding 2, other direction: a job without `--beamtime`, allocated outside the
/// reservation, is moved into it by its owner while it runs. The controller then says it
/// is in the reservation, and a `--beamtime` step of it is accepted on the reservation's
/// node, although its cores were allocated outside it: what the plugin can check is the
/// job's reservation now, not where its cores came from (docs/security.md).
#[test]
fn a_job_moved_into_the_reservation_while_it_runs_gets_its_beamtime_steps_accepted() {
    let c = Cluster::from_env();
    let bt = beamtime(&c, "bttest755");
    let wd = c.workdir(&bt.account, "moved-in");
    let log = c.log_cursor("slurmd.log");
    let mut seen = String::new();
    let script = format!(
        "#!/bin/bash\ntouch {wd}/running\nwhile [ ! -e {wd}/go ]; do sleep 0.2; done\n",
        wd = wd.display()
    );
    let job = c.submit(&bt.account, &wd, &["--partition=all"], &script);
    wait_for(&wd.join("running"), "the plain job");
    let before = c.job_record(job.id).unwrap_or_default();
    assert!(
        matches!(
            before.get("Reservation").map(String::as_str),
            None | Some("(null)")
        ),
        "the plain job started in a reservation: {before:#?}"
    );
    scontrol_as(
        &c,
        &job,
        &[
            "update",
            &format!("JobId={}", job.id),
            &format!("Reservation={}", bt.id),
        ],
    );
    let step = c.run_as(
        &bt.account,
        &wd,
        &[
            "srun",
            &format!("--jobid={}", job.id),
            "--overlap",
            &format!("--beamtime={}", bt.id),
            "-n1",
            "bash",
            "-c",
            "echo step-sees $(ls -A /beamline)",
        ],
    );
    std::fs::write(wd.join("go"), "").unwrap();
    step.assert_success();
    assert!(
        step.stdout.contains(&format!("step-sees {}", bt.beamline)),
        "{step}"
    );
    let line = decision_line(&log, &mut seen, job.id, "0", 1);
    assert!(
        line.contains("decision=accepted") && line.contains(&format!("reservation={}", bt.id)),
        "{line}"
    );
    c.wait_job(job.id, DEFAULT_TIMEOUT).assert_completed_ok();
    c.assert_node_not_drained();
}
