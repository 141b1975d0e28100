//! Submitting: plain `bt-submit` and `bt-submit sbatch|srun|salloc` replace
//! themselves with the program; `--remote` submits over ssh on a reserved
//! node; `--dry-run` prints the command. `bt-submit watch` plans and submits
//! its jobs through the same [`submitter_for`] and [`planned`].

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use beamtime::metadata::Metadata;
use beamtime::plugin_config::PluginConfig;
use beamtime::policy::{self, Submitter};
use beamtime::problem::Problem;
use beamtime::refusal::Rule;
use beamtime::users::LookupError;

use crate::cli::{Format, SubmitArgs};
use crate::commands::report;
use crate::failure::{Failure, Status};
use crate::output::{tell, write_json, write_stdout};
use crate::plan::{self, choose, plan, script, Request};
use crate::site::metadata_file::load_metadata;
use crate::site::phase;
use crate::site::plugstack::PluginSetup;
use crate::site::settings::Settings;
use crate::slurm::host::{parsable, Host, SubmitError};
use crate::slurm::options::{self as slurm_options, Program};
use crate::slurm::query::Slurm;
use crate::slurm::ssh::{self, Remote};

pub fn run(program: Program, args: SubmitArgs, settings: &Settings) -> Result<ExitCode, Failure> {
    let metadata = load_metadata(&args.source, settings)?;
    if let Some(warning) = account_warning(&metadata, settings) {
        tell(&format!(
            "bt-submit: warning: {}\nhint: {}\n",
            warning.what, warning.fix
        ));
    }
    let submitter = submitter_for(program, &metadata, args.remote, args.node.as_deref())?;
    let invocation = planned(program, &metadata, &submitter, args.reservation, args.args)?;
    if args.dry_run {
        return dry_run(&invocation, &submitter, args.format, &metadata, settings);
    }
    if let Host::Remote(_) = &submitter {
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

/// Who runs bt-submit, by login name, as the user database says.
pub fn current_user() -> Result<Option<String>, LookupError> {
    beamtime::users::current().map(|account| account.map(|a| a.name))
}

/// The node refuses every job of a beamtime whose account is a system
/// account (below the plugin's `min_uid`): said before submitting, by the
/// node's own check ([`policy::check_submitter`], as the beamtime's account
/// itself, so only the account's rules can fail) with the plugin line's
/// settings if this run has read them, else the plugin's defaults (reading
/// the plugstack for this alone would cost every submission a controller
/// query). An account this host does not know is left to the node.
fn account_warning(metadata: &Metadata, settings: &Settings) -> Option<Problem> {
    let online = metadata.online.ready()?;
    let account_uid = beamtime::users::uid_of(&online.user_account).ok()??;
    let defaults;
    let config = match settings.plugin_if_read() {
        Some(Ok(PluginSetup {
            config: Ok(usable), ..
        })) => &usable.config,
        _ => {
            defaults = PluginConfig::parse(std::iter::empty::<&str>()).ok()?;
            &defaults
        }
    };
    let refusal = policy::check_submitter(config, metadata, Submitter::Client(account_uid), |_| {
        Ok(Some(account_uid))
    })
    .err()?;
    (refusal.rule == Rule::UnsafeAccount).then(|| {
        Problem::new(
            format!("the node will refuse this job: {}", refusal.problem.what),
            refusal.problem.fix,
        )
    })
}

/// Where the job goes: this host, or with `--remote` a reserved node over ssh.
pub fn submitter_for(
    program: Program,
    metadata: &Metadata,
    remote: bool,
    node: Option<&str>,
) -> Result<Host, Failure> {
    Ok(if remote {
        Host::Remote(remote_target(program, metadata, node)?)
    } else {
        Host::Local
    })
}

/// The command for the user's arguments, from the metadata (and the
/// controller, asked where the job is submitted, to choose a reservation);
/// its warnings told on stderr.
pub fn planned(
    program: Program,
    metadata: &Metadata,
    submitter: &Host,
    reservation: Option<String>,
    user_args: Vec<OsString>,
) -> Result<plan::Invocation, Failure> {
    // Over ssh the job is submitted as the beamtime account, whoever runs bt-submit.
    let me = match submitter {
        Host::Remote(_) => Ok(metadata
            .online
            .ready()
            .map(|online| online.user_account.clone())),
        Host::Local => current_user(),
    };
    let script = script_directives(program, &user_args)?;
    let mut request = Request {
        program,
        reservation,
        user_args,
        script,
    };
    let mut invocation = plan(&request, metadata, &me)?;
    // Only a request that is valid otherwise costs a controller query, made
    // where the job is submitted.
    if request.reservation.is_none() {
        if let Some(chosen) = reservation_for_resources(&request, metadata, submitter)? {
            request.reservation = Some(chosen);
            invocation = plan(&request, metadata, &me)?;
        }
    }
    if let Host::Remote(_) = submitter {
        if let Some(online) = metadata.online.ready() {
            let warnings = plan::remote_warnings(&request, &online.user_account);
            invocation.warnings.extend(warnings);
        }
    }
    for warning in &invocation.warnings {
        tell(&format!(
            "bt-submit: warning: {}\nhint: {}\n",
            warning.what, warning.fix
        ));
    }
    Ok(invocation)
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
    submitter: &Host,
    format: Format,
    metadata: &Metadata,
    settings: &Settings,
) -> Result<ExitCode, Failure> {
    match (format, submitter) {
        (Format::Text, Host::Local) => write_stdout(&report::command_line(invocation))?,
        (Format::Text, Host::Remote(_)) => write_stdout(&ssh::shell_line(
            &submitter.sbatch_command(&invocation.args),
        ))?,
        (Format::Json, _) => {
            let target = settings.target()?;
            let standing = phase::from_settings(metadata, settings)?;
            let mut json = report::dry_run_json(invocation, metadata, &target, &standing)?;
            if let (Host::Remote(remote), serde_json::Value::Object(fields)) =
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
    submitter: &Host,
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
                        Host::Remote(remote) => {
                            remote.command(&node, "sbatch", &parsable(&invocation.args))
                        }
                        Host::Local => submitter.sbatch_command(&invocation.args),
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
        Err(SubmitError::Refused(said_no)) => {
            tell(said_no.stderr());
            Ok(ExitCode::from(said_no.exit_byte()))
        }
        Err(SubmitError::Failed(failure) | SubmitError::AnswerLost(failure)) => Err(failure),
    }
}

/// With `-N`/`-C` among the user's options (or, where those leave them out,
/// the script's `#SBATCH` lines), no reservation named and several to choose
/// from: the first one whose nodes can satisfy them (asks the controller, see
/// plan/choose.rs).
fn reservation_for_resources(
    request: &Request,
    metadata: &Metadata,
    slurm: &dyn Slurm,
) -> Result<Option<String>, Failure> {
    let user = slurm_options::scan(request.program, &request.user_args);
    let script = request.script.clone().unwrap_or_default();
    // The command line wins over the script, as in sbatch.
    let last = |from_user: &[String], from_script: &[(usize, String)]| {
        from_user
            .last()
            .or(from_script.last().map(|(_, value)| value))
            .cloned()
    };
    let wants = choose::Wants {
        nodes: last(&user.nodes, &script.nodes),
        constraint: last(&user.constraints, &script.constraints),
    };
    let Some(online) = metadata.online.ready() else {
        return Ok(None);
    };
    let usable: Vec<String> = plan::usable_reservations(metadata, online)
        .into_iter()
        .cloned()
        .collect();
    let named = !user.reservations.is_empty() || !script.reservations.is_empty();
    if wants.is_empty() || named || usable.len() < 2 {
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

/// How much of a batch script is read for its `#SBATCH` lines, which come
/// before its first command.
const SCRIPT_HEAD_BYTES: u64 = 1 << 20;

/// The `#SBATCH` lines of the batch script among `user_args`. The script is
/// opened as sbatch opens it (the path as given, links followed): it is the
/// user's own file, read with the user's rights, and what counts is what
/// sbatch will read. No script here (--wrap, or a path only the node sees
/// with --remote) means no lines to read; sbatch reports a script it cannot
/// open itself.
fn script_directives(
    program: Program,
    user_args: &[OsString],
) -> Result<Option<script::Directives>, Failure> {
    let scanned = slurm_options::scan(program, user_args);
    let (Program::Sbatch, Some(at), false) = (program, scanned.operand_at, scanned.has_wrap) else {
        return Ok(None);
    };
    let path = PathBuf::from(&user_args[at]);
    let Some(head) = script_head(&path) else {
        return Ok(None);
    };
    script::directives(path.clone(), &head)
        .map(Some)
        .map_err(|unreadable| {
            Failure::new(
                Status::DataError,
                format!(
                    "{}:{}: the #SBATCH line has {}; nothing was submitted",
                    path.display(),
                    unreadable.line,
                    unreadable.what
                ),
                "correct that line of the script",
            )
        })
}

/// The start of the regular file at `path`, or `None` if there is none to
/// read (never blocking on a named pipe in its place).
fn script_head(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = Vec::new();
    file.take(SCRIPT_HEAD_BYTES).read_to_end(&mut head).ok()?;
    Some(head)
}
