//! The plugin's `plugstack.conf` arguments: `key=value` words after the
//! plugin's path, e.g.
//!
//! ```text
//! required /usr/lib/x86_64-linux-gnu/slurm-wlm/spank_beamtime.so \
//!     metadata=/gpfs/beamline/*/current/beamtime-metadata-{id}.json \
//!     source=/gpfs/beamline/{beamline}/current writable=processed,shared
//! ```
//!
//! Parsing is strict: an unknown key, a repeated single-valued key or a
//! malformed value is an error naming the argument, so a typo in an admin's
//! configuration fails loudly when the plugin loads instead of silently
//! weakening enforcement.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::discovery::{SearchPath, SearchPattern};
use crate::id::{Beamline, BeamtimeId};

/// Where the beamline data appears inside a job unless `target=` says otherwise.
pub const DEFAULT_TARGET: &str = "/beamline/{beamline}/current";

/// Accounts below this uid are system accounts: metadata naming one is refused.
pub const DEFAULT_MIN_UID: u32 = 1000;

/// Where slurmstepd keeps the controller's answers for a job's later steps
/// ([`crate::job_cache`]); /run is a tmpfs, emptied at boot.
pub const DEFAULT_STATE_DIR: &str = "/run/spank-beamtime";

/// How long a controller answer stands in for asking again.
pub const DEFAULT_JOB_CACHE_SECONDS: u64 = 300;

/// What a line the plugin cannot use means, for whoever meets it first (the
/// plugin's refusal and bt-submit say it in these words).
pub const BAD_LINE_FIX: &str = concat!(
    crate::ask_the_admins!(),
    ": jobs without --beamtime are not affected, --beamtime jobs are refused until the \
     spank-beamtime line in plugstack.conf is fixed"
);

const KEYS: &[&str] = &[
    "metadata",
    "trusted_owners",
    "source",
    "target",
    "writable",
    "check_nodes",
    "account",
    "min_uid",
    "state_dir",
    "job_cache_seconds",
    "prestart",
];

/// A path with `{id}` and `{beamline}` placeholders, checked once at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
}

impl PathTemplate {
    fn parse(argument: &str, text: &str) -> Result<Self, ConfigError> {
        let bad = |problem: &str| ConfigError::new(argument, problem);
        if !text.starts_with('/') {
            return Err(bad("the path must be absolute"));
        }
        let without_placeholders = text.replace("{id}", "x").replace("{beamline}", "x");
        if without_placeholders.contains(['{', '}']) {
            return Err(bad("only the placeholders {id} and {beamline} are known"));
        }
        if has_dot_component(text) {
            return Err(bad("the path may not contain '.' or '..' components"));
        }
        if text.contains('*') {
            return Err(bad("wildcards are allowed in metadata= only"));
        }
        Ok(PathTemplate {
            text: text.to_owned(),
        })
    }

    /// The path for one beamtime. Both values are validated names (no `/`, no
    /// `..`), so the result stays inside the folder the admin wrote.
    pub fn expand(&self, id: &BeamtimeId, beamline: &Beamline) -> PathBuf {
        PathBuf::from(
            self.text
                .replace("{id}", id.as_str())
                .replace("{beamline}", beamline.as_str()),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The target template split at its first placeholder: `hide_root` is the
/// fixed folder the plugin covers with a private tmpfs (so that nothing of
/// other beamlines shows), the rest is created inside that tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTemplate {
    template: PathTemplate,
    hide_root: PathBuf,
}

impl TargetTemplate {
    fn parse(argument: &str, text: &str) -> Result<Self, ConfigError> {
        let template = PathTemplate::parse(argument, text)?;
        if !text.contains("{beamline}") {
            return Err(ConfigError::new(
                argument,
                "the target must contain {beamline}, e.g. /beamline/{beamline}/current",
            ));
        }
        let fixed = &text[..text.find('{').unwrap_or(text.len())];
        // The placeholder must start a component: "/beamline/{beamline}", not "/beam{beamline}".
        if !fixed.ends_with('/') {
            return Err(ConfigError::new(
                argument,
                "a placeholder must be a whole path component, e.g. /beamline/{beamline}/current",
            ));
        }
        let hide_root = PathBuf::from(fixed.trim_end_matches('/'));
        if !hide_root
            .components()
            .any(|c| matches!(c, Component::Normal(_)))
        {
            return Err(ConfigError::new(
                argument,
                "the target needs a fixed folder before the first placeholder (covering / is not allowed)",
            ));
        }
        Ok(TargetTemplate {
            template,
            hide_root,
        })
    }

    pub fn expand(&self, id: &BeamtimeId, beamline: &Beamline) -> PathBuf {
        self.template.expand(id, beamline)
    }

    pub fn hide_root(&self) -> &Path {
        &self.hide_root
    }

    pub fn as_str(&self) -> &str {
        self.template.as_str()
    }
}

/// A file owner the plugin trusts to write metadata: a name (resolved by the
/// plugin through NSS when it loads) or a numeric uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerSpec {
    Uid(u32),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    pub metadata: SearchPath,
    pub trusted_owners: Vec<OwnerSpec>,
    /// Where a beamline's data lives on the node; required, the site decides.
    pub source: Option<PathTemplate>,
    pub target: TargetTemplate,
    /// Subfolders of the beamline folder that jobs may write to; the rest is read-only.
    pub writable: Vec<String>,
    pub check_nodes: bool,
    /// When set, the job's Slurm account must equal this template's expansion.
    pub account: Option<String>,
    pub min_uid: u32,
    pub state_dir: PathBuf,
    /// Zero: every step asks the controller.
    pub job_cache: Duration,
    /// What a beamtime's jobs get while its beamline folder is not (or no
    /// longer) its own: run without the beamline (default), or be refused.
    pub prestart: Prestart,
}

/// `prestart=run|refuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prestart {
    Run,
    Refuse,
}

