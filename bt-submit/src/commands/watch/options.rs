//! How the watch was asked to run, and what follows from it alone: the
//! retry delay, the default state file.

use super::*;

/// How the watch was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Absolute, without symbolic links.
    pub folder: PathBuf,
    pub each: Each,
    /// With `Each::Folder`: a scan folder is complete once this file is in
    /// it, and not before, however long nothing changes.
    pub done_file: Option<String>,
    pub patterns: Patterns,
    pub settle: Duration,
    pub poll_interval: Duration,
    /// `None`: no cap.
    pub max_in_flight: Option<usize>,
    pub state: PathBuf,
    /// Whether the state's folder may be one others can write.
    pub sharing: Sharing,
    pub inotify: bool,
    /// Record what is in the folder at the start as skipped.
    pub skip_existing: bool,
    /// How long every submission may be refused for good before the watch stops.
    pub give_up_after: Duration,
    /// How the log is written: human lines, or one JSON object per event.
    pub format: Format,
}

/// The wait before trying a failed submission again: 2 s, doubling, at most 5 minutes.
pub fn retry_delay(failures: u32) -> Duration {
    let doubled = 2u64.saturating_pow(failures.saturating_sub(1).min(16));
    Duration::from_secs((2 * doubled).min(300))
}

/// Where the state of the watch of `folder` lives unless `--state` says:
/// `$XDG_STATE_HOME/bt-submit/` (else `~/.local/state/bt-submit/`), named
/// after the folder (and, for a watch of scan folders, after that), never
/// inside the watched folder (the watch writes nothing there).
pub fn default_state_file(
    folder: &Path,
    each: Each,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Option<PathBuf> {
    let base = match env("XDG_STATE_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env("HOME")?).join(".local/state"),
    };
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".to_owned());
    // FNV-1a of the whole path: two folders of one name get two files.
    let hash = folder
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        });
    let kind = match each {
        Each::File => "",
        Each::Folder => "folders-",
    };
    Some(
        base.join("bt-submit")
            .join(format!("watch-{kind}{name}-{hash:016x}.json")),
    )
}
