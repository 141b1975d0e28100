use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use beamtime::facts::{BeamlineFolder, ControllerJob, JobFacts};
use beamtime::id::BeamtimeId;
use beamtime::metadata::Metadata;
use beamtime::policy;
use beamtime::refusal::Rule;
use beamtime::users::LookupError;

use super::*;
use crate::slurm::query::canned::Canned;

const GOOD: &str =
    include_str!("../../../../beamtime/tests/fixtures/beamtime-metadata-11099001.json");

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/scontrol/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A scratch folder with a plugstack.conf and a beamline folder, and
/// Slurm's answers keyed by the command line.
struct World {
    /// Removed with the scratch folder.
    _scratch: tempfile::TempDir,
    dir: PathBuf,
    slurm: Canned,
    /// The environment doctor sees (bt-submit's own search path).
    environment: Vec<(&'static str, OsString)>,
}

impl World {
    fn new() -> World {
        let scratch = tempfile::Builder::new()
            .prefix("bt-doctor-")
            .tempdir()
            .unwrap();
        let dir = scratch.path().to_owned();
        fs::create_dir_all(dir.join("p11/current")).unwrap();
        fs::create_dir_all(dir.join("plugstack.conf.d")).unwrap();
        fs::write(dir.join("spank_beamtime.so"), "").unwrap();
        // A config file without patterns: the host's own cannot change the search.
        let config = dir.join("bt-submit.conf");
        fs::write(&config, "# none\n").unwrap();
        let mut world = World {
            _scratch: scratch,
            dir,
            slurm: Canned::default(),
            environment: vec![("BT_SUBMIT_CONFIG", config.into())],
        };
        let me = fs::metadata(&world.dir).unwrap().uid();
        world.plugstack(&format!("trusted_owners={me}"));
        let metadata = world
            .dir
            .join("p11/current/beamtime-metadata-11099001.json");
        fs::write(&metadata, GOOD).unwrap();
        fs::set_permissions(&metadata, fs::Permissions::from_mode(0o644)).unwrap();
        let show_config = fixture("show-config.txt").replace(
            "/var/lib/spank-beamtime-h7/etc/plugstack.conf",
            &world.dir.join("plugstack.conf").display().to_string(),
        );
        world.slurm.answer("scontrol show config", show_config);
        world.slurm.answer("srun --help", fixture("srun-help.txt"));
        // The captured reservations hold btnode1; the fixture's metadata
        // reserves max-p3a901.
        world.slurm.answer(
            "scontrol show reservation -o",
            fixture("reservations.txt").replace("btnode1", "max-p3a901"),
        );
        world
            .slurm
            .answer("scontrol show hostnames max-p3a901", "max-p3a901\n");
        world.slurm.answer(
            "scontrol show partition -o ponline_p11",
            fixture("partition-up.txt"),
        );
        world
    }

    /// The fixture's reserved node is max-p3a901; it answers with a
    /// captured line of btnode1.
    fn with_nodes(mut self, line: &str) -> World {
        self.slurm.answer(
            "scontrol show node -o max-p3a901",
            line.replace("btnode1", "max-p3a901"),
        );
        self
    }

    fn plugstack(&mut self, extra: &str) {
        let d = self.dir.display();
        self.plugin_line(&format!(
            "metadata={d}/*/current/beamtime-metadata-{{id}}.json source={d}/{{beamline}}/current {extra}"
        ));
    }

    /// The plugin's line (line 2 of the drop-in) with just these arguments.
    fn plugin_line(&self, args: &str) {
        let d = self.dir.display();
        fs::write(
            self.dir.join("plugstack.conf"),
            format!("include {d}/plugstack.conf.d/*.conf\n"),
        )
        .unwrap();
        fs::write(
            self.drop_in(),
            format!("# comment\nrequired {d}/spank_beamtime.so {args}\n"),
        )
        .unwrap();
    }

    fn drop_in(&self) -> PathBuf {
        self.dir.join("plugstack.conf.d/beamtime.conf")
    }

    fn me(&self) -> u32 {
        fs::metadata(&self.dir).unwrap().uid()
    }

    fn examine_as(&self, user: &str) -> Report {
        self.examine(
            &Target::Id(beamtime_id("11099001")),
            &Ok(Some(user.to_owned())),
        )
    }

    /// As `user`, by name; the uid is the one [`uid_in_table`] gives the name.
    fn examine(&self, target: &Target, user: &Result<Option<String>, LookupError>) -> Report {
        self.examine_streaming(target, user, &mut |_| {})
    }

    /// As [`World::examine`], handing each check to `emit` as it is made.
    fn examine_streaming(
        &self,
        target: &Target,
        user: &Result<Option<String>, LookupError>,
        emit: &mut dyn FnMut(&Check),
    ) -> Report {
        let environment = |name: &str| {
            self.environment
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        };
        let uid = user
            .as_ref()
            .ok()
            .and_then(|name| name.as_deref())
            .and_then(uid_in_table)
            .unwrap_or(UNLISTED_UID);
        let uid_of = |name: &str| Ok(uid_in_table(name));
        let who = Identity {
            name: user.clone(),
            uid,
            uid_of: &uid_of,
        };
        examine(
            target,
            &Settings::new(&self.slurm, &environment),
            &who,
            emit,
        )
    }
}

/// The user database of these tests: the fixture's account, another user,
/// and a system account (below the default `min_uid` of 1000).
fn uid_in_table(name: &str) -> Option<u32> {
    match name {
        "bttest01" => Some(1001),
        "btalice" => Some(1002),
        "btsystem" => Some(999),
        _ => None,
    }
}

/// The uid of a user the table does not list (or whose name is not known).
const UNLISTED_UID: u32 = 1999;

fn beamtime_id(id: &str) -> BeamtimeId {
    BeamtimeId::parse(id).unwrap()
}

fn outcomes(report: &Report) -> Vec<(&'static str, Outcome)> {
    report.checks.iter().map(|c| (c.name, c.outcome)).collect()
}

fn check<'r>(report: &'r Report, name: &str) -> &'r Check {
    report.checks.iter().find(|c| c.name == name).unwrap()
}

