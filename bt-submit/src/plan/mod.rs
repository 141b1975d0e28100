//! From the command line and the metadata to the exact command to run. Pure:
//! every input is an argument, so every decision is unit-testable.

pub mod choose;
pub mod script;

use std::ffi::OsString;

use beamtime::id::BeamtimeId;
use beamtime::metadata::{Metadata, OnlineAnalysis};
use beamtime::problem::Problem;
use beamtime::untrusted::shown_token;
use beamtime::users::LookupError;

use crate::failure::{Failure, Status};
use crate::slurm::options::{scan, Program, UserOptions};
use script::Directives;

/// What the user asked bt-submit to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub program: Program,
    /// bt-submit's own `--reservation`.
    pub reservation: Option<String>,
    /// The user's options for the program, then the script or command.
    pub user_args: Vec<OsString>,
    /// The batch script's `#SBATCH` lines, when there is a script to read.
    pub script: Option<Directives>,
}

/// The command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: Program,
    pub args: Vec<OsString>,
    pub reservation: String,
    /// What the user should know that does not stop the submission.
    pub warnings: Vec<Problem>,
}

pub fn not_ready(metadata: &Metadata) -> Failure {
    Failure::new(
        Status::Unavailable,
        format!(
            "beamtime {} has no online analysis resources yet: {} has no complete \
             onlineAnalysis block (reserved nodes, partition, reservation and account)",
            metadata.id,
            metadata.path.display()
        ),
        "the facility adds them to the metadata file when the beamtime starts; if online \
         analysis was not requested for this beamtime, ask the beamline staff",
    )
}

/// `current_user` is who runs bt-submit, as the user database says; only the
/// warnings depend on it, since Slurm checks the account itself.
pub fn plan(
    request: &Request,
    metadata: &Metadata,
    current_user: &Result<Option<String>, LookupError>,
) -> Result<Invocation, Failure> {
    let online = metadata.online.ready().ok_or_else(|| not_ready(metadata))?;
    let program = request.program;
    let user = scan(program, &request.user_args);

    if !user.has_operand {
        match program {
            Program::Sbatch if !user.has_wrap => {
                return Err(Failure::new(
                    Status::Usage,
                    "no batch script given",
                    "name the script after the sbatch options, e.g. 'bt-submit -N 1 job.sh', \
                     or use --wrap=COMMAND",
                ))
            }
            Program::Srun => return Err(Failure::new(
                Status::Usage,
                "no command given for srun",
                "name the command after the srun options, e.g. 'bt-submit srun -N 1 --pty bash'",
            )),
            _ => {}
        }
    }

    if let Some(script) = &request.script {
        let reservation_given = !user.reservations.is_empty() || request.reservation.is_some();
        check_script(script, &user, reservation_given, online, metadata)?;
    }
    for partition in &user.partitions {
        if partition != &online.partition {
            return Err(contradiction(
                "partition",
                partition,
                &online.partition,
                &metadata.id,
            ));
        }
    }
    for beamtime in &user.beamtimes {
        if beamtime != metadata.id.as_str() {
            return Err(contradiction(
                "beamtime",
                beamtime,
                metadata.id.as_str(),
                &metadata.id,
            ));
        }
    }
    // The command line wins over the script, as in sbatch.
    let asked_reservations: Vec<String> = match &request.script {
        Some(script) if user.reservations.is_empty() && request.reservation.is_none() => script
            .reservations
            .iter()
            .map(|(_, name)| name.clone())
            .collect(),
        _ => user.reservations.clone(),
    };
    let reservation = choose_reservation(request, &asked_reservations, online, metadata)?;

    let mut args: Vec<OsString> = Vec::new();
    if user.partitions.is_empty() {
        args.push(format!("--partition={}", online.partition).into());
    }
    if user.reservations.is_empty() {
        args.push(format!("--reservation={reservation}").into());
    }
    if user.beamtimes.is_empty() {
        args.push(format!("--beamtime={}", metadata.id).into());
    }
    args.extend(request.user_args.iter().cloned());

    let warnings = match current_user {
        Err(error) => vec![Problem {
            what: format!("cannot tell who you are: {error}"),
            fix: format!(
                "Slurm will refuse the job unless you are {}; log in as the beamtime account \
                 first: {}",
                online.user_account,
                online.ssh_command()
            ),
        }],
        Ok(Some(user)) if user != &online.user_account => vec![Problem {
            what: format!(
                "you are {user}, but jobs of beamtime {} must be submitted as {}; Slurm will \
                 refuse this one",
                metadata.id, online.user_account
            ),
            fix: format!(
                "log in as the beamtime account first: {}",
                online.ssh_command()
            ),
        }],
        _ => Vec::new(),
    };

    Ok(Invocation {
        program,
        args,
        reservation,
        warnings,
    })
}

