use serde_json::{json, Value};

use super::super::complete::Look;
use super::record::FORMAT_WITHOUT_JOURNAL;
use super::*;

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "bt-submit-watch-state-{label}-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn look() -> Look {
    Look {
        size: 42,
        mtime_ns: 1_700_000_000_123_456_789,
        files: 1,
    }
}

fn finish(file: &str, job: u64) -> Change {
    Change::Finish {
        file: file.into(),
        job,
        look: look(),
    }
}

/// Begins and finishes `file` as job `job`, through the state file.
fn submit(state: &mut StateFile, record: &mut Record, file: &str, job: u64) {
    let (begin, _) = record.begin(file);
    state.record(record, begin).unwrap();
    state.record(record, finish(file, job)).unwrap();
}

#[test]
fn a_record_reads_back_as_written() {
    let mut record = Record::new("0123abcd".into(), "/gpfs/raw".into(), Each::File);
    let (begin, marker) = record.begin("scan 1/a.h5");
    record.apply(&begin);
    record.apply(&finish("scan 1/a.h5", 17));
    let (begin, next) = record.begin("b\"quoted\".h5");
    record.apply(&begin);
    assert_ne!(marker, next);
    assert!(next.starts_with("bt-submit-watch:0123abcd:"));
    assert_eq!(record.submitting.as_ref().unwrap().marker, next);
    assert_eq!(Record::parse(&record.render()), Ok(record));
}

#[test]
fn a_finished_submission_is_no_longer_under_way() {
    let mut record = Record::new("id".into(), "/d".into(), Each::File);
    record.apply(&record.begin("a").0);
    record.apply(&finish("a", 5));
    assert_eq!(record.submitting, None);
    assert_eq!(record.submitted["a"].job, 5);
    record.apply(&record.begin("b").0);
    record.apply(&Change::Abandon { file: "b".into() });
    assert_eq!(record.submitting, None);
    assert!(!record.submitted.contains_key("b"));
}

#[test]
fn every_change_reads_back_from_its_journal_line() {
    let changes = [
        Change::Begin {
            file: "line\nbreak.h5".into(),
            number: 7,
        },
        finish("a", 3),
        Change::Abandon { file: "b".into() },
    ];
    for change in changes {
        let line = change.line();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert_eq!(Change::parse(&line), Ok(change));
    }
    assert!(Change::parse("{\"other\": 1}")
        .unwrap_err()
        .contains("\"begin\""));
}

