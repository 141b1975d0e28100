//! Why the job cache was not used for a step, as values said in one place
//! (each `Display`). The plugin only logs them: a cache that cannot be used
//! costs a controller query, nothing else.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the cache folder, a token or an entry could not be used.
#[derive(Debug)]
pub enum CacheError {
    /// The folder is not named by an absolute path without `.` or `..`.
    NotPlainPath(PathBuf),
    /// A folder on the way is a symbolic link or a file.
    NotAFolder(PathBuf),
    /// A folder on the way is owned by someone else than the plugin's user.
    WrongOwner {
        path: PathBuf,
        owner: u32,
        expected: u32,
    },
    /// A folder on the way is writable by others (or the folder itself open to them).
    OpenToOthers { path: PathBuf, mode: u32 },
    /// A file of the folder's names that the plugin did not write (`kind`: token, entry).
    NotWrittenByPlugin { path: PathBuf, kind: &'static str },
    /// An entry the plugin's size and owner, which does not decode.
    Record { path: PathBuf, problem: RecordError },
    /// Other steps replaced the run's token this many times in a row.
    Contended { path: PathBuf, attempts: usize },
    /// The job's answer holds a line break, which an entry cannot.
    Unstorable { job: u32 },
    /// Creating the folder `path` failed.
    CreateFolder { path: PathBuf, error: io::Error },
    /// Writing the file `path` failed.
    Write { path: PathBuf, error: io::Error },
    /// Any other call on `path` failed.
    Io { path: PathBuf, error: io::Error },
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::NotPlainPath(path) => write!(
                f,
                "{} is not an absolute path without . or ..",
                path.display()
            ),
            CacheError::NotAFolder(path) => write!(
                f,
                "{} is not a folder (a symbolic link or a file)",
                path.display()
            ),
            CacheError::WrongOwner {
                path,
                owner,
                expected,
            } => write!(
                f,
                "{} is owned by uid {owner}, not by uid {expected}",
                path.display()
            ),
            CacheError::OpenToOthers { path, mode } => write!(
                f,
                "{} is open to others (mode {:04o})",
                path.display(),
                mode & 0o7777
            ),
            CacheError::NotWrittenByPlugin { path, kind } => {
                write!(f, "{} is not {kind} the plugin wrote", path.display())
            }
            CacheError::Record { path, problem } => write!(f, "{}: {problem}", path.display()),
            CacheError::Contended { path, attempts } => write!(
                f,
                "{}: replaced by other steps {attempts} times in a row",
                path.display()
            ),
            CacheError::Unstorable { job } => {
                write!(f, "job {job}'s answer holds a line break and is not cached")
            }
            CacheError::CreateFolder { path, error } => {
                write!(f, "cannot create {}: {error}", path.display())
            }
            CacheError::Write { path, error } => {
                write!(f, "cannot write {}: {error}", path.display())
            }
            CacheError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for CacheError {}

/// Why an entry's text is not what [`super::CachedAnswer::encode`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// A line without `=` (shown escaped).
    NotKeyValue(String),
    NotANumber {
        key: String,
        value: String,
    },
    NotABatchFlag(String),
    UnknownKey(String),
    Repeated(String),
    Missing(&'static str),
    OutOfRange(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NotKeyValue(line) => {
                write!(
                    f,
                    "line {:?} is not key=value",
                    line.escape_default().to_string()
                )
            }
            RecordError::NotANumber { key, value } => write!(f, "{key}={value:?} is not a number"),
            RecordError::NotABatchFlag(value) => write!(f, "batch={value:?} is not 0 or 1"),
            RecordError::UnknownKey(key) => {
                write!(f, "unknown key {:?}", key.escape_default().to_string())
            }
            RecordError::Repeated(key) => write!(f, "{key} is given twice"),
            RecordError::Missing(key) => write!(f, "{key} is missing"),
            RecordError::OutOfRange(key) => write!(f, "{key} is out of range"),
        }
    }
}

impl std::error::Error for RecordError {}
