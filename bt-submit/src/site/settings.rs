//! Where bt-submit's settings come from, so that it finds the metadata where
//! the plugin does and shows the path jobs will see.
//!
//! The metadata search path for `--beamtime ID`, highest first:
//! `BEAMTIME_METADATA_PATH`; the `metadata_path` lines of bt-submit's config
//! file (`$BT_SUBMIT_CONFIG` or /etc/beamtime/bt-submit.conf); the
//! `metadata=` patterns of the plugin's plugstack line (plugstack.rs); the
//! built-in defaults, which are the plugin's own. (`--metadata FILE`, above
//! them all, needs no search path.) The beamline path jobs see is the line's
//! `target=`, else the plugin's default.
//!
//! The plugstack costs a `scontrol show config`, so it is read only when
//! asked for and at most once per run. A plugstack that cannot be read
//! (no scontrol, no plugin line) leaves the defaults, without a word: Slurm
//! here may not be the facility's. A line the plugin cannot use is an error:
//! every `--beamtime` job would be refused over it.

use std::cell::OnceCell;
use std::ffi::OsString;
use std::fmt;

use beamtime::discovery::SearchPath;
use beamtime::plugin_config::{PluginConfig, TargetTemplate, BAD_LINE_FIX};

use crate::failure::{Failure, Status};
use crate::site::plugstack::{find_plugin, BadLine, PluginSetup, Unavailable};
use crate::site::user_config::{user_setting, ConfigError, SearchOrigin};
use crate::slurm::query::Slurm;

/// Reads one environment variable; the real environment, or a test's.
pub type Environment<'e> = &'e dyn Fn(&str) -> Option<OsString>;

pub struct Settings<'s> {
    slurm: &'s dyn Slurm,
    environment: Environment<'s>,
    plugin: OnceCell<Result<PluginSetup, Unavailable>>,
}

/// A search path and where it was set.
pub struct Search {
    pub path: SearchPath,
    pub origin: Origin,
}

/// Where the search path was set, as the order above has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `BEAMTIME_METADATA_PATH` or bt-submit's config file.
    User(SearchOrigin),
    /// The plugin's line at `location` (`file:line`); `own_patterns` is
    /// false when it gives no `metadata=` and so keeps the defaults.
    Plugstack {
        location: String,
        own_patterns: bool,
    },
    /// Nothing above set one; `why` the plugstack did not.
    Defaults { why: String },
}

impl Origin {
    pub fn of_plugin(setup: &PluginSetup, config: &PluginConfig) -> Origin {
        Origin::Plugstack {
            location: setup.location(),
            own_patterns: config.metadata != SearchPath::default(),
        }
    }

    pub fn plugin_unread(unavailable: &Unavailable) -> Origin {
        Origin::Defaults {
            why: format!("the plugin's line could not be read: {unavailable}"),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::User(origin) => write!(f, "{origin}"),
            Origin::Plugstack {
                location,
                own_patterns: true,
            } => write!(f, "the metadata= patterns of the plugin's line {location}"),
            Origin::Plugstack {
                location,
                own_patterns: false,
            } => write!(
                f,
                "the built-in defaults, which the plugin's line {location} keeps (it has no \
                 metadata=)"
            ),
            Origin::Defaults { why } => write!(f, "the built-in defaults ({why})"),
        }
    }
}

/// A setting bt-submit cannot work with.
#[derive(Debug)]
pub enum SettingsError {
    /// `BEAMTIME_METADATA_PATH` or bt-submit's config file.
    User(ConfigError),
    Plugstack(BadLine),
}

impl From<SettingsError> for Failure {
    fn from(error: SettingsError) -> Failure {
        match error {
            SettingsError::User(error) => Failure::new(
                Status::Config,
                error.to_string(),
                "fix BEAMTIME_METADATA_PATH or the config file, or use --metadata FILE",
            ),
            SettingsError::Plugstack(bad) => bad.into(),
        }
    }
}

