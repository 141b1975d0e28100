//! The unit tests of [`super`]: each rule stated as plain values.

use super::*;
use crate::facts::JobFacts;
use crate::metadata::parse_metadata;
use std::path::Path;

const ACCOUNT_UID: u32 = 5005;

fn metadata(name: &str, bytes: &[u8]) -> Metadata {
    parse_metadata(bytes, Path::new(&format!("/srv/p21/current/{name}"))).unwrap()
}

/// Dedicated beamtime 11099005: reservations 11099005 and 11099005_1,
/// nodes max-p3a931 … max-p3ag934, account bttest05.
fn dedicated() -> Metadata {
    metadata(
        "beamtime-metadata-11099005.json",
        include_bytes!("../../tests/fixtures/beamtime-metadata-11099005.json"),
    )
}

fn config(extra: &str) -> PluginConfig {
    let args = format!("source=/srv/{{beamline}}/current writable=processed {extra}");
    PluginConfig::parse(args.split_whitespace()).unwrap()
}

fn job() -> JobFacts {
    JobFacts {
        uid: ACCOUNT_UID,
        account_uid: Some(ACCOUNT_UID),
        controller: ControllerJob {
            reservation: Some("11099005".into()),
            account: Some("11099005".into()),
            batch: true,
        },
        node: "max-p3a931".into(),
        beamline_folder: BeamlineFolder::ThisBeamtime,
    }
}

fn refused(config: &PluginConfig, metadata: &Metadata, job: &JobFacts) -> Refusal {
    decide(config, metadata, &mut job.clone()).unwrap_err()
}

#[test]
fn the_beamtime_account_in_its_reservation_on_its_node_is_granted() {
    let grant = decide(&config(""), &dedicated(), &mut job()).unwrap();
    assert_eq!(grant.beamtime.as_str(), "11099005");
    assert_eq!(grant.beamline.as_str(), "p21");
    assert_eq!(grant.reservation, "11099005");
    assert_eq!(grant.source, Path::new("/srv/p21/current"));
    assert_eq!(grant.target, Path::new("/beamline/p21/current"));
    assert_eq!(grant.hide_root, Path::new("/beamline"));
    assert_eq!(grant.writable, ["processed"]);
    assert_eq!(grant.metadata_file_name, "beamtime-metadata-11099005.json");
    assert_eq!(
        grant.environment,
        [
            ("BEAMTIME_ID", "11099005".to_owned()),
            ("BEAMTIME_BEAMLINE", "p21".to_owned()),
            ("BEAMTIME_BEAMLINE_PATH", "/beamline/p21/current".to_owned()),
            ("BEAMTIME_PHASE", "online".to_owned()),
            (
                "BEAMTIME_CORE_PATH",
                "/asap3/petra3/gpfs/p21/2024/data/11099005".to_owned()
            ),
        ]
    );
}

#[test]
fn the_second_reservation_of_a_beamtime_is_granted() {
    let mut job = job();
    job.controller.reservation = Some("11099005_1".into());
    assert_eq!(
        decide(&config(""), &dedicated(), &mut job)
            .unwrap()
            .reservation,
        "11099005_1"
    );
}

#[test]
fn another_user_is_refused_with_the_login_to_use() {
    let mut job = job();
    job.uid = 1000;
    let refusal = refused(&config(""), &dedicated(), &job);
    assert_eq!(refusal.rule, Rule::WrongUser);
    assert!(
        refusal.problem.what.contains("'bttest05' (uid 5005)"),
        "{refusal}"
    );
    assert!(
        refusal
            .problem
            .what
            .contains("and this job's user is uid 1000"),
        "{refusal}"
    );
    // The fixture's key (/srv/p21/current/shared/id_rsa) is not on this machine.
    assert!(
        refusal.problem.fix.contains("(ssh -l bttest05 max-p3a931)"),
        "{refusal}"
    );
}