const ORDER: [&str; 12] = [
    "controller",
    "metadata",
    "online-resources",
    "user",
    "reservations",
    "reservation-access",
    "nodes",
    "partition",
    "node-verdict",
    "plugin",
    "beamline-source",
    "task-lifetime",
];

#[test]
fn a_ready_beamtime_passes_every_check_in_order() {
    let world = World::new().with_nodes(&fixture("node-idle.txt"));
    let report = world.examine_as("bttest01");
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, ORDER);
    assert!(report.all_passed(), "{}", report.text());
    // The fixture's cluster, like the test cluster, tracks processes with linuxproc.
    let lifetime = check(&report, "task-lifetime");
    assert_eq!(lifetime.outcome, Outcome::Warn);
    assert!(
        lifetime
            .detail
            .contains("ProctrackType=proctrack/linuxproc")
            && lifetime.fix.contains("ProctrackType=proctrack/cgroup"),
        "{lifetime:?}"
    );
    assert!(
        report.text().ends_with(
            "all 12 checks passed, 1 with a warning for the admins: beamtime jobs can run\n"
        ),
        "{}",
        report.text()
    );
    assert!(
        report
            .text()
            .contains("fix: ask the cluster's administrators: set ProctrackType"),
        "{}",
        report.text()
    );
    assert_eq!(report.json()["ok"], true);
    assert_eq!(report.json()["checks"][8]["result"], "pass");
    assert_eq!(report.json()["checks"][11]["result"], "warn");
}

#[test]
fn proctrack_cgroup_passes_the_task_lifetime_check() {
    let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
    let show_config = fixture("show-config.txt")
        .replace(
            "/var/lib/spank-beamtime-h7/etc/plugstack.conf",
            &world.dir.join("plugstack.conf").display().to_string(),
        )
        .replace("proctrack/linuxproc", "proctrack/cgroup");
    world.slurm.answer("scontrol show config", show_config);
    let report = world.examine_as("bttest01");
    assert_eq!(check(&report, "task-lifetime").outcome, Outcome::Pass);
    assert!(
        report
            .text()
            .ends_with("all 12 checks passed: beamtime jobs can run\n"),
        "{}",
        report.text()
    );
}

#[test]
fn the_wrong_user_is_told_how_to_log_in_and_is_not_admitted_by_the_reservation() {
    let world = World::new().with_nodes(&fixture("node-idle.txt"));
    let report = world.examine_as("btalice");
    let user = check(&report, "user");
    assert_eq!(user.outcome, Outcome::Fail);
    assert_eq!(
        user.detail,
        "you are btalice; the node refuses (wrong-user): beamtime 11099001 runs as its account \
         'bttest01' (uid 1001), and you submit as uid 1002"
    );
    assert!(
        user.fix
            .starts_with("Log in as the beamtime account (ssh -l bttest01 max-p3a901)"),
        "{}",
        user.fix
    );
    // The node's verdict needs a user the node admits.
    assert_eq!(check(&report, "node-verdict").outcome, Outcome::Skip);
    let access = check(&report, "reservation-access");
    assert_eq!(access.outcome, Outcome::Fail);
    assert!(
        access
            .detail
            .contains("11099001: user btalice is not admitted by Users=bttest01"),
        "{}",
        access.detail
    );
    assert!(!report.all_passed());
    let text = report.text();
    assert!(text.contains("FAIL user "), "{text}");
    assert!(
        text.contains("fix: Log in as the beamtime account"),
        "{text}"
    );
    assert!(text.ends_with("2 failed, 1 not checked, of 12 checks: a beamtime job would not run; start with the first FAIL\n"), "{text}");
}

#[test]
fn missing_or_inactive_reservations_drained_nodes_and_a_down_partition_fail() {
    let mut world = World::new().with_nodes(&fixture("node-drained.txt"));
    let inactive = fixture("reservation-inactive-negated-user.txt").replace("future", "11099001");
    world.slurm.answer("scontrol show reservation -o", inactive);
    world.slurm.answer(
        "scontrol show partition -o ponline_p11",
        fixture("partition-down.txt"),
    );
    let report = world.examine_as("bttest01");
    let res = check(&report, "reservations");
    assert_eq!(res.outcome, Outcome::Fail);
    assert!(
        res.detail
            .contains("reservation 11099001 is INACTIVE (StartTime=2026-11-27T13:19:33"),
        "{}",
        res.detail
    );
    // The inactive one exists and excludes exactly this user.
    assert_eq!(check(&report, "reservation-access").outcome, Outcome::Fail);
    let nodes = check(&report, "nodes");
    assert_eq!(nodes.outcome, Outcome::Fail);
    assert!(
        nodes
            .detail
            .starts_with("max-p3a901: State=IDLE+DRAIN+RESERVED, reason: disk full"),
        "{}",
        nodes.detail
    );
    assert_eq!(
        check(&report, "partition").detail,
        "partition ponline_p11 is not up: State=DOWN"
    );
    assert_eq!(check(&report, "plugin").outcome, Outcome::Pass);

    world.slurm.answer(
        "scontrol show reservation -o",
        fixture("reservation-accounts.txt"),
    );
    let report = world.examine_as("bttest01");
    assert_eq!(
        check(&report, "reservations").detail,
        "reservation 11099001 does not exist"
    );
    assert_eq!(check(&report, "reservation-access").outcome, Outcome::Skip);
}

