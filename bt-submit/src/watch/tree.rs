//! Looking through the watched folder: every folder below it, and the files
//! whose names match the pattern that are not submitted yet. Read-only: the
//! watch never changes or deletes anything there.

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

/// Walks `root` without following symbolic links; `skip(rel)` tells which
/// files need no look (already submitted), so they cost no stat.
pub fn walk(root: &Path, pattern: &str, skip: &dyn Fn(&str) -> bool) -> Found {
    let mut found = Found::default();
    let mut pending = vec![String::new()];
    while let Some(folder) = pending.pop() {
        let dir = root.join(&folder);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) => {
                found
                    .unusable
                    .push((shown(&folder), format!("cannot read the folder: {error}")));
                continue;
            }
        };
        found.folders.push(folder.clone());
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
                    pending.push(rel);
                }
            } else if kind.is_file() && name_matches(pattern, &name) && !skip(&rel) {
                if let Ok(meta) = entry.metadata() {
                    found.files.push((rel, look_of(&meta)));
                }
            }
        }
    }
    found
}

/// A new look at one file; `None` when it is gone or no longer a plain file.
pub fn look(root: &Path, rel: &str) -> Option<Look> {
    let meta = fs::symlink_metadata(root.join(rel)).ok()?;
    meta.file_type().is_file().then(|| look_of(&meta))
}

fn look_of(meta: &fs::Metadata) -> Look {
    Look {
        size: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    }
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
        let found = walk(&root, "*.h5", &|rel| rel == "old.h5");
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
    fn the_pattern_matches_the_name() {
        assert!(name_matches("*", "a.h5"));
        assert!(name_matches("*.h5", "scan_0001.h5"));
        assert!(!name_matches("*.h5", "scan_0001.h5.part"));
        assert!(!name_matches("*", ".a.h5.part"));
    }
}
