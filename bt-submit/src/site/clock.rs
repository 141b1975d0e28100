//! The metadata's times on this host's clock. The facility writes them in its
//! local time without a zone (`2024-03-05 09:00:00`); bt-submit runs at the
//! facility, so this host's zone (TZ, else /etc/localtime) is taken as theirs,
//! and named wherever a time is shown, so a reader elsewhere can tell.

use std::time::{SystemTime, UNIX_EPOCH};

use beamtime::metadata::Timestamp;

/// A metadata time as this host's local time: seconds since the epoch and
/// the zone's abbreviation (`CET`, `CEST`, `UTC`). `None` for a time the
/// local zone does not have.
pub fn local(time: &Timestamp) -> Option<(i64, String)> {
    // SAFETY: tm is plain data, zeroed is a valid value; mktime and
    // localtime_r only read and write the tm given, and tm_zone points into
    // the C library's static zone names, read at once.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = i32::from(time.year) - 1900;
        tm.tm_mon = i32::from(time.month) - 1;
        tm.tm_mday = i32::from(time.day);
        tm.tm_hour = i32::from(time.hour);
        tm.tm_min = i32::from(time.minute);
        tm.tm_sec = i32::from(time.second);
        tm.tm_isdst = -1;
        let seconds = libc::mktime(&mut tm);
        if seconds == -1 {
            return None;
        }
        let mut local: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&seconds, &mut local).is_null() || local.tm_zone.is_null() {
            return None;
        }
        let zone = std::ffi::CStr::from_ptr(local.tm_zone)
            .to_string_lossy()
            .into_owned();
        Some((seconds, zone))
    }
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

/// Where `now` stands to a window from `start` to `end` (each optional), as
/// a few words: "starts in 2 days", "running, ends in 5 hours", "ended 3
/// days ago".
pub fn standing(start: Option<i64>, end: Option<i64>, now: i64) -> Option<String> {
    match (start, end) {
        (Some(start), _) if now < start => Some(format!("starts in {}", span(start - now))),
        (_, Some(end)) if end <= now => Some(format!("ended {} ago", span(now - end))),
        (_, Some(end)) => Some(format!("running, ends in {}", span(end - now))),
        (Some(_), None) => Some("running".to_owned()),
        (None, None) => None,
    }
}

/// A length of time in its largest whole unit.
fn span(seconds: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let (size, unit) = UNITS
        .iter()
        .find(|(size, _)| seconds >= *size)
        .copied()
        .unwrap_or((1, "second"));
    let count = seconds / size;
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn the_window_is_told_from_where_now_stands() {
        let (start, end) = (Some(10 * DAY), Some(13 * DAY));
        assert_eq!(
            standing(start, end, 8 * DAY).as_deref(),
            Some("starts in 2 days")
        );
        assert_eq!(
            standing(start, end, 13 * DAY - 5 * HOUR).as_deref(),
            Some("running, ends in 5 hours")
        );
        assert_eq!(
            standing(start, end, 16 * DAY).as_deref(),
            Some("ended 3 days ago")
        );
        assert_eq!(
            standing(start, end, 13 * DAY + 60).as_deref(),
            Some("ended 1 minute ago")
        );
        assert_eq!(standing(start, None, 11 * DAY).as_deref(), Some("running"));
        assert_eq!(standing(None, None, 0), None);
    }

    #[test]
    fn a_metadata_time_is_read_in_the_local_zone_with_its_name() {
        let time = Timestamp::parse("2024-03-05 09:00:00").expect("a timestamp");
        let (seconds, zone) = local(&time).expect("a local time");
        assert!(!zone.is_empty());
        // Whatever the zone, it is within a day of the same wall-clock time in UTC.
        let as_utc = 1_709_629_200; // 2024-03-05 09:00:00 UTC
        assert!((seconds - as_utc).abs() <= DAY, "{seconds} {zone}");
    }
}