#[test]
fn an_unanswering_controller_fails_the_checks_that_ask_it() {
    let mut world = World::new();
    world.slurm.fail(
        "scontrol show reservation -o",
        "slurm_load_reservations error: Unable to contact slurm controller (connect failure)",
    );
    let report = world.examine_as("bttest01");
    assert_eq!(check(&report, "reservations").outcome, Outcome::Fail);
    assert_eq!(
        check(&report, "reservations").detail,
        "'scontrol show reservation -o' failed (exit status: 1): slurm_load_reservations error: \
         Unable to contact slurm controller (connect failure)"
    );
    assert!(check(&report, "reservations").fix.contains("scontrol ping"));
    assert_eq!(check(&report, "reservation-access").outcome, Outcome::Skip);
    assert!(check(&report, "nodes")
        .detail
        .contains("max-p3a901: 'scontrol show node -o max-p3a901' failed"));
}

/// The checks that need the controller, as [`ORDER`] lists them after the user check.
const AFTER_THE_USER: usize = 4;

#[test]
fn an_unreachable_controller_is_one_cause_asked_once_and_the_rest_waits_for_it() {
    let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
    world.slurm.fail(
        "scontrol show config",
        "slurm_load_ctl_conf error: Unable to contact slurm controller (connect failure)",
    );
    // A file named on the command line is found without the plugin's line.
    let file = world
        .dir
        .join("p11/current/beamtime-metadata-11099001.json");
    let report = world.examine(&Target::File(file), &Ok(Some("bttest01".into())));
    let controller = check(&report, "controller");
    assert_eq!(controller.outcome, Outcome::Fail, "{}", report.text());
    assert!(
        controller.detail.starts_with(
            "this host cannot reach the Slurm controller: 'scontrol show config' failed"
        ) && controller.fix.contains("scontrol ping"),
        "{controller:?}"
    );
    for name in &ORDER[AFTER_THE_USER..] {
        let skipped = check(&report, name);
        assert_eq!(
            (skipped.outcome, skipped.detail.as_str()),
            (Outcome::Skip, "not checked: needs controller"),
            "{}",
            report.text()
        );
    }
    assert_eq!(world.slurm.asked(), ["scontrol show config"]);
}

#[test]
fn a_host_without_slurm_is_told_to_use_remote() {
    let mut world = World::new();
    world.slurm.cannot_run("scontrol show config", libc::ENOENT);
    let report = world.examine_as("bttest01");
    let controller = check(&report, "controller");
    assert_eq!(controller.outcome, Outcome::Fail);
    assert!(
        controller
            .detail
            .starts_with("this is no Slurm host: cannot run 'scontrol show config'")
            && controller.fix.contains("bt-submit --remote"),
        "{controller:?}"
    );
    assert_eq!(
        outcomes(&report)
            .iter()
            .filter(|(_, outcome)| *outcome == Outcome::Fail)
            .count(),
        // The metadata is not on the built-in search path of a host without
        // the plugin's line: the second failure is that, not Slurm's.
        2,
        "{}",
        report.text()
    );
    assert_eq!(world.slurm.asked(), ["scontrol show config"]);
}

#[test]
fn each_check_is_handed_on_as_it_is_made() {
    let world = World::new().with_nodes(&fixture("node-idle.txt"));
    let mut streamed = Vec::new();
    let report = world.examine_streaming(
        &Target::Id(beamtime_id("11099001")),
        &Ok(Some("bttest01".into())),
        &mut |check| streamed.push(check.clone()),
    );
    assert_eq!(streamed, report.checks);
}

#[test]
fn an_accounts_reservation_asks_sacctmgr_for_the_users_accounts() {
    let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
    let line = fixture("reservation-accounts.txt").replace("acct", "11099001");
    world.slurm.answer("scontrol show reservation -o", line);
    world.slurm.answer(
        "sacctmgr -n -P show assoc where user=bttest01 format=account",
        "11099001\n",
    );
    let access = check(&world.examine_as("bttest01"), "reservation-access").clone();
    assert_eq!(access.outcome, Outcome::Fail);
    assert!(
        access
            .detail
            .contains("none of your Slurm accounts (11099001) is admitted by Accounts=btusers"),
        "{}",
        access.detail
    );
    world.slurm.answer(
        "sacctmgr -n -P show assoc where user=bttest01 format=account",
        "btusers\n",
    );
    assert_eq!(
        check(&world.examine_as("bttest01"), "reservation-access").outcome,
        Outcome::Pass
    );
}

#[test]
fn without_metadata_only_the_plugin_is_checked() {
    let world = World::new();
    let report = world.examine(
        &Target::Id(beamtime_id("11099077")),
        &Ok(Some("bttest01".into())),
    );
    assert_eq!(check(&report, "metadata").outcome, Outcome::Fail);
    assert!(
        check(&report, "metadata").detail.contains("11099077"),
        "{}",
        check(&report, "metadata").detail
    );
    let expected: Vec<(&str, Outcome)> = ORDER
        .iter()
        .map(|n| match *n {
            "metadata" => (*n, Outcome::Fail),
            "controller" | "plugin" => (*n, Outcome::Pass),
            "task-lifetime" => (*n, Outcome::Warn),
            _ => (*n, Outcome::Skip),
        })
        .collect();
    assert_eq!(outcomes(&report), expected);
    assert_eq!(report.json()["checks"][2]["result"], "skip");
    assert_eq!(report.json()["beamtime"], "11099077");
}

