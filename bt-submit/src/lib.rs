//! `bt-submit`: submit Slurm jobs to a beamtime's online analysis resources.
//!
//! ```text
//! bt-submit [OPTIONS] [--] [SBATCH_OPTIONS...] SCRIPT [ARGS...]
//! bt-submit sbatch|srun|salloc [OPTIONS] [--] [PROGRAM_OPTIONS...] [SCRIPT|COMMAND [ARGS...]]
//! bt-submit show [--beamtime ID | --metadata FILE] [--format json]
//! bt-submit doctor [--beamtime ID | --metadata FILE] [--format json]
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
//! (slurm/ssh.rs, slurm/submit.rs) and prints the job id sbatch gave there.

// Public for xtask, which makes the man pages and completions from it.
pub mod cli;
mod commands;
mod failure;
mod plan;
mod site;
// Public for the real-Slurm tests, which read scontrol's records with its parser.
pub mod slurm;
#[cfg(test)]
mod testing;

use std::env;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use beamtime::discovery::{find_by_id, find_from_dir, read_metadata_file, DiscoveryError};
use beamtime::metadata::Metadata;
use beamtime::users::LookupError;
use clap::error::ErrorKind;
use clap::Parser;

use cli::{Cli, Format, Mode, Source, SubmitArgs, WatchArgs};
use commands::{doctor, report, watch};
use failure::{Failure, Status};
use plan::{choose, plan, Request};
use site::phase;
use site::settings::{Origin, Settings};
use slurm::options::{self as slurm_options, Program};
use slurm::query::{Slurm, SlurmCommands};
use slurm::ssh::{self, Remote};
use slurm::submit::{SubmitError, Submitter};

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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return command_line_error(error),
    };
    let environment = |name: &str| env::var_os(name);
    let settings = Settings::new(&SlurmCommands, &environment);
    match cli.mode {
        None => submit(Program::Sbatch, cli.submit, &settings),
        Some(Mode::Sbatch(args)) => submit(Program::Sbatch, args, &settings),
        Some(Mode::Srun(args)) => submit(Program::Srun, args, &settings),
        Some(Mode::Salloc(args)) => submit(Program::Salloc, args, &settings),
        Some(Mode::Show(args)) => {
            let metadata = load_metadata(&args.source, &settings)?;
            let target = settings.target()?;
            let standing = phase::from_settings(&metadata, &settings)?;
            match args.format {
                Format::Text => {
                    write_stdout(report::summary(&metadata, &target, &standing).as_bytes())?
                }
                Format::Json => write_json(&report::beamtime_json(&metadata, &target, &standing))?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Mode::Doctor(args)) => run_doctor(&args.source, args.format, &settings),
        Some(Mode::Watch(args)) => run_watch(args, &settings),
    }
}

fn run_watch(args: WatchArgs, settings: &Settings) -> Result<ExitCode, Failure> {
    let user = slurm_options::scan(Program::Sbatch, &args.args);
    if !user.comments.is_empty() {
        return Err(Failure::new(
            Status::Usage,
            "bt-submit watch gives each job its own --comment, by which it counts its jobs and \
             finds them after a crash; it cannot take yours",
            "leave --comment out of the sbatch options",
        ));
    }
    if args.done_file.is_some() && args.each != watch::Each::Folder {
        return Err(Failure::new(
            Status::Usage,
            "--done-file tells when a scan folder is complete; this watch submits each file",
            "add --each folder to submit one job per scan folder, or leave --done-file out",
        ));
    }
    let folder = absolute(&args.folder)?.canonicalize().map_err(|error| {
        Failure::new(
            Status::NoInput,
            format!("cannot watch {}: {error}", args.folder.display()),
            "name an existing folder you may read",
        )
    })?;
    if !folder.is_dir() {
        return Err(Failure::new(
            Status::NoInput,
            format!("cannot watch {}: it is not a folder", folder.display()),
            "name the folder the files arrive in",
        ));
    }
    let state = match args.state {
        Some(path) => absolute(&path)?,
        None => watch::default_state_file(&folder, args.each, &|name| env::var_os(name))
            .ok_or_else(|| {
                Failure::new(
                    Status::Usage,
                    "no place for the watch's state file: neither XDG_STATE_HOME nor HOME is set",
                    "give the state file with --state FILE",
                )
            })?,
    };
    let metadata = load_metadata(&args.source, settings)?;
    let submitter = submitter_for(
        Program::Sbatch,
        &metadata,
        args.remote,
        args.node.as_deref(),
    )?;
    let invocation = planned(
        Program::Sbatch,
        &metadata,
        &submitter,
        args.reservation,
        args.args,
        settings,
    )?;
    let options = watch::Options {
        folder,
        each: args.each,
        done_file: args.done_file,
        pattern: args.pattern,
        settle: args.settle,
        poll_interval: args.poll_interval,
        max_in_flight: args.max_in_flight.map(|n| n as usize),
        state,
        inotify: !args.no_inotify,
        template: invocation.args,
    };
    watch::run(&options, &submitter)?;
    Ok(ExitCode::SUCCESS)
}

