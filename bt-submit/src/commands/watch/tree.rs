//! Looking through the watched folder: every folder below it, and the files
//! whose names match the pattern that are not submitted yet (scan folders,
//! each summed up as one look: scan.rs). Read-only: the watch never changes
//! or deletes anything there.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::beneath::{Folder, Kind, Stat};
use super::complete::Look;
use super::pattern::Patterns;

/// What one look through the folder found.
#[derive(Debug, Default)]
pub struct Found {
    /// Files not submitted yet (by their path below the folder) and how they look.
    pub files: Vec<(String, Look)>,
    /// Every folder below the watched one (relative, "" for itself).
    pub folders: Vec<String>,
    /// Scan folders whose look found a frame changed, come or gone, which
    /// their sums alone may not show (scan.rs).
    pub changed: HashSet<String>,
    /// Entries that cannot be watched (by their path below the folder, "" for
    /// itself, not yet escaped), with the reason.
    pub unusable: Vec<(String, String)>,
}

/// When a folder was last listed, and its mtime then, so that a folder
/// nothing was added to since costs one stat instead of a listing:
/// creating, renaming into or deleting an entry changes the folder's mtime.
#[derive(Debug, Clone, Copy)]
pub struct Listed {
    mtime_ns: i128,
    /// When this mtime was first seen (the watch's clock, ms).
    mtime_seen_at: u64,
    /// When the folder was last listed.
    listed_at: u64,
}

/// How long an mtime must have been seen before a listing proves that no
/// entry came after it: an entry added within the same timestamp tick as
/// the change before it leaves the mtime as it was, so the folder is listed
/// again once the mtime has stood for this long.
pub const MTIME_STANDS_MS: u64 = 1000;

/// A folder is listed at least this often whatever its mtime says, in case
/// a filesystem keeps a folder's mtime from other hosts' changes for a while.
pub const RELIST_MS: u64 = 60_000;

impl Listed {
    /// A listing made `now` of a folder whose mtime is `mtime_ns`, `last`
    /// being the one before it.
    pub fn now(last: Option<&Listed>, mtime_ns: i128, now: u64) -> Listed {
        let mtime_seen_at = match last {
            Some(last) if last.mtime_ns == mtime_ns => last.mtime_seen_at,
            _ => now,
        };
        Listed {
            mtime_ns,
            mtime_seen_at,
            listed_at: now,
        }
    }

    /// Whether the folder needs no listing now: its mtime is the one of
    /// this listing, which came after the mtime had stood for
    /// [`MTIME_STANDS_MS`], and is less than [`RELIST_MS`] old.
    pub fn may_skip(&self, mtime_ns: i128, now: u64) -> bool {
        self.mtime_ns == mtime_ns
            && self.listed_at >= self.mtime_seen_at + MTIME_STANDS_MS
            && now < self.listed_at + RELIST_MS
    }
}

/// What the last listing of a folder saw.
#[derive(Debug, Clone)]
pub struct Listing {
    listed: Listed,
    subfolders: Vec<String>,
}

