//! What can be wrong with a metadata file, and the messages that say so.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::MAX_METADATA_BYTES;
use crate::id::IdError;
use crate::untrusted::shown;

/// What is wrong with a metadata file. Key paths look like
/// `onlineAnalysis.slurmReservation[1]`.
#[derive(Debug)]
#[non_exhaustive]
pub enum MetadataProblem {
    Unreadable(io::Error),
    NotAFile {
        found: &'static str,
    },
    TooLarge {
        size: u64,
    },
    NotUtf8 {
        line: usize,
        column: usize,
    },
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// One object names `key` twice.
    RepeatedKey {
        key: String,
        line: usize,
        column: usize,
    },
    /// Two keys of one object are spellings of one key of the format.
    KeySpelledTwice {
        first: String,
        second: String,
    },
    /// A key spelled otherwise than the format spells it (case, `-`, `_`).
    KeyMisspelled {
        found: String,
        expected: String,
    },
    NotAnObject {
        found: &'static str,
    },
    Missing {
        key: String,
        expected: &'static str,
    },
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    InvalidName {
        key: String,
        error: IdError,
    },
    InvalidValue {
        key: String,
        expected: &'static str,
        value: String,
    },
    IdMismatch {
        file_id: String,
        key: &'static str,
        content_id: String,
    },
    /// The `onlineAnalysis` block names some of the resources a job needs
    /// (so they were set up) but not all: each missing key, and the key of
    /// the block that looks like a misspelling of it.
    IncompleteOnline {
        missing: Vec<MissingKey>,
    },
}

/// A key the `onlineAnalysis` block needs and does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingKey {
    /// Its key path, e.g. `onlineAnalysis.userAccount`.
    pub key: String,
    /// A key of the block, not one of the format's, a typo away from it.
    pub look_alike: Option<String>,
}

/// A metadata file that could not be read or understood, with the file's path.
#[derive(Debug)]
pub struct MetadataError {
    path: PathBuf,
    problem: MetadataProblem,
}

impl MetadataError {
    pub fn new(path: &Path, problem: MetadataProblem) -> MetadataError {
        MetadataError {
            path: path.to_owned(),
            problem,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn problem(&self) -> &MetadataProblem {
        &self.problem
    }

    /// True when the file could not be read at all, as opposed to read and
    /// found wrong.
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self.problem,
            MetadataProblem::Unreadable(_) | MetadataProblem::NotAFile { .. }
        )
    }
}

/// The facility writes these files, so users can only report problems.
const REPORT_TO_STAFF: &str = "report the file to the beamline staff";

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            MetadataProblem::Unreadable(error) => write!(
                f,
                "{path}: cannot read the metadata file: {error}; check the path and its permissions"
            ),
            MetadataProblem::NotAFile { found } => write!(
                f,
                "{path}: expected a metadata file, found {found}; give the path of the JSON file itself"
            ),
            MetadataProblem::TooLarge { size } => write!(
                f,
                "{path}: the file has {size} bytes, more than the {MAX_METADATA_BYTES} a metadata \
                 file may have; this is not a beamtime metadata file, check the path"
            ),
            MetadataProblem::NotUtf8 { line, column } => write!(
                f,
                "{path}:{line}:{column}: expected UTF-8 text, found an invalid byte; {REPORT_TO_STAFF}"
            ),
            MetadataProblem::Syntax {
                line,
                column,
                message,
            } => write!(
                f,
                "{path}:{line}:{column}: invalid JSON: {message}; the file is damaged or cut off, \
                 {REPORT_TO_STAFF}"
            ),
            MetadataProblem::RepeatedKey { key, line, column } => write!(
                f,
                "{path}:{line}:{column}: the key {} appears twice in one object; a key may \
                 appear once, so which value counts is ambiguous, {REPORT_TO_STAFF}",
                shown(key)
            ),
            MetadataProblem::KeySpelledTwice { first, second } => write!(
                f,
                "{path}: {first} and {second} are two spellings of one key; a file may name \
                 each key once, so which value counts is ambiguous, {REPORT_TO_STAFF}"
            ),
            MetadataProblem::KeyMisspelled { found, expected } => write!(
                f,
                "{path}: {found}: expected the key {expected}, spelled exactly so; a key spelled \
                 otherwise is ambiguous (one reader takes it, another ignores it), \
                 {REPORT_TO_STAFF}"
            ),
            MetadataProblem::NotAnObject { found } => write!(
                f,
                "{path}: expected a JSON object at the top level, found {found}; {REPORT_TO_STAFF}"
            ),
            MetadataProblem::Missing { key, expected } => write!(
                f,
                "{path}: {key}: missing, expected {expected}; {REPORT_TO_STAFF}"
            ),
            MetadataProblem::WrongType {
                key,
                expected,
                found,
            } => write!(
                f,
                "{path}: {key}: expected {expected}, found {found}; {REPORT_TO_STAFF}"
            ),
            MetadataProblem::InvalidName { key, error } => {
                write!(f, "{path}: {key}: {error}; {REPORT_TO_STAFF}")
            }
            MetadataProblem::InvalidValue {
                key,
                expected,
                value,
            } => write!(
                f,
                "{path}: {key}: expected {expected}, found {value}; {REPORT_TO_STAFF}"
            ),
            MetadataProblem::IdMismatch {
                file_id,
                key,
                content_id,
            } => write!(
                f,
                "{path}: the file name says {} but {key} is {}; the file was renamed or copied \
                 from another beamtime, use the metadata file of the beamtime itself",
                shown(file_id),
                shown(content_id)
            ),
            MetadataProblem::IncompleteOnline { missing } => {
                let each: Vec<String> = missing
                    .iter()
                    .map(|missing| match &missing.look_alike {
                        Some(look_alike) => format!(
                            "{} is missing (the block has {}: a misspelling of it?)",
                            missing.key,
                            shown(look_alike)
                        ),
                        None => format!("{} is missing or null", missing.key),
                    })
                    .collect();
                write!(
                    f,
                    "{path}: the onlineAnalysis block is incomplete: {}; the beamtime's \
                     resources were set up (the block names some of them), but a job needs \
                     all of reservedNodes, slurmPartition, slurmReservation and userAccount, \
                     so no job can run until the file is corrected; {REPORT_TO_STAFF}",
                    each.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for MetadataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            MetadataProblem::Unreadable(error) => Some(error),
            MetadataProblem::InvalidName { error, .. } => Some(error),
            _ => None,
        }
    }
}
