//! The search path a user or host sets for bt-submit: `BEAMTIME_METADATA_PATH`,
//! else the `metadata_path` lines of bt-submit's config file. It is the user's
//! own setting, trusted as the user's (settings.rs says what comes after it:
//! the plugin's patterns, then the defaults); the plugin never reads it.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use beamtime::capped::{read_file_capped, ReadFailure};
use beamtime::discovery::{SearchPath, SearchPattern};
use beamtime::untrusted::shown;

/// Environment variable with colon-separated search patterns; when set and
/// not empty it replaces the config file and the defaults.
pub const SEARCH_PATH_VAR: &str = "BEAMTIME_METADATA_PATH";

/// Environment variable naming a config file to use instead of
/// [`DEFAULT_CONFIG_FILE`]; unlike the default file it must exist.
pub const CONFIG_FILE_VAR: &str = "BT_SUBMIT_CONFIG";

pub const DEFAULT_CONFIG_FILE: &str = "/etc/beamtime/bt-submit.conf";

/// The key of search patterns in the config file.
const CONFIG_KEY: &str = "metadata_path";

/// A user setting bt-submit cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `origin` is the variable name or `file:line` the bad setting came from.
    InvalidSearchPath {
        origin: String,
        problem: String,
    },
    ConfigUnreadable {
        path: PathBuf,
        problem: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InvalidSearchPath { origin, problem } => {
                write!(f, "{origin}: {problem}")
            }
            ConfigError::ConfigUnreadable { path, problem } => write!(
                f,
                "cannot read the config file {}: {problem}; check {CONFIG_FILE_VAR}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The search path a user or host set for user-side tools, with where it
/// was set: [`SEARCH_PATH_VAR`] if set and not empty, else the
/// `metadata_path` lines of the config file ([`CONFIG_FILE_VAR`] or
/// [`DEFAULT_CONFIG_FILE`]). `None` when neither names a pattern, so that
/// the caller chooses what comes next (bt-submit: the plugin's own
/// patterns, then the defaults). `variable` reads the environment, so
/// callers can test every case without changing their own.
pub fn user_setting(
    variable: impl Fn(&str) -> Option<OsString>,
) -> Result<Option<(SearchPath, SearchOrigin)>, ConfigError> {
    if let Some(list) = variable(SEARCH_PATH_VAR).filter(|list| !list.is_empty()) {
        let list = list
            .into_string()
            .map_err(|list| ConfigError::InvalidSearchPath {
                origin: SEARCH_PATH_VAR.to_owned(),
                problem: format!("{} is not valid UTF-8", shown(&list.to_string_lossy())),
            })?;
        let search =
            SearchPath::parse_list(&list).map_err(|error| ConfigError::InvalidSearchPath {
                origin: SEARCH_PATH_VAR.to_owned(),
                problem: error.to_string(),
            })?;
        return Ok(Some((search, SearchOrigin::Variable)));
    }
    let chosen = variable(CONFIG_FILE_VAR).filter(|path| !path.is_empty());
    let must_exist = chosen.is_some();
    let config = PathBuf::from(chosen.unwrap_or_else(|| OsString::from(DEFAULT_CONFIG_FILE)));
    let bytes = match read_file_capped(&config) {
        Ok(bytes) => bytes,
        Err(ReadFailure::Io(error)) if error.kind() == io::ErrorKind::NotFound && !must_exist => {
            return Ok(None)
        }
        Err(failure) => {
            return Err(ConfigError::ConfigUnreadable {
                path: config,
                problem: failure.to_string(),
            })
        }
    };
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::InvalidSearchPath {
        origin: config.display().to_string(),
        problem: "the config file is not valid UTF-8".to_owned(),
    })?;
    Ok(parse_config(&text, &config)?.map(|search| (search, SearchOrigin::ConfigFile(config))))
}

/// Where [`user_setting`] found its patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchOrigin {
    /// [`SEARCH_PATH_VAR`].
    Variable,
    /// The `metadata_path` lines of this config file.
    ConfigFile(PathBuf),
}

impl fmt::Display for SearchOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SearchOrigin::Variable => f.write_str(SEARCH_PATH_VAR),
            SearchOrigin::ConfigFile(path) => {
                write!(f, "the {CONFIG_KEY} lines of {}", path.display())
            }
        }
    }
}

