//! What the watch learns about its folder: the periodic walk and inotify's
//! events, each turning files into candidates (complete.rs decides when one
//! is complete).

use super::*;

impl Watch<'_> {
    /// Looks through the whole folder: new files (or scan folders) become
    /// candidates, known candidates get a new look, new folders an inotify
    /// watch.
    pub(super) fn walk(&mut self, now: u64) {
        let found = match self.options.each {
            Each::File => self.walk_files(now),
            Each::Folder => {
                let record = &self.record;
                let stand_still_ms = self.frames_stand_still_ms();
                scan::walk_scan_folders(
                    &self.options.folder,
                    &self.options.patterns,
                    &|rel| record.is_done(rel),
                    &mut self.scans,
                    stand_still_ms,
                    now,
                )
            }
        };
        let mut present = HashSet::with_capacity(found.files.len());
        for (rel, look) in found.files {
            let candidate = self
                .candidates
                .entry(rel.clone())
                .or_insert_with(|| Candidate::first_seen(look, now));
            if found.changed.contains(&rel) {
                candidate.changed(look, now);
            } else {
                candidate.looked(look, now);
            }
            if let Some(done_file) = &self.options.done_file {
                if scan::holds_file(&self.options.folder, &rel, done_file) {
                    candidate.reported(Why::DoneFileFound, look, now);
                }
            }
            present.insert(rel);
        }
        let gone: Vec<String> = self
            .candidates
            .keys()
            .filter(|rel| !present.contains(*rel))
            .cloned()
            .collect();
        for rel in gone {
            self.forget_gone(&rel);
        }
        for (rel, why) in found.unusable {
            if self.told_unusable.insert(rel.clone()) {
                self.say(LogEvent::Unusable {
                    file: &rel,
                    why: &why,
                });
            }
        }
        if let Some(inotify) = &self.inotify {
            for folder in found.folders {
                if self.watched_folders.contains(&folder) {
                    continue;
                }
                let handle = beneath::Folder::open_root(&self.options.folder)
                    .and_then(|top| top.folder(&folder));
                match handle.and_then(|handle| inotify.watch(&handle)) {
                    Ok(wd) => {
                        self.watched.insert(wd, folder.clone());
                    }
                    Err(error) => log(
                        self.options.format,
                        &LogEvent::NoInotifyWatch {
                            folder: &folder,
                            error: error.to_string(),
                        },
                    ),
                }
                self.watched_folders.insert(folder);
            }
        }
    }

    /// Every folder below the watched one, listed where it may have changed.
    pub(super) fn walk_files(&mut self, now: u64) -> tree::Found {
        let record = &self.record;
        // Folders holding files not submitted yet are listed at every walk:
        // a file that disappears from one must be noticed.
        let busy: HashSet<String> = self
            .candidates
            .keys()
            .map(|rel| {
                rel.rsplit_once('/')
                    .map_or("", |(folder, _)| folder)
                    .to_owned()
            })
            .collect();
        tree::walk(
            &self.options.folder,
            &self.options.patterns,
            &|rel| record.is_done(rel),
            &busy,
            &mut self.listings,
            now,
        )
    }

    pub(super) fn handle(&mut self, events: Vec<os::Event>) {
        if self.options.each == Each::Folder {
            return self.handle_in_scan_folders(events);
        }
        let now = self.now();
        let mut walk_again = false;
        for event in events {
            let why = match event.kind {
                EventKind::ClosedAfterWrite => Why::ClosedAfterWriting,
                EventKind::MovedIn => Why::RenamedIntoPlace,
                EventKind::FolderCreated | EventKind::Overflow => {
                    walk_again = true;
                    continue;
                }
                EventKind::FolderMoved => {
                    self.forget_moved(&event);
                    walk_again = true;
                    continue;
                }
            };
            let Some(folder) = self.watched.get(&event.watch) else {
                continue;
            };
            let Ok(name) = event.name.into_string() else {
                continue;
            };
            if !self.options.patterns.matches(&name) {
                // A folder renamed into place is walked.
                walk_again |= why == Why::RenamedIntoPlace;
                continue;
            }
            let rel = tree::join(folder, &name);
            if self.record.is_done(&rel) {
                continue;
            }
            let Some(look) = tree::look(&self.options.folder, &rel) else {
                walk_again |= why == Why::RenamedIntoPlace;
                continue;
            };
            self.candidates
                .entry(rel)
                .or_insert_with(|| Candidate::first_seen(look, now))
                .reported(why, look, now);
        }
        if walk_again {
            self.walk(now);
        }
    }

    /// A watched folder moved (or a subfolder moved out of one): the watches
    /// on it and below it are dropped, for their events would be mapped back
    /// to names that now hold something else (a link, a folder put in its
    /// place). The walk that follows watches whatever those names hold now.
    fn forget_moved(&mut self, event: &os::Event) {
        let Some(folder) = self.watched.get(&event.watch) else {
            return;
        };
        let moved = if event.name.is_empty() {
            folder.clone()
        } else {
            tree::join(folder, &event.name.to_string_lossy())
        };
        let below = |f: &str| moved.is_empty() || f == moved || f.starts_with(&format!("{moved}/"));
        let dropped: Vec<i32> = self
            .watched
            .iter()
            .filter(|(_, f)| below(f))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in dropped {
            if let Some(inotify) = &self.inotify {
                inotify.unwatch(wd);
            }
            self.watched.remove(&wd);
        }
        self.watched_folders.retain(|f| !below(f));
        self.listings.retain(|f, _| !below(f));
    }

    /// Watching scan folders, an event in the watched folder itself (a new
    /// folder) calls for a walk; in a scan folder only its done file
    /// counts: the files of a scan say nothing about whether it is complete.
    pub(super) fn handle_in_scan_folders(&mut self, events: Vec<os::Event>) {
        let now = self.now();
        let mut walk_again = false;
        for event in events {
            if event.kind == EventKind::Overflow {
                walk_again = true;
                continue;
            }
            if event.kind == EventKind::FolderMoved {
                self.forget_moved(&event);
                walk_again = true;
                continue;
            }
            let Some(folder) = self.watched.get(&event.watch) else {
                continue;
            };
            if folder.is_empty() {
                walk_again = true;
                continue;
            }
            let is_done_file =
                self.options.done_file.as_deref().is_some_and(|name| {
                    event.name == name && event.kind != EventKind::FolderCreated
                });
            if !is_done_file || !self.candidates.contains_key(folder) {
                continue;
            }
            let folder = folder.clone();
            match self.look_again(&folder, scan::Pass::Quick) {
                Some(look) => {
                    if let Some(candidate) = self.candidates.get_mut(&folder) {
                        candidate.reported(Why::DoneFileFound, look, now);
                    }
                }
                None => walk_again = true,
            }
        }
        if walk_again {
            self.walk(now);
        }
    }
}
