//! The command line.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use beamtime::id::BeamtimeId;
use clap::{ArgGroup, Args, FromArgMatches, Parser, Subcommand, ValueEnum};

mod help;
use help::{
    DOCTOR_ABOUT, LONG_ABOUT, SHOW_ABOUT, WATCH_ABOUT, WATCH_RESUBMIT_ABOUT, WATCH_STATUS_ABOUT,
};

const ABOUT: &str = "Submit Slurm jobs to a beamtime's online analysis resources";

/// The exit statuses, in every `--help` and in the man pages' EXIT STATUS.
pub const EXIT_STATUS: &str = "\
Exit status:
  sbatch's, srun's or salloc's own status once it runs
  0    --dry-run or show succeeded; doctor: every check passed; watch:
       stopped by SIGINT or SIGTERM
  1    doctor: a check failed or could not be made (see its output)
  64   wrong command line; watch: another watch uses the state file, or
       the folder's place on the nodes is unknown (--map)
  65   invalid or ambiguous metadata, or your options contradict it; watch:
       the state file is damaged or belongs to another folder
  66   metadata file (or, with --remote, the ssh key) not found or not
       readable; watch: the folder to watch cannot be opened
  68   --remote: none of the reserved nodes answered over ssh
  69   the beamtime has no online analysis resources yet; watch: every
       submission was refused for good for --give-up-after seconds
  74   output could not be written; watch: the state file could not be
       written (the watch stops rather than risk submitting a file twice)
  77   --remote: the node's host key is not in known_hosts or has changed,
       the node refused the beamtime's key, or the key file is open to others
  78   invalid search path (BEAMTIME_METADATA_PATH or the config file), or a
       plugstack line the plugin cannot use
  126  sbatch/srun/salloc (or ssh, or sbatch on the node) could not be run
  127  sbatch/srun/salloc (or ssh, or sbatch on the node) is not on PATH";

#[derive(Debug, Parser)]
#[command(
    name = "bt-submit",
    // The commit and the Slurm release the package was built for (build.rs).
    version = env!("BT_SUBMIT_VERSION"),
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_STATUS,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub mode: Option<Mode>,
    #[command(flatten)]
    pub submit: SubmitArgs,
}

#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Submit a batch script with sbatch (the default)
    #[command(after_help = EXIT_STATUS)]
    Sbatch(SubmitArgs),
    /// Run a command, or an interactive shell with --pty, with srun
    #[command(after_help = EXIT_STATUS)]
    Srun(SubmitArgs),
    /// Get an interactive allocation with salloc
    #[command(after_help = EXIT_STATUS)]
    Salloc(SubmitArgs),
    /// Show the beamtime: window, nodes, partition, reservations, how to log in, its phase
    #[command(long_about = SHOW_ABOUT, after_help = EXIT_STATUS)]
    Show(ShowArgs),
    /// Check, in order, everything that decides whether a beamtime job will run
    #[command(long_about = DOCTOR_ABOUT, after_help = EXIT_STATUS)]
    Doctor(DoctorArgs),
    /// Submit one batch job per new file in a folder, once the file is complete, exactly once
    #[command(long_about = WATCH_ABOUT, after_help = EXIT_STATUS)]
    Watch(WatchCommand),
}

/// `bt-submit watch DIR -- …`, or one of its subcommands on a watch's state.
/// Written out rather than derived: clap's derive takes an optional
/// flattened struct as absent when it flattens one itself ([`Source`]), so
/// `Option<WatchArgs>` would never be there.
#[derive(Debug)]
pub enum WatchCommand {
    /// The watch itself.
    Watch(WatchArgs),
    /// A subcommand on a watch's state.
    On(WatchAction),
}

impl FromArgMatches for WatchCommand {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        WatchCommand::from_arg_matches_mut(&mut matches.clone())
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = WatchCommand::from_arg_matches(matches)?;
        Ok(())
    }

    fn from_arg_matches_mut(matches: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
        if matches.subcommand().is_some() {
            WatchAction::from_arg_matches_mut(matches).map(WatchCommand::On)
        } else {
            WatchArgs::from_arg_matches_mut(matches).map(WatchCommand::Watch)
        }
    }

    fn update_from_arg_matches_mut(
        &mut self,
        matches: &mut clap::ArgMatches,
    ) -> Result<(), clap::Error> {
        *self = WatchCommand::from_arg_matches_mut(matches)?;
        Ok(())
    }
}

impl Args for WatchCommand {
    fn augment_args(command: clap::Command) -> clap::Command {
        WatchAction::augment_subcommands(WatchArgs::augment_args(command))
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true)
            .arg_required_else_help(true)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        WatchCommand::augment_args(command)
    }
}

