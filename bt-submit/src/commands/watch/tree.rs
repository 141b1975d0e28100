//! Looking through the watched folder: every folder below it, and the files
//! whose names match the pattern that are not submitted yet — or, watching
//! scan folders, the folders directly below it whose names match, each
//! summed up as one look. Read-only: the watch never changes or deletes
//! anything there.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::complete::Look;

/// What one look through the folder found.
#[derive(Debug, Default)]
pub struct Found {
    /// Files not submitted yet (by their path below the folder) and how they look.
    pub files: Vec<(String, Look)>,
    /// Every folder below the watched one (relative, "" for itself).
    pub folders: Vec<String>,
    /// Entries that cannot be watched, with the reason.
    pub unusable: Vec<(String, String)>,
}

/// Whether a file name matches `--pattern`: `*` for any run of characters,
/// a leading `.` only matched by a pattern that starts with one (so the
/// hidden temporary files of a rename into place are left alone).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    beamtime::pattern::wildcard_matches(pattern, name)
}

/// What the last listing of a folder saw, so that a folder nothing was
/// added to since costs one stat instead of a listing: creating, renaming
/// into or deleting an entry changes the folder's mtime.
#[derive(Debug, Clone)]
pub struct Listing {
    mtime_ns: i128,
    /// When this mtime was first seen (the watch's clock, ms).
    mtime_seen_at: u64,
    /// When the folder was last listed.
    listed_at: u64,
    subfolders: Vec<String>,
}

/// How long an mtime must have been seen before a listing proves that no
/// entry came after it: an entry added within the same timestamp tick as
/// the change before it leaves the mtime as it was, so the folder is listed
/// again once the mtime has stood for this long.
pub const MTIME_STANDS_MS: u64 = 1000;

/// A folder is listed at least this often whatever its mtime says, in case
/// a filesystem keeps a folder's mtime from other hosts' changes for a while.
pub const RELIST_MS: u64 = 60_000;

/// Whether the folder needs no listing now: its mtime is the one of its last
/// listing, that listing came after the mtime had stood for
/// [`MTIME_STANDS_MS`], and it is less than [`RELIST_MS`] old.
pub fn may_skip(last: Option<&Listing>, mtime_ns: i128, now: u64) -> bool {
    last.is_some_and(|last| {
        last.mtime_ns == mtime_ns
            && last.listed_at >= last.mtime_seen_at + MTIME_STANDS_MS
            && now < last.listed_at + RELIST_MS
    })
}

/// Walks `root` without following symbolic links; `skip(rel)` tells which
/// files need no look (already submitted), so they cost no stat. Folders in
/// `busy` (holding files not submitted yet) are always listed; the others
/// only when [`may_skip`] says they may have changed.
pub fn walk(
    root: &Path,
    pattern: &str,
    skip: &dyn Fn(&str) -> bool,
    busy: &HashSet<String>,
    listings: &mut HashMap<String, Listing>,
    now: u64,
) -> Found {
    let mut found = Found::default();
    let mut pending = vec![String::new()];
    let mut visited = HashSet::new();
    while let Some(folder) = pending.pop() {
        let dir = root.join(&folder);
        let mtime_ns = match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => mtime_of(&meta),
            Ok(_) => continue,
            Err(error) => {
                found
                    .unusable
                    .push((shown(&folder), format!("cannot read the folder: {error}")));
                continue;
            }
        };
        visited.insert(folder.clone());
        let last = listings.get(&folder);
        if !busy.contains(&folder) && may_skip(last, mtime_ns, now) {
            pending.extend(last.map(|l| l.subfolders.clone()).unwrap_or_default());
            found.folders.push(folder);
            continue;
        }
        let mtime_seen_at = match last {
            Some(last) if last.mtime_ns == mtime_ns => last.mtime_seen_at,
            _ => now,
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) => {
                found
                    .unusable
                    .push((shown(&folder), format!("cannot read the folder: {error}")));
                continue;
            }
        };
        let mut subfolders = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                found.unusable.push((
                    shown(&join(&folder, &entry.file_name().to_string_lossy())),
                    "its name is not UTF-8".to_owned(),
                ));
                continue;
            };
            let rel = join(&folder, &name);
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !name.starts_with('.') {
                    subfolders.push(rel);
                }
            } else if kind.is_file() && name_matches(pattern, &name) && !skip(&rel) {
                if let Ok(meta) = entry.metadata() {
                    found.files.push((rel, look_of(&meta)));
                }
            }
        }
        pending.extend(subfolders.iter().cloned());
        listings.insert(
            folder.clone(),
            Listing {
                mtime_ns,
                mtime_seen_at,
                listed_at: now,
                subfolders,
            },
        );
        found.folders.push(folder);
    }
    // Folders that are gone are forgotten.
    listings.retain(|folder, _| visited.contains(folder));
    found
}

