//! The command line.

use std::ffi::OsString;
use std::path::PathBuf;

use beamtime::id::BeamtimeId;
use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Submit Slurm jobs to a beamtime's online analysis resources";

const LONG_ABOUT: &str = "\
Submit Slurm jobs to a beamtime's online analysis resources.

bt-submit reads the beamtime metadata file and runs sbatch (or srun, salloc)
with --partition, --reservation and --beamtime taken from it, followed by
your own options and script. It replaces itself with that program, so its
output and exit status are yours.

The first word chooses what to do:
  bt-submit [OPTIONS] [--] [SBATCH_OPTIONS...] SCRIPT [ARGS...]
  bt-submit sbatch [OPTIONS] [--] [SBATCH_OPTIONS...] SCRIPT [ARGS...]
  bt-submit srun   [OPTIONS] [--] [SRUN_OPTIONS...] COMMAND [ARGS...]
  bt-submit salloc [OPTIONS] [--] [SALLOC_OPTIONS...] [COMMAND [ARGS...]]
  bt-submit show   [--beamtime ID | --metadata FILE] [--format json]
  bt-submit doctor [--beamtime ID | --metadata FILE] [--format json]
bt-submit's own options come right after that word; the first argument that
is not one of them starts the options for sbatch/srun/salloc, and so does --.
(A batch script called sbatch, srun, salloc or show is given as ./NAME.)

Where each setting comes from, the first that is set winning:

  the metadata file   1. --metadata FILE
                      2. with --beamtime ID, the first search path set of:
                         BEAMTIME_METADATA_PATH, colon-separated patterns
                         such as /gpfs/current/beamtime-metadata-{id}.json
                         (* matches within one path component); the
                         metadata_path lines of $BT_SUBMIT_CONFIG or
                         /etc/beamtime/bt-submit.conf; the metadata= patterns
                         of the spank_beamtime line in Slurm's plugstack
                         (PlugStackConfig from 'scontrol show config', with its
                         include lines and plugstack.conf.d); the facility's
                         usual places
                      3. without either option, the metadata file in the
                         current folder or the nearest folder above it
  the beamline path   (show, --dry-run --format json) the target= of that
                      plugstack line, else /beamline/<beamline>/current

The plugstack is read (one 'scontrol show config') only for a setting that
the sources above it leave open; if it cannot be read (no scontrol, no
plugin line), the defaults hold. A plugin line the plugin cannot use (an
unknown key, a bad value, no source=, an unknown trusted_owners user)
refuses every --beamtime job, so bt-submit stops with status 78 when it
reads one.

Your own --partition/-p, --reservation and --beamtime options must agree with
the metadata file; if they do not, nothing is submitted.

When the beamtime has several reservations and you give -N/--nodes or
-C/--constraint but no --reservation, bt-submit asks the controller which
nodes each reservation holds, takes the first one that can satisfy them, and
says which it chose.";

const EXIT_STATUS: &str = "\
Exit status:
  sbatch's, srun's or salloc's own status once it runs
  0    --dry-run or show succeeded; doctor: every check passed
  1    doctor: a check failed or could not be made (see its output)
  64   wrong command line
  65   invalid or ambiguous metadata, or your options contradict it
  66   metadata file not found or not readable
  69   the beamtime has no online analysis resources yet
  74   output could not be written
  78   invalid search path (BEAMTIME_METADATA_PATH or the config file), or a
       plugstack line the plugin cannot use
  126  sbatch/srun/salloc could not be run
  127  sbatch/srun/salloc is not on PATH";

#[derive(Debug, Parser)]
#[command(
    name = "bt-submit",
    version,
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
    Doctor(ShowArgs),
}

const SHOW_ABOUT: &str = "\
Show the beamtime: window, nodes, partition, reservations, how to log in, and
its phase, which says what its --beamtime jobs get:

  online               the beamline folder (the plugin's source=) holds the
                       beamtime's metadata file: jobs see the beamline
  pre-start            it does not exist yet, or holds another beamtime's
                       file (the beamtime has not started on the beamline, or
                       the beamline has moved on): jobs run without the
                       beamline, with BEAMTIME_PHASE=pre-start, unless the
                       site refuses them (prestart=refuse)
  no-online-resources  the metadata has no onlineAnalysis block yet: jobs are
                       refused

The phase is decided as the plugin decides it on the node, from the same
folder; where this host does not see that folder (or may not look into it),
show says that the node decides. --format json prints the same fields as
JSON, the phase as \"phase\" (null when the node decides), \"jobs\" (\"run\",
\"refused\" or null) and \"phaseNote\".";

const DOCTOR_ABOUT: &str = "\
Check, in order, everything that decides whether a beamtime job will run,
and print one line per check (ok, FAIL or skip) with a fix for each failure:

  plugstack-line      only when the plugin cannot use its line in Slurm's
                      plugstack (an unknown key, a bad value, no source=, an
                      unknown trusted_owners user): that line, file:line, and
                      the argument, first, since every --beamtime job is
                      refused over it
  metadata            the metadata file is where the plugin looks (its
                      metadata= patterns) and is trusted (owned by one of
                      its trusted_owners, not writable by others)
  online-resources    the file has a complete onlineAnalysis block
  user                you are the beamtime's account (userAccount)
  reservations        its reservations exist and are ACTIVE
  reservation-access  their Users=/Accounts= admit you
  nodes               its reservedNodes are up and not drained
  partition           its partition is UP
  plugin              the spank_beamtime plugin is in Slurm's plugstack
                      configuration (PlugStackConfig and its includes) and
                      srun here offers --beamtime
  beamline-source     the beamtime's phase, from the beamline folder (the
                      plugin's source=), reached without symbolic links:
                      online when it holds the beamtime's metadata file,
                      owned by a trusted owner and not writable by others,
                      as the plugin requires before it mounts it; pre-start
                      when it does not exist yet or holds another
                      beamtime's, which passes (jobs run without the
                      beamline until the beamtime starts) unless the site
                      refuses such jobs (prestart=refuse); a folder this
                      host does not see is left to the node
  task-lifetime       Slurm tracks every process of a job
                      (ProctrackType=proctrack/cgroup); any other
                      ProctrackType is a warning for the admins: a process
                      that leaves its session outlives its job with the
                      beamline it was shown (a warning does not fail)

A check that needs an earlier one that failed is skipped. The plugstack
configuration must be readable, as it is for srun and sbatch. The metadata
check says where it searched: the plugin's metadata= patterns when its line
can be used (bt-submit's own search path does not change where the plugin
looks), else bt-submit's search path (see bt-submit --help), trusting only
root.";

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
pub struct SubmitArgs {
    #[command(flatten)]
    pub source: Source,

    /// Use this one of the beamtime's reservations [default: the first]
    #[arg(long, value_name = "NAME")]
    pub reservation: Option<String>,

    /// Print the command, shell-quoted on one line, instead of running it
    #[arg(long)]
    pub dry_run: bool,

    /// Output format of --dry-run
    #[arg(long, value_enum, default_value_t = Format::Text, requires = "dry_run")]
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
pub struct ShowArgs {
    #[command(flatten)]
    pub source: Source,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}
