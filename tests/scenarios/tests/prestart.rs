//! The facility's pre-start phase on the real cluster: a beamtime whose storage exists
//! only on the core filesystem, with a reservation on a shared node
//! (`beamtime-start.sh --pre-start`), runs its jobs without the beamline — `/beamline`
//! empty, its core path there, one note on stderr, `BEAMTIME_PHASE=pre-start` — and
//! nothing of another beamtime that holds the beamline folder meanwhile shows. The start
//! script's later call brings it online with a renamed reservation: new jobs see the
//! beamline, a job running across the start keeps its view. With `prestart=refuse` the
//! node (only the node: the client side never looks at the beamline folder) refuses
//! such jobs, and nothing drains. bt-submit `show` and `doctor` tell the phase as the
//! node decides it.
//!
//! The `prestart=refuse` test rewrites plugstack.conf for the whole cluster: it holds
//! [`PLUGSTACK`] for writing, every other test here holds it for reading, so none of
//! them runs while the line is not the usual one.

use std::fs;
use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use scenarios::{
    assert_host_untouched, bt_submit, cluster, wait, Beamtime, BeamtimeSpec, LogCursor, Output,
    RestorePlugstack, NODE,
};

/// A refused task's exit status (EX_NOPERM).
const REFUSED: i32 = 77;

static PLUGSTACK: RwLock<()> = RwLock::new(());

/// For tests that need the cluster's usual plugstack line.
fn usual_plugstack() -> RwLockReadGuard<'static, ()> {
    PLUGSTACK.read().unwrap_or_else(|p| p.into_inner())
}

/// For the test that changes it.
fn own_plugstack() -> RwLockWriteGuard<'static, ()> {
    PLUGSTACK.write().unwrap_or_else(|p| p.into_inner())
}

/// bt-submit as the beamtime's account, with a login's environment: it finds the
/// metadata through the plugstack's `metadata=` patterns, the core folder's among them.
fn bt_submit_as(bt: &Beamtime, args: &[&str]) -> Output {
    let c = cluster();
    c.as_user(&bt.account, bt_submit())
        .cwd(c.workdir(&bt.account, "prestart-bt-submit"))
        .args(args)
        .run()
}

/// What a job prints about what it sees; [`View::parse`] reads it back.
const LOOK: &str = r#"echo "job=$SLURM_JOB_ID"
echo "phase=$BEAMTIME_PHASE"
echo "beamline=[$(ls -A /beamline | tr '\n' ' ')]"
if [ -e "$BEAMTIME_BEAMLINE_PATH" ]; then echo "path=present"; else echo "path=absent"; fi
echo "mounts=$(grep -c ' /beamline' /proc/self/mountinfo)"
echo "current=[$(ls -A "$BEAMTIME_BEAMLINE_PATH" 2>/dev/null | tr '\n' ' ')]"
echo "core=$BEAMTIME_CORE_PATH"
echo "core-holds=[$(ls -A "$BEAMTIME_CORE_PATH" | tr '\n' ' ')]"
"#;

/// One [`LOOK`]'s lines.
#[derive(Debug)]
struct View {
    job: String,
    phase: String,
    beamline: String,
    path: String,
    mounts: String,
    current: String,
    core: String,
    core_holds: String,
}