fn run_doctor(source: &Source, format: Format, settings: &Settings) -> Result<ExitCode, Failure> {
    let target = match (&source.metadata, &source.beamtime) {
        (Some(path), _) => doctor::Target::File(absolute(path)?),
        (None, Some(id)) => doctor::Target::Id(id.clone()),
        (None, None) => doctor::Target::FromDirectory(current_dir()?),
    };
    let who = doctor::Identity {
        name: current_user(),
        uid: beamtime::users::current_uid(),
        uid_of: &beamtime::users::uid_of,
    };
    let report = doctor::examine(&target, settings, &who);
    match format {
        Format::Text => write_stdout(report.text().as_bytes())?,
        Format::Json => write_json(&report.json())?,
    }
    // A failed check is no error of bt-submit's: the report on stdout
    // already says what failed and what to do.
    Ok(if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--help` and `--version` are answers, not errors; a bare `bt-submit`
/// shows the help as a usage error; anything else is a two-line failure.
fn command_line_error(error: clap::Error) -> Result<ExitCode, Failure> {
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
            // one line so every failure has the same two-line shape.
            let rendered = error.render().to_string();
            let first_paragraph: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = first_paragraph.join(" ");
            Err(Failure::new(
                Status::Usage,
                message.strip_prefix("error: ").unwrap_or(&message),
                "run 'bt-submit --help' for usage",
            ))
        }
    }
}

/// Who runs bt-submit, by login name, as the user database says.
fn current_user() -> Result<Option<String>, LookupError> {
    beamtime::users::current().map(|account| account.map(|a| a.name))
}

/// Where the job goes: this host, or with `--remote` a reserved node over ssh.
fn submitter_for(
    program: Program,
    metadata: &Metadata,
    remote: bool,
    node: Option<&str>,
) -> Result<Submitter, Failure> {
    Ok(if remote {
        Submitter::Remote(remote_target(program, metadata, node)?)
    } else {
        Submitter::Local
    })
}

/// The command for the user's arguments, from the metadata (and the
/// controller, asked where the job is submitted, to choose a reservation);
/// its warnings told on stderr.
fn planned(
    program: Program,
    metadata: &Metadata,
    submitter: &Submitter,
    reservation: Option<String>,
    user_args: Vec<std::ffi::OsString>,
    settings: &Settings,
) -> Result<plan::Invocation, Failure> {
    // Over ssh the job is submitted as the beamtime account, whoever runs bt-submit.
    let me = match submitter {
        Submitter::Remote(_) => Ok(metadata
            .online
            .ready()
            .map(|online| online.user_account.clone())),
        Submitter::Local => current_user(),
    };
    let mut request = Request {
        program,
        reservation,
        user_args,
    };
    let mut invocation = plan(&request, metadata, &me)?;
    // Only a request that is valid otherwise costs a controller query, made
    // where the job is submitted.
    if request.reservation.is_none() {
        let slurm: &dyn Slurm = match submitter {
            Submitter::Remote(remote) => remote,
            Submitter::Local => settings.slurm(),
        };
        if let Some(chosen) =
            reservation_for_resources(program, &request.user_args, metadata, slurm)?
        {
            request.reservation = Some(chosen);
            invocation = plan(&request, metadata, &me)?;
        }
    }
    for warning in &invocation.warnings {
        tell(&format!(
            "bt-submit: warning: {}\nhint: {}\n",
            warning.message, warning.hint
        ));
    }
    Ok(invocation)
}

fn submit(program: Program, args: SubmitArgs, settings: &Settings) -> Result<ExitCode, Failure> {
    let metadata = load_metadata(&args.source, settings)?;
    let submitter = submitter_for(program, &metadata, args.remote, args.node.as_deref())?;
    let invocation = planned(
        program,
        &metadata,
        &submitter,
        args.reservation,
        args.args,
        settings,
    )?;
    if args.dry_run {
        return dry_run(&invocation, &submitter, args.format, &metadata, settings);
    }
    if let Submitter::Remote(_) = &submitter {
        return submit_remotely(&invocation, &submitter, args.format);
    }
    let error = Command::new(program.name()).args(&invocation.args).exec();
    Err(if error.kind() == io::ErrorKind::NotFound {
        Failure::new(
            Status::NotFound,
            format!(
                "{} not found on PATH; nothing was submitted",
                program.name()
            ),
            "run bt-submit where the Slurm commands are installed, or add them to PATH, or \
             submit from a reserved node with --remote",
        )
    } else {
        Failure::new(
            Status::CannotExecute,
            format!(
                "cannot run {}: {error}; nothing was submitted",
                program.name()
            ),
            format!("check the {} found on PATH", program.name()),
        )
    })
}

/// `--remote`: sbatch only, on the beamtime's reserved nodes as its account.
fn remote_target(
    program: Program,
    metadata: &Metadata,
    node: Option<&str>,
) -> Result<Remote, Failure> {
    if program != Program::Sbatch {
        return Err(Failure::new(
            Status::Usage,
            format!(
                "--remote submits batch jobs only; {} is interactive and needs your terminal",
                program.name()
            ),
            format!(
                "run 'bt-submit {}' on a reserved node, logged in there as the beamtime \
                 account ('bt-submit show' prints how)",
                program.name()
            ),
        ));
    }
    let online = metadata
        .online
        .ready()
        .ok_or_else(|| plan::not_ready(metadata))?;
    Remote::new(online, node)
}

fn dry_run(
    invocation: &plan::Invocation,
    submitter: &Submitter,
    format: Format,
    metadata: &Metadata,
    settings: &Settings,
) -> Result<ExitCode, Failure> {
    match (format, submitter) {
        (Format::Text, Submitter::Local) => write_stdout(&report::command_line(invocation))?,
        (Format::Text, Submitter::Remote(_)) => write_stdout(&ssh::shell_line(
            &submitter.sbatch_command(&invocation.args),
        ))?,
        (Format::Json, _) => {
            let target = settings.target()?;
            let standing = phase::from_settings(metadata, settings)?;
            let mut json = report::dry_run_json(invocation, metadata, &target, &standing)?;
            if let (Submitter::Remote(remote), serde_json::Value::Object(fields)) =
                (submitter, &mut json)
            {
                fields.insert("node".to_owned(), remote.first_node().into());
                fields.insert(
                    "command".to_owned(),
                    report::strings_json(&submitter.sbatch_command(&invocation.args))?.into(),
                );
            }
            write_json(&json)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Submits over ssh and hands back what sbatch said: the job id on stdout as
/// sbatch prints it (or as JSON), its warnings on stderr, its exit status.
fn submit_remotely(
    invocation: &plan::Invocation,
    submitter: &Submitter,
    format: Format,
) -> Result<ExitCode, Failure> {
    match submitter.sbatch(&invocation.args) {
        Ok(submitted) => {
            let node = submitted.node.clone().unwrap_or_default();
            match format {
                Format::Text => {
                    let cluster = submitted
                        .cluster
                        .as_ref()
                        .map(|c| format!(" on cluster {c}"))
                        .unwrap_or_default();
                    tell(&format!("bt-submit: submitted on {node}\n"));
                    write_stdout(
                        format!("Submitted batch job {}{cluster}\n", submitted.job_id).as_bytes(),
                    )?
                }
                Format::Json => {
                    let command = match submitter {
                        Submitter::Remote(remote) => remote.command(
                            &node,
                            "sbatch",
                            &slurm::submit::parsable(&invocation.args),
                        ),
                        Submitter::Local => submitter.sbatch_command(&invocation.args),
                    };
                    write_json(&serde_json::json!({
                        "jobId": submitted.job_id,
                        "cluster": submitted.cluster,
                        "node": node,
                        "command": report::strings_json(&command)?,
                    }))?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(SubmitError::Refused { status, stderr }) => {
            tell(&stderr);
            Ok(ExitCode::from(status))
        }
        Err(SubmitError::Failed(failure)) => Err(failure),
    }
}

fn current_dir() -> Result<PathBuf, Failure> {
    env::current_dir().map_err(|error| {
        Failure::new(
            Status::NoInput,
            format!("cannot tell the current folder: {error}"),
            "use --beamtime ID, or --metadata with an absolute path",
        )
    })
}

// Relative key paths in a metadata file are resolved against the file's
// folder, so the file's own path must be absolute for them to work elsewhere.
fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        current_dir()?.join(path)
    })
}

/// With `-N`/`-C` among the user's options, no reservation named and several to choose
/// from: the first one whose nodes can satisfy them (asks the controller, see plan/choose.rs).
fn reservation_for_resources(
    program: Program,
    user_args: &[std::ffi::OsString],
    metadata: &Metadata,
    slurm: &dyn Slurm,
) -> Result<Option<String>, Failure> {
    let user = slurm_options::scan(program, user_args);
    let wants = choose::Wants {
        nodes: user.nodes.last().cloned(),
        constraint: user.constraints.last().cloned(),
    };
    let Some(online) = metadata.online.ready() else {
        return Ok(None);
    };
    let usable: Vec<String> = plan::usable_reservations(metadata, online)
        .into_iter()
        .cloned()
        .collect();
    if wants.is_empty() || !user.reservations.is_empty() || usable.len() < 2 {
        return Ok(None);
    }
    let holdings = choose::ask_controller(slurm, &usable)?;
    let choice = choose::choose(&wants, &holdings, metadata.id.as_str())?;
    tell(&format!(
        "bt-submit: using reservation {} {}\n",
        choice.reservation, choice.why
    ));
    Ok(Some(choice.reservation))
}

fn load_metadata(source: &Source, settings: &Settings) -> Result<Metadata, Failure> {
    // Only an id needs the search path, and so perhaps the plugstack.
    let (path, origin) = match (&source.metadata, &source.beamtime) {
        (Some(path), _) => (absolute(path)?, None),
        (None, Some(id)) => {
            let search = settings.search_path()?;
            let path = find_by_id(&search.path, id)
                .map_err(|error| discovery_failure(error, Some(&search.origin)))?;
            (path, Some(search.origin))
        }
        (None, None) => (
            find_from_dir(&current_dir()?).map_err(|error| discovery_failure(error, None))?,
            None,
        ),
    };
    let metadata = read_metadata_file(&path).map_err(|error| {
        let status = if error.is_unreadable() {
            Status::NoInput
        } else {
            Status::DataError
        };
        Failure::new(
            status,
            error.to_string(),
            "name another metadata file with --metadata FILE, or the beamtime with --beamtime ID",
        )
    })?;
    if let (Some(id), Some(origin)) = (&source.beamtime, &origin) {
        if &metadata.id != id {
            return Err(Failure::new(
                Status::DataError,
                format!(
                    "{} was found for beamtime {id} but belongs to beamtime {}",
                    path.display(),
                    metadata.id
                ),
                format!("check the metadata search path, which is {origin}"),
            ));
        }
    }
    Ok(metadata)
}

/// `origin`: where the search path came from, for a lookup by id.
fn discovery_failure(error: DiscoveryError, origin: Option<&Origin>) -> Failure {
    let (status, hint) = match &error {
        DiscoveryError::NotFound { .. } => (
            Status::NoInput,
            format!(
                "{}name the file with --metadata FILE, or set BEAMTIME_METADATA_PATH to search \
                 elsewhere",
                origin
                    .map(|o| format!("the search path is {o}; "))
                    .unwrap_or_default()
            ),
        ),
        DiscoveryError::NoBeamtimeFolder { .. } => (
            Status::NoInput,
            "run bt-submit inside the beamtime folder, or use --beamtime ID or --metadata FILE"
                .to_owned(),
        ),
        DiscoveryError::Ambiguous { .. } | DiscoveryError::AmbiguousFolder { .. } => (
            Status::DataError,
            "choose one with --metadata FILE".to_owned(),
        ),
        _ => (
            Status::Config,
            "fix BEAMTIME_METADATA_PATH or the config file, or use --metadata FILE".to_owned(),
        ),
    };
    Failure::new(status, error.to_string(), hint)
}

/// A reader that has gone (`bt-submit show | head -1`) ends the output, not the
/// program with an error: Rust ignores SIGPIPE, so the write returns EPIPE,
/// taken here as the end ripgrep and the shell tools take it for.
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(Failure::new(
            Status::IoError,
            format!("cannot write the output: {error}"),
            "check where the output goes",
        )),
        _ => Ok(()),
    }
}

/// A message for the person at the terminal. A stderr that cannot be written
/// leaves nowhere to say so, so that is no reason to stop (eprint! would panic).
fn tell(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

fn write_json(value: &serde_json::Value) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(value).map_err(|error| {
        Failure::new(
            Status::IoError,
            format!("cannot format JSON: {error}"),
            "report this as a bug",
        )
    })?;
    text.push('\n');
    write_stdout(text.as_bytes())
}
