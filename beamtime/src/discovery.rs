//! Finding the metadata file of a beamtime, and reading it.
//!
//! Two ways: a beamtime id looked up through a [`SearchPath`]
//! ([`find_by_id`], or [`select_by_id`] for a caller with its own rules for
//! which files count), or the beamtime folder around a working directory
//! ([`find_from_dir`]).
//!
//! A caller builds its [`SearchPath`] from its own configuration with
//! [`SearchPath::parse_list`] or [`SearchPath::new`] (bt-submit's user-side
//! settings, `BEAMTIME_METADATA_PATH` and its config file, are bt-submit's own).

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::capped::{read_file_capped, ReadFailure};
use crate::id::BeamtimeId;
use crate::metadata::{parse_metadata, Metadata, MetadataError, MetadataKind, MetadataProblem};
pub use crate::pattern::{expand_pattern, substitute_id, Expansion, PatternError, SearchPattern};

/// Where the facility puts metadata files, in search order: the beamline
/// filesystem as reserved nodes see it, as beamline machines see it, the core
/// filesystem, then the same for commissioning runs.
pub const DEFAULT_PATTERNS: [&str; 5] = [
    "/beamline/*/current/beamtime-metadata-{id}.json",
    "/gpfs/current/beamtime-metadata-{id}.json",
    "/asap3/*/gpfs/*/*/data/{id}/beamtime-metadata-{id}.json",
    "/gpfs/commissioning/commissioning-metadata-{id}.json",
    "/asap3/*/gpfs/*/*/commissioning/{id}/commissioning-metadata-{id}.json",
];

/// An ordered list of search patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    patterns: Vec<SearchPattern>,
}

impl Default for SearchPath {
    fn default() -> Self {
        SearchPath {
            patterns: DEFAULT_PATTERNS
                .iter()
                .filter_map(|pattern| SearchPattern::parse(pattern).ok())
                .collect(),
        }
    }
}

impl SearchPath {
    pub fn new(patterns: Vec<SearchPattern>) -> SearchPath {
        SearchPath { patterns }
    }

    /// Parses colon-separated patterns; empty entries are skipped.
    pub fn parse_list(list: &str) -> Result<SearchPath, PatternError> {
        let patterns = list
            .split(':')
            .filter(|entry| !entry.is_empty())
            .map(SearchPattern::parse)
            .collect::<Result<_, _>>()?;
        Ok(SearchPath { patterns })
    }

    pub fn patterns(&self) -> &[SearchPattern] {
        &self.patterns
    }
}

/// A metadata file could not be found, or not uniquely.
#[derive(Debug)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// `origin` is the variable name or `file:line` the bad setting came from.
    NotFound {
        id: BeamtimeId,
        searched: Vec<String>,
        /// Places the caller had no permission to look into.
        denied: Vec<PathBuf>,
    },
    Ambiguous {
        id: BeamtimeId,
        paths: Vec<PathBuf>,
    },
    NoBeamtimeFolder {
        start: PathBuf,
    },
    AmbiguousFolder {
        folder: PathBuf,
        paths: Vec<PathBuf>,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::NotFound {
                id,
                searched,
                denied,
            } => {
                write!(f, "no metadata file for beamtime {id}; searched ")?;
                if searched.is_empty() {
                    f.write_str("nothing, the search path is empty")?;
                } else {
                    f.write_str(&searched.join(", "))?;
                }
                if let Some(first) = denied.first() {
                    write!(f, "; you may not look into {}", first.display())?;
                    if denied.len() > 1 {
                        write!(f, " and {} more", denied.len() - 1)?;
                    }
                    f.write_str(
                        ": a beamtime's folder is open only to its members, so if the \
                         beamtime is yours, work as its account",
                    )
                } else {
                    f.write_str(
                        "; check the id (the file appears when the beamtime starts and \
                         leaves the beamline filesystem when it stops)",
                    )
                }
            }
            DiscoveryError::Ambiguous { id, paths } => write!(
                f,
                "beamtime {id} has {} metadata files: {}; there must be only one, ask the \
                 beamline staff which one is current and name it explicitly",
                paths.len(),
                list_paths(paths)
            ),
            DiscoveryError::NoBeamtimeFolder { start } => write!(
                f,
                "no beamtime-metadata-*.json or commissioning-metadata-*.json in {} or any \
                 folder above it; work inside a beamtime folder or name the beamtime",
                start.display()
            ),
            DiscoveryError::AmbiguousFolder { folder, paths } => write!(
                f,
                "{} holds {} metadata files: {}; there must be only one, name the beamtime \
                 explicitly",
                folder.display(),
                paths.len(),
                list_paths(paths)
            ),
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// One file, however it was reached (two patterns, a symlinked folder, a hard
/// link): its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    pub fn of(metadata: &fs::Metadata) -> FileIdentity {
        FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
        }
    }
}

/// What [`select_by_id`] chose.
#[derive(Debug)]
pub enum Selected<T, R> {
    /// The file, by the first path that reached it, and what `accept` made of it.
    One { path: PathBuf, file: T },
    /// Different files from the first pattern that had any.
    Several { paths: Vec<PathBuf> },
    /// No pattern matched a file that `accept` took.
    Nothing {
        /// Places the caller had no permission to look into.
        denied: Vec<PathBuf>,
        /// Why the first path found was not taken, if one was found.
        first_rejected: Option<R>,
    },
}