impl View {
    /// The `LOOK` output that follows `after` (a marker line) in `text`, or the first.
    #[track_caller]
    fn parse(text: &str, after: Option<&str>) -> View {
        let mut lines = text.lines();
        if let Some(marker) = after {
            lines.find(|l| *l == marker);
        }
        let mut next = |key: &str| {
            let line = lines
                .find(|l| l.starts_with(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key}= in:\n{text}"));
            line[key.len() + 1..].to_owned()
        };
        View {
            job: next("job"),
            phase: next("phase"),
            beamline: next("beamline"),
            path: next("path"),
            mounts: next("mounts"),
            current: next("current"),
            core: next("core"),
            core_holds: next("core-holds"),
        }
    }

    /// Pre-start: nothing under `/beamline` but the private tmpfs, the core folder there.
    #[track_caller]
    fn assert_pre_start(&self, bt: &Beamtime, text: &str) {
        assert_eq!(self.phase, "pre-start", "{text}");
        assert_eq!(self.beamline, "[]", "/beamline is not empty:\n{text}");
        assert_eq!(self.path, "absent", "{text}");
        assert_eq!(self.mounts, "1", "only the tmpfs over /beamline:\n{text}");
        assert_eq!(self.current, "[]", "{text}");
        self.assert_core(bt, text);
    }

    #[track_caller]
    fn assert_online(&self, bt: &Beamtime, text: &str) {
        assert_eq!(self.phase, "online", "{text}");
        assert_eq!(self.beamline, format!("[{} ]", bt.beamline), "{text}");
        assert_eq!(self.path, "present", "{text}");
        assert!(
            self.current
                .contains(&format!("beamtime-metadata-{}.json", bt.id)),
            "{text}"
        );
        self.assert_core(bt, text);
    }

    #[track_caller]
    fn assert_core(&self, bt: &Beamtime, text: &str) {
        assert_eq!(self.core, core_path(bt).display().to_string(), "{text}");
        for entry in [
            &format!("beamtime-metadata-{}.json", bt.id),
            "processed",
            "raw",
            "scratch_cc",
            "shared",
        ] {
            assert!(self.core_holds.contains(entry), "{entry}:\n{text}");
        }
    }
}

/// Where the pre-start put the beamtime's storage: `<state>/core/<beamline>/<id>`.
fn core_path(bt: &Beamtime) -> PathBuf {
    cluster()
        .state_dir()
        .join("core")
        .join(&bt.beamline)
        .join(&bt.id)
}

/// The note task 0 of a pre-start step writes on its stderr.
fn pre_start_note(bt: &Beamtime) -> String {
    format!(
        "spank-beamtime: beamtime {} has not started on beamline {} yet (BEAMTIME_PHASE=pre-start): \
         /beamline/{}/current appears in jobs that start after the beamtime has; until then its \
         data is on the core filesystem (BEAMTIME_CORE_PATH)",
        bt.id, bt.beamline, bt.beamline
    )
}

/// srun of LOOK for the beamtime `bt`, in `reservation` (which a test may have renamed).
fn srun_look(bt: &Beamtime, reservation: &str) -> Output {
    let c = cluster();
    let bt = Beamtime {
        reservations: vec![reservation.to_owned()],
        ..bt.clone()
    };
    c.beamtime_srun(&bt)
        .cwd(c.workdir(&bt.account, "prestart-srun"))
        .args(["bash", "-c", LOOK])
        .run()
}

/// What beamtime-start.sh --pre-start must have made, and not made.
#[track_caller]
fn assert_pre_started(bt: &Beamtime) {
    let c = cluster();
    let core = core_path(bt);
    assert_eq!(
        bt.metadata_path,
        core.join(format!("beamtime-metadata-{}.json", bt.id))
    );
    let metadata = bt.metadata();
    assert_eq!(metadata["corePath"], core.display().to_string());
    let online = &metadata["onlineAnalysis"];
    assert_eq!(online["slurmReservation"], bt.id.as_str(), "{metadata:#}");
    assert_eq!(online["reservedNodes"], serde_json::json!([NODE]));
    assert_eq!(online["userAccount"], bt.account.as_str());
    assert_eq!(online["sshPrivateKeyPath"], "shared/id_rsa");
    assert!(core.join("shared/id_rsa").exists());
    assert!(c.reservation(&bt.id).is_some(), "no reservation {}", bt.id);
}

/// The `phase=` of the accept line slurmd's log has for `job` since `log`, waited for:
/// slurmstepd writes it through slurmd, which may lag behind the job's end.
#[track_caller]
fn accepted_phase(job: &str, log: &LogCursor) -> String {
    let prefix = format!("spank-beamtime: job={job} ");
    let found = wait::poll(scenarios::DEFAULT_TIMEOUT, || {
        let logged = log.read_new();
        logged
            .lines()
            .find(|l| l.contains(&prefix) && l.contains(" decision=accepted "))
            .and_then(|l| l.split(" phase=").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .map(str::to_owned)
            .ok_or(logged)
    });
    found.unwrap_or_else(|logged| panic!("no accept line for job {job}:\n{logged}"))
}

/// `show`, text and JSON: the phase row and the JSON's `phase` and `jobs`.
#[track_caller]
fn shown_phase(bt: &Beamtime) -> (String, serde_json::Value, serde_json::Value) {
    let out = bt_submit_as(bt, &["show", "--beamtime", &bt.id]);
    out.assert_success();
    let row = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("phase "))
        .unwrap_or_else(|| panic!("no phase row:\n{out}"))
        .trim_start()
        .to_owned();
    let out = bt_submit_as(bt, &["show", "--beamtime", &bt.id, "--format", "json"]);
    out.assert_success();
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    (row, json["phase"].clone(), json["jobs"].clone())
}

#[test]
fn a_pre_start_beamtime_runs_without_its_beamline_until_it_starts() {
    let _plugstack = usual_plugstack();
    let c = cluster();
    let spec = BeamtimeSpec::fresh("bttest610");
    // Before its start a beamtime's beamline folder does not exist: the one an earlier run
    // on this cluster started goes, as the facility's stop script unlinks it.
    let current = c.beamline_src().join(&spec.beamline).join("current");
    if current.exists() {
        fs::remove_dir_all(&current).unwrap();
    }
    let bt = c.start_beamtime(&spec.clone().pre_start());
    assert_pre_started(&bt);
    assert!(
        !bt.current_dir.exists(),
        "a pre-start made {}",
        bt.current_dir.display()
    );
    let log = c.log_cursor("slurmd.log");

    // sbatch: the batch step runs, sees no beamline, its core path, and gets the note.
    let wd = c.workdir(&bt.account, "prestart-batch");
    let job = c.submit_beamtime_job(&bt, &wd, &[], &format!("#!/bin/bash\n{LOOK}"));
    let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
    end.assert_completed_ok();
    let text = job.stdout();
    View::parse(&text, None).assert_pre_start(&bt, &text);
    let stderr = job.stderr();
    assert_eq!(
        stderr.matches(&pre_start_note(&bt)).count(),
        1,
        "one note:\n{stderr}"
    );

    // srun: the same, the note once on srun's stderr.
    let out = srun_look(&bt, &bt.id);
    out.assert_success();
    let view = View::parse(&out.stdout, None);
    view.assert_pre_start(&bt, &out.stdout);
    assert_eq!(
        out.stderr.matches(&pre_start_note(&bt)).count(),
        1,
        "one note:\n{out}"
    );
    assert_eq!(accepted_phase(&job.id.to_string(), &log), "pre-start");
    assert_eq!(accepted_phase(&view.job, &log), "pre-start");

    // bt-submit finds the core folder's metadata through the plugstack, and says the phase.
    let out = bt_submit_as(
        &bt,
        &[
            "srun",
            "--beamtime",
            &bt.id,
            "bash",
            "-c",
            "echo phase=$BEAMTIME_PHASE",
        ],
    );
    out.assert_success()
        .assert_stdout_contains("phase=pre-start\n");
    let (row, phase, jobs) = shown_phase(&bt);
    assert_eq!(
        row,
        format!(
            "pre-start: {} does not exist yet: beamtime {} has not started on beamline {} yet \
             (or the beamline has moved on); jobs run without /beamline/{}/current until the \
             beamtime starts (BEAMTIME_PHASE=pre-start); its data is on the core filesystem at \
             {} (BEAMTIME_CORE_PATH)",
            bt.current_dir.display(),
            bt.id,
            bt.beamline,
            bt.beamline,
            core_path(&bt).display()
        )
    );
    assert_eq!((phase, jobs), ("pre-start".into(), "run".into()));
    let out = bt_submit_as(&bt, &["doctor", "--beamtime", &bt.id]);
    out.assert_success()
        .assert_stdout_contains("all 12 checks passed");
    let source = out.doctor_check("beamline-source");
    assert!(
        source.starts_with("ok   ")
            && source.contains(&format!(
                "jobs run without /beamline/{}/current until the beamtime starts",
                bt.beamline
            )),
        "{out}"
    );

    // The start: the beamline folder, the reservation renamed, the old one gone.
    let renamed = format!("{}_1", bt.id);
    let started = c.start_beamtime(&spec.reservations(&[&renamed]));
    assert_eq!(
        started.metadata_path,
        bt.current_dir
            .join(format!("beamtime-metadata-{}.json", bt.id))
    );
    for copy in [started.metadata(), bt.metadata()] {
        assert_eq!(copy["onlineAnalysis"]["slurmReservation"], renamed.as_str());
        assert_eq!(copy["corePath"], core_path(&bt).display().to_string());
    }
    assert!(c.reservation(&renamed).is_some());
    assert!(
        c.reservation(&bt.id).is_none(),
        "the pre-start reservation {} is still there",
        bt.id
    );
    // The same key pair in both folders.
    assert_eq!(
        fs::read(core_path(&bt).join("shared/id_rsa.pub")).unwrap(),
        fs::read(bt.current_dir.join("shared/id_rsa.pub")).unwrap()
    );

    let out = srun_look(&started, &renamed);
    out.assert_success();
    let view = View::parse(&out.stdout, None);
    view.assert_online(&started, &out.stdout);
    assert!(!out.stderr.contains("has not started"), "{out}");
    assert_eq!(accepted_phase(&view.job, &log), "online");
    let out = bt_submit_as(
        &started,
        &[
            "srun",
            "--beamtime",
            &bt.id,
            "bash",
            "-c",
            "echo phase=$BEAMTIME_PHASE",
        ],
    );
    out.assert_success()
        .assert_stdout_contains("phase=online\n");
    let (row, phase, jobs) = shown_phase(&started);
    assert!(row.starts_with("online: "), "{row}");
    assert_eq!((phase, jobs), ("online".into(), "run".into()));
    c.assert_node_not_drained();
    assert_host_untouched();
}

#[test]
fn another_beamtime_on_the_beamline_shows_none_of_it_and_a_running_job_keeps_its_view() {
    let _plugstack = usual_plugstack();
    let c = cluster();
    let holder = c.start_beamtime(&BeamtimeSpec::fresh("bttest611"));
    let secret = holder
        .current_dir
        .join(format!("raw/secret-of-{}", holder.id));
    fs::write(&secret, "the holder's data\n").unwrap();
    let spec = BeamtimeSpec::fresh("bttest612").on_beamline(&holder.beamline);
    let bt = c.start_beamtime(&spec.clone().pre_start());
    assert_pre_started(&bt);
    assert!(secret.exists(), "the pre-start touched the holder's folder");

    let out = srun_look(&bt, &bt.id);
    out.assert_success();
    View::parse(&out.stdout, None).assert_pre_start(&bt, &out.stdout);
    assert!(!out.stdout.contains(&holder.id), "the holder shows:\n{out}");
    assert!(out.stderr.contains(&pre_start_note(&bt)), "{out}");
    // The holder's folder is closed to this account: only the node can tell.
    let (row, phase, jobs) = shown_phase(&bt);
    assert!(
        row.starts_with(&format!(
            "{} cannot be looked into by you",
            holder.current_dir.display()
        )) && row.contains("so the phase is decided on the node"),
        "{row}"
    );
    assert_eq!(
        (phase, jobs),
        (serde_json::Value::Null, serde_json::Value::Null)
    );
    let out = bt_submit_as(&bt, &["doctor", "--beamtime", &bt.id]);
    out.assert_success();
    assert!(
        out.doctor_check("beamline-source").starts_with("ok   "),
        "{out}"
    );

    // A job that runs across the start: it looks, waits for go, looks again.
    let wd = c.workdir(&bt.account, "prestart-across");
    let go = wd.join("go");
    let looked = wd.join("looked");
    let script = format!(
        "#!/bin/bash\n{LOOK}touch {looked}\nwhile [ ! -e {go} ]; do sleep 0.2; done\necho after-the-start\n{LOOK}",
        looked = looked.display(),
        go = go.display()
    );
    let job = c.submit_beamtime_job(&bt, &wd, &[], &script);
    wait::for_path(
        &looked,
        Duration::from_secs(120),
        &format!("job {}", job.id),
    );

    let renamed = format!("{}_1", bt.id);
    // Two cores: the new reservation is made with IGNORE_JOBS and OVERLAP while the
    // pre-start job runs, and one core of it may be the very one that job holds (seen in
    // the job_container pass: the step below then waited for it until its timeout).
    let started = c.start_beamtime(
        &spec
            .reservations(&[&renamed])
            .cores(2)
            .replacing(&holder.id),
    );
    assert!(
        c.reservation(&bt.id).is_some(),
        "the pre-start reservation went while its job runs"
    );
    let out = srun_look(&started, &renamed);
    out.assert_success();
    View::parse(&out.stdout, None).assert_online(&started, &out.stdout);
    assert!(!out.stdout.contains("secret-of"), "{out}");

    fs::write(&go, "").unwrap();
    let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
    end.assert_completed_ok();
    let text = job.stdout();
    View::parse(&text, None).assert_pre_start(&bt, &text);
    View::parse(&text, Some("after-the-start")).assert_pre_start(&bt, &text);
    // Its job has ended: the leftover pre-start reservation can go now.
    c.cmd("scontrol")
        .args(["delete", &format!("ReservationName={}", bt.id)])
        .run()
        .assert_success();
    c.assert_node_not_drained();
    assert_host_untouched();
}

#[test]
fn prestart_refuse_refuses_pre_start_jobs_on_the_node_only_and_drains_nothing() {
    let _plugstack = own_plugstack();
    let c = cluster();
    let (plugin, args) = c.installed_plugin();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest613").pre_start());
    let online = c.start_beamtime(&BeamtimeSpec::fresh("bttest614"));
    let _restore = RestorePlugstack::new(c);
    c.set_plugstack(Some(&plugin), &format!("{args} prestart=refuse"));
    let problem = format!(
        "beamtime {} has not started on beamline {} yet (or the beamline has moved on): its \
         beamline folder does not hold it",
        bt.id, bt.beamline
    );

    // srun: submitted (the client side does not look at the beamline folder), refused
    // in the task with 77, the payload never runs.
    let wd = c.workdir(&bt.account, "prestart-refuse");
    let out = c
        .beamtime_srun(&bt)
        .cwd(&wd)
        .args(["bash", "-c", "echo payload-ran"])
        .run();
    assert_eq!(out.code(), Some(REFUSED), "{out}");
    assert!(
        out.stderr
            .contains(&format!(" refused on {NODE}: {problem}")),
        "{out}"
    );
    assert!(out.stderr.contains("(prestart=refuse)"), "{out}");
    assert!(
        !out.stderr.contains("srun: error: spank-beamtime:"),
        "the client side refused:\n{out}"
    );
    assert!(!out.stdout.contains("payload-ran"), "{out}");
    let logged = c.refusal_logged_once(&out);
    assert!(logged.contains(" rule=pre-start "), "{logged}");

    // sbatch: accepted by the client (a job id), the batch step refused with 77.
    let job = c.submit_beamtime_job(&bt, &wd, &[], "#!/bin/bash\necho payload-ran\n");
    let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
    assert_eq!(
        (end.state.as_str(), end.exit_code),
        ("FAILED", REFUSED),
        "{end:#?}"
    );
    let stderr = job.stderr();
    assert!(
        stderr.contains(&format!("job {} refused on {NODE}: {problem}", job.id)),
        "{stderr}"
    );
    assert!(!job.stdout().contains("payload-ran"));

    // An online beamtime runs as ever.
    let out = c
        .beamtime_srun(&online)
        .cwd(c.workdir(&online.account, "prestart-refuse-online"))
        .args(["bash", "-c", "echo phase=$BEAMTIME_PHASE"])
        .run();
    out.assert_success()
        .assert_stdout_contains("phase=online\n");

    // bt-submit reads the same line.
    let (row, phase, jobs) = shown_phase(&bt);
    assert!(
        row.ends_with(
            "this site refuses its --beamtime jobs until the beamtime starts (prestart=refuse)"
        ),
        "{row}"
    );
    assert_eq!((phase, jobs), ("pre-start".into(), "refused".into()));
    let out = bt_submit_as(&bt, &["doctor", "--beamtime", &bt.id]);
    assert_eq!(out.code(), Some(1), "{out}");
    let source = out.doctor_check("beamline-source");
    assert!(
        source.starts_with("FAIL ") && source.ends_with("(prestart=refuse)"),
        "{out}"
    );
    c.assert_node_not_drained();
    assert_host_untouched();
}