impl PluginConfig {
    pub fn parse<'a, I>(arguments: I) -> Result<PluginConfig, ConfigError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut patterns: Vec<SearchPattern> = Vec::new();
        let mut trusted_owners: Option<Vec<OwnerSpec>> = None;
        let mut source = None;
        let mut target = None;
        let mut writable: Vec<String> = Vec::new();
        let mut check_nodes = None;
        let mut account = None;
        let mut min_uid = None;
        let mut state_dir = None;
        let mut job_cache_seconds = None;
        let mut prestart = None;

        for argument in arguments {
            let Some((key, value)) = argument.split_once('=') else {
                return Err(ConfigError::new(
                    argument,
                    &format!("expected key=value (known keys: {})", KEYS.join(", ")),
                ));
            };
            if value.is_empty() {
                return Err(ConfigError::new(argument, "the value is empty"));
            }
            match key {
                "metadata" => {
                    patterns.push(
                        SearchPattern::parse(value)
                            .map_err(|e| ConfigError::new(argument, &e.to_string()))?,
                    );
                }
                "writable" => {
                    for name in value.split(',') {
                        writable.push(parse_subfolder(argument, name)?);
                    }
                }
                "trusted_owners" => set_once(
                    &mut trusted_owners,
                    argument,
                    value.split(',').map(|o| parse_owner(argument, o)).collect::<Result<_, _>>()?,
                )?,
                "source" => set_once(&mut source, argument, PathTemplate::parse(argument, value)?)?,
                "target" => set_once(&mut target, argument, TargetTemplate::parse(argument, value)?)?,
                "check_nodes" => set_once(&mut check_nodes, argument, parse_bool(argument, value)?)?,
                "account" => set_once(&mut account, argument, parse_account(argument, value)?)?,
                "min_uid" => set_once(
                    &mut min_uid,
                    argument,
                    value.parse::<u32>().map_err(|_| {
                        ConfigError::new(argument, "expected a number (a uid), e.g. min_uid=1000")
                    })?,
                )?,
                "state_dir" => set_once(&mut state_dir, argument, parse_state_dir(argument, value)?)?,
                "job_cache_seconds" => set_once(
                    &mut job_cache_seconds,
                    argument,
                    value.parse::<u64>().map_err(|_| {
                        ConfigError::new(
                            argument,
                            "expected a number of seconds, e.g. job_cache_seconds=300 (0 turns the cache off)",
                        )
                    })?,
                )?,
                "prestart" => set_once(
                    &mut prestart,
                    argument,
                    match value {
                        "run" => Prestart::Run,
                        "refuse" => Prestart::Refuse,
                        _ => return Err(ConfigError::new(argument, "expected run or refuse")),
                    },
                )?,
                _ => {
                    return Err(ConfigError::new(
                        argument,
                        &format!("unknown key '{}' (known keys: {})", key.escape_default(), KEYS.join(", ")),
                    ))
                }
            }
        }

