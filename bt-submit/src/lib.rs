//! `bt-submit`: submit Slurm jobs to a beamtime's online analysis resources.
//!
//! ```text
//! bt-submit [OPTIONS] [--] [SBATCH_OPTIONS...] SCRIPT [ARGS...]
//! bt-submit sbatch|srun|salloc [OPTIONS] [--] [PROGRAM_OPTIONS...] [SCRIPT|COMMAND [ARGS...]]
//! bt-submit show [--beamtime ID | --metadata FILE] [--format json]
//! bt-submit doctor [--beamtime ID | --metadata FILE] [--remote [--node NODE]] [--format json]
//! bt-submit watch [OPTIONS] DIR -- [SBATCH_OPTIONS...] SCRIPT [ARGS...]
//! ```
//!
//! The metadata file (from `--metadata`, `--beamtime` or the working
//! directory; site/settings.rs says where the search path for an id comes from)
//! gives the partition, reservation and beamtime id; bt-submit puts
//! `--partition=… --reservation=… --beamtime=…` before the user's own options
//! and replaces itself with the program. `--dry-run` prints the command
//! instead, shell-quoted on one line, or with `--format json` as
//! `{"program", "args", "reservation", "beamtime"}`.
//!
//! Exit statuses (also in `--help`): the program's own once it runs; 0 for a
//! successful `--dry-run` or `show`, or when every `doctor` check passed; 1
//! when a `doctor` check failed; 64 wrong command line; 65 invalid or
//! ambiguous metadata, or the user's options contradict it; 66 metadata (or,
//! with `--remote`, the ssh key) not found or unreadable; 68 `--remote`: no
//! reserved node answered; 69 no online resources yet; 74 output failed; 77
//! `--remote`: the node's host key is unknown or changed, the key was refused
//! or is open to others; 78 invalid search path configuration, or a plugstack
//! line the plugin cannot use; 126 the program (or ssh) could not be run; 127
//! the program (or ssh) is not on PATH.
//!
//! `--remote` runs the same sbatch command on a reserved node over ssh
//! (slurm/host.rs, slurm/ssh.rs) and prints the job id sbatch gave there.

// Public for xtask, which makes the man pages and completions from it.
pub mod cli;
mod commands;
mod failure;
mod output;
mod plan;
mod site;
// Public for the real-Slurm tests, which read scontrol's records with its parser.
pub mod slurm;
// Public for bench/ alone (commands/watch/mod.rs says why), not for other users.
#[doc(hidden)]
pub use commands::watch::state_for_bench as watch_state;
#[cfg(test)]
mod testing;

use std::env;
use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use cli::{Cli, Mode};
use failure::{Failure, Status};
use output::{tell, write_stdout};
use site::settings::Settings;
use slurm::host::Host;
use slurm::options::Program;

/// The whole program; `main.rs` only calls this. Every way out returns here
/// (nothing calls `process::exit`), so the exit status is decided in one place.
pub fn main() -> ExitCode {
    match run() {
        Ok(status) => status,
        Err(failure) => {
            tell(&format!("{failure}\n"));
            failure.status.into()
        }
    }
}

fn run() -> Result<ExitCode, Failure> {
    let argv: Vec<OsString> = env::args_os().skip(1).collect();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return command_line_error(error, &argv),
    };
    let environment = |name: &str| env::var_os(name);
    let settings = Settings::new(&Host::Local, &environment);
    let submit = |program: Program, subcommand: Option<&str>, args: cli::SubmitArgs| {
        commands::mistakes::check(
            program,
            &commands::mistakes::Typed {
                argv: &argv,
                subcommand,
                args: &args.args,
            },
        )?;
        commands::submit::run(program, args, &settings)
    };
    match cli.mode {
        None => submit(Program::Sbatch, None, cli.submit),
        Some(Mode::Sbatch(args)) => submit(Program::Sbatch, Some("sbatch"), args),
        Some(Mode::Srun(args)) => submit(Program::Srun, Some("srun"), args),
        Some(Mode::Salloc(args)) => submit(Program::Salloc, Some("salloc"), args),
        Some(Mode::Show(args)) => commands::show::run(&args, &settings),
        Some(Mode::Doctor(args)) => commands::doctor::run(&args, &settings),
        Some(Mode::Watch(command)) => commands::watch::command::dispatch(command, &settings),
    }
}

/// `--help` and `--version` are answers, not errors; a bare `bt-submit`
/// shows the help as a usage error; anything else is a two-line failure
/// pointing at the help of the subcommand that was used.
fn command_line_error(error: clap::Error, argv: &[OsString]) -> Result<ExitCode, Failure> {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            write_stdout(error.render().to_string().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            tell(&error.render().to_string());
            Ok(Status::Usage.into())
        }
        _ => {
            // clap explains over several lines; keep its first paragraph on
            // one line so every failure has the same two-line shape, and its
            // tips ("a similar argument exists", "to pass it as a value, use
            // '-- x'") before the pointer to the help.
            let rendered = error.render().to_string();
            let first_paragraph: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = first_paragraph.join(" ");
            let tips: Vec<&str> = rendered
                .lines()
                .filter_map(|line| line.trim().strip_prefix("tip: "))
                .collect();
            let help = match subcommand_used(argv) {
                Some(name) => format!("run 'bt-submit {name} --help' for usage"),
                None => "run 'bt-submit --help' for usage".to_owned(),
            };
            let fix = tips
                .into_iter()
                .chain(std::iter::once(help.as_str()))
                .collect::<Vec<_>>()
                .join("; ");
            Err(Failure::new(
                Status::Usage,
                message.strip_prefix("error: ").unwrap_or(&message),
                fix,
            ))
        }
    }
}

/// The subcommand a failed command line used: its first word that is not one
/// of bt-submit's options, if that names one.
fn subcommand_used(argv: &[OsString]) -> Option<String> {
    let first = argv
        .iter()
        .map(|arg| arg.to_string_lossy())
        .find(|arg| !arg.starts_with('-'))?;
    Cli::command()
        .get_subcommands()
        .any(|subcommand| subcommand.get_name() == first)
        .then(|| first.into_owned())
}