#[test]
fn the_login_hint_names_the_key_when_it_is_there() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path();
    std::fs::create_dir_all(folder.join("shared")).unwrap();
    std::fs::write(folder.join("shared/id_rsa"), b"key").unwrap();
    let metadata = parse_metadata(
        include_bytes!("../../tests/fixtures/beamtime-metadata-11099005.json"),
        &folder.join("beamtime-metadata-11099005.json"),
    )
    .unwrap();
    let refusal = refused(&config(""), &metadata, &JobFacts { uid: 1000, ..job() });
    let expected = format!("ssh -i {}/shared/id_rsa -l bttest05", folder.display());
    assert!(refusal.problem.fix.contains(&expected), "{refusal}");
}

#[test]
fn an_account_missing_on_the_node_or_a_system_account_is_refused() {
    let mut job = job();
    job.account_uid = None;
    let refusal = refused(&config(""), &dedicated(), &job);
    assert_eq!(refusal.rule, Rule::UnsafeAccount);
    assert!(
        refusal.problem.what.contains("does not exist on this node"),
        "{refusal}"
    );
    assert!(
        refusal
            .problem
            .what
            .contains(": onlineAnalysis.userAccount)"),
        "{refusal}"
    );

    let mut job = self::job();
    job.uid = 0;
    job.account_uid = Some(0);
    let refusal = refused(&config(""), &dedicated(), &job);
    assert_eq!(refusal.rule, Rule::UnsafeAccount);
    assert!(
        refusal
            .problem
            .what
            .contains("system account (uid 0 < 1000)"),
        "{refusal}"
    );
    assert!(
        refusal
            .problem
            .what
            .contains(": onlineAnalysis.userAccount)"),
        "{refusal}"
    );

    job.uid = 700;
    job.account_uid = Some(700);
    assert!(decide(&config("min_uid=500"), &dedicated(), &mut job).is_ok());
}

#[test]
fn a_job_outside_any_reservation_is_refused_with_the_option_to_add() {
    let mut job = job();
    job.controller.reservation = None;
    let refusal = refused(&config(""), &dedicated(), &job);
    assert_eq!(refusal.rule, Rule::NoReservation);
    assert!(
        refusal.problem.what.contains("(11099005, 11099005_1)"),
        "{refusal}"
    );
    assert!(
        refusal.problem.fix.contains("--reservation=11099005"),
        "{refusal}"
    );
}

#[test]
fn another_beamtimes_reservation_is_refused_naming_both() {
    let mut job = job();
    job.controller.reservation = Some("11099001".into());
    let refusal = refused(&config(""), &dedicated(), &job);
    assert_eq!(refusal.rule, Rule::WrongReservation);
    assert!(
        refusal.problem.what.contains("reservation '11099001'"),
        "{refusal}"
    );
    assert!(
        refusal.problem.what.contains("(11099005, 11099005_1)"),
        "{refusal}"
    );
}

#[test]
fn a_list_of_reservations_is_refused_as_a_list_not_as_the_one_the_job_runs_in() {
    let mut job = job();
    job.controller.reservation = Some("11099005,11099005_1".into());
    let refusal = refused(&config(""), &dedicated(), &job);
    assert_eq!(refusal.rule, Rule::WrongReservation);
    assert!(
        refusal.problem.what.starts_with(
            "the job was submitted with a list of reservations ('11099005,11099005_1'), and \
             Slurm tells the plugin that list, not the reservation the job runs in"
        ),
        "{refusal}"
    );
    assert!(
        !refusal.problem.what.contains("the job runs in reservation"),
        "{refusal}"
    );
    assert!(
        refusal.problem.fix.contains("--reservation=11099005"),
        "{refusal}"
    );
}

#[test]
fn a_reservation_merely_starting_with_the_id_is_refused() {
    let mut job = job();
    job.controller.reservation = Some("11099005_9".into());
    assert_eq!(
        refused(&config(""), &dedicated(), &job).rule,
        Rule::WrongReservation
    );
}