/// The script's `#SBATCH` lines that the command line bt-submit runs does
/// not override must agree with the metadata: sbatch would otherwise take the
/// user's partition, or a reservation the node refuses, from a line nobody
/// looks at again. One the user's own option overrides is theirs to give.
fn check_script(
    script: &Directives,
    user: &UserOptions,
    reservation_given: bool,
    online: &OnlineAnalysis,
    metadata: &Metadata,
) -> Result<(), Failure> {
    let id = &metadata.id;
    let path = script.path.display();
    let disagrees =
        |what: &str, asked: &[(usize, String)], overridden: bool, beamtimes: &str| match asked
            .iter()
            .find(|(_, value)| !overridden && value != beamtimes)
        {
            Some((line, value)) => Err(Failure::new(
                Status::DataError,
                format!(
                    "{path}:{line}: the #SBATCH line asks for {what} {} but beamtime {id} uses \
                     {what} {}; nothing was submitted",
                    shown_token(value),
                    shown_token(beamtimes)
                ),
                format!(
                    "remove the --{what} option from that line: bt-submit sets it from the \
                     metadata file"
                ),
            )),
            None => Ok(()),
        };
    disagrees(
        "partition",
        &script.partitions,
        !user.partitions.is_empty(),
        &online.partition,
    )?;
    disagrees(
        "beamtime",
        &script.beamtimes,
        !user.beamtimes.is_empty(),
        id.as_str(),
    )?;
    let usable = usable_reservations(metadata, online);
    for (line, name) in &script.reservations {
        if !reservation_given && !usable.contains(&name) {
            let valid: Vec<&str> = usable.iter().map(|name| name.as_str()).collect();
            return Err(Failure::new(
                Status::DataError,
                format!(
                    "{path}:{line}: the #SBATCH line asks for reservation {}, which is not one \
                     of beamtime {id}'s reservations: {}; nothing was submitted",
                    shown_token(name),
                    valid.join(", ")
                ),
                "change that line to one of them, or remove it to let bt-submit choose",
            ));
        }
    }
    Ok(())
}

fn contradiction(what: &str, yours: &str, beamtimes: &str, id: &BeamtimeId) -> Failure {
    Failure::new(
        Status::DataError,
        format!(
            "your option asks for {what} {} but beamtime {id} uses {what} {}; nothing was submitted",
            shown_token(yours),
            shown_token(beamtimes)
        ),
        format!("leave the --{what} option out: bt-submit sets it from the metadata file"),
    )
}

