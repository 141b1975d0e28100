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
    assert!(warned.warnings[0]
        .what
        .contains("you are alice, but jobs of beamtime 11099001 must be submitted as bttest01"));
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