/// A bad plugstack line stops bt-submit as it would stop the job, with the
/// plugin's words.
impl From<BadLine> for Failure {
    fn from(bad: BadLine) -> Failure {
        Failure::new(Status::Config, bad.to_string(), BAD_LINE_FIX)
    }
}

impl<'s> Settings<'s> {
    pub fn new(slurm: &'s dyn Slurm, environment: Environment<'s>) -> Settings<'s> {
        Settings {
            slurm,
            environment,
            plugin: OnceCell::new(),
        }
    }

    pub fn slurm(&self) -> &dyn Slurm {
        self.slurm
    }

    /// The plugin's line, read on the first call.
    pub fn plugin(&self) -> &Result<PluginSetup, Unavailable> {
        self.plugin.get_or_init(|| find_plugin(self.slurm))
    }

    /// The plugin's line if this run has read it already, for a check not
    /// worth a controller query of its own.
    pub fn plugin_if_read(&self) -> Option<&Result<PluginSetup, Unavailable>> {
        self.plugin.get()
    }

    /// The search path the user or the host set for bt-submit, if any.
    pub fn own_search_path(&self) -> Result<Option<Search>, ConfigError> {
        Ok(
            user_setting(self.environment)?.map(|(path, origin)| Search {
                path,
                origin: Origin::User(origin),
            }),
        )
    }

    /// The search path for `--beamtime ID`, by the order above.
    pub fn search_path(&self) -> Result<Search, SettingsError> {
        if let Some(own) = self.own_search_path().map_err(SettingsError::User)? {
            return Ok(own);
        }
        match self.plugin() {
            Ok(setup) => match &setup.config {
                Ok(usable) => Ok(Search {
                    path: usable.config.metadata.clone(),
                    origin: Origin::of_plugin(setup, &usable.config),
                }),
                Err(bad) => Err(SettingsError::Plugstack(bad.clone())),
            },
            Err(unavailable) => Ok(Search {
                path: SearchPath::default(),
                origin: Origin::plugin_unread(unavailable),
            }),
        }
    }

    /// Where jobs see the beamline: the line's `target=`, else the plugin's default.
    pub fn target(&self) -> Result<TargetTemplate, BadLine> {
        match self.plugin() {
            Ok(setup) => match &setup.config {
                Ok(usable) => Ok(usable.config.target.clone()),
                Err(bad) => Err(bad.clone()),
            },
            Err(_) => Ok(PluginConfig::parse(std::iter::empty())
                .expect("a line without arguments parses: every key has a default")
                .target),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::site::user_config::{CONFIG_FILE_VAR, SEARCH_PATH_VAR};

    use super::*;
    use crate::testing::{ScratchPlugstack, PLUGIN_LINE};

    fn patterns(search: &Search) -> Vec<String> {
        search
            .path
            .patterns()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect()
    }

    /// Runs `check` on fresh settings over `scratch`, as one bt-submit run.
    fn with_settings<T>(scratch: &ScratchPlugstack, check: impl FnOnce(&Settings) -> T) -> T {
        let environment = |name: &str| scratch.variable(name);
        check(&Settings::new(&scratch.slurm, &environment))
    }

    #[test]
    fn each_source_in_order_and_scontrol_only_when_the_ones_above_are_absent() {
        let mut scratch = ScratchPlugstack::new("settings");
        let plugin_pattern = scratch.path("plugin/beamtime-metadata-{id}.json");
        scratch.line(&format!(
            "metadata={plugin_pattern} source=/srv/{{beamline}} target=/data/{{beamline}}"
        ));
        let config = scratch.dir.join("site.conf");
        fs::write(&config, "metadata_path = /site/{id}.json\n").unwrap();
        scratch.set(CONFIG_FILE_VAR, &config);
        scratch.set(SEARCH_PATH_VAR, "/variable/{id}.json");

        let search = with_settings(&scratch, |s| s.search_path().unwrap());
        assert_eq!(search.origin, Origin::User(SearchOrigin::Variable));
        assert_eq!(patterns(&search), ["/variable/{id}.json"]);

        scratch.set(SEARCH_PATH_VAR, "");
        let search = with_settings(&scratch, |s| s.search_path().unwrap());
        assert_eq!(
            search.origin,
            Origin::User(SearchOrigin::ConfigFile(config.clone()))
        );
        assert_eq!(patterns(&search), ["/site/{id}.json"]);
        assert!(
            scratch.slurm.asked().is_empty(),
            "{:?}",
            scratch.slurm.asked()
        );

        // A config file without patterns leaves the choice to the plugin's line.
        fs::write(&config, "# none yet\n").unwrap();
        let (search, target) = with_settings(&scratch, |s| {
            (s.search_path().unwrap(), s.target().unwrap())
        });
        let location = format!("{}:{PLUGIN_LINE}", scratch.drop_in().display());
        assert_eq!(
            search.origin,
            Origin::Plugstack {
                location: location.clone(),
                own_patterns: true
            }
        );
        assert_eq!(patterns(&search), [plugin_pattern]);
        assert_eq!(
            search.origin.to_string(),
            format!("the metadata= patterns of the plugin's line {location}")
        );
        assert_eq!(target.as_str(), "/data/{beamline}");
        assert_eq!(
            scratch.slurm.asked(),
            ["scontrol show config"],
            "once per run"
        );

        scratch.line("source=/srv/{beamline}");
        let (search, target) = with_settings(&scratch, |s| {
            (s.search_path().unwrap(), s.target().unwrap())
        });
        assert_eq!(search.path, SearchPath::default());
        assert!(
            search
                .origin
                .to_string()
                .starts_with("the built-in defaults, which the plugin's line"),
            "{}",
            search.origin
        );
        assert_eq!(target.as_str(), "/beamline/{beamline}/current");
    }

    #[test]
    fn a_plugstack_that_cannot_be_read_leaves_the_defaults_quietly() {
        let mut scratch = ScratchPlugstack::new("settings");
        const ENOENT: i32 = 2;
        scratch.slurm.cannot_run("scontrol show config", ENOENT);
        let (search, target) = with_settings(&scratch, |s| {
            (s.search_path().unwrap(), s.target().unwrap())
        });
        assert_eq!(search.path, SearchPath::default());
        assert_eq!(
            search.origin.to_string(),
            "the built-in defaults (the plugin's line could not be read: cannot run 'scontrol \
             show config': No such file or directory (os error 2))"
        );
        assert_eq!(target.as_str(), "/beamline/{beamline}/current");
    }

    #[test]
    fn a_line_the_plugin_cannot_use_stops_bt_submit_with_78_and_the_plugins_words() {
        let scratch = ScratchPlugstack::new("settings");
        scratch.line("source=/srv/{beamline} no_such_argument=1");
        let (search, target) = with_settings(&scratch, |s| (s.search_path(), s.target()));
        let location = format!("{}:{PLUGIN_LINE}", scratch.drop_in().display());
        let bad = target.unwrap_err();
        assert_eq!(bad.location, location);
        let Err(SettingsError::Plugstack(same)) = search else {
            panic!("the search path needs the line");
        };
        assert_eq!(same, bad);
        let failure = Failure::from(SettingsError::Plugstack(bad));
        assert_eq!(failure.status, Status::Config);
        assert!(
            failure.problem.what.starts_with(&format!(
                "{location}: plugstack.conf argument 'no_such_argument=1': unknown key"
            )),
            "{failure}"
        );
        assert_eq!(failure.problem.fix, BAD_LINE_FIX);
    }

    #[test]
    fn a_bad_search_path_of_the_users_is_78_before_any_scontrol() {
        let mut scratch = ScratchPlugstack::new("settings");
        scratch.set(SEARCH_PATH_VAR, "relative/{id}.json");
        let error = with_settings(&scratch, |s| s.search_path().err()).unwrap();
        let failure = Failure::from(error);
        assert_eq!(failure.status, Status::Config);
        assert!(
            failure
                .problem
                .what
                .starts_with("BEAMTIME_METADATA_PATH: invalid metadata search pattern"),
            "{failure}"
        );
        assert!(scratch.slurm.asked().is_empty());
    }
}
