//! From the command line and the metadata to the exact command to run. Pure:
//! every input is an argument, so every decision is unit-testable.

pub mod choose;

use std::ffi::OsString;

use beamtime::id::BeamtimeId;
use beamtime::metadata::{Metadata, OnlineAnalysis};
use beamtime::problem::Problem;
use beamtime::untrusted::shown_token;
use beamtime::users::LookupError;

use crate::failure::{Failure, Status};
use crate::slurm::options::{scan, Program};

/// What the user asked bt-submit to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub program: Program,
    /// bt-submit's own `--reservation`.
    pub reservation: Option<String>,
    /// The user's options for the program, then the script or command.
    pub user_args: Vec<OsString>,
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
    let reservation = choose_reservation(request, &user.reservations, online, metadata)?;

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
    use std::path::Path;

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
}
