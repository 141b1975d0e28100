//! Whether a job may run as a beamtime, decided from plain values.
//!
//! The plugin gathers the facts it can trust (the job's uid from slurmstepd,
//! reservation and account from the controller, the node name slurmd gave
//! slurmstepd, the metadata read by [`crate::trust`]) and hands them here. What
//! comes back is a [`Grant`] saying exactly what to mount and export, or a
//! [`Refusal`] naming the rule, the value seen, the value expected and the fix.
//! Nothing here touches Slurm or the file system, so every rule has a unit test.

use std::path::PathBuf;

use crate::facts::{BeamlineFolder, ControllerJob, StepFacts};
use crate::id::{Beamline, BeamtimeId};
use crate::metadata::{Metadata, Online, OnlineAnalysis};
use crate::plugin_config::{PluginConfig, Prestart};
use crate::problem::ASK_THE_ADMINS;
use crate::refusal::{Refusal, Rule};

/// Where a beamtime with online resources stands on this node's beamline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The beamline's folder holds this beamtime's own metadata file: its data is there.
    Online,
    /// It does not: the beamtime has not started on the beamline yet (the
    /// facility's pre-start, when only the core filesystem has its folder), or
    /// the beamline has moved on to another beamtime. Jobs run without the
    /// beamline, and see nothing of whichever beamtime the folder holds.
    PreStart,
}

impl Phase {
    /// As `BEAMTIME_PHASE` and the log's `phase=` say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Online => "online",
            Phase::PreStart => "pre-start",
        }
    }
}

/// The phase a beamline folder's contents give; `None` for a folder holding
/// no beamtime's file at all, which the node refuses. bt-submit tells the
/// phase with this too.
pub fn phase_of(holds: BeamlineFolder) -> Option<Phase> {
    match holds {
        BeamlineFolder::ThisBeamtime => Some(Phase::Online),
        BeamlineFolder::Absent | BeamlineFolder::AnotherBeamtime => Some(Phase::PreStart),
        BeamlineFolder::NoBeamtime => None,
    }
}

/// What an accepted job gets: the mount to make and the variables to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub beamtime: BeamtimeId,
    pub beamline: Beamline,
    pub reservation: String,
    /// The beamline folder on the node, bound read-only at `target`.
    pub source: PathBuf,
    pub target: PathBuf,
    /// The folder covered by a private tmpfs so that no other beamline shows.
    pub hide_root: PathBuf,
    /// Subfolders of `source` bound read-write on top.
    pub writable: Vec<String>,
    /// The metadata file's name, which `source` must hold while it is this
    /// beamtime's (a beamline's `current` folder moves on to the next one).
    pub metadata_file_name: String,
    /// Pre-start: only the empty tmpfs over `hide_root`, no beamline.
    pub phase: Phase,
    pub environment: Vec<(&'static str, String)>,
}

/// The facts the rules after [`check_submitter`] look at.
struct Job {
    controller: ControllerJob,
    node: String,
}

/// Whose uid [`check_submitter`] is given, so that its message names the
/// right one: `srun --jobid` by root attaches to a job of another user, and
/// the uid srun runs as is then not the job's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitter {
    /// The user running srun, sbatch or salloc (the courtesy check).
    Client(u32),
    /// The job's user, `S_JOB_UID` (the node's decision).
    Job(u32),
}

/// The checks that need nothing but the metadata and who submits: shared by
/// the courtesy check in srun/sbatch/salloc and the node's decision.
/// `account_uid` looks the beamtime's account up in the user database; it is
/// called only for a beamtime with online resources.
pub fn check_submitter<'m>(
    config: &PluginConfig,
    metadata: &'m Metadata,
    submitter: Submitter,
    account_uid: impl FnOnce(&str) -> Result<Option<u32>, Refusal>,
) -> Result<&'m OnlineAnalysis, Refusal> {
    let id = &metadata.id;
    let online = match &metadata.online {
        Online::Ready(online) => online,
        Online::NotYet => {
            return Err(Refusal::new(
                Rule::NoOnlineResources,
                format!(
                    "beamtime {id} has no online analysis resources yet ({} has no usable \
                     onlineAnalysis block)",
                    metadata.path.display()
                ),
                "Wait until the beamtime has started and its Slurm reservation exists, \
                 or ask the beamline staff to request online resources",
            ))
        }
    };
    let account = &online.user_account;
    let Some(account_uid) = account_uid(account)? else {
        return Err(Refusal::new(
            Rule::UnsafeAccount,
            format!(
                "the beamtime's account '{account}' ({}: onlineAnalysis.userAccount) does not exist on this node",
                metadata.path.display()
            ),
            "Ask the facility to check that the beamtime was started on this node",
        ));
    };
    if account_uid < config.min_uid {
        return Err(Refusal::new(
            Rule::UnsafeAccount,
            format!(
                "the beamtime's account '{account}' ({}: onlineAnalysis.userAccount) is a system \
                 account (uid {account_uid} < {})",
                metadata.path.display(),
                config.min_uid
            ),
            "Refusing to run a beamtime as a system account; ask the facility to fix the metadata",
        ));
    }
    let (uid, who) = match submitter {
        Submitter::Client(uid) => (uid, "you submit as"),
        Submitter::Job(uid) => (uid, "this job's user is"),
    };
    if uid != account_uid {
        return Err(Refusal::new(
            Rule::WrongUser,
            format!(
                "beamtime {id} runs as its account '{account}' (uid {account_uid}), and {who} \
                 uid {uid}"
            ),
            format!(
                "Log in as the beamtime account ({}) and submit from there",
                ssh_hint(online)
            ),
        ));
    }
    Ok(online)
}

