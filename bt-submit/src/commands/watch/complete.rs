//! When a new file (or scan folder) is complete: the pure decision, from
//! what was seen of it and when, on the watch's own clock (milliseconds since
//! it started).
//!
//! Complete means either that inotify reported it closed after writing or
//! renamed into place and it has not changed since, or that its size and
//! mtime stayed the same for the settle time. Only the second works on a
//! cluster filesystem for files written on another host (GPFS raises no
//! inotify event there), so it is always on; the first only shortens the
//! wait where the kernel sees the writes. The settle time is measured from
//! when this watch first saw the file as it is now, not from its mtime: the
//! mtime comes from the writing host's clock, and a clock that lags would
//! make a file still being written look settled.
//!
//! A scan folder is looked at as a whole (scan.rs sums it up): complete when
//! nothing in it changed for the settle time, or, with `--done-file`, only
//! once that file is in it and nothing changed since it was seen.

/// What a look at the file (`stat`) shows; for a scan folder, the sum of
/// every file below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub size: u64,
    /// mtime in nanoseconds since the epoch; for a folder, the latest of
    /// itself, its folders and its files (an entry added, renamed or
    /// removed changes its folder's).
    pub mtime_ns: i128,
    /// 1 for a file; for a folder, how many files are below it.
    pub files: u64,
}

/// Why a file counts as complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    ClosedAfterWriting,
    RenamedIntoPlace,
    /// A scan folder's `--done-file` is in it.
    DoneFileFound,
    /// Unchanged for this many milliseconds.
    Settled(u64),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::ClosedAfterWriting => write!(f, "closed after writing"),
            Why::RenamedIntoPlace => write!(f, "renamed into place"),
            Why::DoneFileFound => write!(f, "its done file is there"),
            Why::Settled(ms) => write!(f, "unchanged for {:.1} s", *ms as f64 / 1000.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Complete(Why),
    /// Look again at this time (if nothing else calls for a look sooner).
    LookAgainAt(u64),
    /// Only a report makes it complete (a scan folder waiting for its done file).
    AwaitReport,
}

/// How a file (a scan folder, a frame in one) was seen: as it is now since
/// when, and when last. The settle rule counts only what was seen: two
/// looks some time apart that found it the same, not the time since the
/// last look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    look: Look,
    /// When it was first seen as `look`.
    unchanged_since: u64,
    /// When it was last seen (as `look`).
    last_looked: u64,
}

impl Seen {
    pub fn first(look: Look, now: u64) -> Seen {
        Seen {
            look,
            unchanged_since: now,
            last_looked: now,
        }
    }

    /// A new look; whether it found a change, which restarts the time it
    /// has been unchanged.
    pub fn looked(&mut self, look: Look, now: u64) -> bool {
        let changed = look != self.look;
        if changed {
            self.look = look;
            self.unchanged_since = now;
        }
        self.last_looked = now;
        changed
    }

    /// A new look that found a change the look itself may not show (a
    /// scan's frames changed so that their sums stayed the same).
    pub fn changed(&mut self, look: Look, now: u64) {
        self.look = look;
        self.unchanged_since = now;
        self.last_looked = now;
    }

    pub fn look(&self) -> Look {
        self.look
    }

    /// How long looks have found it unchanged.
    pub fn unchanged_for(&self) -> u64 {
        self.last_looked.saturating_sub(self.unchanged_since)
    }
}

/// A file not submitted yet, as the watch has seen it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    seen: Seen,
    /// What inotify reported and how the file looked right after.
    event: Option<(Why, Look)>,
}

impl Candidate {
    pub fn first_seen(look: Look, now: u64) -> Candidate {
        Candidate {
            seen: Seen::first(look, now),
            event: None,
        }
    }

    /// A new look at the file; a change restarts the settle time and voids
    /// an earlier event (the file was written again after it).
    pub fn looked(&mut self, look: Look, now: u64) {
        self.seen.looked(look, now);
        if matches!(self.event, Some((_, seen)) if seen != look) {
            self.event = None;
        }
    }

    /// A new look that found a change the look may not show (see
    /// [`Seen::changed`]): the settle time restarts and an earlier event is void.
    pub fn changed(&mut self, look: Look, now: u64) {
        self.seen.changed(look, now);
        self.event = None;
    }

    /// inotify reported the file closed after writing or renamed into
    /// place (or a scan folder's done file was seen in it), and `look` is
    /// how it looked right after.
    pub fn reported(&mut self, why: Why, look: Look, now: u64) {
        self.looked(look, now);
        self.event = Some((why, look));
    }