#[test]
fn metadata_of_an_untrusted_owner_fails_with_the_owner_named() {
    let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
    world.plugstack("trusted_owners=4000000");
    let report = world.examine_as("bttest01");
    let m = check(&report, "metadata");
    assert_eq!(m.outcome, Outcome::Fail);
    assert!(
        m.detail.contains("not by a trusted owner (uid 4000000)"),
        "{}",
        m.detail
    );
}

#[test]
fn trusted_owners_are_resolved_by_name_as_the_plugin_resolves_them() {
    let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
    let me = fs::metadata(&world.dir).unwrap().uid();
    let name = beamtime::users::by_uid(me)
        .unwrap()
        .expect("the tests' user")
        .name;
    world.plugstack(&format!("trusted_owners={name}"));
    let report = world.examine_as("bttest01");
    assert!(report.all_passed(), "{}", report.text());
    assert!(
        check(&report, "metadata").detail.contains(&format!(
            "trusted (owned by {name}, not writable by others), found through "
        )),
        "{}",
        report.text()
    );

    world.plugstack("trusted_owners=no-such-user-bt-doctor");
    let report = world.examine_as("bttest01");
    let line = &report.checks[1];
    assert_eq!((line.name, line.outcome), ("plugstack-line", Outcome::Fail));
    assert_eq!(
        line.detail,
        format!(
            "{}:2: plugstack.conf argument 'trusted_owners=no-such-user-bt-doctor': \
             trusted_owners names user 'no-such-user-bt-doctor', who does not exist on this \
             host; fix the spank-beamtime line in plugstack.conf",
            world.drop_in().display()
        )
    );
    assert!(
        line.fix.contains("every --beamtime job is refused"),
        "{}",
        line.fix
    );
}

#[test]
fn a_user_database_that_does_not_answer_is_not_an_unknown_user() {
    let world = World::new().with_nodes(&fixture("node-idle.txt"));
    let failed = Err(LookupError {
        asked: "uid 1000".to_owned(),
        problem: "Connection timed out".to_owned(),
    });
    let report = world.examine(&Target::Id(beamtime_id("11099001")), &failed);
    // The node goes by uid, which the kernel tells without the database;
    // only the name's checks need it.
    let user = check(&report, "user");
    assert_eq!(user.outcome, Outcome::Fail);
    assert_eq!(
        user.detail,
        "the node refuses (wrong-user): beamtime 11099001 runs as its account 'bttest01' \
         (uid 1001), and you submit as uid 1999"
    );
    let access = check(&report, "reservation-access");
    assert_eq!(access.outcome, Outcome::Skip);
    assert_eq!(access.detail, "not checked: needs user");
    assert_eq!(check(&report, "reservations").outcome, Outcome::Pass);

    // No entry at all is a name nobody has: the reservation does not admit it.
    let report = world.examine(&Target::Id(beamtime_id("11099001")), &Ok(None));
    assert_eq!(
        check(&report, "user").detail,
        "you are a user the user database does not know; the node refuses (wrong-user): \
         beamtime 11099001 runs as its account 'bttest01' (uid 1001), and you submit as uid 1999"
    );
    assert_eq!(check(&report, "reservation-access").outcome, Outcome::Fail);
}

#[test]
fn a_bad_plugstack_line_is_reported_first_and_the_rest_is_checked_without_it() {
    let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
    let me = world.me();
    world.plugstack(&format!("trusted_owners={me} colour=blue"));
    let report = world.examine_as("bttest01");
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    // After the controller, which names the line.
    assert_eq!(names[..2], ["controller", "plugstack-line"]);
    assert_eq!(names[2..], ORDER[1..]);
    let line = &report.checks[1];
    assert_eq!(line.outcome, Outcome::Fail);
    assert!(
        line.detail.starts_with(&format!(
            "{}:2: plugstack.conf argument 'colour=blue': unknown key 'colour' (known keys: ",
            world.drop_in().display()
        )),
        "{}",
        line.detail
    );
    assert!(
        line.fix.starts_with(
            "ask the cluster's administrators to fix it: jobs without --beamtime are not affected"
        ),
        "{}",
        line.fix
    );
    // Without the plugin's patterns the metadata is searched where bt-submit searches.
    let metadata = check(&report, "metadata");
    assert_eq!(metadata.outcome, Outcome::Fail);
    assert!(
        metadata.detail.ends_with(
            "; search path: the built-in defaults (the plugin's line is wrong, see plugstack-line)"
        ),
        "{}",
        metadata.detail
    );
    assert!(
        metadata
            .fix
            .starts_with("fix the plugstack-line check first; then "),
        "{}",
        metadata.fix
    );
    // The plugin itself still loads, and srun offers --beamtime.
    assert_eq!(check(&report, "plugin").outcome, Outcome::Pass);
    assert_eq!(check(&report, "beamline-source").outcome, Outcome::Skip);
    let text = report.text();
    assert!(text.contains("\nFAIL plugstack-line     "), "{text}");
    assert!(
        text.ends_with("of 13 checks: a beamtime job would not run; start with the first FAIL\n"),
        "{text}"
    );

    // Through BEAMTIME_METADATA_PATH the rest can be checked, except the source.
    let folder = world.dir.join("p11/current").display().to_string();
    world.environment.push((
        "BEAMTIME_METADATA_PATH",
        format!("{folder}/beamtime-metadata-{{id}}.json").into(),
    ));
    let report = world.examine_as("bttest01");
    let metadata = check(&report, "metadata");
    assert!(
        metadata
            .detail
            .ends_with(", found through BEAMTIME_METADATA_PATH"),
        "{}",
        metadata.detail
    );
    assert_eq!(check(&report, "user").outcome, Outcome::Pass);
    assert_eq!(
        check(&report, "beamline-source").detail,
        "not checked: needs plugstack-line"
    );

    // No source=, and no line at all.
    world.plugin_line(&format!("trusted_owners={me}"));
    let report = world.examine_as("bttest01");
    assert!(
        report.checks[1].detail.ends_with(
            ":2: the spank-beamtime line has no source= argument, so the plugin does \
                        not know where beamline data lives on the nodes; add one, e.g. \
                        source=/gpfs/beamline/{beamline}/current"
        ),
        "{}",
        report.checks[1].detail
    );
    fs::write(world.drop_in(), "# nothing\n").unwrap();
    let report = world.examine_as("bttest01");
    assert_eq!(report.checks[1].name, "metadata");
    assert!(
        check(&report, "plugin")
            .detail
            .starts_with("no spank_beamtime plugin in "),
        "{}",
        check(&report, "plugin").detail
    );
}