/// How to log in as the account. The metadata's key is named only if it is
/// there to use: a hint to a missing file sends users after the wrong problem
/// (the one look at the file system in this module, for a hint only).
fn ssh_hint(online: &OnlineAnalysis) -> String {
    let node = online
        .reserved_nodes
        .first()
        .map(String::as_str)
        .unwrap_or("<node>");
    match &online.ssh_private_key {
        Some(key) if key.is_file() => {
            format!("ssh -i {} -l {} {node}", key.display(), online.user_account)
        }
        _ => format!("ssh -l {} {node}", online.user_account),
    }
}

/// The node's decision for a job that asked for `metadata.id`: who submits
/// first (free, then one user-database lookup), then the node, then the
/// controller, then the site's own rules.
pub fn decide(
    config: &PluginConfig,
    metadata: &Metadata,
    facts: &mut impl StepFacts,
) -> Result<Grant, Refusal> {
    let online = check_submitter(
        config,
        metadata,
        Submitter::Job(facts.job_uid()),
        |account| facts.account_uid(account),
    )?;
    let node = facts.node()?;
    let controller = facts.controller()?;
    let job = Job { controller, node };
    let id = &metadata.id;
    let valid = online.reservations.join(", ");

    let reservation = match &job.controller.reservation {
        None => {
            return Err(Refusal::new(
                Rule::NoReservation,
                format!("the job runs outside a reservation; beamtime {id} jobs must run in one of its reservations ({valid})"),
                format!(
                    "Submit with --reservation={} (bt-submit adds it for you)",
                    online.reservations[0]
                ),
            ))
        }
        Some(reservation) => reservation,
    };
    // `--reservation=A,B` lets Slurm pick; the controller then reports the list
    // it was given, not the one the job runs in, so nothing can be checked.
    if reservation.contains(',') {
        return Err(Refusal::new(
            Rule::WrongReservation,
            format!(
                "the job was submitted with a list of reservations ('{reservation}'), and Slurm \
                 tells the plugin that list, not the reservation the job runs in; beamtime {id} \
                 jobs name one of its reservations ({valid})"
            ),
            format!(
                "Submit with one reservation, e.g. --reservation={} (bt-submit picks one for you)",
                online.reservations[0]
            ),
        ));
    }
    if !online.reservations.iter().any(|r| r == reservation) {
        return Err(Refusal::new(
            Rule::WrongReservation,
            format!(
                "the job runs in reservation '{reservation}', which is not one of beamtime {id}'s ({valid})"
            ),
            format!("Submit with --reservation={} (bt-submit adds it for you)", online.reservations[0]),
        ));
    }

    // Listed is not enough: a file that names another beamtime's reservation
    // (a copy-paste slip, a tampered file) must not open that reservation's jobs
    // to this beamtime's data.
    if !id.owns_reservation(reservation) {
        return Err(Refusal::new(
            Rule::WrongReservation,
            format!(
                "the job runs in reservation '{reservation}', which beamtime {id}'s metadata lists but \
                 which is not named after it ({id} or {id}_<n>)"
            ),
            "Ask the beamline staff to fix onlineAnalysis.slurmReservation in the metadata file",
        ));
    }

    if config.check_nodes && !online.reserved_nodes.iter().any(|n| n == &job.node) {
        return Err(Refusal::new(
            Rule::WrongNode,
            format!(
                "node {} is not one of beamtime {id}'s reserved nodes ({})",
                job.node,
                online.reserved_nodes.join(", ")
            ),
            "Ask the beamline staff to check the reservation: its nodes and the metadata's \
             reservedNodes disagree",
        ));
    }

    if let Some(expected) = config.expected_account(id, &online.user_account) {
        let seen = job.controller.account.as_deref().unwrap_or("(none)");
        if seen != expected {
            return Err(Refusal::new(
                Rule::WrongAccount,
                format!(
                    "the job's Slurm account is '{seen}', beamtime {id} jobs must use '{expected}'"
                ),
                format!(
                    "Submit with --account={expected}, or leave --account out to use your default"
                ),
            ));
        }
    }

    let Some(source) = &config.source else {
        return Err(Refusal::new(
            Rule::SiteConfiguration,
            "the site has not configured where beamline data lives (source= in plugstack.conf)",
            format!("{ASK_THE_ADMINS} to set source= for spank-beamtime"),
        ));
    };
    let beamline = &metadata.beamline;
    let source = source.expand(id, beamline);
    let metadata_file_name = metadata.kind.file_name(id);
    let holds = facts.beamline_folder(&source, &metadata_file_name)?;
    let phase = match phase_of(holds) {
        Some(phase) => phase,
        None => {
            return Err(Refusal::new(
                Rule::MountFailed,
                format!(
                    "the beamline folder could not be set up: {} holds no beamtime's metadata \
                     file, not even {metadata_file_name}: is the beamline file system mounted \
                     on this node?",
                    source.display()
                ),
                ASK_THE_ADMINS,
            ))
        }
    };
    if phase == Phase::PreStart && config.prestart == Prestart::Refuse {
        return Err(Refusal::new(
            Rule::PreStart,
            format!(
                "beamtime {id} has not started on beamline {beamline} yet (or the beamline has \
                 moved on): its beamline folder does not hold it"
            ),
            "This site runs beamtime jobs only once the beamtime has started on its \
             beamline (prestart=refuse); submit again then",
        ));
    }
    let target = config.target.expand(id, beamline);
    let mut environment = vec![
        ("BEAMTIME_ID", id.to_string()),
        ("BEAMTIME_BEAMLINE", beamline.to_string()),
        ("BEAMTIME_BEAMLINE_PATH", target.display().to_string()),
        ("BEAMTIME_PHASE", phase.as_str().to_owned()),
    ];
    if let Some(core) = &metadata.core_path {
        environment.push(("BEAMTIME_CORE_PATH", core.display().to_string()));
    }
    Ok(Grant {
        beamtime: id.clone(),
        beamline: beamline.clone(),
        reservation: reservation.clone(),
        source,
        target,
        hide_root: config.target.hide_root().to_path_buf(),
        writable: config.writable.clone(),
        metadata_file_name,
        phase,
        environment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::parse_metadata;
    use std::path::Path;

    /// Facts about the job on this node, all known already: the rules' table
    /// of tests states each case as plain values.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct JobFacts {
        uid: u32,
        account_uid: Option<u32>,
        controller: ControllerJob,
        node: String,
        /// What [`StepFacts::beamline_folder`] answers.
        beamline_folder: BeamlineFolder,
    }

    impl StepFacts for JobFacts {
        fn job_uid(&self) -> u32 {
            self.uid
        }
        fn account_uid(&mut self, _account: &str) -> Result<Option<u32>, Refusal> {
            Ok(self.account_uid)
        }
        fn node(&mut self) -> Result<String, Refusal> {
            Ok(self.node.clone())
        }
        fn controller(&mut self) -> Result<ControllerJob, Refusal> {
            Ok(self.controller.clone())
        }
        fn beamline_folder(&mut self, _: &Path, _: &str) -> Result<BeamlineFolder, Refusal> {
            Ok(self.beamline_folder)
        }
    }

    const ACCOUNT_UID: u32 = 5005;

    fn metadata(name: &str, bytes: &[u8]) -> Metadata {
        parse_metadata(bytes, Path::new(&format!("/srv/p21/current/{name}"))).unwrap()
    }

    /// Dedicated beamtime 11099005: reservations 11099005 and 11099005_1,
    /// nodes max-p3a931 … max-p3ag934, account bttest05.
    fn dedicated() -> Metadata {
        metadata(
            "beamtime-metadata-11099005.json",
            include_bytes!("../tests/fixtures/beamtime-metadata-11099005.json"),
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
            include_bytes!("../tests/fixtures/beamtime-metadata-11099005.json"),
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
            include_bytes!("../tests/fixtures/beamtime-metadata-11099003.json"),
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
            include_bytes!("../tests/fixtures/commissioning-metadata-c20240312_000_GPUTEST.json"),
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
        fn beamline_folder(
            &mut self,
            source: &Path,
            name: &str,
        ) -> Result<BeamlineFolder, Refusal> {
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
            include_bytes!("../tests/fixtures/beamtime-metadata-11099003.json"),
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
}