/// What the user should know before a `--remote` submission: sbatch runs
/// in the account's home on the node (`home`), so a relative path there is
/// not the one meant here, and without `--output` or `--chdir` the job's
/// output lands in that home.
pub fn remote_warnings(request: &Request, account: &str) -> Vec<Problem> {
    let user = scan(request.program, &request.user_args);
    let script = request.script.clone().unwrap_or_default();
    let from_script = |values: &[(usize, String)]| -> Vec<String> {
        values.iter().map(|(_, value)| value.clone()).collect()
    };
    let outputs = [user.outputs.clone(), from_script(&script.outputs)].concat();
    let errors = [user.errors.clone(), from_script(&script.errors)].concat();
    let chdirs = [user.chdirs.clone(), from_script(&script.chdirs)].concat();
    let mut warnings = Vec::new();
    if outputs.is_empty() && chdirs.is_empty() {
        warnings.push(Problem::new(
            format!(
                "with --remote, sbatch runs in {account}'s home on the node, so the job's output \
                 (slurm-<job id>.out) goes there, not to this folder"
            ),
            "give --output=/absolute/path/%j.out in a folder the node sees (the beamline \
             filesystem), or --chdir to one",
        ));
    }
    let operand = user
        .operand_at
        .filter(|_| request.program == Program::Sbatch && !user.has_wrap)
        .map(|at| request.user_args[at].to_string_lossy().into_owned());
    let relative = operand
        .iter()
        .map(|script| ("the script", script))
        .chain(outputs.iter().map(|path| ("--output", path)))
        .chain(errors.iter().map(|path| ("--error", path)))
        .chain(chdirs.iter().map(|path| ("--chdir", path)))
        .filter(|(_, path)| !path.starts_with('/'));
    for (what, path) in relative {
        warnings.push(Problem::new(
            format!(
                "with --remote, {what} {} is taken relative to {account}'s home on the node, not \
                 to this folder",
                shown_token(path)
            ),
            "give it as an absolute path the node sees (the beamline filesystem)",
        ));
    }
    warnings
}

/// The beamtime's reservations the node accepts a job in: listed in the
/// metadata and named after the beamtime (`BeamtimeId::owns_reservation`, the
/// rule `policy::decide` applies), in the metadata's order. A listed
/// `maintenance` is never planned, since the node would refuse the job.
pub fn usable_reservations<'o>(metadata: &Metadata, online: &'o OnlineAnalysis) -> Vec<&'o String> {
    online
        .reservations
        .iter()
        .filter(|name| metadata.id.owns_reservation(name))
        .collect()
}

/// bt-submit's `--reservation` if given, else the one among the user's own
/// program options, else the beamtime's first usable one. Every name must be
/// one the node accepts, and they must agree.
fn choose_reservation(
    request: &Request,
    from_user_options: &[String],
    online: &OnlineAnalysis,
    metadata: &Metadata,
) -> Result<String, Failure> {
    let usable = usable_reservations(metadata, online);
    let id = &metadata.id;
    let Some(first) = usable.first() else {
        return Err(Failure::new(
            Status::DataError,
            format!(
                "none of beamtime {id}'s reservations ({}) is named after it ({id} or                  {id}_<n>), and the node refuses its jobs in any other; nothing was submitted",
                online.reservations.join(", ")
            ),
            "ask the beamline staff to fix onlineAnalysis.slurmReservation in the metadata file",
        ));
    };
    let valid = usable
        .iter()
        .map(|name| name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let named = request.reservation.iter().chain(from_user_options);
    let mut chosen: Option<&String> = None;
    for name in named {
        if !usable.contains(&name) {
            let listed_but = if online.reservations.contains(name) {
                ", which its metadata lists but which is not named after it".to_owned()
            } else {
                String::new()
            };
            return Err(Failure::new(
                Status::DataError,
                format!(
                    "reservation {} is not one of beamtime {id}'s reservations{listed_but}: \
                     {valid}; nothing was submitted",
                    shown_token(name),
                ),
                format!(
                    "choose one of them with --reservation NAME, or leave it out to use {first}"
                ),
            ));
        }
        match chosen {
            Some(earlier) if earlier != name => {
                return Err(Failure::new(
                    Status::DataError,
                    format!(
                        "two different reservations asked for: {} and {}; nothing was submitted",
                        shown_token(earlier),
                        shown_token(name)
                    ),
                    "give the reservation once, with bt-submit's --reservation NAME",
                ))
            }
            _ => chosen = Some(name),
        }
    }
    Ok(chosen.unwrap_or(first).clone())
}

#[cfg(test)]
mod tests;
