//! Waiting for something to happen: look again every [`POLL`] until it has, for a bounded
//! time. Slurm and its daemons tell nobody when a job ends, a log line is written or a
//! node comes back, so the tests ask, often, with a deadline that fails them instead of
//! hanging.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// How often the helpers look again: short against the seconds a job takes, long enough
/// that four test threads asking the controller do not load it.
pub const POLL: Duration = Duration::from_millis(100);

/// Calls `check` until it returns `Ok`, every [`POLL`], for at most `timeout`; then
/// returns the last `Err`, which says what was seen instead (for the caller's message).
pub fn poll<T, E>(timeout: Duration, mut check: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    loop {
        let result = check();
        if result.is_ok() || Instant::now() >= deadline {
            return result;
        }
        thread::sleep(POLL);
    }
}

/// Waits until `path` exists: the signal a job gives by creating a file. Panics after
/// `timeout`, naming `who` was expected to create it.
#[track_caller]
pub fn for_path(path: &Path, timeout: Duration, who: &str) {
    let found = poll(timeout, || if path.exists() { Ok(()) } else { Err(()) });
    assert!(
        found.is_ok(),
        "{who} did not create {} within {timeout:?}",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_returns_the_first_success() {
        let mut calls = 0;
        let got = poll(Duration::from_secs(10), || {
            calls += 1;
            if calls == 3 {
                Ok(calls)
            } else {
                Err(calls)
            }
        });
        assert_eq!(got, Ok(3));
    }

    #[test]
    fn poll_gives_up_after_its_timeout_with_the_last_answer() {
        let started = Instant::now();
        let got: Result<(), &str> = poll(Duration::from_millis(250), || Err("not yet"));
        assert_eq!(got, Err("not yet"));
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