#[test]
fn the_metadata_check_says_where_it_searched() {
    let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
    let report = world.examine_as("bttest01");
    let location = format!("{}:2", world.drop_in().display());
    assert!(
        check(&report, "metadata").detail.ends_with(&format!(
            ", found through the metadata= patterns of the plugin's line {location}"
        )),
        "{}",
        report.text()
    );

    // The plugin's patterns decide where the job's file is; bt-submit's own is mentioned.
    world
        .environment
        .push(("BEAMTIME_METADATA_PATH", "/nowhere/{id}.json".into()));
    let detail = check(&world.examine_as("bttest01"), "metadata")
        .detail
        .clone();
    assert!(
        detail.ends_with(&format!(
            "found through the metadata= patterns of the plugin's line {location}, where the \
             plugin looks; bt-submit itself searches BEAMTIME_METADATA_PATH first"
        )),
        "{detail}"
    );

    world.slurm.fail(
        "scontrol show config",
        "slurm_load_ctl_conf error: Unable to contact slurm controller (connect failure)",
    );
    let report = world.examine_as("bttest01");
    let metadata = check(&report, "metadata");
    assert_eq!(metadata.outcome, Outcome::Fail);
    assert!(
        metadata
            .detail
            .ends_with("; search path: BEAMTIME_METADATA_PATH"),
        "{}",
        metadata.detail
    );
    world
        .environment
        .retain(|(key, _)| *key != "BEAMTIME_METADATA_PATH");
    let metadata = check(&world.examine_as("bttest01"), "metadata").clone();
    assert!(
        metadata.detail.ends_with(
            "; search path: the built-in defaults (the plugin's line could not be read: 'scontrol \
             show config' failed (exit status: 1): slurm_load_ctl_conf error: Unable to contact \
             slurm controller (connect failure))"
        ),
        "{}",
        metadata.detail
    );
}

#[test]
fn a_named_file_or_folder_goes_through_the_same_trust_checks() {
    let world = World::new().with_nodes(&fixture("node-idle.txt"));
    let me = Ok(Some("bttest01".to_owned()));
    let file = world
        .dir
        .join("p11/current/beamtime-metadata-11099001.json");
    for target in [
        Target::File(file.clone()),
        Target::FromDirectory(world.dir.join("p11/current")),
    ] {
        let report = world.examine(&target, &me);
        assert!(report.all_passed(), "{}", report.text());
    }
    let renamed = world.dir.join("p11/current/my-copy.json");
    fs::copy(&file, &renamed).unwrap();
    let report = world.examine(&Target::File(renamed), &me);
    let m = check(&report, "metadata");
    assert_eq!(m.outcome, Outcome::Fail);
    assert!(m.detail.ends_with("my-copy.json: the plugin only reads files named beamtime-metadata-<id>.json or commissioning-metadata-<id>.json"), "{}", m.detail);
}

#[test]
fn a_configured_plugin_that_srun_does_not_load_fails() {
    let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
    let help = fixture("srun-help.txt");
    let start = help.find("Options provided by plugins:").unwrap();
    let end = help.find("GPU scheduling options:").unwrap();
    world
        .slurm
        .answer("srun --help", format!("{}{}", &help[..start], &help[end..]));
    let plugin = check(&world.examine_as("bttest01"), "plugin").clone();
    assert_eq!(plugin.outcome, Outcome::Fail);
    assert!(
        plugin
            .detail
            .ends_with("but srun here does not offer --beamtime: it does not load the plugin"),
        "{}",
        plugin.detail
    );
    const ENOENT: i32 = 2;
    world.slurm.cannot_run("srun --help", ENOENT);
    let plugin = check(&world.examine_as("bttest01"), "plugin").clone();
    assert_eq!(
        plugin.detail,
        "cannot run 'srun --help': No such file or directory (os error 2)"
    );
}

/// A source= other than the folder the metadata= pattern finds the file in,
/// so that the source folder's own copy can be missing.
fn world_with_source(source: &str) -> World {
    let world = World::new().with_nodes(&fixture("node-idle.txt"));
    let d = world.dir.display();
    world.plugin_line(&format!(
        "trusted_owners={} metadata={d}/*/current/beamtime-metadata-{{id}}.json source={d}/{source}",
        world.me()
    ));
    world
}