/// Watching scan folders: the folders directly below `root` whose names
/// match and that `skip` does not rule out, each with the look of
/// everything below it. Files directly in `root` are no scan and left
/// alone. Every such folder is summed up at every walk, file by file: a file
/// being written changes its size, not its folder's mtime.
pub fn walk_scan_folders(root: &Path, pattern: &str, skip: &dyn Fn(&str) -> bool) -> Found {
    let mut found = Found::default();
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(error) => {
            found
                .unusable
                .push((".".to_owned(), format!("cannot read the folder: {error}")));
            return found;
        }
    };
    found.folders.push(String::new());
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            found.unusable.push((
                entry.file_name().to_string_lossy().into_owned(),
                "its name is not UTF-8".to_owned(),
            ));
            continue;
        };
        let is_folder = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if !is_folder || !name_matches(pattern, &name) || skip(&name) {
            continue;
        }
        match sum_up(&root.join(&name)) {
            Ok(look) => {
                found.files.push((name.clone(), look));
                found.folders.push(name);
            }
            Err(why) => found.unusable.push((name, why)),
        }
    }
    found
}

/// A new look at one scan folder; `None` when it is gone or cannot be read.
pub fn look_folder(root: &Path, rel: &str) -> Option<Look> {
    sum_up(&root.join(rel)).ok()
}

/// Whether the scan folder `rel` holds a plain file `name`.
pub fn holds_file(root: &Path, rel: &str, name: &str) -> bool {
    fs::symlink_metadata(root.join(rel).join(name)).is_ok_and(|meta| meta.file_type().is_file())
}

/// Every plain file below `folder` (hidden ones too: a detector's temporary
/// file is part of a scan still being written), without following symbolic
/// links: how many, their total size, and the latest mtime of them and of
/// the folders.
fn sum_up(folder: &Path) -> Result<Look, String> {
    let meta = fs::symlink_metadata(folder).map_err(|e| format!("cannot read the folder: {e}"))?;
    if !meta.is_dir() {
        return Err("it is no longer a folder".to_owned());
    }
    let mut look = Look {
        size: 0,
        mtime_ns: mtime_of(&meta),
        files: 0,
    };
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|error| {
            format!(
                "cannot read {}: {error}",
                dir.strip_prefix(folder).unwrap_or(&dir).display()
            )
        })?;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if !meta.file_type().is_file() {
                continue;
            } else {
                look.files += 1;
                look.size += meta.len();
            }
            look.mtime_ns = look.mtime_ns.max(mtime_of(&meta));
        }
    }
    Ok(look)
}

/// A new look at one file; `None` when it is gone or no longer a plain file.
pub fn look(root: &Path, rel: &str) -> Option<Look> {
    let meta = fs::symlink_metadata(root.join(rel)).ok()?;
    meta.file_type().is_file().then(|| look_of(&meta))
}

fn look_of(meta: &fs::Metadata) -> Look {
    Look {
        size: meta.len(),
        mtime_ns: mtime_of(meta),
        files: 1,
    }
}

fn mtime_of(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

pub fn join(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_owned()
    } else {
        format!("{folder}/{name}")
    }
}

