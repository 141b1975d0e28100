//! The plugin's job cache on the node (`state_dir=`, `job_cache_seconds=`): a job's later
//! steps reuse the controller's answer, and whatever happens to the cache folder —
//! removed, full, opened to others, an entry damaged — costs queries, never a job or a node.
//!
//! The tests change the cluster's one cache folder, so they take turns (`TURN`); outcomes
//! of tests in other binaries do not depend on the cache, only their query counts.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use scenarios::{wait, Beamtime, BeamtimeSpec, Cluster, Job, LogCursor, DEFAULT_TIMEOUT};

static TURN: Mutex<()> = Mutex::new(());

fn take_turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `state_dir=` the cluster's plugin was started with.
fn state_dir(c: &Cluster) -> PathBuf {
    let args = c.recorded("plugin_args");
    let dir = args
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("state_dir="))
        .expect("the cluster's plugin has no state_dir= (scripts/lib.sh plugin_args sets one)");
    PathBuf::from(dir)
}

/// `controller=` of each accepted step of `job` in the slurmd log, by step name.
fn answers(log: &LogCursor, job: u32) -> BTreeMap<String, String> {
    let needle = format!("spank-beamtime: job={job} step=");
    log.read_new()
        .lines()
        .filter(|line| line.contains(&needle) && line.contains("decision=accepted"))
        .map(|line| {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(key))
                    .unwrap_or_default()
                    .to_owned()
            };
            (field("step="), field("controller="))
        })
        .collect()
}

fn beamtime(c: &Cluster, account: &str) -> Beamtime {
    c.start_beamtime(&BeamtimeSpec::fresh(account).cores(2))
}

/// A batch job of `steps` beamtime steps, each printing what it sees under /beamline.
fn run_steps(c: &Cluster, bt: &Beamtime, label: &str, steps: usize) -> Job {
    let wd = c.workdir(&bt.account, label);
    let script = format!(
        "#!/bin/bash\nfor i in $(seq {steps}); do srun -n1 bash -c 'echo step-sees $(ls -A /beamline)' || exit 1; done\n"
    );
    let job = c.submit_beamtime_job(bt, &wd, &[], &script);
    let end = c.wait_job(job.id, DEFAULT_TIMEOUT);
    assert_eq!(
        end.state,
        "COMPLETED",
        "job {}: {end:#?}\n{}",
        job.id,
        job.stderr()
    );
    let sees = job
        .stdout()
        .matches(&format!("step-sees {}", bt.beamline))
        .count();
    assert_eq!(sees, steps, "{}", job.stdout());
    job
}

fn count(answers: &BTreeMap<String, String>, how: &str) -> usize {
    answers.values().filter(|v| *v == how).count()
}

/// Waits until every step's log line is in (slurmstepd logs asynchronously to slurmd.log).
#[track_caller]
fn answers_of(log: &LogCursor, job: u32, steps: usize) -> BTreeMap<String, String> {
    let timeout = Duration::from_secs(20);
    wait::poll(timeout, || {
        let got = answers(log, job);
        if got.len() == steps {
            Ok(got)
        } else {
            Err(got)
        }
    })
    .unwrap_or_else(|got| {
        panic!(
            "{} has {} of the {steps} accepted steps of job {job} after {timeout:?}: {got:?}",
            log.path.display(),
            got.len()
        )
    })
}

#[test]
fn later_steps_of_a_job_reuse_the_answer_its_first_step_got() {
    let _turn = take_turn();
    let c = Cluster::from_env();
    let bt = beamtime(&c, "bttest60");
    let log = c.log_cursor("slurmd.log");
    let job = run_steps(&c, &bt, "cache-reuse", 3);

    // The batch step asks; steps 0, 1 and 2 use its answer.
    let got = answers_of(&log, job.id, 4);
    assert_eq!(
        got.get("batch").map(String::as_str),
        Some("asked"),
        "{got:?}"
    );
    assert_eq!(count(&got, "cached"), 3, "{got:?}");

    let entry = state_dir(&c).join(format!("job-{}", job.id));
    let stat = fs::metadata(&entry).unwrap_or_else(|e| panic!("{}: {e}", entry.display()));
    assert_eq!(
        (stat.uid(), stat.mode() & 0o777),
        (0, 0o600),
        "{}",
        entry.display()
    );
    let folder = fs::metadata(state_dir(&c)).unwrap();
    assert_eq!((folder.uid(), folder.mode() & 0o777), (0, 0o700));
    c.assert_node_not_drained();
}

#[test]
fn a_removed_cache_folder_is_made_again() {
    let _turn = take_turn();
    let c = Cluster::from_env();
    let bt = beamtime(&c, "bttest61");
    let dir = state_dir(&c);
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    let log = c.log_cursor("slurmd.log");
    let job = run_steps(&c, &bt, "cache-removed", 2);
    let got = answers_of(&log, job.id, 3);
    assert_eq!(
        (count(&got, "asked"), count(&got, "cached")),
        (1, 2),
        "{got:?}"
    );
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    c.assert_node_not_drained();
}