#[test]
fn the_source_folder_is_online_only_with_the_beamtimes_trusted_copy() {
    let world = world_with_source("{beamline}/current");
    let source = check(&world.examine_as("bttest01"), "beamline-source").clone();
    assert_eq!(source.outcome, Outcome::Pass);
    assert_eq!(
        source.detail,
        format!(
            "online: {}/p11/current is there and holds the beamtime's \
             beamtime-metadata-11099001.json, trusted; jobs see it as /beamline/p11/current",
            world.dir.display()
        )
    );

    // A folder with no beamtime's file at all is what an unmounted file system leaves.
    let world = world_with_source("source/{beamline}");
    let folder = world.dir.join("source/p11");
    fs::create_dir_all(&folder).unwrap();
    let report = world.examine_as("bttest01");
    let source = check(&report, "beamline-source");
    assert_eq!(source.outcome, Outcome::Fail);
    assert_eq!(
        source.detail,
        format!(
            "{} holds no beamtime's metadata file, not even beamtime-metadata-11099001.json: \
             the plugin refuses the beamtime's jobs (an unmounted file system's mount point \
             looks like this)",
            folder.display()
        )
    );
    assert!(
        source.fix.starts_with(&format!(
            "the plugin mounts {} only while it holds beamtime 11099001's metadata file \
             beamtime-metadata-11099001.json, owned by uid {} and not writable by group or others",
            folder.display(),
            world.me()
        )),
        "{}",
        source.fix
    );

    let copy = folder.join("beamtime-metadata-11099001.json");
    fs::write(&copy, GOOD).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o666)).unwrap();
    let source = check(&world.examine_as("bttest01"), "beamline-source").clone();
    assert_eq!(source.outcome, Outcome::Fail);
    assert_eq!(
        source.detail,
        format!(
            "{} is not beamtime 11099001's folder now: {} is not trusted: it is writable by \
             group or others (mode 0666)",
            folder.display(),
            copy.display()
        )
    );

    fs::remove_file(&copy).unwrap();
    std::os::unix::fs::symlink(
        world
            .dir
            .join("p11/current/beamtime-metadata-11099001.json"),
        &copy,
    )
    .unwrap();
    let source = check(&world.examine_as("bttest01"), "beamline-source").clone();
    assert_eq!(source.outcome, Outcome::Fail);
    assert!(
        source
            .detail
            .ends_with("beamtime-metadata-11099001.json is a symbolic link"),
        "{}",
        source.detail
    );
}

#[test]
fn a_link_on_the_way_to_the_source_folder_fails_the_mount() {
    let world = world_with_source("linked/{beamline}/current");
    std::os::unix::fs::symlink(&world.dir, world.dir.join("linked")).unwrap();
    let source = check(&world.examine_as("bttest01"), "beamline-source").clone();
    assert_eq!(source.outcome, Outcome::Fail);
    assert_eq!(
        source.detail,
        format!(
            "{}/linked is a symbolic link, which the plugin does not follow: every job's mount \
             fails",
            world.dir.display()
        )
    );
    assert!(source.fix.ends_with("without links"), "{}", source.fix);
}

const PRE_START_JOBS: &str = "beamtime 11099001 has not started on beamline p11 yet (or the \
     beamline has moved on); jobs run without /beamline/p11/current until the beamtime starts \
     (BEAMTIME_PHASE=pre-start); its data is on the core filesystem at \
     /asap3/petra3/gpfs/p11/2024/data/11099001 (BEAMTIME_CORE_PATH)";

#[test]
fn a_missing_beamline_folder_is_pre_start_and_passes() {
    // The metadata stays readable through the plugin's pattern (the core
    // filesystem's copy, in the facility's pre-start); the beamline folder is not there yet.
    let world = world_with_source("{beamline}/gone");
    let report = world.examine_as("bttest01");
    let source = check(&report, "beamline-source");
    assert_eq!(source.outcome, Outcome::Pass, "{}", report.text());
    assert_eq!(
        source.detail,
        format!(
            "pre-start: {}/p11/gone does not exist yet: {PRE_START_JOBS}",
            world.dir.display()
        )
    );
    assert!(report.all_passed(), "{}", report.text());
}

#[test]
fn a_folder_holding_another_beamtime_is_pre_start_and_refused_only_with_prestart_refuse() {
    let world = world_with_source("source/{beamline}");
    let folder = world.dir.join("source/p11");
    fs::create_dir_all(&folder).unwrap();
    let other = folder.join("beamtime-metadata-11099002.json");
    fs::write(&other, GOOD).unwrap();
    let source = check(&world.examine_as("bttest01"), "beamline-source").clone();
    assert_eq!(source.outcome, Outcome::Pass);
    assert_eq!(
        source.detail,
        format!(
            "pre-start: {} holds another beamtime's metadata file, not \
             beamtime-metadata-11099001.json: {PRE_START_JOBS}",
            folder.display()
        )
    );

    let d = world.dir.display();
    world.plugin_line(&format!(
        "trusted_owners={} metadata={d}/*/current/beamtime-metadata-{{id}}.json \
         source={d}/source/{{beamline}} prestart=refuse",
        world.me()
    ));
    let report = world.examine_as("bttest01");
    let source = check(&report, "beamline-source");
    assert_eq!(source.outcome, Outcome::Fail);
    assert!(
        source.detail.ends_with(
            "beamtime 11099001 has not started on beamline p11 yet (or the beamline has moved \
             on); this site refuses its --beamtime jobs until the beamtime starts \
             (prestart=refuse)"
        ),
        "{}",
        source.detail
    );
    assert_eq!(
        source.fix,
        "wait until beamtime 11099001 has started on beamline p11 (the beamline staff know \
         when): this site runs beamtime jobs only then"
    );
    assert!(!report.all_passed());
}