fn shown(rel: &str) -> String {
    if rel.is_empty() {
        ".".to_owned()
    } else {
        rel.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_in_subfolders_are_found_and_hidden_ones_and_submitted_ones_are_not() {
        let root =
            std::env::temp_dir().join(format!("bt-submit-watch-tree-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("scan 1/deeper")).unwrap();
        fs::create_dir_all(root.join(".hidden")).unwrap();
        for file in [
            "a.h5",
            "b.txt",
            ".a.h5.part",
            "scan 1/c.h5",
            "scan 1/deeper/d.h5",
            ".hidden/e.h5",
            "old.h5",
        ] {
            fs::write(root.join(file), b"data").unwrap();
        }
        std::os::unix::fs::symlink(root.join("a.h5"), root.join("link.h5")).unwrap();
        let found = walk(
            &root,
            "*.h5",
            &|rel| rel == "old.h5",
            &HashSet::new(),
            &mut HashMap::new(),
            0,
        );
        let mut files: Vec<&str> = found.files.iter().map(|(rel, _)| rel.as_str()).collect();
        files.sort();
        assert_eq!(files, ["a.h5", "scan 1/c.h5", "scan 1/deeper/d.h5"]);
        assert_eq!(found.files[0].1.size, 4);
        let mut folders = found.folders.clone();
        folders.sort();
        assert_eq!(folders, ["", "scan 1", "scan 1/deeper"]);
        assert_eq!(look(&root, "scan 1/c.h5").map(|l| l.size), Some(4));
        assert_eq!(look(&root, "link.h5"), None);
        assert_eq!(look(&root, "gone.h5"), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_folder_is_listed_again_unless_its_mtime_has_stood_since_a_listing() {
        let listing = |mtime_ns, mtime_seen_at, listed_at| Listing {
            mtime_ns,
            mtime_seen_at,
            listed_at,
            subfolders: Vec::new(),
        };
        // Never listed, or changed since: listed.
        assert!(!may_skip(None, 5, 10_000));
        assert!(!may_skip(Some(&listing(5, 0, 2000)), 6, 3000));
        // Listed when its mtime was new: an entry in the same tick could hide.
        assert!(!may_skip(Some(&listing(5, 1000, 1500)), 5, 3000));
        // Listed after the mtime had stood for a second: nothing came since.
        assert!(may_skip(Some(&listing(5, 1000, 2000)), 5, 3000));
        // But at least once a minute.
        assert!(!may_skip(Some(&listing(5, 1000, 2000)), 5, 62_000));
    }

    #[test]
    fn a_file_added_to_a_folder_not_listed_for_a_while_is_found() {
        let root =
            std::env::temp_dir().join(format!("bt-submit-watch-skip-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("scan")).unwrap();
        fs::write(root.join("scan/a.h5"), b"a").unwrap();
        // An old mtime, so that adding b.h5 below surely changes it.
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::open(root.join("scan"))
            .and_then(|folder| folder.set_modified(old))
            .unwrap();
        let mut listings = HashMap::new();
        let none = HashSet::new();
        let submitted = |rel: &str| rel == "scan/a.h5";
        let walk_at = |listings: &mut HashMap<String, Listing>, now| {
            let found = walk(&root, "*", &submitted, &none, listings, now);
            found
                .files
                .into_iter()
                .map(|(rel, _)| rel)
                .collect::<Vec<_>>()
        };
        assert!(walk_at(&mut listings, 0).is_empty());
        assert!(walk_at(&mut listings, 1500).is_empty());
        // Now the folders may be skipped: one stat each.
        assert!(may_skip(
            listings.get("scan"),
            listings["scan"].mtime_ns,
            2000
        ));
        fs::write(root.join("scan/b.h5"), b"b").unwrap();
        assert_eq!(walk_at(&mut listings, 2000), ["scan/b.h5"]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn scan_folders_are_summed_up_whole_and_only_the_new_matching_ones() {
        let root =
            std::env::temp_dir().join(format!("bt-submit-watch-scans-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
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
        let found = walk_scan_folders(&root, "scan_*", &|rel| rel == "scan_old");
        let mut scans: Vec<(&str, u64, u64)> = found
            .files
            .iter()
            .map(|(rel, look)| (rel.as_str(), look.files, look.size))
            .collect();
        scans.sort();
        assert_eq!(scans, [("scan_1", 3, 9), ("scan_2", 0, 0)]);
        assert!(found.unusable.is_empty(), "{:?}", found.unusable);
        let before = look_folder(&root, "scan_2").unwrap();
        fs::write(root.join("scan_2/a.h5"), b"").unwrap();
        let after = look_folder(&root, "scan_2").unwrap();
        assert_ne!(before, after, "an empty file added is a change");
        assert!(holds_file(&root, "scan_1", "master.h5"));
        assert!(!holds_file(&root, "scan_1", "frames"));
        assert_eq!(look_folder(&root, "gone"), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_pattern_matches_the_name() {
        assert!(name_matches("*", "a.h5"));
        assert!(name_matches("*.h5", "scan_0001.h5"));
        assert!(!name_matches("*.h5", "scan_0001.h5.part"));
        assert!(!name_matches("*", ".a.h5.part"));
    }
}