/// The one rule for which file is beamtime `id`'s, used by the plugin (on
/// trusted files only) and by bt-submit (on any file), so that both name the
/// same file for the same tree: patterns are tried in order, and the first one
/// that reaches a file `accept` takes decides. One file reached by several
/// paths counts once (by [`FileIdentity`]); different files from that pattern
/// are ambiguous. A path `accept` refuses neither shadows nor blocks a file
/// further on.
pub fn select_by_id<T, R>(
    search: &SearchPath,
    id: &BeamtimeId,
    mut accept: impl FnMut(&Path) -> Result<(FileIdentity, T), R>,
) -> Selected<T, R> {
    let mut denied = Vec::new();
    let mut first_rejected = None;
    for pattern in search.patterns() {
        let expansion = pattern.search(id);
        denied.extend(expansion.denied);
        let mut taken: Vec<(PathBuf, FileIdentity, T)> = Vec::new();
        for path in expansion.found {
            match accept(&path) {
                Ok((identity, _)) if taken.iter().any(|(_, seen, _)| *seen == identity) => {}
                Ok((identity, file)) => taken.push((path, identity, file)),
                Err(rejection) => {
                    first_rejected.get_or_insert(rejection);
                }
            }
        }
        match taken.len() {
            0 => continue,
            1 => {
                let (path, _, file) = taken.remove(0);
                return Selected::One { path, file };
            }
            _ => {
                return Selected::Several {
                    paths: taken.into_iter().map(|(path, _, _)| path).collect(),
                }
            }
        }
    }
    Selected::Nothing {
        denied,
        first_rejected,
    }
}

/// The metadata file of `id` for user-side tools, by [`select_by_id`]: any
/// file counts, since the caller has no trust policy to apply.
pub fn find_by_id(search: &SearchPath, id: &BeamtimeId) -> Result<PathBuf, DiscoveryError> {
    let selected = select_by_id(search, id, |path| {
        fs::metadata(path)
            .map(|metadata| (FileIdentity::of(&metadata), ()))
            .map_err(|error| (path.to_owned(), error))
    });
    match selected {
        Selected::One { path, .. } => Ok(path),
        Selected::Several { paths } => Err(DiscoveryError::Ambiguous {
            id: id.clone(),
            paths,
        }),
        Selected::Nothing {
            mut denied,
            first_rejected,
        } => {
            // Listed but not reachable: a folder on the way the caller may not search.
            if let Some((path, error)) = first_rejected {
                if error.kind() == io::ErrorKind::PermissionDenied {
                    denied.push(path);
                }
            }
            Err(DiscoveryError::NotFound {
                id: id.clone(),
                searched: search.patterns().iter().map(|p| p.substitute(id)).collect(),
                denied,
            })
        }
    }
}

/// The metadata file of the beamtime folder containing `start`: the nearest
/// folder, from `start` upwards, that holds a `beamtime-metadata-*.json` or
/// `commissioning-metadata-*.json`. Folders that cannot be listed are skipped.
pub fn find_from_dir(start: &Path) -> Result<PathBuf, DiscoveryError> {
    for folder in start.ancestors() {
        let entries = match fs::read_dir(folder) {
            Ok(entries) => entries,
            Err(error) => {
                log::debug!("skipping {}: {error}", folder.display());
                continue;
            }
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .and_then(MetadataKind::from_file_name)
                    .is_some()
            })
            .map(|entry| entry.path())
            .collect();
        found.sort();
        match found.len() {
            0 => continue,
            1 => return Ok(found.remove(0)),
            _ => {
                return Err(DiscoveryError::AmbiguousFolder {
                    folder: folder.to_owned(),
                    paths: found,
                })
            }
        }
    }
    Err(DiscoveryError::NoBeamtimeFolder {
        start: start.to_owned(),
    })
}

/// Reads and parses a metadata file. The size cap is enforced before the
/// content is read, and only regular files are read.
pub fn read_metadata_file(path: &Path) -> Result<Metadata, MetadataError> {
    let bytes = read_file_capped(path).map_err(|failure| {
        MetadataError::new(
            path,
            match failure {
                ReadFailure::Io(error) => MetadataProblem::Unreadable(error),
                ReadFailure::NotAFile(found) => MetadataProblem::NotAFile { found },
                ReadFailure::TooLarge(size) => MetadataProblem::TooLarge { size },
            },
        )
    })?;
    parse_metadata(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_all_valid() {
        assert_eq!(
            SearchPath::default().patterns().len(),
            DEFAULT_PATTERNS.len()
        );
    }

    #[test]
    fn not_found_says_where_the_caller_may_not_look() {
        let id = BeamtimeId::parse("11099001").unwrap();
        let error = DiscoveryError::NotFound {
            id: id.clone(),
            searched: vec!["/b/*/current/beamtime-metadata-11099001.json".into()],
            denied: vec![
                PathBuf::from("/b/p11/current"),
                PathBuf::from("/b/p21/current"),
            ],
        };
        let message = error.to_string();
        assert!(
            message.contains("you may not look into /b/p11/current and 1 more"),
            "{message}"
        );
        assert!(message.contains("work as its account"), "{message}");
        let plain = DiscoveryError::NotFound {
            id,
            searched: Vec::new(),
            denied: Vec::new(),
        };
        assert!(plain.to_string().contains("check the id"), "{plain}");
    }

    #[test]
    fn colon_lists_skip_empty_entries_and_reject_bad_ones() {
        match SearchPath::parse_list("/a/{id}::/b/*/{id}:") {
            Ok(search) => assert_eq!(search.patterns().len(), 2),
            Err(error) => panic!("{error}"),
        }
        assert!(SearchPath::parse_list("/a/{id}:b/{id}").is_err());
    }
}
