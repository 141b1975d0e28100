//! One room for each command of bt-submit: submission (plain, `sbatch`,
//! `srun`, `salloc`, `--remote`, `--dry-run`; mistakes.rs refuses the
//! misplaced and misspelled), `show`, `doctor`, `watch`;
//! report.rs writes what `show` and `--dry-run --format json` print.

pub mod doctor;
pub mod mistakes;
pub mod report;
pub mod show;
pub mod submit;
pub mod watch;
