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
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    use beamtime::metadata::{parse_metadata, Online};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../beamtime/tests/fixtures");

    fn metadata(name: &str) -> Metadata {
        let path = Path::new(FIXTURES).join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{error}"));
        parse_metadata(&bytes, &path).unwrap_or_else(|error| panic!("{error}"))
    }

    fn request(program: Program, reservation: Option<&str>, args: &[&str]) -> Request {
        Request {
            program,
            reservation: reservation.map(str::to_owned),
            user_args: args.iter().map(OsString::from).collect(),
            script: None,
        }
    }

    fn planned_args(request: &Request, metadata: &Metadata) -> Vec<String> {
        match plan(request, metadata, &Ok(Some("bttest05".to_owned()))) {
            Ok(invocation) => invocation
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            Err(failure) => panic!("{failure}"),
        }
    }

    fn failure(request: &Request, metadata: &Metadata) -> Failure {
        match plan(request, metadata, &Ok(None)) {
            Ok(invocation) => panic!("should fail, planned {invocation:?}"),
            Err(failure) => failure,
        }
    }

    const DEDICATED: &str = "beamtime-metadata-11099005.json";

    #[test]
    fn metadata_options_come_first_then_the_users() {
        let args = planned_args(
            &request(Program::Sbatch, None, &["-N", "2", "job.sh", "-p", "x"]),
            &metadata(DEDICATED),
        );
        assert_eq!(
            args,
            [
                "--partition=ponline_p21",
                "--reservation=11099005",
                "--beamtime=11099005",
                "-N",
                "2",
                "job.sh",
                "-p",
                "x"
            ]
        );
    }

    /// The fixture with `maintenance` listed first, as a copy-paste slip would leave it.
    fn with_maintenance_listed_first() -> Metadata {
        let path = Path::new(FIXTURES).join(DEDICATED);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{error}"));
        let slipped = text.replacen(
            "\"slurmReservation\": [",
            "\"slurmReservation\": [\n            \"maintenance\",",
            1,
        );
        assert_ne!(slipped, text, "the fixture's slurmReservation moved");
        parse_metadata(slipped.as_bytes(), &path).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn a_listed_reservation_the_node_refuses_is_never_planned() {
        let slipped = with_maintenance_listed_first();
        let args = planned_args(&request(Program::Sbatch, None, &["job.sh"]), &slipped);
        assert_eq!(args[1], "--reservation=11099005");
        let refused = failure(
            &request(Program::Sbatch, Some("maintenance"), &["job.sh"]),
            &slipped,
        );
        assert_eq!(refused.status, Status::DataError);
        assert!(
            refused
                .problem
                .what
                .contains("lists but which is not named after it"),
            "{refused}"
        );
    }

    #[test]
    fn reservation_can_be_chosen_among_the_beamtimes() {
        let dedicated = metadata(DEDICATED);
        let args = planned_args(
            &request(Program::Sbatch, Some("11099005_1"), &["job.sh"]),
            &dedicated,
        );
        assert_eq!(args[1], "--reservation=11099005_1");
        let args = planned_args(
            &request(
                Program::Sbatch,
                None,
                &["--reservation=11099005_1", "job.sh"],
            ),
            &dedicated,
        );
        assert_eq!(
            args,
            [
                "--partition=ponline_p21",
                "--beamtime=11099005",
                "--reservation=11099005_1",
                "job.sh"
            ]
        );
    }

    #[test]
    fn foreign_reservation_lists_the_valid_ones() {
        let failed = failure(
            &request(Program::Sbatch, Some("other"), &["job.sh"]),
            &metadata(DEDICATED),
        );
        assert_eq!(failed.status, Status::DataError);
        assert_eq!(failed.problem.what, "reservation other is not one of beamtime 11099005's reservations: 11099005, 11099005_1; nothing was submitted");
        assert!(failed.problem.fix.contains("leave it out to use 11099005"));
        let failed = failure(
            &request(
                Program::Sbatch,
                Some("11099005"),
                &["--reservation=11099005_1", "job.sh"],
            ),
            &metadata(DEDICATED),
        );
        assert!(failed
            .problem
            .what
            .contains("two different reservations asked for: 11099005 and 11099005_1"));
    }

    #[test]
    fn contradicting_options_name_both_values() {
        let dedicated = metadata(DEDICATED);
        for args in [
            &["-p", "all", "j"][..],
            &["-pall", "j"],
            &["--partition", "all", "j"],
            &["--partition=all", "j"],
        ] {
            let failed = failure(&request(Program::Sbatch, None, args), &dedicated);
            assert_eq!(failed.status, Status::DataError);
            assert_eq!(failed.problem.what, "your option asks for partition all but beamtime 11099005 uses partition ponline_p21; nothing was submitted");
        }
        let failed = failure(
            &request(Program::Srun, None, &["--beamtime=11099001", "hostname"]),
            &dedicated,
        );
        assert!(failed
            .problem
            .what
            .contains("asks for beamtime 11099001 but beamtime 11099005 uses beamtime 11099005"));
        let failed = failure(
            &request(Program::Sbatch, None, &["-p", "a b", "j"]),
            &dedicated,
        );
        assert!(
            failed.problem.what.contains("asks for partition \"a b\""),
            "{}",
            failed.problem.what
        );
    }

    #[test]
    fn agreeing_options_are_not_duplicated() {
        let args = planned_args(
            &request(
                Program::Salloc,
                None,
                &["-p", "ponline_p21", "--beamtime=11099005"],
            ),
            &metadata(DEDICATED),
        );
        assert_eq!(
            args,
            [
                "--reservation=11099005",
                "-p",
                "ponline_p21",
                "--beamtime=11099005"
            ]
        );
    }

    #[test]
    fn a_script_or_command_is_required_where_the_program_needs_one() {
        let dedicated = metadata(DEDICATED);
        assert_eq!(
            failure(&request(Program::Sbatch, None, &["-N", "1"]), &dedicated)
                .problem
                .what,
            "no batch script given"
        );
        assert_eq!(
            failure(&request(Program::Srun, None, &[]), &dedicated)
                .problem
                .what,
            "no command given for srun"
        );
        planned_args(&request(Program::Salloc, None, &[]), &dedicated);
        planned_args(
            &request(Program::Sbatch, None, &["--wrap=hostname"]),
            &dedicated,
        );
    }

    #[test]
    fn no_online_resources_is_unavailable() {
        let industrial = metadata("beamtime-metadata-11099003.json");
        assert_eq!(industrial.online, Online::NotYet);
        let failed = failure(&request(Program::Sbatch, None, &["job.sh"]), &industrial);
        assert_eq!(failed.status, Status::Unavailable);
        assert!(failed
            .problem
            .what
            .starts_with("beamtime 11099003 has no online analysis resources yet"));
    }

    #[test]
    fn another_user_is_warned_with_the_ssh_command() {
        let normal = metadata("beamtime-metadata-11099001.json");
        let job = request(Program::Sbatch, None, &["job.sh"]);
        let as_user = |name: &str| {
            plan(&job, &normal, &Ok(Some(name.to_owned())))
                .unwrap_or_else(|failure| panic!("{failure}"))
        };
        let warned = as_user("alice");
        assert_eq!(warned.warnings.len(), 1);
        assert!(warned.warnings[0].what.contains(
            "you are alice, but jobs of beamtime 11099001 must be submitted as bttest01"
        ));
        // The fixture's key is not there, so the hint leaves it out.
        assert_eq!(
            warned.warnings[0].fix,
            "log in as the beamtime account first: ssh -l bttest01 max-p3a901"
        );
        assert!(as_user("bttest01").warnings.is_empty());
    }

    #[test]
    fn a_user_database_that_does_not_answer_is_said_so_and_the_job_still_goes() {
        let normal = metadata("beamtime-metadata-11099001.json");
        let job = request(Program::Sbatch, None, &["job.sh"]);
        let failed = Err(LookupError {
            asked: "uid 1000".to_owned(),
            problem: "Connection timed out".to_owned(),
        });
        let warned = plan(&job, &normal, &failed).unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(warned.warnings.len(), 1);
        assert_eq!(
            warned.warnings[0].what,
            "cannot tell who you are: looking up uid 1000 in the user database failed: \
             Connection timed out"
        );
        assert!(
            warned.warnings[0]
                .fix
                .starts_with("Slurm will refuse the job unless you are bttest01; log in as the "),
            "{}",
            warned.warnings[0].fix
        );
        let unknown = plan(&job, &normal, &Ok(None)).unwrap_or_else(|failure| panic!("{failure}"));
        assert!(unknown.warnings.is_empty());
    }

    fn with_script(args: &[&str], script: &str) -> Request {
        let directives = script::directives(PathBuf::from("job.sh"), script.as_bytes())
            .unwrap_or_else(|error| panic!("{error:?}"));
        Request {
            script: Some(directives),
            ..request(Program::Sbatch, None, args)
        }
    }

    #[test]
    fn a_script_line_that_contradicts_the_metadata_is_refused_with_its_line() {
        for (script, expected) in [
            (
                "#!/bin/sh\n#SBATCH -N1\n#SBATCH --partition=maxgpu\nhostname\n",
                "job.sh:3: the #SBATCH line asks for partition maxgpu but beamtime 11099005 \
                 uses partition ponline_p21",
            ),
            (
                "#SBATCH --reservation=elsewhere\n",
                "job.sh:1: the #SBATCH line asks for reservation elsewhere, which is not one of \
                 beamtime 11099005's reservations: 11099005, 11099005_1",
            ),
            (
                "#SBATCH --beamtime 11099001\n",
                "job.sh:1: the #SBATCH line asks for beamtime 11099001 but beamtime 11099005",
            ),
        ] {
            let refused = failure(&with_script(&["job.sh"], script), &metadata(DEDICATED));
            assert_eq!(refused.status, Status::DataError);
            assert!(
                refused.problem.what.starts_with(expected),
                "{}",
                refused.problem.what
            );
        }
    }

    #[test]
    fn the_command_line_wins_over_the_script() {
        let dedicated = metadata(DEDICATED);
        let args = planned_args(
            &with_script(&["-p", "ponline_p21", "job.sh"], "#SBATCH -p maxgpu\n"),
            &dedicated,
        );
        assert_eq!(
            args[..2],
            ["--reservation=11099005", "--beamtime=11099005"],
            "the user's own -p overrides the script's; bt-submit adds no --partition"
        );
        let args = planned_args(
            &with_script(&["job.sh"], "#SBATCH --reservation=11099005_1\n"),
            &dedicated,
        );
        assert_eq!(
            args[1], "--reservation=11099005_1",
            "the script's reservation is kept"
        );
        let overridden = Request {
            reservation: Some("11099005".to_owned()),
            ..with_script(&["job.sh"], "#SBATCH --reservation=elsewhere\n")
        };
        assert_eq!(
            planned_args(&overridden, &dedicated)[1],
            "--reservation=11099005"
        );
    }

    #[test]
    fn remote_submissions_warn_of_the_homes_output_and_relative_paths() {
        let warned = |args: &[&str]| -> Vec<String> {
            remote_warnings(&request(Program::Sbatch, None, args), "bttest05")
                .into_iter()
                .map(|warning| warning.what)
                .collect()
        };
        let plain = warned(&["job.sh"]);
        assert_eq!(plain.len(), 2, "{plain:?}");
        assert!(plain[0].contains("the job's output (slurm-<job id>.out) goes there"));
        assert!(plain[1].contains("the script job.sh is taken relative to bttest05's home"));
        let relative_output = warned(&["--output=out/%j.txt", "/gpfs/job.sh"]);
        assert_eq!(relative_output.len(), 1, "{relative_output:?}");
        assert!(
            relative_output[0].starts_with("with --remote, --output ")
                && relative_output[0].contains("out/%j.txt")
                && relative_output[0].contains("is taken relative"),
            "{relative_output:?}"
        );
        assert!(warned(&["-o", "/gpfs/out/%j.txt", "/gpfs/job.sh"]).is_empty());
        assert!(warned(&["-D", "/gpfs/processed", "/gpfs/job.sh"]).is_empty());
        let from_script = Request {
            script: Some(
                script::directives(PathBuf::from("/gpfs/job.sh"), b"#SBATCH -o /gpfs/%j.out\n")
                    .unwrap_or_else(|error| panic!("{error:?}")),
            ),
            ..request(Program::Sbatch, None, &["/gpfs/job.sh"])
        };
        let warnings = remote_warnings(&from_script, "bttest05");
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
