//! Search patterns for metadata files: absolute paths with an `{id}`
//! placeholder and `*` wildcards, expanded by a deliberately small glob.
//!
//! A `*` matches any part of one path component (never a `/`, never a
//! leading `.`); there is no `**`, `?` or `[...]`. Patterns are validated so a
//! configuration mistake cannot turn a lookup into a search relative to the
//! working directory or outside the intended tree.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::id::BeamtimeId;
use crate::untrusted::shown;

const ID_PLACEHOLDER: &str = "{id}";

/// A validated search pattern such as
/// `/asap3/*/gpfs/*/*/data/{id}/beamtime-metadata-{id}.json`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SearchPattern(String);

/// Why a search pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    shown_pattern: String,
    problem: &'static str,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid metadata search pattern {}: {}; a pattern is an absolute path that \
             contains {ID_PLACEHOLDER} and may use * within single path components, e.g. \
             /gpfs/current/beamtime-metadata-{ID_PLACEHOLDER}.json",
            self.shown_pattern, self.problem
        )
    }
}

impl std::error::Error for PatternError {}

impl SearchPattern {
    pub fn parse(pattern: &str) -> Result<SearchPattern, PatternError> {
        let reject = |problem| {
            Err(PatternError {
                shown_pattern: shown(pattern),
                problem,
            })
        };
        if !pattern.starts_with('/') {
            return reject("it is not an absolute path");
        }
        if !pattern.contains(ID_PLACEHOLDER) {
            return reject("it does not contain {id}");
        }
        if pattern.split('/').any(|component| component == "..") {
            return reject("it contains a \"..\" component");
        }
        if pattern.contains("**") {
            return reject("** is not supported, a * matches within one path component");
        }
        if pattern.chars().any(char::is_control) {
            return reject("it contains control characters");
        }
        Ok(SearchPattern(pattern.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pattern with `{id}` replaced, wildcards kept.
    pub fn substitute(&self, id: &BeamtimeId) -> String {
        substitute_id(&self.0, id)
    }

    /// The existing paths (symlinks followed) that the pattern matches for
    /// `id`, sorted within each wildcard level. Directories that cannot be
    /// listed are skipped; wildcards never match names that are not UTF-8.
    pub fn expand(&self, id: &BeamtimeId) -> Vec<PathBuf> {
        self.search(id).found
    }

    /// [`SearchPattern::expand`], also noting the places the caller may not
    /// look into: a beamtime folder open only to its members hides the file
    /// from everybody else, and "not found" alone would mislead them.
    pub fn search(&self, id: &BeamtimeId) -> Expansion {
        let concrete = self.substitute(id);
        let mut denied = Vec::new();
        let mut candidates = vec![PathBuf::from("/")];
        for component in concrete.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if component.contains('*') {
                candidates = candidates
                    .iter()
                    .flat_map(|folder| matching_entries(folder, component, &mut denied))
                    .collect();
            } else {
                candidates
                    .iter_mut()
                    .for_each(|candidate| candidate.push(component));
            }
            if candidates.is_empty() {
                break;
            }
        }
        let mut found = Vec::new();
        for candidate in candidates {
            match fs::metadata(&candidate) {
                Ok(_) => found.push(candidate),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => denied.push(candidate),
                Err(_) => {}
            }
        }
        Expansion { found, denied }
    }
}

/// What one pattern found, and where it could not look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    pub found: Vec<PathBuf>,
    /// Folders that could not be listed and paths that could not be checked,
    /// for want of permission.
    pub denied: Vec<PathBuf>,
}

impl fmt::Display for SearchPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Replaces every `{id}` in `pattern`. Safe for any validated id: ids contain
/// neither `/` nor `*`, so the substitution cannot add components or wildcards.
pub fn substitute_id(pattern: &str, id: &BeamtimeId) -> String {
    pattern.replace(ID_PLACEHOLDER, id.as_str())
}

/// [`SearchPattern::expand`] as a free function.
pub fn expand_pattern(pattern: &SearchPattern, id: &BeamtimeId) -> Vec<PathBuf> {
    pattern.expand(id)
}

fn matching_entries(folder: &Path, component: &str, denied: &mut Vec<PathBuf>) -> Vec<PathBuf> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) => {
            if error.kind() == io::ErrorKind::PermissionDenied {
                denied.push(folder.to_path_buf());
            }
            log::debug!("skipping {}: {error}", folder.display());
            return Vec::new();
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| wildcard_matches(component, name))
        .collect();
    names.sort();
    names.into_iter().map(|name| folder.join(name)).collect()
}

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters. Like a shell, `*` does not match a leading `.`.
pub fn wildcard_matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = pieces.collect();
    let Some(last) = pieces.pop() else {
        return rest.is_empty();
    };
    // Taking the leftmost match of each middle piece leaves the most room
    // for the pieces after it, so no backtracking is needed.
    for piece in pieces {
        match rest.find(piece) {
            Some(index) => rest = &rest[index + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn pattern(text: &str) -> SearchPattern {
        match SearchPattern::parse(text) {
            Ok(pattern) => pattern,
            Err(error) => panic!("{error}"),
        }
    }

    fn id(text: &str) -> BeamtimeId {
        match BeamtimeId::parse(text) {
            Ok(id) => id,
            Err(error) => panic!("{error}"),
        }
    }

    fn rejection(text: &str) -> String {
        match SearchPattern::parse(text) {
            Ok(_) => panic!("{text:?} should be rejected"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn patterns_must_be_absolute_with_id_and_without_dotdot() {
        assert!(
            rejection("gpfs/current/beamtime-metadata-{id}.json").contains("not an absolute path")
        );
        assert!(rejection("/gpfs/current/beamtime-metadata.json").contains("does not contain {id}"));
        assert!(rejection("/gpfs/../etc/{id}").contains("\"..\" component"));
        assert!(rejection("/asap3/**/{id}.json").contains("** is not supported"));
        assert!(rejection("/gpfs/{id}\n.json").contains("control characters"));
        assert!(rejection("").contains("e.g. /gpfs/current/beamtime-metadata-{id}.json"));
        assert!(SearchPattern::parse("/gpfs/a..b/{id}").is_ok());
    }

    #[test]
    fn substitution_replaces_every_placeholder() {
        let p = pattern("/asap3/*/gpfs/*/*/data/{id}/beamtime-metadata-{id}.json");
        assert_eq!(
            p.substitute(&id("11099001")),
            "/asap3/*/gpfs/*/*/data/11099001/beamtime-metadata-11099001.json"
        );
    }

    #[test]
    fn wildcards_match_within_one_component() {
        assert!(wildcard_matches("*", "p11"));
        assert!(wildcard_matches("p*", "p11"));
        assert!(wildcard_matches("*1", "p11"));
        assert!(wildcard_matches(
            "beamtime-metadata-*.json",
            "beamtime-metadata-1.json"
        ));
        assert!(wildcard_matches("a*b*c", "abbbc"));
        assert!(wildcard_matches("a*a", "aa"));
        assert!(!wildcard_matches("a*a", "a"));
        assert!(!wildcard_matches("*", ".hidden"));
        assert!(wildcard_matches(".*", ".hidden"));
        assert!(!wildcard_matches("p*", "x11"));
        assert!(wildcard_matches("exact", "exact"));
        assert!(!wildcard_matches("exact", "exactly"));
    }

    #[test]
    fn expansion_walks_the_tree_and_follows_symlinks() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path();
        let data = root.join("asap3/petra3/gpfs/p11/2024/data/11099001");
        let other_year = root.join("asap3/petra3/gpfs/p11/2023/data");
        for folder in [&data, &other_year, &root.join("beamline/p21")] {
            if let Err(error) = fs::create_dir_all(folder) {
                panic!("{error}");
            }
        }
        let file = data.join("beamtime-metadata-11099001.json");
        if let Err(error) = fs::write(&file, "{}") {
            panic!("{error}");
        }
        if let Err(error) = symlink(&data, root.join("beamline/p21/current")) {
            panic!("{error}");
        }
        let root_text = root.to_string_lossy();

        let core = pattern(&format!(
            "{root_text}/asap3/*/gpfs/*/*/data/{{id}}/beamtime-metadata-{{id}}.json"
        ));
        assert_eq!(core.expand(&id("11099001")), vec![file.clone()]);
        assert!(core.expand(&id("11099002")).is_empty());

        let beamline = pattern(&format!(
            "{root_text}/beamline/*/current/beamtime-metadata-{{id}}.json"
        ));
        assert_eq!(
            beamline.expand(&id("11099001")),
            vec![root.join("beamline/p21/current/beamtime-metadata-11099001.json")]
        );
        assert!(pattern(&format!("{root_text}/missing/*/{{id}}"))
            .expand(&id("1"))
            .is_empty());
    }
}
