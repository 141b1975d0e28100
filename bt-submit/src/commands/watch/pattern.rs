//! `--pattern`: which file (or scan folder) names the watch submits. Full
//! glob syntax from globset (`*`, `?`, `[..]`, `[!..]`, `{a,b}`), several
//! patterns allowed (a name matching any of them is submitted), each matched
//! against one name, never a path.

use std::fmt;

use beamtime::problem::Problem;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The `--pattern`s of one watch, checked and compiled once.
#[derive(Debug, Clone)]
pub struct Patterns {
    texts: Vec<String>,
    set: GlobSet,
    /// Which patterns begin with `.`; only those match a hidden name.
    hidden: GlobSet,
}

impl Patterns {
    /// Compiles `texts`, refusing any that can never match a name: an empty
    /// one, one with `/` (names are matched, not paths), one globset cannot read.
    pub fn new(texts: &[String]) -> Result<Patterns, Problem> {
        let mut set = GlobSetBuilder::new();
        let mut hidden = GlobSetBuilder::new();
        for text in texts {
            let glob = compile(text)?;
            if text.starts_with('.') {
                hidden.add(glob.clone());
            }
            set.add(glob);
        }
        let built = |builder: GlobSetBuilder| {
            builder
                .build()
                .map_err(|error| Problem::new(format!("--pattern: {error}"), PATTERN_FIX))
        };
        Ok(Patterns {
            texts: texts.to_vec(),
            set: built(set)?,
            hidden: built(hidden)?,
        })
    }

    /// The patterns as given.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// Whether `name` matches one of the patterns. A name beginning with `.`
    /// only matches a pattern that begins with `.` too, so a detector's hidden
    /// temporary file is submitted under its final name only, after its
    /// rename into place.
    pub fn matches(&self, name: &str) -> bool {
        if name.starts_with('.') {
            self.hidden.is_match(name)
        } else {
            self.set.is_match(name)
        }
    }
}

const PATTERN_FIX: &str = "give --pattern a glob for the names of the files (with --each folder: \
     of the scan folders), e.g. '*.h5', 'scan_?[0-9]*' or '*.{h5,cbf}'; repeat --pattern for \
     several";

fn compile(text: &str) -> Result<Glob, Problem> {
    if text.is_empty() {
        return Err(Problem::new(
            "--pattern is empty: it matches no name",
            PATTERN_FIX,
        ));
    }
    if text.contains('/') {
        return Err(Problem::new(
            format!(
                "--pattern {text:?} contains '/': patterns match names, never paths, so it \
                 matches nothing"
            ),
            "match the name only (e.g. '*.h5'); every folder below DIR is watched anyway, \
             or watch the subfolder itself as DIR",
        ));
    }
    GlobBuilder::new(text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|error| {
            Problem::new(
                format!("--pattern {text:?} is not a glob: {}", error.kind()),
                PATTERN_FIX,
            )
        })
}

/// The patterns as given, for the watch's first log line.
impl fmt::Display for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.texts.join(" or "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(texts: &[&str]) -> Patterns {
        Patterns::new(&texts.iter().map(|t| t.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_full_glob_syntax_matches_names() {
        let p = patterns(&["*.h5"]);
        assert!(p.matches("scan_0001.h5"));
        assert!(!p.matches("scan_0001.h5.part"));
        assert!(patterns(&["frame_??.cbf"]).matches("frame_01.cbf"));
        assert!(!patterns(&["frame_??.cbf"]).matches("frame_001.cbf"));
        assert!(patterns(&["scan_[0-9]*"]).matches("scan_7"));
        assert!(!patterns(&["scan_[0-9]*"]).matches("scan_x"));
        assert!(patterns(&["scan_[!x]*"]).matches("scan_7"));
        let braces = patterns(&["*.{h5,cbf}"]);
        assert!(braces.matches("a.h5") && braces.matches("a.cbf") && !braces.matches("a.tif"));
    }

    #[test]
    fn a_name_matching_any_of_several_patterns_matches() {
        let p = patterns(&["*.h5", "*.cbf"]);
        assert!(p.matches("a.h5"));
        assert!(p.matches("a.cbf"));
        assert!(!p.matches("a.tif"));
        assert_eq!(p.to_string(), "*.h5 or *.cbf");
    }

    #[test]
    fn hidden_names_match_only_a_pattern_that_begins_with_a_dot() {
        assert!(!patterns(&["*"]).matches(".a.h5.part"));
        assert!(!patterns(&["*.part"]).matches(".a.h5.part"));
        assert!(patterns(&[".*.part"]).matches(".a.h5.part"));
        assert!(patterns(&["*", ".*"]).matches(".a"));
    }

    #[test]
    fn a_pattern_that_cannot_match_is_refused_with_what_to_do() {
        for (text, says) in [
            ("", "empty"),
            ("raw/*.h5", "contains '/'"),
            ("scan_[0-9", "is not a glob"),
            ("*.{h5,cbf", "is not a glob"),
        ] {
            let problem = Patterns::new(&[text.to_owned()]).unwrap_err();
            assert!(problem.what.contains(says), "{text:?}: {}", problem.what);
            assert!(problem.fix.contains("--pattern") || problem.fix.contains("name"));
        }
    }
}
