//! The beamtime plugin's line in the plugstack configuration Slurm uses here:
//! the file `scontrol show config` names as PlugStackConfig, then the files
//! its `include` lines name (plugstack.conf.d/*.conf), until a line loads
//! spank_beamtime.so.

use std::fs;
use std::path::{Path, PathBuf};

use beamtime::plugin_config::PluginConfig;

use super::{Problem, ASK_ADMIN};
use crate::slurm_query::Slurm;
use crate::slurm_text::{is_beamtime_plugin, parse_plugstack, plugstack_config, PlugstackLine};

/// Where the plugin is configured and with what, as this host's Slurm sees it.
pub(super) struct PluginSetup {
    pub conf_file: PathBuf,
    /// The plugin's path as the line gives it.
    pub path: String,
    pub required: bool,
    /// The line's arguments, or why the plugin would refuse them.
    pub config: Result<PluginConfig, String>,
}

pub(super) fn find_plugin(slurm: &dyn Slurm) -> Result<PluginSetup, Problem> {
    let config = slurm.query("scontrol", &["show", "config"]).map_err(|e| {
        Problem::new(
            e.to_string(),
            "check that slurmctld answers (scontrol ping) and that SLURM_CONF, if set, is right",
        )
    })?;
    let top = plugstack_config(&config).ok_or_else(|| {
        Problem::new(
            "scontrol show config names no PlugStackConfig",
            format!("{ASK_ADMIN} to set PlugStackConfig in slurm.conf"),
        )
    })?;
    let mut files = vec![PathBuf::from(&top)];
    let mut index = 0;
    while index < files.len() {
        let file = files[index].clone();
        index += 1;
        let text = fs::read_to_string(&file).map_err(|e| {
            Problem::new(
                format!(
                    "cannot read the plugstack configuration {}: {e}",
                    file.display()
                ),
                format!(
                    "{ASK_ADMIN}: srun and sbatch read this file as you, so it must be readable"
                ),
            )
        })?;
        for line in parse_plugstack(&text) {
            match line {
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
                    return Ok(PluginSetup {
                        conf_file: file,
                        path,
                        required,
                        config: PluginConfig::parse(args.iter().map(String::as_str))
                            .map_err(|e| e.to_string()),
                    })
                }
                PlugstackLine::Plugin { .. } => {}
            }
        }
    }
    Err(Problem::new(
        format!(
            "no spank_beamtime plugin in {top} or the files it includes: srun and sbatch do not \
             know --beamtime"
        ),
        format!(
            "{ASK_ADMIN}: install the spank-beamtime package (it adds \
             /etc/slurm/plugstack.conf.d/beamtime.conf)"
        ),
    ))
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