        let metadata = if patterns.is_empty() {
            SearchPath::default()
        } else {
            SearchPath::new(patterns)
        };
        Ok(PluginConfig {
            metadata,
            trusted_owners: trusted_owners.unwrap_or_else(|| vec![OwnerSpec::Uid(0)]),
            source,
            target: match target {
                Some(target) => target,
                None => TargetTemplate::parse("target", DEFAULT_TARGET)?,
            },
            writable,
            check_nodes: check_nodes.unwrap_or(true),
            account,
            min_uid: min_uid.unwrap_or(DEFAULT_MIN_UID),
            state_dir: state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            job_cache: Duration::from_secs(job_cache_seconds.unwrap_or(DEFAULT_JOB_CACHE_SECONDS)),
            prestart: prestart.unwrap_or(Prestart::Run),
        })
    }

    /// The Slurm account a beamtime's jobs must use, when the site asks for one.
    pub fn expected_account(&self, id: &BeamtimeId, user_account: &str) -> Option<String> {
        self.account.as_ref().map(|t| {
            t.replace("{id}", id.as_str())
                .replace("{user}", user_account)
        })
    }
}

/// Whether a path has a `.` or `..` component. Checked on the text: `Path::components`
/// drops inner `.` components, which let `/./{beamline}` through as a target whose fixed
/// part, `/.`, is `/` itself (found by fuzzing).
fn has_dot_component(text: &str) -> bool {
    text.split('/')
        .any(|component| component == "." || component == "..")
}

fn set_once<T>(slot: &mut Option<T>, argument: &str, value: T) -> Result<(), ConfigError> {
    if slot.is_some() {
        return Err(ConfigError::new(argument, "this key is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_bool(argument: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err(ConfigError::new(argument, "expected yes or no")),
    }
}

fn parse_subfolder(argument: &str, name: &str) -> Result<String, ConfigError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        Ok(name.to_owned())
    } else {
        Err(ConfigError::new(
            argument,
            &format!(
                "'{}' is not a plain subfolder name (one path component from A-Z a-z 0-9 . _ -)",
                name.escape_default()
            ),
        ))
    }
}

fn parse_state_dir(argument: &str, value: &str) -> Result<PathBuf, ConfigError> {
    let path = Path::new(value);
    let plain = path.is_absolute() && !value.contains(['{', '}', '*']) && !has_dot_component(value);
    if plain {
        Ok(path.to_owned())
    } else {
        Err(ConfigError::new(
            argument,
            "expected an absolute folder without placeholders, '.' or '..', e.g. state_dir=/run/spank-beamtime",
        ))
    }
}

fn parse_owner(argument: &str, owner: &str) -> Result<OwnerSpec, ConfigError> {
    if let Ok(uid) = owner.parse::<u32>() {
        return Ok(OwnerSpec::Uid(uid));
    }
    crate::id::check_name(crate::id::NameKind::UserAccount, owner)
        .map(|_| OwnerSpec::Name(owner.to_owned()))
        .map_err(|e| ConfigError::new(argument, &e.to_string()))
}

fn parse_account(argument: &str, template: &str) -> Result<String, ConfigError> {
    let literal = template.replace("{id}", "").replace("{user}", "");
    let plain = literal
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        Ok(template.to_owned())
    } else {
        Err(ConfigError::new(
            argument,
            "expected a Slurm account name, optionally with {id} and {user}, e.g. account={id}",
        ))
    }
}

/// A plugstack.conf argument the plugin cannot accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    argument: String,
    problem: String,
}