#[test]
fn a_listed_reservation_not_named_after_the_beamtime_is_refused() {
    let mut tampered = dedicated();
    if let Online::Ready(online) = &mut tampered.online {
        online.reservations.push("11099001".into());
    }
    let mut job = job();
    job.controller.reservation = Some("11099001".into());
    let refusal = refused(&config(""), &tampered, &job);
    assert_eq!(refusal.rule, Rule::WrongReservation);
    assert!(
        refusal
            .problem
            .what
            .contains("lists but which is not named after it"),
        "{refusal}"
    );
}

#[test]
fn a_node_outside_reserved_nodes_is_refused_unless_the_site_turns_the_check_off() {
    let mut job = job();
    job.node = "max-p3a999".into();
    let refusal = refused(&config(""), &dedicated(), &job);
    assert_eq!(refusal.rule, Rule::WrongNode);
    assert!(
        refusal.problem.what.contains("node max-p3a999"),
        "{refusal}"
    );
    assert!(
        refusal.problem.what.contains("max-p3a931, max-p3a932"),
        "{refusal}"
    );
    assert!(decide(&config("check_nodes=no"), &dedicated(), &mut job).is_ok());
}

#[test]
fn the_slurm_account_is_checked_only_when_the_site_asks() {
    let mut job = job();
    job.controller.account = Some("other".into());
    assert!(decide(&config(""), &dedicated(), &mut job).is_ok());
    let refusal = refused(&config("account={id}"), &dedicated(), &job);
    assert_eq!(refusal.rule, Rule::WrongAccount);
    assert!(refusal.problem.what.contains("'other'"), "{refusal}");
    assert!(refusal.problem.what.contains("'11099005'"), "{refusal}");
    job.controller.account = None;
    assert!(refused(&config("account={id}"), &dedicated(), &job)
        .problem
        .what
        .contains("(none)"));
    job.controller.account = Some("bttest05".into());
    assert!(decide(&config("account={user}"), &dedicated(), &mut job).is_ok());
}

#[test]
fn a_beamtime_without_online_resources_is_refused_before_anything_else() {
    let industrial = metadata(
        "beamtime-metadata-11099003.json",
        include_bytes!("../../tests/fixtures/beamtime-metadata-11099003.json"),
    );
    let refusal = refused(&config(""), &industrial, &job());
    assert_eq!(refusal.rule, Rule::NoOnlineResources);
    assert!(
        refusal.problem.what.contains("beamtime 11099003"),
        "{refusal}"
    );
}

#[test]
fn without_a_source_the_site_is_told_to_configure_one() {
    let config = PluginConfig::parse(std::iter::empty()).unwrap();
    let refusal = refused(&config, &dedicated(), &job());
    assert_eq!(refusal.rule, Rule::SiteConfiguration);
    assert!(refusal.problem.what.contains("source="), "{refusal}");
}

#[test]
fn a_commissioning_run_is_granted_under_its_lower_case_beamline() {
    let commissioning = parse_metadata(
        include_bytes!("../../tests/fixtures/commissioning-metadata-c20240312_000_GPUTEST.json"),
        Path::new("/gpfs/commissioning/commissioning-metadata-c20240312_000_GPUTEST.json"),
    )
    .unwrap();
    let mut job = JobFacts {
        controller: ControllerJob {
            reservation: Some("c20240312_000_GPUTEST".into()),
            account: None,
            batch: true,
        },
        node: "max-p3ag901".into(),
        ..job()
    };
    let grant = decide(&config(""), &commissioning, &mut job).unwrap();
    assert_eq!(grant.target, Path::new("/beamline/p11/current"));
    assert_eq!(grant.source, Path::new("/srv/p11/current"));
    assert_eq!(
        grant.metadata_file_name,
        "commissioning-metadata-c20240312_000_GPUTEST.json"
    );
}

/// Facts that record which ones the decision asked for.
struct Recording {
    known: JobFacts,
    asked: Vec<&'static str>,
}

