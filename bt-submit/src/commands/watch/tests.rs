use super::log::civil_from_days;
use super::*;

#[test]
fn retries_back_off_up_to_five_minutes() {
    let delays: Vec<u64> = (1..=10).map(|n| retry_delay(n).as_secs()).collect();
    assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(retry_delay(u32::MAX).as_secs(), 300);
}

#[test]
fn the_default_state_file_is_per_folder_and_outside_it() {
    let env = |name: &str| match name {
        "HOME" => Some(OsString::from("/home/u")),
        _ => None,
    };
    let a = default_state_file(Path::new("/gpfs/raw"), Each::File, &env).unwrap();
    let b = default_state_file(Path::new("/other/raw"), Each::File, &env).unwrap();
    let scans = default_state_file(Path::new("/gpfs/raw"), Each::Folder, &env).unwrap();
    assert!(a.starts_with("/home/u/.local/state/bt-submit"));
    assert!(a.to_string_lossy().contains("watch-raw-"));
    assert!(scans.to_string_lossy().contains("watch-folders-raw-"));
    assert_ne!(a, b);
    let xdg = |name: &str| (name == "XDG_STATE_HOME").then(|| OsString::from("/state"));
    assert!(default_state_file(Path::new("/gpfs/raw"), Each::File, &xdg)
        .unwrap()
        .starts_with("/state/bt-submit"));
}

#[test]
fn dates_are_civil() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(20_819), (2027, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
}

#[test]
fn a_name_with_a_newline_cannot_start_a_log_line_of_its_own() {
    let forged =
        "x\n2026-12-07T00:00:00.000Z important.h5 -> job 4711 (closed after writing)\ny.h5";
    let line = format!("{} -> job 5 (closed after writing)", named(forged));
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.starts_with("\"x\\n2026"), "{line}");
    assert_eq!(named("scan_1/frame_0001.h5"), "scan_1/frame_0001.h5");
    assert_eq!(named(""), ".");
}

#[test]
fn the_lock_refusal_names_the_holder_and_never_suggests_a_second_state() {
    let holder = "pid 4711 on p11-bl since 2026-12-01T22:44:02Z".to_owned();
    let refused = state_failure(StateError::InUse {
        path: PathBuf::from("/home/u/.local/state/bt-submit/watch-raw.json"),
        holder: holder.clone(),
    });
    assert_eq!(refused.status, Status::Usage);
    assert!(refused.problem.what.contains(&holder), "{refused}");
    // A second state for the same folder would submit every file again.
    assert!(!refused.problem.fix.contains("--state"), "{refused}");
    assert!(refused.problem.fix.contains("stop it"), "{refused}");
}