/// Walks `root` from a handle on it, never through a symbolic link (see
/// beneath.rs); `skip(rel)` tells which
/// files need no look (already submitted), so they cost no stat. Folders in
/// `busy` (holding files not submitted yet) are always listed; the others
/// only when [`Listed::may_skip`] says they may have changed.
pub fn walk(
    root: &Path,
    patterns: &Patterns,
    skip: &dyn Fn(&str) -> bool,
    busy: &HashSet<String>,
    listings: &mut HashMap<String, Listing>,
    now: u64,
) -> Found {
    let mut found = Found::default();
    let top = match Folder::open_root(root) {
        Ok(top) => top,
        Err(error) => {
            found
                .unusable
                .push((String::new(), format!("cannot read the folder: {error}")));
            return found;
        }
    };
    let mut pending = vec![String::new()];
    let mut visited = HashSet::new();
    while let Some(folder) = pending.pop() {
        // A folder swapped for a link since it was listed is no folder here.
        let (dir, mtime_ns) = match top.folder(&folder).and_then(|dir| {
            let stat = dir.stat()?;
            Ok((dir, stat.mtime_ns))
        }) {
            Ok(opened) => opened,
            Err(error) if error.raw_os_error() == Some(libc::ELOOP) => continue,
            Err(error) if error.raw_os_error() == Some(libc::ENOTDIR) => continue,
            Err(error) => {
                found
                    .unusable
                    .push((folder.clone(), format!("cannot read the folder: {error}")));
                continue;
            }
        };
        visited.insert(folder.clone());
        let last = listings.get(&folder);
        if let Some(last) =
            last.filter(|last| !busy.contains(&folder) && last.listed.may_skip(mtime_ns, now))
        {
            pending.extend(last.subfolders.iter().cloned());
            found.folders.push(folder);
            continue;
        }
        let listed = Listed::now(last.map(|last| &last.listed), mtime_ns, now);
        let entries = match dir.entries() {
            Ok(entries) => entries,
            Err(error) => {
                found
                    .unusable
                    .push((folder.clone(), format!("cannot read the folder: {error}")));
                continue;
            }
        };
        let mut subfolders = Vec::new();
        for (name, kind) in entries {
            let name = match name.into_string() {
                Ok(name) => name,
                Err(name) => {
                    found.unusable.push((
                        join(&folder, &name.to_string_lossy()),
                        "its name is not UTF-8".to_owned(),
                    ));
                    continue;
                }
            };
            let rel = join(&folder, &name);
            match kind {
                Kind::Folder if !name.starts_with('.') => subfolders.push(rel),
                Kind::File if patterns.matches(&name) && !skip(&rel) => {
                    if let Ok(stat) = dir.stat_entry(name.as_ref()) {
                        if stat.kind == Kind::File {
                            found.files.push((rel, look_of(&stat)));
                        }
                    }
                }
                _ => {}
            }
        }
        pending.extend(subfolders.iter().cloned());
        listings.insert(folder.clone(), Listing { listed, subfolders });
        found.folders.push(folder);
    }
    // Folders that are gone are forgotten.
    listings.retain(|folder, _| visited.contains(folder));
    found
}

/// A new look at one file; `None` when it is gone, no longer a plain file,
/// or no longer below `root` by real folders.
pub fn look(root: &Path, rel: &str) -> Option<Look> {
    let stat = Folder::open_root(root).ok()?.stat_beneath(rel).ok()?;
    (stat.kind == Kind::File).then(|| look_of(&stat))
}

fn look_of(stat: &Stat) -> Look {
    Look {
        size: stat.size,
        mtime_ns: stat.mtime_ns,
        files: 1,
    }
}

pub fn join(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_owned()
    } else {
        format!("{folder}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn pattern(text: &str) -> Patterns {
        Patterns::new(&[text.to_owned()]).unwrap()
    }

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
            &pattern("*.h5"),
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
        let listed = |mtime_ns, mtime_seen_at, listed_at| Listed {
            mtime_ns,
            mtime_seen_at,
            listed_at,
        };
        // Changed since: listed.
        assert!(!listed(5, 0, 2000).may_skip(6, 3000));
        // Listed when its mtime was new: an entry in the same tick could hide.
        assert!(!listed(5, 1000, 1500).may_skip(5, 3000));
        // Listed after the mtime had stood for a second: nothing came since.
        assert!(listed(5, 1000, 2000).may_skip(5, 3000));
        // But at least once a minute.
        assert!(!listed(5, 1000, 2000).may_skip(5, 62_000));
        // A listing after one with the same mtime keeps when it was first seen.
        let again = Listed::now(Some(&listed(5, 1000, 1500)), 5, 2000);
        assert!(again.may_skip(5, 3000));
        assert!(!Listed::now(Some(&again), 6, 2500).may_skip(6, 3000));
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
            let found = walk(&root, &pattern("*"), &submitted, &none, listings, now);
            found
                .files
                .into_iter()
                .map(|(rel, _)| rel)
                .collect::<Vec<_>>()
        };
        assert!(walk_at(&mut listings, 0).is_empty());
        assert!(walk_at(&mut listings, 1500).is_empty());
        // Now the folders may be skipped: one stat each.
        let scan = listings["scan"].listed;
        assert!(scan.may_skip(scan.mtime_ns, 2000));
        fs::write(root.join("scan/b.h5"), b"b").unwrap();
        assert_eq!(walk_at(&mut listings, 2000), ["scan/b.h5"]);
        fs::remove_dir_all(&root).unwrap();
    }
}