#[test]
fn a_file_system_this_host_does_not_see_is_left_to_the_node() {
    let world = world_with_source("gpfs/{beamline}/current");
    let source = check(&world.examine_as("bttest01"), "beamline-source").clone();
    assert_eq!(source.outcome, Outcome::Pass);
    assert_eq!(
        source.detail,
        format!(
            "{0}/gpfs/p11/current is not visible from this host ({0}/gpfs is not here), so the \
             phase is decided on the node: jobs see /beamline/p11/current once \
             {0}/gpfs/p11/current holds the beamtime's beamtime-metadata-11099001.json, and \
             before that run without it (BEAMTIME_PHASE=pre-start)",
            world.dir.display()
        )
    );
}

/// The facts of one job, fed to the node's `policy::decide` and to doctor's
/// node-verdict check alike.
struct Case {
    name: &'static str,
    config: &'static [&'static str],
    facts: JobFacts,
    /// Changes the fixture's metadata (an account, the reservations).
    metadata: fn(&mut Metadata),
}

fn good_metadata() -> Metadata {
    let path = std::path::Path::new("/beamline/p11/current/beamtime-metadata-11099001.json");
    beamtime::metadata::parse_metadata(GOOD.as_bytes(), path).unwrap()
}

fn online_of(metadata: &mut Metadata) -> &mut beamtime::metadata::OnlineAnalysis {
    match &mut metadata.online {
        beamtime::metadata::Online::Ready(online) => online,
        beamtime::metadata::Online::NotYet => panic!("the fixture has online resources"),
    }
}

fn admitted_job() -> JobFacts {
    JobFacts {
        uid: 1001,
        account_uid: Some(1001),
        controller: ControllerJob {
            reservation: Some("11099001".to_owned()),
            account: None,
            batch: true,
        },
        node: "max-p3a901".to_owned(),
        beamline_folder: BeamlineFolder::ThisBeamtime,
    }
}

fn cases() -> Vec<Case> {
    const SOURCE: &[&str] = &["source=/beamline/{beamline}/current"];
    let with = |change: fn(&mut JobFacts)| {
        let mut facts = admitted_job();
        change(&mut facts);
        facts
    };
    let unchanged: fn(&mut Metadata) = |_| {};
    vec![
        Case {
            name: "admitted",
            config: SOURCE,
            facts: admitted_job(),
            metadata: unchanged,
        },
        Case {
            name: "no online resources",
            config: SOURCE,
            facts: admitted_job(),
            metadata: |m| m.online = beamtime::metadata::Online::NotYet,
        },
        Case {
            name: "an account the node does not know",
            config: SOURCE,
            facts: with(|f| f.account_uid = None),
            metadata: unchanged,
        },
        Case {
            name: "a system account",
            config: SOURCE,
            facts: with(|f| {
                f.uid = 999;
                f.account_uid = Some(999);
            }),
            metadata: unchanged,
        },
        Case {
            name: "another user",
            config: SOURCE,
            facts: with(|f| f.uid = 1002),
            metadata: unchanged,
        },
        Case {
            name: "no reservation",
            config: SOURCE,
            facts: with(|f| f.controller.reservation = None),
            metadata: unchanged,
        },
        Case {
            name: "a reservation not listed",
            config: SOURCE,
            facts: with(|f| f.controller.reservation = Some("11099002".to_owned())),
            metadata: unchanged,
        },
        Case {
            name: "a listed reservation not named after the beamtime",
            config: SOURCE,
            facts: with(|f| f.controller.reservation = Some("maintenance".to_owned())),
            metadata: |m| online_of(m).reservations.push("maintenance".to_owned()),
        },
        Case {
            name: "a node outside the reservation",
            config: SOURCE,
            facts: with(|f| f.node = "btnode9".to_owned()),
            metadata: unchanged,
        },
        Case {
            name: "the wrong Slurm account",
            config: &["source=/beamline/{beamline}/current", "account=bt_{id}"],
            facts: with(|f| f.controller.account = Some("other".to_owned())),
            metadata: unchanged,
        },
        Case {
            name: "no source=",
            config: &[],
            facts: admitted_job(),
            metadata: unchanged,
        },
        Case {
            name: "a beamline folder with no beamtime",
            config: SOURCE,
            facts: with(|f| f.beamline_folder = BeamlineFolder::NoBeamtime),
            metadata: unchanged,
        },
        Case {
            name: "pre-start refused",
            config: &["source=/beamline/{beamline}/current", "prestart=refuse"],
            facts: with(|f| f.beamline_folder = BeamlineFolder::Absent),
            metadata: unchanged,
        },
    ]
}

