//! The beamtime plugin's line in the plugstack configuration Slurm uses here:
//! the file `scontrol show config` names as PlugStackConfig, then the files
//! its `include` lines name (plugstack.conf.d/*.conf), until a line loads
//! spank_beamtime.so. The one reader of it: every subcommand takes the
//! plugin's settings from it (settings.rs) and doctor checks it, so they
//! cannot disagree about which line the plugin uses.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use beamtime::plugin_config::{PathTemplate, PluginConfig};
use beamtime::problem::ASK_THE_ADMINS;
use beamtime::trust::{OwnerError, TrustPolicy};

use crate::slurm::error::SlurmError;
use crate::slurm::query::Slurm;
use crate::slurm::text::{
    is_beamtime_plugin, parse_plugstack, plugstack_config, proctrack_type, PlugstackLine,
};

/// Where the plugin is configured and with what, as this host's Slurm sees it.
pub struct PluginSetup {
    pub conf_file: PathBuf,
    /// The 1-based number of the plugin's line in `conf_file`.
    pub line: usize,
    /// The plugin's path as the line gives it.
    pub path: String,
    pub required: bool,
    /// The line's arguments, or why the plugin refuses every `--beamtime` job over them.
    pub config: Result<UsableLine, BadLine>,
    /// slurm.conf's `ProctrackType`, from the same `scontrol show config`.
    pub proctrack: Option<String>,
}

impl PluginSetup {
    /// `file:line`, as editors and admins' messages point at a line.
    pub fn location(&self) -> String {
        format!("{}:{}", self.conf_file.display(), self.line)
    }
}

/// A line the plugin can grant beamtime jobs with.
#[derive(Debug)]
pub struct UsableLine {
    pub config: PluginConfig,
    /// Where a beamline's data lives on the nodes: `config.source`, which
    /// the plugin cannot do without.
    pub source: PathTemplate,
}

/// A plugin line the plugin parses into a refusal of every `--beamtime` job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// `file:line`.
    pub location: String,
    /// Which argument, what is wrong with it.
    pub problem: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.problem)
    }
}

/// Why the plugin's line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// `scontrol show config` gave no answer.
    Query(SlurmError),
    NoPlugStackConfig,
    Unreadable {
        file: PathBuf,
        error: String,
    },
    /// The top file as `scontrol` names it.
    NoPluginLine {
        top: String,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Query(error) => write!(f, "{error}"),
            Unavailable::NoPlugStackConfig => {
                f.write_str("scontrol show config names no PlugStackConfig")
            }
            Unavailable::Unreadable { file, error } => write!(
                f,
                "cannot read the plugstack configuration {}: {error}",
                file.display()
            ),
            Unavailable::NoPluginLine { top } => write!(
                f,
                "no spank_beamtime plugin in {top} or the files it includes: srun and sbatch do \
                 not know --beamtime"
            ),
        }
    }
}

impl Unavailable {
    pub fn fix(&self) -> String {
        match self {
            Unavailable::Query(_) => "check that slurmctld answers (scontrol ping) and that \
                                      SLURM_CONF, if set, is right"
                .to_owned(),
            Unavailable::NoPlugStackConfig => {
                format!("{ASK_THE_ADMINS} to set PlugStackConfig in slurm.conf")
            }
            Unavailable::Unreadable { .. } => format!(
                "{ASK_THE_ADMINS}: srun and sbatch read this file as you, so it must be readable"
            ),
            Unavailable::NoPluginLine { .. } => format!(
                "{ASK_THE_ADMINS}: install the spank-beamtime package (it adds \
                 /etc/slurm/plugstack.conf.d/beamtime.conf)"
            ),
        }
    }
}

/// The plugin's line: one `scontrol show config`, then the files it names.
pub fn find_plugin(slurm: &dyn Slurm) -> Result<PluginSetup, Unavailable> {
    let config_text = slurm
        .query("scontrol", &["show", "config"])
        .map_err(Unavailable::Query)?;
    let top = plugstack_config(&config_text).ok_or(Unavailable::NoPlugStackConfig)?;
    let mut files = vec![PathBuf::from(&top)];
    let mut index = 0;
    while index < files.len() {
        let file = files[index].clone();
        index += 1;
        let text = fs::read_to_string(&file).map_err(|e| Unavailable::Unreadable {
            file: file.clone(),
            error: e.to_string(),
        })?;
        for (line, parsed) in parse_plugstack(&text) {
            match parsed {
                PlugstackLine::Include(pattern) => {
                    // A file that includes itself, directly or not, is read once.
                    for included in expand_include(&file, &pattern) {
                        if !files.contains(&included) {
                            files.push(included);
                        }
                    }
                }
                PlugstackLine::Plugin {
                    required,
                    path,
                    args,
                } if is_beamtime_plugin(&path) => {
                    let config = usable(&args).map_err(|problem| BadLine {
                        location: format!("{}:{line}", file.display()),
                        problem,
                    });
                    return Ok(PluginSetup {
                        conf_file: file,
                        line,
                        path,
                        required,
                        config,
                        proctrack: proctrack_type(&config_text),
                    });
                }
                PlugstackLine::Plugin { .. } => {}
            }
        }
    }
    Err(Unavailable::NoPluginLine { top })
}