#[derive(Debug, Subcommand)]
pub enum WatchAction {
    /// Per file of a watch: its job and the job's state in Slurm, attempts, the last error; totals
    #[command(long_about = WATCH_STATUS_ABOUT, after_help = EXIT_STATUS)]
    Status(WatchStateArgs),
    /// Submit again, once each, the files whose jobs failed (with the watch stopped)
    #[command(long_about = WATCH_RESUBMIT_ABOUT, after_help = EXIT_STATUS)]
    Resubmit(WatchStateArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which_watch").args(["folder", "state"]).required(true)))]
pub struct WatchStateArgs {
    #[command(flatten)]
    pub source: Source,

    /// With DIR: the watch submits each scan folder (as it was started)
    #[arg(long, value_enum, value_name = "WHAT", default_value = "file")]
    pub each: Each,

    /// The watch's state file [default: the one of DIR, as the watch chooses it]
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// The state is in a folder others can write, as the watch was told (resubmit)
    #[arg(long)]
    pub shared_state: bool,

    /// Ask Slurm on one of the beamtime's reserved nodes over ssh, as the beamtime account
    #[arg(long)]
    pub remote: bool,

    /// With --remote: log in to this reserved node [default: the first that answers]
    #[arg(long, value_name = "NODE", requires = "remote")]
    pub node: Option<String>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// The watched folder
    #[arg(value_name = "DIR", conflicts_with = "state")]
    pub folder: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub source: Source,

    /// Check the road of 'bt-submit --remote' from this computer instead
    #[arg(long)]
    pub remote: bool,

    /// With --remote: check this one of the reserved nodes [default: all]
    #[arg(long, value_name = "NODE", requires = "remote")]
    pub node: Option<String>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct Source {
    /// The beamtime (or commissioning) id whose metadata file to use
    #[arg(long, value_name = "ID", value_parser = BeamtimeId::parse)]
    pub beamtime: Option<BeamtimeId>,

    /// The metadata file to use
    #[arg(long, value_name = "FILE", conflicts_with = "beamtime")]
    pub metadata: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("dry_or_remote").args(["dry_run", "remote"]).multiple(true)))]
pub struct SubmitArgs {
    #[command(flatten)]
    pub source: Source,

    /// Use this one of the beamtime's reservations [default: the first]
    #[arg(long, value_name = "NAME")]
    pub reservation: Option<String>,

    /// Print the command, shell-quoted on one line, instead of running it
    #[arg(long)]
    pub dry_run: bool,

    /// Submit over ssh from one of the beamtime's reserved nodes, as its account (sbatch only)
    #[arg(long)]
    pub remote: bool,

    /// With --remote: log in to this reserved node [default: the first that answers]
    #[arg(long, value_name = "NODE", requires = "remote")]
    pub node: Option<String>,

    /// Output format of --dry-run and --remote
    #[arg(long, value_enum, default_value_t = Format::Text, requires = "dry_or_remote")]
    pub format: Format,

    /// Options for sbatch/srun/salloc, then the script or command and its arguments
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub source: Source,

    /// Use this one of the beamtime's reservations [default: the first]
    #[arg(long, value_name = "NAME")]
    pub reservation: Option<String>,

    /// One job per new file below DIR, or per new scan folder directly below it
    #[arg(long, value_enum, value_name = "WHAT", default_value = "file")]
    pub each: Each,

    /// Submit files (with --each folder: folders) whose name matches GLOB (*, ?, [0-9], {h5,cbf}); repeat for several
    #[arg(long = "pattern", value_name = "GLOB", default_value = "*")]
    pub patterns: Vec<String>,

    /// With --each folder: a scan folder is complete once it holds a file NAME, not before
    #[arg(long, value_name = "NAME", value_parser = done_file_name)]
    pub done_file: Option<String>,

    /// A file unchanged in size and mtime for this long is complete
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    pub settle: Duration,

    /// Look through the folder this often (inotify or not)
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = seconds)]
    pub poll_interval: Duration,

    /// Keep at most N of the watch's jobs pending or running (as squeue says); 0: no limit
    #[arg(long, value_name = "N", default_value = "50")]
    pub max_in_flight: u32,

    /// The watched folder FROM is TO on the jobs' nodes ({} and {path} are then below TO); repeat for several
    #[arg(long = "map", value_name = "FROM=TO", value_parser = crate::commands::watch::parse_map)]
    pub maps: Vec<(PathBuf, PathBuf)>,

    /// List what would be submitted now, with each command; submit nothing, write no state
    #[arg(long)]
    pub dry_run: bool,

    /// Start from now: record what is already in DIR as skipped, never to be submitted
    #[arg(long)]
    pub skip_existing: bool,

    /// The state file [default: $XDG_STATE_HOME/bt-submit/watch-<DIR name>-<hash>.json]
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Allow a state folder that others can write (a team's shared folder): they could then change the state
    #[arg(long)]
    pub shared_state: bool,

    /// Stop (exit status 69) once every submission for this long was refused in a way no retry can fix
    #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = seconds)]
    pub give_up_after: Duration,

    /// Do not use inotify: find files by looking through the folder only
    #[arg(long)]
    pub no_inotify: bool,

    /// Submit over ssh from one of the beamtime's reserved nodes, as its account (squeue there too)
    #[arg(long)]
    pub remote: bool,

    /// With --remote: log in to this reserved node [default: the first that answers]
    #[arg(long, value_name = "NODE", requires = "remote")]
    pub node: Option<String>,

    /// The log: a line per event, or with json one JSON object per line per event
    #[arg(long, value_enum, default_value_t = Format::Text, conflicts_with = "dry_run")]
    pub format: Format,

    /// The folder to watch
    #[arg(value_name = "DIR")]
    pub folder: PathBuf,

    /// After --: options for sbatch, then the script and its arguments ({} = the file)
    #[arg(value_name = "SBATCH_ARGS", last = true, required = true)]
    pub args: Vec<OsString>,
}

/// A name of a file in a scan folder, not a path.
fn done_file_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text == "." || text == ".." || text.contains('/') {
        return Err(format!(
            "'{text}' is not a file name (the done file is looked for directly in each scan folder)"
        ));
    }
    Ok(text.to_owned())
}

/// A number of seconds, fractions allowed (`0.5`).
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&value) {
        return Err(format!("'{text}' is not between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(value))
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub source: Source,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `bt-submit watch --each`: what one job is submitted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Each {
    /// Every new file below the folder whose name matches `--pattern`.
    File,
    /// Every new folder directly below it whose name matches: a scan, with
    /// everything in it.
    Folder,
}