/// Unmounts the tmpfs over the cache folder even when the test fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_cache_folder_costs_a_query_per_step_and_nothing_else() {
    let _turn = take_turn();
    let c = Cluster::from_env();
    let bt = beamtime(&c, "bttest62");
    let dir = state_dir(&c);
    fs::create_dir_all(&dir).unwrap();
    // One page of space, used up: the entry's file can be created but not written.
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=4k,mode=0700",
            "spank-beamtime-full",
        ])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs on {}", dir.display());
    let _unmount = Unmount(dir.clone());
    let filler = fs::write(dir.join("filler"), vec![0u8; 64 * 1024]);
    assert!(filler.is_err(), "the 4k tmpfs took 64 KiB");

    let log = c.log_cursor("slurmd.log");
    let job = run_steps(&c, &bt, "cache-full", 2);
    let got = answers_of(&log, job.id, 3);
    assert_eq!(count(&got, "asked"), 3, "{got:?}");
    let logged = log.read_new();
    assert!(
        // The run token (job_cache's RunHold) is the first file a step writes.
        logged.contains(&format!(
            "spank-beamtime: job={} job cache not used: cannot write",
            job.id
        )) && logged.contains("No space left on device"),
        "{logged}"
    );
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "filler")
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-written entries were left: {leftovers:?}"
    );
    c.assert_node_not_drained();
}

#[test]
fn a_cache_folder_others_can_write_to_is_not_used() {
    let _turn = take_turn();
    let c = Cluster::from_env();
    let bt = beamtime(&c, "bttest63");
    let dir = state_dir(&c);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let log = c.log_cursor("slurmd.log");
    let job = run_steps(&c, &bt, "cache-open", 2);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();

    let got = answers_of(&log, job.id, 3);
    assert_eq!(count(&got, "asked"), 3, "{got:?}");
    let logged = log.read_new();
    let expected = format!(
        "spank-beamtime: job={} job cache not used: {} is open to others (mode 0777)",
        job.id,
        dir.display()
    );
    assert!(logged.contains(&expected), "{logged}");
    assert!(!dir.join(format!("job-{}", job.id)).exists());
    c.assert_node_not_drained();
}

#[test]
fn a_damaged_entry_is_asked_again_and_replaced() {
    let _turn = take_turn();
    let c = Cluster::from_env();
    let bt = beamtime(&c, "bttest64");
    let wd = c.workdir(&bt.account, "cache-damaged");
    let go = wd.join("go");
    let script = format!(
        "#!/bin/bash\n\
         srun -n1 true && touch {go}-1\n\
         while [ ! -e {go}-2 ]; do sleep 0.2; done\n\
         srun -n1 bash -c 'echo second-sees $(ls -A /beamline)' && srun -n1 true\n",
        go = go.display()
    );
    let log = c.log_cursor("slurmd.log");
    let job = c.submit_beamtime_job(&bt, &wd, &[], &script);
    wait::for_path(
        &wd.join("go-1"),
        Duration::from_secs(60),
        &format!("job {} (its first step)", job.id),
    );
    let entry = state_dir(&c).join(format!("job-{}", job.id));
    fs::write(&entry, "job=1\nnot an entry\n").unwrap();
    fs::write(wd.join("go-2"), "").unwrap();
    let end = c.wait_job(job.id, DEFAULT_TIMEOUT);
    assert_eq!(end.state, "COMPLETED", "{end:#?}\n{}", job.stderr());
    assert!(
        job.stdout()
            .contains(&format!("second-sees {}", bt.beamline)),
        "{}",
        job.stdout()
    );

    // batch asks, step 0 uses it, step 1 finds the damage and asks, step 2 uses the new answer.
    let got = answers_of(&log, job.id, 4);
    let by_step: Vec<(&str, &str)> = ["batch", "0", "1", "2"]
        .iter()
        .map(|s| (*s, got.get(*s).map_or("missing", String::as_str)))
        .collect();
    assert_eq!(
        by_step,
        [
            ("batch", "asked"),
            ("0", "cached"),
            ("1", "asked"),
            ("2", "cached")
        ],
        "{got:?}"
    );
    let logged = log.read_new();
    assert!(
        logged.contains(&format!(
            "spank-beamtime: job={} cached answer not used: {}",
            job.id,
            entry.display()
        )),
        "{logged}"
    );
    let rewritten = fs::read_to_string(&entry).unwrap();
    assert!(
        rewritten.starts_with(&format!("job={}\n", job.id)),
        "{rewritten}"
    );
    assert!(Path::new(&entry).exists());
    c.assert_node_not_drained();
}