    /// Without a settle time only a report makes it complete.
    pub fn verdict(&self, settle_ms: Option<u64>) -> Verdict {
        if let Some((why, _)) = self.event {
            return Verdict::Complete(why);
        }
        let Some(settle_ms) = settle_ms else {
            return Verdict::AwaitReport;
        };
        let unchanged_for = self.seen.unchanged_for();
        if unchanged_for >= settle_ms {
            Verdict::Complete(Why::Settled(unchanged_for))
        } else {
            Verdict::LookAgainAt(self.seen.unchanged_since + settle_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Option<u64> = Some(2000);

    fn look(size: u64, mtime_ns: i128) -> Look {
        Look {
            size,
            mtime_ns,
            files: 1,
        }
    }

    #[test]
    fn a_file_unchanged_for_the_settle_time_is_complete() {
        let mut file = Candidate::first_seen(look(10, 1), 1000);
        assert_eq!(file.verdict(SETTLE), Verdict::LookAgainAt(3000));
        file.looked(look(10, 1), 2500);
        assert_eq!(file.verdict(SETTLE), Verdict::LookAgainAt(3000));
        file.looked(look(10, 1), 3000);
        assert_eq!(file.verdict(SETTLE), Verdict::Complete(Why::Settled(2000)));
    }

    #[test]
    fn a_file_still_being_written_is_never_complete_by_settling() {
        let mut file = Candidate::first_seen(look(0, 1), 0);
        // One write every 1.5 s, each seen by a look a second later.
        for step in 1..100u64 {
            let now = step * 1500;
            file.looked(look(step * 4096, i128::from(now)), now);
            file.looked(look(step * 4096, i128::from(now)), now + 1000);
            assert_eq!(file.verdict(SETTLE), Verdict::LookAgainAt(now + 2000));
        }
    }

    #[test]
    fn time_without_a_look_does_not_settle_a_file() {
        let file = Candidate::first_seen(look(10, 1), 0);
        // However late it is asked, one look is no proof of anything.
        assert_eq!(file.verdict(SETTLE), Verdict::LookAgainAt(2000));
    }

    #[test]
    fn only_the_size_or_only_the_mtime_changing_is_a_change() {
        let mut file = Candidate::first_seen(look(10, 1), 0);
        file.looked(look(10, 2), 1500);
        file.looked(look(10, 2), 2000);
        assert_eq!(file.verdict(SETTLE), Verdict::LookAgainAt(3500));
        file.looked(look(11, 2), 3000);
        file.looked(look(11, 2), 3500);
        assert_eq!(file.verdict(SETTLE), Verdict::LookAgainAt(5000));
    }

    #[test]
    fn the_settle_time_starts_when_the_watch_first_sees_the_file() {
        // An mtime far in the past (a lagging writer's clock) does not count.
        let file = Candidate::first_seen(look(10, -1_000_000_000_000), 5000);
        assert_eq!(file.verdict(SETTLE), Verdict::LookAgainAt(7000));
    }

    #[test]
    fn a_reported_close_or_rename_is_complete_at_once() {
        let mut file = Candidate::first_seen(look(10, 1), 0);
        file.reported(Why::ClosedAfterWriting, look(20, 2), 100);
        assert_eq!(
            file.verdict(SETTLE),
            Verdict::Complete(Why::ClosedAfterWriting)
        );
        let mut moved = Candidate::first_seen(look(10, 1), 0);
        moved.reported(Why::RenamedIntoPlace, look(10, 1), 0);
        assert_eq!(
            moved.verdict(SETTLE),
            Verdict::Complete(Why::RenamedIntoPlace)
        );
    }

    #[test]
    fn a_file_written_again_after_its_close_waits_for_the_settle_time() {
        let mut file = Candidate::first_seen(look(10, 1), 0);
        file.reported(Why::ClosedAfterWriting, look(10, 1), 0);
        file.looked(look(30, 5), 400);
        assert_eq!(file.verdict(SETTLE), Verdict::LookAgainAt(2400));
    }

    fn folder(files: u64, size: u64) -> Look {
        Look {
            size,
            mtime_ns: 7,
            files,
        }
    }

    #[test]
    fn a_folder_gaining_a_file_is_a_change() {
        let mut scan = Candidate::first_seen(folder(3, 300), 0);
        scan.looked(folder(4, 300), 1500);
        scan.looked(folder(4, 300), 2000);
        assert_eq!(scan.verdict(Some(2000)), Verdict::LookAgainAt(3500));
    }

    #[test]
    fn with_a_done_file_only_its_finding_completes_a_folder() {
        let mut scan = Candidate::first_seen(folder(3, 300), 0);
        scan.looked(folder(3, 300), 1_000_000);
        assert_eq!(scan.verdict(None), Verdict::AwaitReport);
        scan.reported(Why::DoneFileFound, folder(4, 300), 1_000_100);
        assert_eq!(scan.verdict(None), Verdict::Complete(Why::DoneFileFound));
        // Written to after the done file was seen: it waits for the next finding.
        scan.looked(folder(5, 900), 1_000_200);
        assert_eq!(scan.verdict(None), Verdict::AwaitReport);
    }

    #[test]
    fn a_change_the_sums_do_not_show_restarts_the_settle_time_and_voids_a_finding() {
        let mut scan = Candidate::first_seen(folder(3, 300), 0);
        scan.looked(folder(3, 300), 2000);
        assert_eq!(scan.verdict(SETTLE), Verdict::Complete(Why::Settled(2000)));
        // One frame grew as another shrank: the same sums, yet a change.
        scan.changed(folder(3, 300), 2100);
        assert_eq!(scan.verdict(SETTLE), Verdict::LookAgainAt(4100));
        scan.reported(Why::DoneFileFound, folder(3, 300), 2200);
        scan.changed(folder(3, 300), 2300);
        assert_eq!(scan.verdict(None), Verdict::AwaitReport);
    }
}
