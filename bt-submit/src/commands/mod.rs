//! One room for each command of bt-submit besides plain submission:
//! `show` and `--dry-run` (report), `doctor`, `watch`.

pub mod doctor;
pub mod report;
pub mod watch;
