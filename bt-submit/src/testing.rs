//! A plugstack configuration in a scratch folder, as Slurm lays it out
//! (plugstack.conf including plugstack.conf.d/*.conf), and a Slurm whose
//! `scontrol show config` names it: for the unit tests of everything that
//! reads the plugin's line.

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;

use tempfile::TempDir;

use crate::slurm::query::canned::Canned;

pub struct ScratchPlugstack {
    /// Removed with the scratch folder.
    _scratch: TempDir,
    pub dir: PathBuf,
    pub slurm: Canned,
    /// Environment variables the code under test sees instead of the real ones.
    pub environment: Vec<(String, OsString)>,
}

/// The plugin's line in [`ScratchPlugstack::drop_in`] is its second line.
pub const PLUGIN_LINE: usize = 2;

impl ScratchPlugstack {
    pub fn new(label: &str) -> ScratchPlugstack {
        let scratch = tempfile::Builder::new()
            .prefix(&format!("bt-{label}-"))
            .tempdir()
            .unwrap();
        let dir = scratch.path().to_owned();
        fs::create_dir_all(dir.join("plugstack.conf.d")).unwrap();
        fs::write(dir.join("spank_beamtime.so"), "").unwrap();
        fs::write(
            dir.join("plugstack.conf"),
            format!("include {}/plugstack.conf.d/*.conf\n", dir.display()),
        )
        .unwrap();
        let mut slurm = Canned::default();
        slurm.answer(
            "scontrol show config",
            format!(
                "Configuration data as of 2026-11-26T13:19:28\nPlugStackConfig         = {}\n",
                dir.join("plugstack.conf").display()
            ),
        );
        // A config file that names no pattern, so the host's own
        // /etc/beamtime/bt-submit.conf cannot change what a test finds.
        let config = dir.join("bt-submit.conf");
        fs::write(&config, "# no metadata_path\n").unwrap();
        ScratchPlugstack {
            _scratch: scratch,
            dir,
            slurm,
            environment: vec![("BT_SUBMIT_CONFIG".to_owned(), config.into())],
        }
    }

    pub fn drop_in(&self) -> PathBuf {
        self.dir.join("plugstack.conf.d/beamtime.conf")
    }

    /// The plugin's line with these arguments, after a comment.
    pub fn line(&self, args: &str) {
        fs::write(
            self.drop_in(),
            format!(
                "# spank-beamtime\nrequired {}/spank_beamtime.so {args}\n",
                self.dir.display()
            ),
        )
        .unwrap();
    }

    /// `${dir}/path`, for arguments that name places in the scratch folder.
    pub fn path(&self, relative: &str) -> String {
        self.dir.join(relative).display().to_string()
    }

    pub fn set(&mut self, name: &str, value: impl Into<OsString>) {
        self.environment.retain(|(key, _)| key != name);
        self.environment.push((name.to_owned(), value.into()));
    }

    pub fn variable(&self, name: &str) -> Option<OsString> {
        self.environment
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}
