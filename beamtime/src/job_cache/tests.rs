//! The unit tests of [`super`].

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn answer() -> CachedAnswer {
    CachedAnswer {
        job: 42,
        uid: 1234,
        run: "4711.1000000.000000001".into(),
        fetched_at: 1_000_000,
        controller: ControllerJob {
            reservation: Some("11099001_1".into()),
            account: Some("bt11099001".into()),
            batch: true,
        },
    }
}

fn me() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn private_dir() -> tempfile::TempDir {
    // tempfile makes it mode 0700: no folder above the cache's may be open to others.
    tempfile::tempdir().unwrap()
}

#[test]
fn an_answer_survives_encoding_with_and_without_values() {
    let full = answer();
    assert_eq!(CachedAnswer::decode(&full.encode().unwrap()).unwrap(), full);
    let empty = CachedAnswer {
        controller: ControllerJob::default(),
        ..answer()
    };
    assert_eq!(
        CachedAnswer::decode(&empty.encode().unwrap()).unwrap(),
        empty
    );
}

#[test]
fn values_with_line_breaks_are_not_cached() {
    let mut odd = answer();
    odd.controller.account = Some("a\nuid=0".into());
    assert_eq!(odd.encode(), None);
}

#[test]
fn damaged_entries_say_what_is_wrong() {
    let cases = [
        ("job=1\nuid=2\nfetched_at=3\nbatch=1\n", "run is missing"),
        ("job=1\nuid=2\nrun=r\nbatch=1\n", "fetched_at is missing"),
        ("job=1\nuid=2\nrun=r\nfetched_at=3\n", "batch is missing"),
        (
            "job=1\nuid=2\nrun=r\nfetched_at=3\nbatch=yes\n",
            "is not 0 or 1",
        ),
        ("job=1\njob=1\nuid=2\nfetched_at=3\n", "job is given twice"),
        ("job=x\n", "is not a number"),
        ("job=1\nuid=2\nfetched_at=3\nowner=root\n", "unknown key"),
        ("garbage", "is not key=value"),
        (
            "job=99999999999\nuid=2\nrun=r\nfetched_at=3\nbatch=0\n",
            "job is out of range",
        ),
    ];
    for (text, expected) in cases {
        let error = CachedAnswer::decode(text).unwrap_err().to_string();
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}

#[test]
fn an_answer_stands_only_for_its_job_user_and_run_and_only_for_its_lifetime() {
    const R: &str = "4711.1000000.000000001";
    let a = answer();
    assert!(a.answers(42, 1234, R, a.fetched_at, MINUTE));
    assert!(a.answers(42, 1234, R, a.fetched_at + 59, MINUTE));
    assert!(
        !a.answers(42, 1234, R, a.fetched_at + 60, MINUTE),
        "expired"
    );
    assert!(!a.answers(43, 1234, R, a.fetched_at, MINUTE), "other job");
    assert!(!a.answers(42, 1235, R, a.fetched_at, MINUTE), "other user");
    assert!(
        !a.answers(42, 1234, "4711.1000000.000000002", a.fetched_at, MINUTE),
        "other run of a batch job"
    );
    let mut allocation = answer();
    allocation.controller.batch = false;
    assert!(
        allocation.answers(42, 1234, "4711.1000000.000000002", a.fetched_at, MINUTE),
        "an allocation (salloc, srun) runs once: its answer stands between steps"
    );
    assert!(
        a.answers(42, 1234, R, a.fetched_at - 30, MINUTE),
        "small clock step back"
    );
    assert!(
        !a.answers(42, 1234, R, a.fetched_at - 3600, MINUTE),
        "clock far behind"
    );
    assert!(
        !a.answers(42, 1234, R, a.fetched_at, Duration::ZERO),
        "cache time 0 disables"
    );
}

#[test]
fn a_stored_answer_is_found_by_the_same_job_and_user_only() {
    let dir = private_dir();
    let cache = JobCache::open(&dir.path().join("state"), MINUTE, me()).unwrap();
    let run = cache.join_run(42).unwrap();
    let a = CachedAnswer {
        run: run.run().to_owned(),
        ..answer()
    };
    let found = |uid, now| cache.lookup(42, uid, &run, now).unwrap();
    assert_eq!(found(1234, a.fetched_at), None);
    cache.store(&a).unwrap();
    assert_eq!(found(1234, a.fetched_at + 1), Some(a.controller.clone()));
    assert_eq!(found(999, a.fetched_at + 1), None);
    assert_eq!(found(1234, a.fetched_at + 61), None);
    let mode = fs::metadata(dir.path().join("state/job-42"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn storing_removes_entries_older_than_the_cache_time() {
    let dir = private_dir();
    let state = dir.path().join("state");
    let cache = JobCache::open(&state, MINUTE, me()).unwrap();
    let now = std::time::SystemTime::now();
    let hour_ago = now - Duration::from_secs(3600);
    for name in ["job-7", "unrelated"] {
        fs::write(state.join(name), "job=7\nuid=1\nfetched_at=1\n").unwrap();
        File::options()
            .write(true)
            .open(state.join(name))
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }
    let now = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    cache
        .store(&CachedAnswer {
            fetched_at: now,
            ..answer()
        })
        .unwrap();
    assert!(!state.join("job-7").exists(), "an outlived entry was kept");
    assert!(state.join("job-42").exists());
    assert!(state.join("unrelated").exists());
}

#[test]
fn an_answer_stands_only_while_a_step_of_its_run_lives() {
    let dir = private_dir();
    let cache = JobCache::open(&dir.path().join("state"), MINUTE, me()).unwrap();
    let batch = cache.join_run(42).unwrap();
    let a = CachedAnswer {
        run: batch.run().to_owned(),
        ..answer()
    };
    let now = a.fetched_at + 1;
    cache.store(&a).unwrap();
    let step = cache.join_run(42).unwrap();
    assert_eq!(step.run(), batch.run(), "a step joins the live run");
    assert_eq!(
        cache.lookup(42, 1234, &step, now).unwrap(),
        Some(a.controller.clone())
    );
    // An answer stored again by a step keeps standing for the batch step's run.
    cache.store(&a).unwrap();
    drop(step);
    let later = cache.join_run(42).unwrap();
    assert_eq!(
        cache.lookup(42, 1234, &later, now).unwrap(),
        Some(a.controller.clone())
    );
    drop((batch, later));
    // Every step of that run has ended (a requeue ends them all): the next
    // step begins a new run, and the old answer does not stand for it.
    let requeued = cache.join_run(42).unwrap();
    assert_ne!(requeued.run(), a.run);
    assert_eq!(cache.lookup(42, 1234, &requeued, now).unwrap(), None);
}

#[test]
fn a_step_does_not_join_a_run_whose_token_is_being_replaced() {
    let dir = private_dir();
    let state = dir.path().join("state");
    let cache = JobCache::open(&state, MINUTE, me()).unwrap();
    let first = cache.join_run(42).unwrap().run().to_owned();
    // Another step found the token unheld and is replacing it: it holds
    // the exclusive lock. This step neither joins that run nor waits: it
    // asks the controller without the cache.
    let replacer = File::open(state.join("job-42.run")).unwrap();
    assert!(try_flock(&replacer, libc::LOCK_EX).unwrap());
    let error = cache.join_run(42).unwrap_err().to_string();
    assert!(error.contains("replaced by other steps"), "{error}");
    drop(replacer);
    let joined = cache.join_run(42).unwrap();
    assert_ne!(joined.run(), first);
    let token = fs::read_to_string(state.join("job-42.run")).unwrap();
    assert_eq!(token, joined.run(), "the token in place is the new run's");
}

#[test]
fn a_held_token_outlives_the_cache_time_an_unheld_one_does_not() {
    let dir = private_dir();
    let state = dir.path().join("state");
    let cache = JobCache::open(&state, MINUTE, me()).unwrap();
    let held = cache.join_run(7).unwrap();
    drop(cache.join_run(8).unwrap());
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for name in ["job-7.run", "job-8.run"] {
        File::options()
            .write(true)
            .open(state.join(name))
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    cache
        .store(&CachedAnswer {
            fetched_at: now,
            ..answer()
        })
        .unwrap();
    assert!(state.join("job-7.run").exists(), "a held token was removed");
    assert!(!state.join("job-8.run").exists(), "an unheld one was kept");
    drop(held);
}

#[test]
fn entries_the_plugin_did_not_write_are_not_used() {
    let dir = private_dir();
    let state = dir.path().join("state");
    let cache = JobCache::open(&state, MINUTE, me()).unwrap();
    let run = cache.join_run(1).unwrap();
    fs::write(state.join("job-1"), "not an entry").unwrap();
    assert!(cache
        .lookup(1, 1, &run, 0)
        .unwrap_err()
        .to_string()
        .contains("is not key=value"));
    std::os::unix::fs::symlink(state.join("job-42"), state.join("job-2")).unwrap();
    assert!(
        cache.lookup(2, 1, &run, 0).is_err(),
        "a symlink was followed"
    );
    fs::write(state.join("job-3"), vec![b'x'; 5000]).unwrap();
    assert!(cache
        .lookup(3, 1, &run, 0)
        .unwrap_err()
        .to_string()
        .contains("not an entry the plugin wrote"));
}

#[test]
fn a_folder_others_could_write_to_is_not_used() {
    let dir = private_dir();
    let state = dir.path().join("state");
    JobCache::open(&state, MINUTE, me()).unwrap();
    fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let error = JobCache::open(&state, MINUTE, me())
        .unwrap_err()
        .to_string();
    assert!(error.contains("is open to others (mode 0755)"), "{error}");

    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&state, &link).unwrap();
    let error = JobCache::open(&link, MINUTE, me()).unwrap_err().to_string();
    assert!(error.contains("is not a folder"), "{error}");

    let error = JobCache::open(&state, MINUTE, me() + 1)
        .unwrap_err()
        .to_string();
    assert!(error.contains("not by uid"), "{error}");

    for relative_or_dotted in ["state", "/tmp/./state", "/tmp/x/../state"] {
        let error = JobCache::open(Path::new(relative_or_dotted), MINUTE, me())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("not an absolute path without . or .."),
            "{error}"
        );
    }
}

#[test]
fn a_missing_parent_is_not_created() {
    let dir = private_dir();
    let error = JobCache::open(&dir.path().join("no/such/state"), MINUTE, me())
        .unwrap_err()
        .to_string();
    assert!(error.contains("No such file"), "{error}");
}
