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

#[test]
fn a_record_reads_back_as_written() {
    let mut record = Record::new("0123abcd".into(), "/gpfs/raw".into(), Each::File);
    let marker = record.begin("scan 1/a.h5");
    record.finish("scan 1/a.h5", 17, look());
    let next = record.begin("b\"quoted\".h5");
    assert_ne!(marker, next);
    assert!(next.starts_with("bt-submit-watch:0123abcd:"));
    assert_eq!(Record::parse(&record.render()), Ok(record));
}

#[test]
fn a_finished_submission_is_no_longer_under_way() {
    let mut record = Record::new("id".into(), "/d".into(), Each::File);
    record.begin("a");
    record.finish("a", 5, look());
    assert_eq!(record.submitting, None);
    assert_eq!(record.submitted["a"].job, 5);
    record.begin("b");
    record.abandon();
    assert_eq!(record.submitting, None);
    assert!(!record.submitted.contains_key("b"));
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
    let (file, mut record) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    record.begin("x");
    record.finish("x", 9, look());
    record.begin("y");
    file.save(&record).unwrap();
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
    let (file, record) =
        StateFile::open(&path, Path::new("/data/a"), Each::File, Sharing::OnlyMine).unwrap();
    file.save(&record).unwrap();
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
    let (file, record) =
        StateFile::open(&path, Path::new("/data"), Each::Folder, Sharing::OnlyMine).unwrap();
    file.save(&record).unwrap();
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
    record.begin("scan_1");
    let scan = Look {
        files: 1200,
        ..look()
    };
    record.finish("scan_1", 3, scan);
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
    let (file, record) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    file.save(&record).unwrap();
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
fn a_peek_creates_locks_and_writes_nothing() {
    let dir = temp_dir("peek");
    let path = dir.join("sub").join("state.json");
    assert!(StateFile::peek(&path, Path::new("/data"), Each::File)
        .unwrap()
        .is_none());
    assert!(!dir.join("sub").exists());
    let (file, mut record) =
        StateFile::open(&path, Path::new("/data"), Each::File, Sharing::OnlyMine).unwrap();
    record.finish(
        "a",
        5,
        Look {
            size: 1,
            mtime_ns: 2,
            files: 1,
        },
    );
    file.save(&record).unwrap();
    // Even while a watch holds the lock.
    let seen = StateFile::peek(&path, Path::new("/data"), Each::File).unwrap();
    assert_eq!(seen, Some(record));
    assert!(matches!(
        StateFile::peek(&path, Path::new("/other"), Each::File),
        Err(StateError::Invalid { .. })
    ));
    fs::remove_dir_all(&dir).unwrap();
}