/// Parses a `bt-submit.conf`: lines `metadata_path = PATTERN`, blank lines
/// and `#` comments. Returns `None` when the file names no pattern, so the
/// defaults stay in force.
fn parse_config(text: &str, origin: &Path) -> Result<Option<SearchPath>, ConfigError> {
    let mut patterns = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let location = format!("{}:{}", origin.display(), index + 1);
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::InvalidSearchPath {
                origin: location,
                problem: format!("expected \"{CONFIG_KEY} = PATTERN\", found {}", shown(line)),
            });
        };
        if key.trim() != CONFIG_KEY {
            return Err(ConfigError::InvalidSearchPath {
                origin: location,
                problem: format!(
                    "unknown key {}, the only key is \"{CONFIG_KEY}\"",
                    shown(key.trim())
                ),
            });
        }
        let pattern =
            SearchPattern::parse(value.trim()).map_err(|error| ConfigError::InvalidSearchPath {
                origin: location,
                problem: error.to_string(),
            })?;
        patterns.push(pattern);
    }
    Ok((!patterns.is_empty()).then(|| SearchPath::new(patterns)))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn config_lines_replace_the_defaults() {
        let text = "# site search path\n\nmetadata_path = /data/{id}/beamtime-metadata-{id}.json\n  metadata_path=/other/*/{id}.json  \n";
        let parsed = match parse_config(text, Path::new("/etc/beamtime/bt-submit.conf")) {
            Ok(Some(search)) => search,
            other => panic!("{other:?}"),
        };
        let patterns: Vec<&str> = parsed
            .patterns()
            .iter()
            .map(SearchPattern::as_str)
            .collect();
        assert_eq!(
            patterns,
            [
                "/data/{id}/beamtime-metadata-{id}.json",
                "/other/*/{id}.json"
            ]
        );
        assert!(matches!(
            parse_config("# nothing\n", Path::new("x")),
            Ok(None)
        ));
    }

    #[test]
    fn config_errors_name_file_and_line() {
        let cases = [
            ("metadata_path = relative/{id}", "/c.conf:1: invalid metadata search pattern \"relative/{id}\": it is not an absolute path"),
            ("\nsearch = /x/{id}", "/c.conf:2: unknown key \"search\""),
            ("metadata_path /x/{id}", "/c.conf:1: expected \"metadata_path = PATTERN\""),
        ];
        for (text, expected) in cases {
            match parse_config(text, Path::new("/c.conf")) {
                Err(error) => assert!(error.to_string().starts_with(expected), "{error}"),
                Ok(search) => panic!("{text:?} gave {search:?}"),
            }
        }
    }

    #[test]
    fn user_settings_say_where_they_came_from_and_none_leaves_the_choice_open() {
        let scratch = tempfile::Builder::new()
            .prefix("bt-user-setting-")
            .tempdir()
            .unwrap();
        let dir = scratch.path();
        let config = dir.join("bt-submit.conf");
        fs::write(&config, "metadata_path = /site/{id}.json\n").unwrap();
        let empty = dir.join("empty.conf");
        fs::write(&empty, "# none\n").unwrap();
        let origin_of = |variables: &[(&str, &Path)]| {
            user_setting(|name| {
                variables
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.as_os_str().to_owned())
            })
            .unwrap()
            .map(|(_, origin)| origin)
        };
        let list = Path::new("/a/{id}.json");
        assert_eq!(
            origin_of(&[(SEARCH_PATH_VAR, list), (CONFIG_FILE_VAR, &config)]),
            Some(SearchOrigin::Variable)
        );
        assert_eq!(
            origin_of(&[(SEARCH_PATH_VAR, Path::new("")), (CONFIG_FILE_VAR, &config)]),
            Some(SearchOrigin::ConfigFile(config.clone()))
        );
        assert_eq!(origin_of(&[(CONFIG_FILE_VAR, &empty)]), None);
        assert_eq!(
            SearchOrigin::ConfigFile(config.clone()).to_string(),
            format!("the metadata_path lines of {}", config.display())
        );
    }
}