#[test]
fn recording_a_submission_appends_to_the_journal_and_leaves_the_snapshot() {
    let dir = temp_dir("append");
    let path = dir.join("state.json");
    let (mut state, mut record) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    // Past one compaction (1000 lines), with some lines since.
    for n in 0..600 {
        submit(&mut state, &mut record, &format!("f{n}"), n);
    }
    let snapshot = fs::read(&path).unwrap();
    let journal = fs::metadata(dir.join("state.json.journal")).unwrap().len();
    submit(&mut state, &mut record, "next", 99999);
    assert_eq!(fs::read(&path).unwrap(), snapshot);
    let grown = fs::metadata(dir.join("state.json.journal")).unwrap().len() - journal;
    assert!(grown < 200, "one submission wrote {grown} bytes");
    drop(state);
    let (_state, again) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    assert_eq!(again, record);
    assert_eq!(
        fs::metadata(dir.join("state.json.journal")).unwrap().len(),
        0
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_journal_line_cut_short_is_dropped_and_a_replayed_journal_changes_nothing() {
    let dir = temp_dir("crash");
    let path = dir.join("state.json");
    let journal = dir.join("state.json.journal");
    let (mut state, mut record) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    submit(&mut state, &mut record, "a", 1);
    let (begin, _) = record.begin("b");
    state.record(&mut record, begin).unwrap();
    let lines = fs::read(&journal).unwrap();
    drop(state);

    // Killed while writing the next line: half of it reached the disk.
    let mut cut = lines.clone();
    cut.extend_from_slice(&finish("b", 2).line().as_bytes()[..10]);
    fs::write(&journal, &cut).unwrap();
    let (state, again) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    assert_eq!(again, record);
    assert_eq!(again.submitting.as_ref().unwrap().file, "b");
    drop(state);

    // Killed between the snapshot's rename and the journal's emptying.
    fs::write(&journal, &lines).unwrap();
    let (_state, replayed) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    assert_eq!(replayed, record);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_damaged_journal_line_is_named() {
    let dir = temp_dir("damaged-journal");
    let path = dir.join("state.json");
    let (state, _) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    drop(state);
    let mut lines = finish("a", 1).line();
    lines.push_str("{\"finish\": \"b\"}\n");
    fs::write(dir.join("state.json.journal"), lines).unwrap();
    let refused = StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine)
        .err()
        .unwrap()
        .to_string();
    assert!(
        refused.contains("line 2 of its journal state.json.journal"),
        "{refused}"
    );
    assert!(refused.contains("needs \"job\""), "{refused}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_state_file_without_a_journal_is_read_and_continued() {
    let dir = temp_dir("format-1");
    let path = dir.join("state.json");
    let mut old: Value =
        serde_json::from_str(&Record::new("old".into(), "/data".into(), Each::File).render())
            .unwrap();
    old["format"] = json!(FORMAT_WITHOUT_JOURNAL);
    old["nextMarker"] = json!(4);
    old["submitted"] = json!({"a": {"job": 3, "size": 1, "mtimeNs": "5"}});
    fs::write(&path, old.to_string()).unwrap();
    let (mut state, mut record) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    assert_eq!(record.submitted["a"].job, 3);
    let (_, marker) = record.begin("b");
    assert_eq!(marker, "bt-submit-watch:old:4");
    submit(&mut state, &mut record, "b", 8);
    drop(state);
    let (_state, again) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    assert_eq!(again.submitted.len(), 2);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_damaged_state_file_says_what_is_wrong() {
    assert!(Record::parse("{").unwrap_err().contains("not valid JSON"));
    assert!(Record::parse("{\"format\": \"x\"}")
        .unwrap_err()
        .contains("\"format\""));
    let mut value: Value =
        serde_json::from_str(&Record::new("i".into(), "/d".into(), Each::File).render()).unwrap();
    value["submitted"] = json!({"a": {"job": 1}});
    assert!(Record::parse(&value.to_string())
        .unwrap_err()
        .contains("\"submitted\".\"a\""));
}

#[test]
fn the_state_survives_a_reopen_and_keeps_its_id() {
    let dir = temp_dir("reopen");
    let path = dir.join("sub/state.json");
    let (mut file, mut record) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    submit(&mut file, &mut record, "x", 9);
    let (begin, _) = record.begin("y");
    file.record(&mut record, begin).unwrap();
    drop(file);
    let (_file, again) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    assert_eq!(again, record);
    assert_eq!(again.submitting.unwrap().file, "y");
    assert!(!dir.join("state.json.new").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_watches_cannot_share_a_state_file() {
    let dir = temp_dir("lock");
    let path = dir.join("state.json");
    let (_held, _) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    assert!(matches!(
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine),
        Err(StateError::InUse { .. })
    ));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_state_file_of_another_folder_is_refused() {
    let dir = temp_dir("folder");
    let path = dir.join("state.json");
    let (file, _) =
        StateFile::open(&path, Path::new("/data/a"), Each::File, Sharing::OnlyMine).unwrap();
    drop(file);
    let refused = StateFile::open(&path, Path::new("/data/b"), Each::File, Sharing::OnlyMine)
        .err()
        .unwrap();
    assert!(refused
        .to_string()
        .contains("belongs to the watch of /data/a"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_state_file_of_the_other_kind_of_watch_is_refused() {
    let dir = temp_dir("each");
    let path = dir.join("state.json");
    let (file, _) =
        StateFile::open(&path, Path::new("/data"), Each::Folder, Sharing::OnlyMine).unwrap();
    drop(file);
    let refused = StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine)
        .err()
        .unwrap();
    assert!(refused
        .to_string()
        .contains("a watch that submits each folder, not each file"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_scan_folder_record_keeps_its_file_count_and_an_old_record_is_of_files() {
    let mut record = Record::new("f".into(), "/raw".into(), Each::Folder);
    record.apply(&record.begin("scan_1").0);
    let scan = Look {
        files: 1200,
        ..look()
    };
    record.apply(&Change::Finish {
        file: "scan_1".into(),
        job: 3,
        look: scan,
    });
    assert_eq!(Record::parse(&record.render()), Ok(record));
    let mut old: Value =
        serde_json::from_str(&Record::new("o".into(), "/d".into(), Each::File).render()).unwrap();
    old.as_object_mut().unwrap().remove("each");
    assert_eq!(Record::parse(&old.to_string()).unwrap().each, Each::File);
    old["each"] = json!("scan");
    assert!(Record::parse(&old.to_string())
        .unwrap_err()
        .contains("\"each\""));
}

#[test]
fn links_planted_beside_the_state_are_neither_followed_nor_written_through() {
    let dir = temp_dir("planted");
    let victim = dir.join("private.txt");
    fs::write(&victim, b"mine").unwrap();
    let path = dir.join("state.json");
    std::os::unix::fs::symlink(&victim, dir.join("state.json.new")).unwrap();
    // Opening a new state writes its first snapshot through `.new`.
    let (file, _) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"mine");
    assert!(fs::symlink_metadata(&path).unwrap().is_file());
    drop(file);

    let lock_target = dir.join("created-by-lock");
    let other = dir.join("other.json");
    std::os::unix::fs::symlink(&lock_target, dir.join("other.json.lock")).unwrap();
    let refused = StateFile::open(&other, Path::new("/data"), Each::File, Sharing::OnlyMine);
    assert!(matches!(refused, Err(StateError::Unsafe { .. })));
    assert!(!lock_target.exists());

    std::os::unix::fs::symlink(&victim, dir.join("linked.json")).unwrap();
    let refused = StateFile::open(
        &dir.join("linked.json"),
        Path::new("/data"),
        Each::File,
        Sharing::OnlyMine,
    );
    assert!(matches!(refused, Err(StateError::Unsafe { .. })));

    let journal_target = dir.join("created-by-journal");
    std::os::unix::fs::symlink(&journal_target, dir.join("third.json.journal")).unwrap();
    let refused = StateFile::open(
        &dir.join("third.json"),
        Path::new("/data"),
        Each::File,
        Sharing::OnlyMine,
    );
    assert!(matches!(refused, Err(StateError::Unsafe { .. })));
    assert!(!journal_target.exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_state_reached_through_a_linked_folder_shares_the_lock() {
    let dir = temp_dir("linked-folder");
    fs::create_dir(dir.join("real")).unwrap();
    std::os::unix::fs::symlink(dir.join("real"), dir.join("via-link")).unwrap();
    let (held, _) = StateFile::open(
        &dir.join("real/state.json"),
        Path::new("/data"),
        Each::File,
        Sharing::OnlyMine,
    )
    .unwrap();
    let second = StateFile::open(
        &dir.join("via-link/state.json"),
        Path::new("/data"),
        Each::File,
        Sharing::OnlyMine,
    );
    assert!(matches!(second, Err(StateError::InUse { .. })));
    assert_eq!(
        held.path(),
        dir.join("real").canonicalize().unwrap().join("state.json")
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_folder_others_can_write_is_refused_unless_shared_or_sticky() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("shared");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).unwrap();
    let path = dir.join("state.json");
    let refused = StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine);
    let Err(StateError::Unsafe { why, .. }) = refused else {
        panic!("a group-writable folder was taken");
    };
    assert!(why.contains("written by others"), "{why}");
    assert!(StateFile::open(&path, Path::new("/data"), Each::File, Sharing::Shared).is_ok());
    assert!(folder_is_shared(0o777));
    assert!(!folder_is_shared(0o1777));
    assert!(!folder_is_shared(0o755));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_refusal_of_a_second_watch_names_the_first_one() {
    let dir = temp_dir("holder");
    let path = dir.join("state.json");
    let (_held, _) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    let Err(refused) = StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine)
    else {
        panic!("a second watch took the lock");
    };
    let said = refused.to_string();
    assert!(
        said.contains(&format!("pid {} on {}", std::process::id(), os::hostname())),
        "{said}"
    );
    assert!(said.contains(" since 20"), "{said}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn skipped_paths_are_kept_and_count_as_done() {
    let mut record = Record::new("id".to_owned(), PathBuf::from("/data"), Each::File);
    record.skipped.insert("old.h5".to_owned());
    let again = Record::parse(&record.render()).unwrap();
    assert_eq!(again, record);
    assert!(again.is_done("old.h5"));
    assert!(!again.is_done("new.h5"));
}

#[test]
fn skipped_paths_go_through_the_journal_and_survive_a_restart() {
    let dir = temp_dir("skip");
    let path = dir.join("state.json");
    let (mut state, mut record) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    let skip = Change::Skip {
        files: vec!["old.h5".to_owned(), "older.h5".to_owned()],
    };
    state.record(&mut record, skip.clone()).unwrap();
    assert_eq!(Change::parse(skip.line().trim_end()), Ok(skip));
    assert_eq!(StateFile::peek(&path).unwrap(), record);
    drop(state);
    let (_state, again) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    assert!(again.is_done("older.h5"));
    assert_eq!(again, record);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_peek_creates_locks_and_writes_nothing() {
    let dir = temp_dir("peek");
    let path = dir.join("sub").join("state.json");
    assert!(StateFile::peek_watch(&path, Path::new("/data"), Each::File)
        .unwrap()
        .is_none());
    assert!(!dir.join("sub").exists());
    let (mut file, mut record) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    // In the journal only, as it is between two compactions.
    submit(&mut file, &mut record, "a", 5);
    // Even while a watch holds the lock.
    let seen = StateFile::peek_watch(&path, Path::new("/data"), Each::File).unwrap();
    assert_eq!(seen, Some(record));
    assert!(matches!(
        StateFile::peek_watch(&path, Path::new("/other"), Each::File),
        Err(StateError::Invalid { .. })
    ));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_file_is_journaled_survives_a_restart_and_is_retried() {
    let dir = temp_dir("failed");
    let path = dir.join("state.json");
    let (mut state, mut record) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    let fail = Change::Fail {
        file: "f.h5".to_owned(),
        reason: "sbatch failed (exit status 1): Invalid reservation".to_owned(),
        plan: "reservation 1_1, partition p".to_owned(),
    };
    assert_eq!(Change::parse(fail.line().trim_end()), Ok(fail.clone()));
    state.record(&mut record, fail).unwrap();
    state.record(&mut record, fail_of("g.h5")).unwrap();
    let journal = fs::read_to_string(dir.join("state.json.journal")).unwrap();
    assert!(journal.contains("\"failed\":\"f.h5\""), "{journal}");
    // `watch status` beside the running watch sees it.
    assert_eq!(
        StateFile::peek(&path).unwrap().failed["f.h5"].plan,
        "reservation 1_1, partition p"
    );
    drop(state);

    // A restart replays and compacts it into the snapshot.
    let (mut state, mut again) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    assert_eq!(again, record);
    assert!(fs::read_to_string(&path)
        .unwrap()
        .contains("Invalid reservation"));
    assert!(!again.is_done("f.h5"));

    // Tried again (a new plan, or watch resubmit); a job found for the other
    // by its comment ends its failure too.
    state
        .record(
            &mut again,
            Change::Retry {
                file: "f.h5".to_owned(),
            },
        )
        .unwrap();
    submit(&mut state, &mut again, "g.h5", 7);
    assert!(again.failed.is_empty());
    drop(state);
    let (_state, last) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    assert!(last.failed.is_empty());
    assert_eq!(last.submitted["g.h5"].job, 7);
    fs::remove_dir_all(&dir).unwrap();
}

fn fail_of(file: &str) -> Change {
    Change::Fail {
        file: file.to_owned(),
        reason: "refused".to_owned(),
        plan: "old plan".to_owned(),
    }
}