/// The arguments as the plugin reads them, and what makes it refuse every
/// `--beamtime` job although they parse: no `source=`, or a `trusted_owners`
/// user this host does not know. A user database that does not answer is no
/// fault of the line; the metadata check reports that.
fn usable(args: &[String]) -> Result<UsableLine, String> {
    let config = PluginConfig::parse(args.iter().map(String::as_str)).map_err(|e| e.to_string())?;
    let Some(source) = config.source.clone() else {
        return Err(
            "the spank-beamtime line has no source= argument, so the plugin does not know where \
             beamline data lives on the nodes; add one, e.g. \
             source=/gpfs/beamline/{beamline}/current"
                .to_owned(),
        );
    };
    if let Err(error @ OwnerError::NoSuchUser(_)) = TrustPolicy::resolve(&config.trusted_owners) {
        let argument = args
            .iter()
            .find(|a| a.starts_with("trusted_owners="))
            .map_or("trusted_owners".to_owned(), |a| {
                a.escape_default().to_string()
            });
        return Err(format!(
            "plugstack.conf argument '{argument}': {error}; fix the spank-beamtime line in \
             plugstack.conf"
        ));
    }
    Ok(UsableLine { config, source })
}

/// Slurm's `include` takes a glob; the forms used in practice are a file or
/// `folder/*.conf`, so `*` is supported in the last component only.
fn expand_include(from: &Path, pattern: &str) -> Vec<PathBuf> {
    let pattern = match Path::new(pattern) {
        p if p.is_absolute() => p.to_path_buf(),
        p => from.parent().unwrap_or(Path::new("/")).join(p),
    };
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![pattern];
    };
    let folder = pattern.parent().unwrap_or(Path::new("/"));
    let mut found: Vec<PathBuf> = fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.len() >= prefix.len() + suffix.len() && n.starts_with(prefix) && n.ends_with(suffix)
        })
        .map(|n| folder.join(n))
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::testing::{ScratchPlugstack, PLUGIN_LINE};

    fn problem_of(scratch: &ScratchPlugstack) -> BadLine {
        match find_plugin(&scratch.slurm) {
            Ok(setup) => setup.config.expect_err("a bad line"),
            Err(unavailable) => panic!("{unavailable}"),
        }
    }

    #[test]
    fn the_line_is_found_through_includes_with_its_file_and_number() {
        let scratch = ScratchPlugstack::new("plugstack");
        scratch.line(&format!(
            "source={} target=/data/{{beamline}}",
            scratch.path("{beamline}/current")
        ));
        let setup = find_plugin(&scratch.slurm).unwrap();
        assert_eq!(setup.conf_file, scratch.drop_in());
        assert_eq!(
            setup.location(),
            format!("{}:{PLUGIN_LINE}", scratch.drop_in().display())
        );
        assert!(setup.required);
        let line = setup.config.unwrap();
        assert_eq!(line.config.target.as_str(), "/data/{beamline}");
        assert_eq!(line.source.as_str(), scratch.path("{beamline}/current"));
        assert_eq!(scratch.slurm.asked(), ["scontrol show config"]);
    }

    #[test]
    fn a_plugstack_that_includes_itself_is_read_once() {
        let scratch = ScratchPlugstack::new("plugstack");
        scratch.line("source=/srv/{beamline}");
        let top = scratch.dir.join("plugstack.conf");
        let text = fs::read_to_string(&top).unwrap();
        fs::write(&top, format!("include {}\n{text}", top.display())).unwrap();
        assert!(find_plugin(&scratch.slurm).unwrap().config.is_ok());
    }

    #[test]
    fn every_line_the_plugin_refuses_is_bad_with_the_argument_named() {
        let scratch = ScratchPlugstack::new("plugstack");
        let location = format!("{}:{PLUGIN_LINE}", scratch.drop_in().display());
        for (args, expected) in [
            (
                "source=/srv/{beamline} colour=blue",
                "plugstack.conf argument 'colour=blue': unknown key 'colour'",
            ),
            (
                "source=/srv/{beamline} check_nodes=maybe",
                "plugstack.conf argument 'check_nodes=maybe': expected yes or no",
            ),
            (
                "writable=processed",
                "the spank-beamtime line has no source= argument",
            ),
            (
                "source=/srv/{beamline} trusted_owners=root,no-such-user-bt-submit",
                "plugstack.conf argument 'trusted_owners=root,no-such-user-bt-submit': \
                 trusted_owners names user 'no-such-user-bt-submit', who does not exist on this \
                 host",
            ),
        ] {
            scratch.line(args);
            let bad = problem_of(&scratch);
            assert_eq!(bad.location, location);
            assert!(
                bad.to_string()
                    .starts_with(&format!("{location}: {expected}")),
                "{args}: {bad}"
            );
        }
    }

    #[test]
    fn why_the_line_cannot_be_read() {
        let mut scratch = ScratchPlugstack::new("plugstack");
        fs::write(scratch.drop_in(), "# nothing\noptional /x/other.so a=b\n").unwrap();
        let top = scratch.dir.join("plugstack.conf");
        assert_eq!(
            find_plugin(&scratch.slurm).err(),
            Some(Unavailable::NoPluginLine {
                top: top.display().to_string()
            })
        );

        fs::remove_file(&top).unwrap();
        let Err(Unavailable::Unreadable { file, error }) = find_plugin(&scratch.slurm) else {
            panic!("a missing top file is unreadable");
        };
        assert_eq!(file, top);
        assert!(error.contains("No such file"), "{error}");

        scratch
            .slurm
            .answer("scontrol show config", "PlugStackConfig = (null)\n");
        assert_eq!(
            find_plugin(&scratch.slurm).err(),
            Some(Unavailable::NoPlugStackConfig)
        );

        const ENOENT: i32 = 2;
        scratch.slurm.cannot_run("scontrol show config", ENOENT);
        let unavailable = find_plugin(&scratch.slurm).err().unwrap();
        assert_eq!(
            unavailable.to_string(),
            "cannot run 'scontrol show config': No such file or directory (os error 2)"
        );
        assert!(unavailable.fix().contains("scontrol ping"));
    }
}