impl StepFacts for Recording {
    fn job_uid(&self) -> u32 {
        self.known.uid
    }
    fn account_uid(&mut self, account: &str) -> Result<Option<u32>, Refusal> {
        assert_eq!(account, "bttest05");
        self.asked.push("account");
        self.known.account_uid(account)
    }
    fn node(&mut self) -> Result<String, Refusal> {
        self.asked.push("node");
        self.known.node()
    }
    fn controller(&mut self) -> Result<ControllerJob, Refusal> {
        self.asked.push("controller");
        self.known.controller()
    }
    fn beamline_folder(&mut self, source: &Path, name: &str) -> Result<BeamlineFolder, Refusal> {
        assert_eq!(
            (source, name),
            (
                Path::new("/srv/p21/current"),
                "beamtime-metadata-11099005.json"
            )
        );
        self.asked.push("source");
        self.known.beamline_folder(source, name)
    }
}

#[test]
fn facts_are_asked_cheapest_first_each_once_and_not_after_a_refusal() {
    let decide_with = |known: JobFacts| {
        let mut facts = Recording {
            known,
            asked: Vec::new(),
        };
        let outcome = decide(&config(""), &dedicated(), &mut facts).map(|_| ());
        (outcome.map_err(|r| r.rule), facts.asked)
    };
    assert_eq!(
        decide_with(job()),
        (Ok(()), vec!["account", "node", "controller", "source"])
    );
    let stranger = JobFacts { uid: 1000, ..job() };
    assert_eq!(
        decide_with(stranger),
        (Err(Rule::WrongUser), vec!["account"])
    );
    let wrong_node = JobFacts {
        node: "elsewhere".into(),
        ..job()
    };
    assert_eq!(
        decide_with(wrong_node),
        (Err(Rule::WrongNode), vec!["account", "node", "controller"])
    );
    let not_yet = metadata(
        "beamtime-metadata-11099003.json",
        include_bytes!("../../tests/fixtures/beamtime-metadata-11099003.json"),
    );
    let mut facts = Recording {
        known: job(),
        asked: Vec::new(),
    };
    let refusal = decide(&config(""), &not_yet, &mut facts).unwrap_err();
    assert_eq!(
        (refusal.rule, facts.asked),
        (Rule::NoOnlineResources, vec![])
    );
}

#[test]
fn a_beamline_folder_without_the_beamtime_is_pre_start_and_runs_unless_refused() {
    let absent = JobFacts {
        beamline_folder: BeamlineFolder::Absent,
        ..job()
    };
    let grant = decide(&config(""), &dedicated(), &mut absent.clone()).unwrap();
    assert_eq!(grant.phase, Phase::PreStart);
    let not_current = JobFacts {
        beamline_folder: BeamlineFolder::AnotherBeamtime,
        ..job()
    };
    let grant = decide(&config(""), &dedicated(), &mut not_current.clone()).unwrap();
    assert_eq!(grant.phase, Phase::PreStart);
    assert!(grant
        .environment
        .contains(&("BEAMTIME_PHASE", "pre-start".to_owned())));
    let refusal = refused(&config("prestart=refuse"), &dedicated(), &not_current);
    assert_eq!(refusal.rule, Rule::PreStart);
    assert!(
        refusal
            .problem
            .what
            .contains("has not started on beamline p21 yet"),
        "{refusal}"
    );
    assert!(refusal.problem.fix.contains("prestart=refuse"), "{refusal}");
    let online = decide(&config("prestart=refuse"), &dedicated(), &mut job()).unwrap();
    assert_eq!(online.phase, Phase::Online);
}

#[test]
fn a_beamline_folder_with_no_beamtime_at_all_is_a_node_fault_not_pre_start() {
    let unmounted = JobFacts {
        beamline_folder: BeamlineFolder::NoBeamtime,
        ..job()
    };
    let refusal = refused(&config(""), &dedicated(), &unmounted);
    assert_eq!(refusal.rule, Rule::MountFailed);
    assert!(
        refusal
            .problem
            .what
            .contains("/srv/p21/current holds no beamtime's metadata file"),
        "{refusal}"
    );
}

#[test]
fn refusals_print_problem_then_fix() {
    let refusal = Refusal::new(Rule::WrongNode, "node x is wrong", "Do y");
    assert_eq!(refusal.to_string(), "node x is wrong. Do y");
    assert_eq!(refusal.rule.as_str(), "wrong-node");
}