#[test]
fn doctor_says_what_the_nodes_policy_says_for_every_rule_it_decides() {
    let mut rules_seen = Vec::new();
    for case in cases() {
        let config = PluginConfig::parse(case.config.iter().copied()).unwrap();
        let mut metadata = good_metadata();
        (case.metadata)(&mut metadata);
        let node = policy::decide(&config, &metadata, &mut case.facts.clone());
        let placement = verdict::Placement {
            reservation: case
                .facts
                .controller
                .reservation
                .clone()
                .unwrap_or_default(),
            nodes: vec![case.facts.node.clone()],
        };
        let doctor =
            verdict::node_verdict(&config, &metadata, &[placement], |_, _| case.facts.clone());
        match node {
            Ok(_) => assert_eq!(doctor.outcome, Outcome::Pass, "{}: {doctor:?}", case.name),
            Err(refusal) => {
                assert_eq!(doctor.outcome, Outcome::Fail, "{}: {doctor:?}", case.name);
                assert!(
                    doctor.detail.ends_with(&format!(
                        "the node refuses ({}): {}",
                        refusal.rule.as_str(),
                        refusal.problem.what
                    )),
                    "{}: {doctor:?} against {refusal:?}",
                    case.name
                );
                assert_eq!(doctor.fix, refusal.problem.fix, "{}", case.name);
                rules_seen.push(refusal.rule);
            }
        }
    }
    // Every rule `decide` applies to the facts; the others are the metadata
    // check's (loading the file) or a fact that cannot be gathered.
    for rule in [
        Rule::NoOnlineResources,
        Rule::UnsafeAccount,
        Rule::WrongUser,
        Rule::NoReservation,
        Rule::WrongReservation,
        Rule::WrongNode,
        Rule::WrongAccount,
        Rule::SiteConfiguration,
        Rule::MountFailed,
        Rule::PreStart,
    ] {
        assert!(rules_seen.contains(&rule), "no case for {}", rule.as_str());
    }
}

#[test]
fn a_system_account_fails_the_user_check_as_the_node_refuses_it() {
    let world = World::new().with_nodes(&fixture("node-idle.txt"));
    let system = GOOD.replace("\"bttest01\"", "\"btsystem\"");
    fs::write(
        world
            .dir
            .join("p11/current/beamtime-metadata-11099001.json"),
        system,
    )
    .unwrap();
    let report = world.examine_as("btsystem");
    let user = check(&report, "user");
    assert_eq!(user.outcome, Outcome::Fail);
    assert!(
        user.detail.contains(
            "the node refuses (unsafe-account): the beamtime's account 'btsystem' \
             (/"
        ) && user
            .detail
            .ends_with("is a system account (uid 999 < 1000)"),
        "{}",
        user.detail
    );
}

#[test]
fn a_listed_reservation_the_node_refuses_warns_and_names_the_one_used_instead() {
    let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
    let listed = GOOD.replace(
        "\"slurmReservation\": \"11099001\"",
        "\"slurmReservation\": [\"maintenance\", \"11099001\"]",
    );
    assert_ne!(listed, GOOD, "the fixture's slurmReservation moved");
    fs::write(
        world
            .dir
            .join("p11/current/beamtime-metadata-11099001.json"),
        listed,
    )
    .unwrap();
    let reservations = fixture("reservations.txt").replace("btnode1", "max-p3a901");
    let maintenance = reservations
        .lines()
        .next()
        .unwrap()
        .replace("ReservationName=11099001 ", "ReservationName=maintenance ");
    world.slurm.answer(
        "scontrol show reservation -o",
        format!("{maintenance}\n{reservations}"),
    );
    let report = world.examine_as("bttest01");
    let verdict = check(&report, "node-verdict");
    assert_eq!(verdict.outcome, Outcome::Warn, "{}", report.text());
    assert!(
        verdict.detail.starts_with(
            "reservation maintenance on max-p3a901: the node refuses (wrong-reservation): the \
             job runs in reservation 'maintenance', which beamtime 11099001's metadata lists but \
             which is not named after it"
        ) && verdict.detail.ends_with("bt-submit uses 11099001 instead"),
        "{}",
        verdict.detail
    );
    assert!(report.all_passed(), "{}", report.text());
}

#[test]
fn the_sites_account_rule_is_checked_against_the_users_default_account() {
    let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
    let me = world.me();
    world.plugstack(&format!("trusted_owners={me} account=bt_{{id}}"));
    world.slurm.answer(
        "sacctmgr -n -P show user bttest01 format=defaultaccount",
        "bttest\n",
    );
    let report = world.examine_as("bttest01");
    let verdict = check(&report, "node-verdict");
    assert_eq!(verdict.outcome, Outcome::Fail, "{}", report.text());
    assert_eq!(
        verdict.detail,
        "reservation 11099001 on max-p3a901: the node refuses (wrong-account): the job's Slurm \
         account is 'bttest', beamtime 11099001 jobs must use 'bt_11099001'"
    );
    assert_eq!(
        verdict.fix,
        "Submit with --account=bt_11099001, or leave --account out to use your default"
    );

    world.slurm.answer(
        "sacctmgr -n -P show user bttest01 format=defaultaccount",
        "bt_11099001\n",
    );
    let verdict = check(&world.examine_as("bttest01"), "node-verdict").clone();
    assert_eq!(verdict.outcome, Outcome::Pass, "{verdict:?}");
}

#[test]
fn a_reserved_node_the_metadata_does_not_list_fails_the_verdict() {
    let mut world = World::new().with_nodes(&fixture("node-idle.txt"));
    world.slurm.answer(
        "scontrol show hostnames max-p3a901",
        "max-p3a901\nbtnode9\n",
    );
    let verdict = check(&world.examine_as("bttest01"), "node-verdict").clone();
    assert_eq!(verdict.outcome, Outcome::Fail);
    assert_eq!(
        verdict.detail,
        "reservation 11099001 on btnode9: the node refuses (wrong-node): node btnode9 is not one \
         of beamtime 11099001's reserved nodes (max-p3a901)"
    );
}
