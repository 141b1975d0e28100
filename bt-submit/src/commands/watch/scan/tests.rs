use super::*;
use crate::commands::watch::complete::{Candidate, Verdict, Why};
use std::fs;
use std::io::Write;
use std::path::PathBuf;

const SETTLE: u64 = 2000;

fn pattern(text: &str) -> Patterns {
    Patterns::new(&[text.to_owned()]).unwrap()
}

/// A fresh folder for one test, gone at its end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let root =
            std::env::temp_dir().join(format!("bt-submit-watch-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        Scratch(root)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What `look` returns, and how many stats it took.
fn counting<T>(look: impl FnOnce() -> T) -> (T, usize) {
    STATS.with(|stats| stats.set(0));
    let result = look();
    (result, STATS.with(|stats| stats.get()))
}

/// The frames' total size as the filesystem says it.
fn size_on_disk(folder: &Path) -> u64 {
    fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}

fn append(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .unwrap();
}

/// A scan folder `scan_1` of `frames` frames, with an old mtime so that an
/// entry added later surely changes it.
fn scan_of(scratch: &Scratch, frames: usize) -> PathBuf {
    let scan = scratch.0.join("scan_1");
    fs::create_dir_all(&scan).unwrap();
    for i in 0..frames {
        fs::write(scan.join(format!("frame_{i:03}.cbf")), vec![b'x'; 100 + i]).unwrap();
    }
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    fs::File::open(&scan)
        .and_then(|folder| folder.set_modified(old))
        .unwrap();
    scan
}

#[test]
fn scan_folders_are_summed_up_whole_and_only_the_new_matching_ones() {
    let scratch = Scratch::new("scans");
    let root = &scratch.0;
    for folder in [
        "scan_1/frames",
        "scan_2",
        "scan_old",
        "calib",
        ".hidden_scan",
    ] {
        fs::create_dir_all(root.join(folder)).unwrap();
    }
    fs::write(root.join("scan_1/frames/a.h5"), b"12345").unwrap();
    fs::write(root.join("scan_1/.b.h5.part"), b"123").unwrap();
    fs::write(root.join("scan_1/master.h5"), b"1").unwrap();
    fs::write(root.join("scan_3.h5"), b"not a folder").unwrap();
    std::os::unix::fs::symlink(root.join("scan_1"), root.join("scan_link")).unwrap();
    let mut scans = HashMap::new();
    let skip = |rel: &str| rel == "scan_old";
    let found = walk_scan_folders(root, &pattern("scan_*"), &skip, &mut scans, SETTLE, 0);
    let mut summed: Vec<(&str, u64, u64)> = found
        .files
        .iter()
        .map(|(rel, look)| (rel.as_str(), look.files, look.size))
        .collect();
    summed.sort();
    assert_eq!(summed, [("scan_1", 3, 9), ("scan_2", 0, 0)]);
    assert!(found.unusable.is_empty(), "{:?}", found.unusable);
    let mut kept: Vec<&String> = scans.keys().collect();
    kept.sort();
    assert_eq!(kept, ["scan_1", "scan_2"]);
    let mut seen = ScanSeen::default();
    let before = look_folder(root, "scan_2", &mut seen, Pass::Quick, SETTLE, 0).unwrap();
    fs::write(root.join("scan_2/a.h5"), b"").unwrap();
    let after = look_folder(root, "scan_2", &mut seen, Pass::Quick, SETTLE, 100).unwrap();
    assert_ne!(before.look, after.look, "an empty file added is a change");
    assert!(after.changed);
    assert!(holds_file(root, "scan_1", "master.h5"));
    assert!(!holds_file(root, "scan_1", "frames"));
    assert_eq!(
        look_folder(root, "gone", &mut seen, Pass::Quick, SETTLE, 200),
        None
    );
    // Once done, a scan is no longer looked at, and forgotten.
    let done = |rel: &str| rel == "scan_old" || rel == "scan_2";
    walk_scan_folders(root, &pattern("scan_*"), &done, &mut scans, SETTLE, 300);
    assert_eq!(scans.keys().collect::<Vec<_>>(), ["scan_1"]);
}

#[test]
fn a_look_stats_the_folder_and_only_the_frames_not_standing_still() {
    let scratch = Scratch::new("scan-stats");
    let still = 20;
    let scan = scan_of(&scratch, still);
    let mut seen = ScanSeen::default();
    let mut look_at =
        |now| counting(|| look_folder(&scratch.0, "scan_1", &mut seen, Pass::Quick, SETTLE, now));
    // Every frame is new, then not yet seen unchanged for the settle time.
    assert_eq!(look_at(0).1, 1 + still);
    assert_eq!(look_at(SETTLE).1, 1 + still);
    // Now they stand still: the folder alone.
    let (looked, stats) = look_at(2 * SETTLE);
    assert_eq!(stats, 1);
    assert!(!looked.unwrap().changed);
    // A frame being written: new, then growing at every look.
    let growing = scan.join("frame_new.cbf");
    fs::write(&growing, b"first block").unwrap();
    for step in 0..4 {
        let now = 2 * SETTLE + 500 * (step + 1);
        let (looked, stats) = look_at(now);
        assert_eq!(stats, 2, "the folder and the growing frame, at {now} ms");
        let looked = looked.unwrap();
        assert!(looked.changed);
        assert_eq!(looked.look.files, still as u64 + 1);
        assert_eq!(looked.look.size, size_on_disk(&scan));
        append(&growing, b"another block");
    }
}

#[test]
fn a_frame_that_stood_still_and_changes_before_the_decision_blocks_it() {
    let scratch = Scratch::new("scan-decision");
    let scan = scan_of(&scratch, 10);
    let mut seen = ScanSeen::default();
    let mut look_at = |pass, now| {
        counting(|| look_folder(&scratch.0, "scan_1", &mut seen, pass, SETTLE, now).unwrap())
    };
    let tell = |candidate: &mut Candidate, looked: ScanLook, now| {
        if looked.changed {
            candidate.changed(looked.look, now);
        } else {
            candidate.looked(looked.look, now);
        }
    };
    let (first, _) = look_at(Pass::Quick, 0);
    let mut candidate = Candidate::first_seen(first.look, 0);
    let (looked, _) = look_at(Pass::Quick, SETTLE);
    tell(&mut candidate, looked, SETTLE);
    assert_eq!(
        candidate.verdict(Some(SETTLE)),
        Verdict::Complete(Why::Settled(SETTLE))
    );
    // A late append to a frame that stood still: the quick looks do not see it…
    append(&scan.join("frame_003.cbf"), b"late");
    let (looked, stats) = look_at(Pass::Quick, SETTLE + 100);
    assert_eq!(stats, 1);
    tell(&mut candidate, looked, SETTLE + 100);
    assert!(matches!(
        candidate.verdict(Some(SETTLE)),
        Verdict::Complete(_)
    ));
    // …the whole pass before the decision does, and the scan is not complete.
    let (looked, stats) = look_at(Pass::Whole, SETTLE + 200);
    assert_eq!(stats, 11);
    assert!(looked.changed);
    assert_eq!(looked.look.size, size_on_disk(&scan));
    tell(&mut candidate, looked, SETTLE + 200);
    assert_eq!(
        candidate.verdict(Some(SETTLE)),
        Verdict::LookAgainAt(2 * SETTLE + 200)
    );
    // The changed frame is looked at again at every look until it stands still.
    assert_eq!(look_at(Pass::Quick, SETTLE + 1000).1, 2);
    assert_eq!(look_at(Pass::Quick, 2 * SETTLE + 200).1, 2);
    assert_eq!(look_at(Pass::Quick, 2 * SETTLE + 300).1, 1);
    // Nothing changed since: the next whole pass lets it through.
    let (looked, _) = look_at(Pass::Whole, 2 * SETTLE + 400);
    assert!(!looked.changed);
    tell(&mut candidate, looked, 2 * SETTLE + 400);
    assert!(matches!(
        candidate.verdict(Some(SETTLE)),
        Verdict::Complete(Why::Settled(_))
    ));
}

#[test]
fn frames_and_folders_that_come_or_go_are_changes() {
    let scratch = Scratch::new("scan-come-go");
    let scan = scan_of(&scratch, 3);
    fs::create_dir(scan.join("sub")).unwrap();
    fs::write(scan.join("sub/deep.cbf"), b"deep").unwrap();
    let mut seen = ScanSeen::default();
    let mut look_at =
        |now| look_folder(&scratch.0, "scan_1", &mut seen, Pass::Quick, SETTLE, now).unwrap();
    assert_eq!(look_at(0).look.files, 4);
    assert!(!look_at(1500).changed);
    fs::remove_file(scan.join("frame_001.cbf")).unwrap();
    let looked = look_at(1600);
    assert!(looked.changed);
    assert_eq!(looked.look.files, 3);
    fs::remove_dir_all(scan.join("sub")).unwrap();
    let looked = look_at(1700);
    assert!(looked.changed);
    assert_eq!(looked.look.files, 2);
    assert_eq!(looked.look.size, size_on_disk(&scan));
    // A frame swapped for a folder of the same name, holding a file.
    fs::remove_file(scan.join("frame_002.cbf")).unwrap();
    fs::create_dir(scan.join("frame_002.cbf")).unwrap();
    fs::write(scan.join("frame_002.cbf/inside.cbf"), b"inside").unwrap();
    let looked = look_at(1800);
    assert!(looked.changed);
    assert_eq!(looked.look.files, 2);
    let inside = fs::metadata(scan.join("frame_002.cbf/inside.cbf"))
        .unwrap()
        .len();
    assert_eq!(
        looked.look.size,
        fs::metadata(scan.join("frame_000.cbf")).unwrap().len() + inside
    );
}
