//! Watching scan folders: the folders directly below the watched one whose
//! names match, each summed up as one look (how many files below it, their
//! total size, the latest mtime of them and of its folders).
//!
//! A frame being written changes its size, not its folder's mtime, so the
//! folder's mtime cannot tell that a scan's frames stand still; stat'ing
//! every frame at every look costs a stat per frame per look, which grows
//! with the scan (#22, docs/benchmarks.md section 8c). So the watch keeps
//! what it saw of each frame, and a [`Pass::Quick`] look stats every folder
//! of the scan (listing one again where its mtime says an entry came or
//! went, by tree.rs's rule), the frames not standing still yet (new, or
//! changed within the settle time) and no other frame. A late write to a
//! frame that stood still goes unseen by those looks; the one
//! [`Pass::Whole`] right before a scan is submitted stats every frame again,
//! and any change it finds makes the scan not complete yet.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;

use super::beneath::{Folder, Kind, Stat};
use super::complete::{Look, Seen};
use super::pattern::Patterns;
use super::tree::{join, Found, Listed};

/// How much of a scan folder a look stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Every folder, and the frames not standing still yet.
    Quick,
    /// Every folder listed again and every frame stat'ed: the pass right
    /// before a scan is submitted, which a frame that stood still and was
    /// written to since cannot slip through.
    Whole,
}

/// What the watch saw of a scan folder (or of a folder inside one) at its
/// last look, from which the next look sums it up.
#[derive(Debug, Default)]
pub struct ScanSeen {
    /// `None` until the folder is first listed.
    listed: Option<Listed>,
    mtime_ns: i128,
    /// Each plain file, as last stat'ed; `None` while only listed.
    frames: HashMap<OsString, Option<Seen>>,
    folders: HashMap<OsString, ScanSeen>,
}

/// What one look at a scan folder found: its sums, and whether anything in
/// it changed since the look before (which the sums alone may not show).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLook {
    pub look: Look,
    pub changed: bool,
}

impl ScanSeen {
    /// Looks at the folder `dir` (`rel` inside its scan, for messages): a
    /// frame counts as standing still once looks found it unchanged for
    /// `settle_ms`.
    fn look(
        &mut self,
        dir: &Folder,
        rel: &str,
        pass: Pass,
        settle_ms: u64,
        now: u64,
    ) -> Result<ScanLook, String> {
        let own = stat_folder(dir).map_err(|error| cannot_read(rel, &error))?;
        let mut changed = self.listed.is_none() || own.mtime_ns != self.mtime_ns;
        self.mtime_ns = own.mtime_ns;
        let may_skip = self
            .listed
            .is_some_and(|listed| listed.may_skip(own.mtime_ns, now));
        if pass == Pass::Whole || !may_skip {
            let entries = dir.entries().map_err(|error| cannot_read(rel, &error))?;
            changed |= self.relisted(entries);
            self.listed = Some(Listed::now(self.listed.as_ref(), own.mtime_ns, now));
        }
        let mut look = Look {
            size: 0,
            mtime_ns: own.mtime_ns,
            files: 0,
        };
        let mut gone = Vec::new();
        for (name, seen) in &mut self.frames {
            let due = pass == Pass::Whole
                || seen
                    .as_ref()
                    .map_or(true, |seen| seen.unchanged_for() < settle_ms);
            if due {
                match stat_frame(dir, name) {
                    Ok(stat) if stat.kind == Kind::File => {
                        let frame = Look {
                            size: stat.size,
                            mtime_ns: stat.mtime_ns,
                            files: 1,
                        };
                        match seen {
                            Some(seen) => changed |= seen.looked(frame, now),
                            None => {
                                *seen = Some(Seen::first(frame, now));
                                changed = true;
                            }
                        }
                    }
                    // Gone since the listing, or no plain file any more.
                    _ => {
                        gone.push(name.clone());
                        continue;
                    }
                }
            }
            if let Some(seen) = seen {
                add(&mut look, seen.look());
            }
        }
        changed |= !gone.is_empty();
        for name in gone {
            self.frames.remove(&name);
        }
        let mut gone = Vec::new();
        for (name, seen) in &mut self.folders {
            let Ok(child) = dir.child(name) else {
                // Gone, or swapped for a link, since the listing.
                gone.push(name.clone());
                continue;
            };
            let inside = seen.look(
                &child,
                &join(rel, &name.to_string_lossy()),
                pass,
                settle_ms,
                now,
            )?;
            changed |= inside.changed;
            add(&mut look, inside.look);
        }
        changed |= !gone.is_empty();
        for name in gone {
            self.folders.remove(&name);
        }
        Ok(ScanLook { look, changed })
    }

