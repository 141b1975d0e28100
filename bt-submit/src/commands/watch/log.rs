//! The watch's log: one line per event on stdout, with the time in UTC.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(super) fn secs(duration: Duration) -> String {
    format!("{}", duration.as_secs_f64())
}

/// One line on stdout, with the time in UTC. A stdout that is gone is no
/// reason to stop watching.
pub(super) fn log(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} {line}", utc_now()).and_then(|()| out.flush());
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