impl ConfigError {
    fn new(argument: &str, problem: &str) -> Self {
        ConfigError {
            argument: argument.escape_default().to_string(),
            problem: problem.to_owned(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugstack.conf argument '{}': {}; fix the spank-beamtime line in plugstack.conf",
            self.argument, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<PluginConfig, ConfigError> {
        PluginConfig::parse(args.split_whitespace())
    }

    #[test]
    fn defaults_need_only_a_source() {
        let config = parse("source=/srv/beamline/{beamline}/current").unwrap();
        assert_eq!(config.metadata, SearchPath::default());
        assert_eq!(config.trusted_owners, vec![OwnerSpec::Uid(0)]);
        assert_eq!(config.target.as_str(), DEFAULT_TARGET);
        assert_eq!(config.target.hide_root(), Path::new("/beamline"));
        assert!(config.writable.is_empty());
        assert!(config.check_nodes);
        assert_eq!(config.account, None);
        assert_eq!(config.min_uid, DEFAULT_MIN_UID);
        assert_eq!(config.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert_eq!(config.job_cache.as_secs(), DEFAULT_JOB_CACHE_SECONDS);
    }

    #[test]
    fn every_key_is_read() {
        let config = parse(
            "metadata=/a/*/current/beamtime-metadata-{id}.json metadata=/b/{id}/beamtime-metadata-{id}.json \
             trusted_owners=root,4711 source=/gpfs/{beamline}/current target=/data/{beamline} \
             writable=processed,shared writable=scratch_bl check_nodes=no account=bt_{id} min_uid=500 \
             state_dir=/var/run/bt job_cache_seconds=0",
        )
        .unwrap();
        let patterns: Vec<&str> = config
            .metadata
            .patterns()
            .iter()
            .map(|p| p.as_str())
            .collect();
        assert_eq!(
            patterns,
            [
                "/a/*/current/beamtime-metadata-{id}.json",
                "/b/{id}/beamtime-metadata-{id}.json"
            ]
        );
        assert_eq!(
            config.trusted_owners,
            vec![OwnerSpec::Name("root".into()), OwnerSpec::Uid(4711)]
        );
        let id = BeamtimeId::parse("11099001").unwrap();
        let beamline = Beamline::parse("p11").unwrap();
        assert_eq!(
            config.source.as_ref().unwrap().expand(&id, &beamline),
            PathBuf::from("/gpfs/p11/current")
        );
        assert_eq!(
            config.target.expand(&id, &beamline),
            PathBuf::from("/data/p11")
        );
        assert_eq!(config.target.hide_root(), Path::new("/data"));
        assert_eq!(config.writable, ["processed", "shared", "scratch_bl"]);
        assert!(!config.check_nodes);
        assert_eq!(
            config.expected_account(&id, "bttest01").as_deref(),
            Some("bt_11099001")
        );
        assert_eq!(config.min_uid, 500);
        assert_eq!(config.state_dir, Path::new("/var/run/bt"));
        assert_eq!(config.job_cache, std::time::Duration::ZERO);
    }

    fn error_of(args: &str) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_names_the_argument_and_the_known_keys() {
        let message = error_of("source=/x/{beamline} sourse=/y");
        assert!(message.contains("'sourse=/y'"), "{message}");
        assert!(message.contains("unknown key 'sourse'"), "{message}");
        assert!(
            message.contains("known keys: metadata, trusted_owners"),
            "{message}"
        );
        assert!(message.contains("plugstack.conf"), "{message}");
    }

    #[test]
    fn malformed_arguments_are_refused_with_the_reason() {
        let cases = [
            ("check_nodes", "argument 'check_nodes': expected key=value"),
            ("check_nodes=maybe", "expected yes or no"),
            ("source=", "the value is empty"),
            ("source=relative/{beamline}", "must be absolute"),
            ("source=/a/../{beamline}", "'.' or '..'"),
            ("target=/./{beamline}", "'.' or '..'"),
            ("target=//{beamline}", "covering / is not allowed"),
            (
                "source=/a/{user}",
                "only the placeholders {id} and {beamline}",
            ),
            (
                "source=/a/*/{beamline}",
                "wildcards are allowed in metadata= only",
            ),
            ("target=/beamline/current", "must contain {beamline}"),
            ("target=/{beamline}/current", "covering / is not allowed"),
            ("target=/beam{beamline}", "whole path component"),
            ("writable=../etc", "not a plain subfolder name"),
            ("writable=a/b", "not a plain subfolder name"),
            ("writable=processed,", "not a plain subfolder name"),
            ("min_uid=-1", "expected a number"),
            ("trusted_owners=Root!", "invalid user account"),
            ("account=bt/{id}", "expected a Slurm account name"),
            ("metadata=relative/{id}.json", "metadata=relative/{id}.json"),
            ("check_nodes=yes check_nodes=no", "given twice"),
            ("state_dir=run/bt", "expected an absolute folder"),
            ("state_dir=/run/{id}", "without placeholders"),
            ("state_dir=/run/../tmp", "'.' or '..'"),
            ("state_dir=/run/./bt", "'.' or '..'"),
            ("job_cache_seconds=5m", "expected a number of seconds"),
        ];
        for (args, expected) in cases {
            let message = error_of(args);
            assert!(message.contains(expected), "{args}: {message}");
        }
    }

    #[test]
    fn control_characters_in_arguments_are_escaped_in_messages() {
        let message = error_of("bogus\u{1b}[2J=1");
        assert!(message.contains("\\u{1b}"), "{message}");
        assert!(!message.contains('\u{1b}'), "{message}");
    }
}