    /// Takes in a new listing: what was seen of the entries still there is
    /// kept, new ones are to be stat'ed. Whether an entry came or went. A
    /// scan being written is listed again at nearly every look (each new
    /// frame changes its folder's mtime), so the records are kept in place
    /// and only a listing that lacks some of them is looked through again.
    fn relisted(&mut self, entries: Vec<(OsString, Kind)>) -> bool {
        let (frames_before, folders_before) = (self.frames.len(), self.folders.len());
        let (mut frames_kept, mut folders_kept) = (0, 0);
        let mut came = false;
        for (name, kind) in &entries {
            match kind {
                Kind::File if self.frames.contains_key(name) => frames_kept += 1,
                Kind::File => {
                    self.frames.insert(name.clone(), None);
                    came = true;
                }
                Kind::Folder if self.folders.contains_key(name) => folders_kept += 1,
                Kind::Folder => {
                    self.folders.insert(name.clone(), ScanSeen::default());
                    came = true;
                }
                Kind::Other => {}
            }
        }
        // Names are unique in a listing: fewer kept than there were means
        // some went (or became another kind of entry).
        let went = frames_kept < frames_before || folders_kept < folders_before;
        if went {
            let listed = |wanted: Kind| -> HashSet<&OsStr> {
                entries
                    .iter()
                    .filter(|(_, kind)| *kind == wanted)
                    .map(|(name, _)| name.as_os_str())
                    .collect()
            };
            let (files, folders) = (listed(Kind::File), listed(Kind::Folder));
            self.frames
                .retain(|name, _| files.contains(name.as_os_str()));
            self.folders
                .retain(|name, _| folders.contains(name.as_os_str()));
        }
        came || went
    }
}

fn add(sum: &mut Look, look: Look) {
    sum.size += look.size;
    sum.files += look.files;
    sum.mtime_ns = sum.mtime_ns.max(look.mtime_ns);
}

/// The folders directly below `root` whose names match and that `skip` does
/// not rule out, each with a [`Pass::Quick`] look from what `scans` holds of
/// it (which keeps the folders found, and forgets the others). Files
/// directly in `root` are no scan and left alone.
pub fn walk_scan_folders(
    root: &Path,
    patterns: &Patterns,
    skip: &dyn Fn(&str) -> bool,
    scans: &mut HashMap<String, ScanSeen>,
    settle_ms: u64,
    now: u64,
) -> Found {
    let mut found = Found::default();
    let (top, entries) = match Folder::open_root(root).and_then(|top| {
        let entries = top.entries()?;
        Ok((top, entries))
    }) {
        Ok(listed) => listed,
        Err(error) => {
            found
                .unusable
                .push((String::new(), cannot_read("", &error)));
            return found;
        }
    };
    found.folders.push(String::new());
    let mut present = HashSet::new();
    for (name, kind) in entries {
        let name = match name.into_string() {
            Ok(name) => name,
            Err(name) => {
                found.unusable.push((
                    name.to_string_lossy().into_owned(),
                    "its name is not UTF-8".to_owned(),
                ));
                continue;
            }
        };
        if kind != Kind::Folder || !patterns.matches(&name) || skip(&name) {
            continue;
        }
        let seen = scans.entry(name.clone()).or_default();
        let looked = top
            .folder(&name)
            .map_err(|error| cannot_read("", &error))
            .and_then(|dir| seen.look(&dir, "", Pass::Quick, settle_ms, now));
        match looked {
            Ok(ScanLook { look, changed }) => {
                if changed {
                    found.changed.insert(name.clone());
                }
                found.files.push((name.clone(), look));
                found.folders.push(name.clone());
                present.insert(name);
            }
            // Half looked at: forgotten, and looked at afresh next time.
            Err(why) => found.unusable.push((name, why)),
        }
    }
    scans.retain(|name, _| present.contains(name));
    found
}

/// A new look at the scan folder `rel` from what `seen` holds of it;
/// `None` when it is gone, no longer a real folder below `root`, or cannot
/// be read (and then `seen` starts afresh).
pub fn look_folder(
    root: &Path,
    rel: &str,
    seen: &mut ScanSeen,
    pass: Pass,
    settle_ms: u64,
    now: u64,
) -> Option<ScanLook> {
    let looked = Folder::open_root(root)
        .and_then(|top| top.folder(rel))
        .map_err(|error| cannot_read("", &error))
        .and_then(|dir| seen.look(&dir, "", pass, settle_ms, now));
    if looked.is_err() {
        *seen = ScanSeen::default();
    }
    looked.ok()
}

/// Whether the scan folder `rel` holds a plain file `name`.
pub fn holds_file(root: &Path, rel: &str, name: &str) -> bool {
    Folder::open_root(root)
        .and_then(|top| top.stat_beneath(&join(rel, name)))
        .is_ok_and(|stat| stat.kind == Kind::File)
}

/// A folder inside a scan folder, as an error message shows it (escaped:
/// its name is anyone's).
fn cannot_read(rel: &str, error: &io::Error) -> String {
    if rel.is_empty() {
        format!("cannot read the folder: {error}")
    } else {
        format!(
            "cannot read {}: {error}",
            beamtime::untrusted::shown_token(rel)
        )
    }
}

// Every stat a look costs goes through these two, so that the tests can
// count them on real files.
fn stat_folder(dir: &Folder) -> io::Result<Stat> {
    counted();
    dir.stat()
}

fn stat_frame(dir: &Folder, name: &OsStr) -> io::Result<Stat> {
    counted();
    dir.stat_entry(name)
}

#[cfg(test)]
thread_local! {
    static STATS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn counted() {
    STATS.with(|stats| stats.set(stats.get() + 1));
}

#[cfg(not(test))]
fn counted() {}

#[cfg(test)]
mod tests;
