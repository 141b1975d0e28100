//! The watch's log: one line per event on stdout, with the time in UTC. Each
//! event is a [`LogEvent`] (event.rs), written as a human line (the default)
//! or, with `--format json`, as one JSON object per line for the programs
//! around the watch.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::Format;

mod event;
pub(super) use event::{Counters, LogEvent};

pub(super) fn secs(duration: Duration) -> String {
    format!("{}", duration.as_secs_f64())
}

/// Writes `event` on stdout as one line in `format`, with the time in UTC.
/// A stdout that is gone is no reason to stop watching.
pub(super) fn log(format: Format, event: &LogEvent) {
    let line = event.line(format, &utc_now());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// A situation the watch tells of when it begins or changes, not again at
/// every look while it lasts: a problem met at each poll would otherwise
/// fill the log with the same line.
#[derive(Debug, Default)]
pub(super) struct Told(Option<String>);

impl Told {
    /// Whether `situation` is news: not the one told last. It is told from now on.
    pub(super) fn is_news(&mut self, situation: String) -> bool {
        if self.0.as_ref() == Some(&situation) {
            return false;
        }
        self.0 = Some(situation);
        true
    }

    /// The situation is over: the next one is news, even if it is the same again.
    pub(super) fn over(&mut self) {
        self.0 = None;
    }
}

/// A file or folder below the watched one as a log line shows it: as it is
/// when it is a plain name, else quoted and escaped, so that a name holding a
/// newline cannot start a forged line (`beamtime::untrusted`); "." for the
/// watched folder itself.
pub(super) fn named(rel: &str) -> String {
    if rel.is_empty() {
        ".".to_owned()
    } else {
        beamtime::untrusted::shown_token(rel)
    }
}

pub(super) fn utc_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
