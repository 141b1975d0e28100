//! What this Slurm release does when a SPANK callback fails: for every callback a plugin can
//! fail in, returning -1 and returning 1 (a failure from 25.05 on, success before), in a
//! batch step and in an srun step, the job's state, reason and exit code, srun's exit
//! status, whether the program ran, what the user saw and whether the node was drained.
//! Measured with btprobe (tests/cluster/probe/btprobe.c), whose control file names the
//! failing hook at each call: one plugstack.conf and one slurmd restart for the whole
//! matrix (two from 25.05 on, which also measures `slurm_spank_init_failure_mode =
//! ESPANK_JOB_FAILURE`). A drained node is resumed and a requeued job cancelled before the
//! next case.
//!
//! It writes slurm-<release>[-job-container].tsv into `BT_SPANK_FAILURES_DIR` (set by
//! scripts/spank-failures.sh to docs/spank-failures/), from which
//! scripts/spank-failures-table.py makes docs/plugin.md's table; scripts/spank-failures.sh
//! runs it on every release. What it asserts holds on every release: a callback that fails
//! with -1 before the program starts keeps it from running, and every case leaves the node
//! in service. It is not compared with the recorded file: some outcomes differ between two
//! runs on one release (an srun step whose prolog failed ended `CANCELLED` once and
//! `FAILED` once on 22.05), so the file is a measurement, not a fixture.
//!
//! It rewrites plugstack.conf and drains the node on purpose, so it is the only test in
//! this file, and `#[ignore]`d: scripts/spank-failures.sh names it (28–48 s of jobs per
//! release and configuration; CI keeps plugstack_probe.rs's cases).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scenarios::probe::{self, Control};
use scenarios::{Cluster, RestorePlugstack, TEST_USER};

/// The callbacks a plugin can fail in, with the context it is failed in: the remote ones in
/// slurmstepd, `local_user_init` in srun, the prolog and epilog in slurmd's spank process.
/// Not here: `init`/`init_post_opt` in srun, sbatch and salloc (an error there stops the
/// command before a job exists, on every release), `slurmd_exit` (slurmd's shutdown).
const CALLBACKS: &[(&str, &str)] = &[
    ("init", "remote"),
    ("init_post_opt", "remote"),
    ("local_user_init", "local"),
    ("user_init", "remote"),
    ("task_init_privileged", "remote"),
    ("task_init", "remote"),
    ("task_post_fork", "remote"),
    ("task_exit", "remote"),
    ("exit", "remote"),
    ("job_prolog", "job_script"),
    ("job_epilog", "job_script"),
];

/// The callbacks that run before the program: an error there keeps it from running, on
/// every release (spank(8); what enforcement in a SPANK plugin relies on).
const BEFORE_THE_PROGRAM: &[&str] = &[
    "init",
    "init_post_opt",
    "local_user_init",
    "user_init",
    "task_init_privileged",
    "task_init",
    "job_prolog",
];

/// What each failing callback returns: an error, and a positive value.
const RETURN_VALUES: &[i32] = &[-1, 1];

/// The columns of the measurement file, in order. `message` is what the user saw (the batch
/// job's stderr file, srun's stderr), with the job id written `J`.
const COLUMNS: &[&str] = &[
    "failure_mode",
    "callback",
    "context",
    "rc",
    "step",
    "calls",
    "job_state",
    "job_reason",
    "exit_code",
    "restarts",
    "srun_exit",
    "ran",
    "node",
    "message",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Batch,
    Srun,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Batch => "batch",
            Step::Srun => "srun",
        }
    }
}

type Row = BTreeMap<&'static str, String>;

#[test]
#[ignore = "rewrites plugstack.conf and drains the node: run by scripts/spank-failures.sh"]
fn what_each_release_does_with_each_callbacks_failure() {
    // Where the measurement goes (scripts/spank-failures.sh: docs/spank-failures/): asked
    // for before the cluster is touched, so a run without it fails at once.
    let out_dir = std::env::var_os("BT_SPANK_FAILURES_DIR").map(PathBuf::from).unwrap_or_else(|| {
        panic!("BT_SPANK_FAILURES_DIR is not set: run this through scripts/spank-failures.sh, which names docs/spank-failures/")
    });
    let c = Cluster::from_env();
    c.assert_node_not_drained();
    let started = Instant::now();
    let (version, release) = probe::slurm_release(&c);
    let base = probe::probe_dir(&c, "failures");
    let control = Control::new(&base);
    let records = probe::fresh_records_dir(&base, "records");
    let args = format!("dir={} ctl={}", records.display(), control.path.display());
    let _restore = RestorePlugstack::new(&c);
    let wd = c.workdir(TEST_USER, "spank-failures");

    let mut modes = vec![(
        "default",
        probe::build_probe(&c, &base, "btprobe.so", &[]),
        CALLBACKS,
    )];
    // From 25.05 on a plugin may declare a failing init the job's fault instead of the
    // node's; spank.c reads the mode for init alone, measured for both remote inits.
    if probe::release_at_least(&release, 25, 5) {
        modes.push((
            "ESPANK_JOB_FAILURE",
            probe::build_probe(
                &c,
                &base,
                "btprobe-job-failure.so",
                &["-DBTPROBE_JOB_FAILURE"],
            ),
            &CALLBACKS[..2],
        ));
    }
    let mut rows = Vec::new();
    for (mode, so, callbacks) in modes {
        c.set_plugstack(Some(&so), &args);
        for &(callback, context) in callbacks {
            for &rc in RETURN_VALUES {
                for step in [Step::Batch, Step::Srun] {
                    // srun alone runs the local callbacks.
                    if context == "local" && step == Step::Batch {
                        continue;
                    }
                    let case = Case {
                        mode,
                        callback,
                        context,
                        rc,
                        step,
                    };
                    rows.push(case.measure(&c, &control, &records, &wd));
                }
            }
        }
    }
    control.fail_nothing();
    let seconds = started.elapsed().as_secs();
    scenarios::figures::record(
        "spank_failures",
        serde_json::json!({ "slurm": version, "cases": rows.len(), "seconds": seconds }),
    );
    eprintln!("{} cases in {seconds} s on {version}", rows.len());

    let configuration = configuration(&c);
    let file = out_dir.join(format!("slurm-{release}{}.tsv", configuration.file_suffix));
    write_rows(&file, &version, configuration.label, &rows);
}

struct Case {
    mode: &'static str,
    callback: &'static str,
    context: &'static str,
    rc: i32,
    step: Step,
}

impl Case {
    /// Runs one job with this case's callback failing and returns what happened; leaves the
    /// node in service and no job of the case behind.
    fn measure(&self, c: &Cluster, control: &Control, records: &Path, wd: &Path) -> Row {
        let log = format!("{}-{}", self.callback, self.context);
        let calls_before = probe::record_lines(records, &log).lines().count();
        let name = format!(
            "btp-{}-{}-{}-{}",
            self.mode,
            self.callback,
            self.rc,
            self.step.name()
        );
        control.fail(self.callback, self.context, self.rc);
        let (id, srun, stdout, stderr) = match self.step {
            Step::Batch => {
                let job = c.submit(TEST_USER, wd, &["-J", &name], "#!/bin/bash\necho ran\n");
                let record = probe::settle(c, job.id);
                let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
                (
                    Some((job.id, record)),
                    None,
                    read(&job.stdout_path),
                    read(&job.stderr_path),
                )
            }
            Step::Srun => {
                let out = c
                    .as_user(TEST_USER, "srun")
                    .cwd(wd)
                    .args(["-J", &name, "-n1", "-t", "1", "echo", "ran"])
                    .timeout(Duration::from_secs(90))
                    .run();
                let id = job_named(c, &name).map(|id| (id, probe::settle(c, id)));
                (id, Some(out_code(&out)), out.stdout, out.stderr)
            }
        };
        control.fail_nothing();
        let calls = probe::record_lines(records, &log).lines().count() - calls_before;
        let node = c.node_state();
        let drained = node.state.contains("drain") || node.state.starts_with("down");
        let field = |key: &str| {
            id.as_ref()
                .and_then(|(_, record)| record.get(key).cloned())
                .unwrap_or_else(|| "-".into())
        };
        let job_id = id.as_ref().map(|(id, _)| *id);
        let row: Row = [
            ("failure_mode", self.mode.to_string()),
            ("callback", self.callback.to_string()),
            ("context", self.context.to_string()),
            ("rc", self.rc.to_string()),
            ("step", self.step.name().to_string()),
            ("calls", calls.to_string()),
            ("job_state", field("JobState")),
            ("job_reason", field("Reason")),
            ("exit_code", field("ExitCode")),
            ("restarts", field("Restarts")),
            ("srun_exit", srun.unwrap_or_else(|| "-".into())),
            ("ran", (stdout.lines().any(|l| l == "ran")).to_string()),
            (
                "node",
                if drained {
                    format!("drained: {}", node.reason)
                } else {
                    "in service".into()
                },
            ),
            ("message", seen_message(&stderr, job_id)),
        ]
        .into_iter()
        .collect();
        eprintln!("{row:?}");
        // Next case from a clean slate: the requeued job gone, the node back in service.
        if let Some(id) = job_id {
            if field("JobState") == "PENDING" {
                c.cmd("scancel").arg(id.to_string()).run().assert_success();
            }
        }
        if drained {
            c.resume_node();
        }
        c.assert_node_not_drained();
        assert!(
            !(self.rc < 0 && BEFORE_THE_PROGRAM.contains(&self.callback) && row["ran"] == "true"),
            "the program ran although {} failed before it: {row:?}",
            self.callback
        );
        row
    }
}

/// srun's exit status, or how it ended otherwise.
fn out_code(out: &scenarios::Output) -> String {
    if out.timed_out {
        "timed out".into()
    } else {
        out.code()
            .map_or_else(|| "signal".into(), |code| code.to_string())
    }
}

/// The id of the job named `name`, if srun got that far.
fn job_named(c: &Cluster, name: &str) -> Option<u32> {
    let out = c
        .cmd("squeue")
        .args(["-h", "-t", "all", "-n", name, "-o", "%i"])
        .run();
    out.assert_success();
    out.stdout.lines().next()?.trim().parse().ok()
}

/// The user's stderr as one line: its lines joined by " | ", the job id as `J`, tabs as
/// spaces.
fn seen_message(stderr: &str, job: Option<u32>) -> String {
    let lines: Vec<String> = stderr
        .lines()
        .map(|line| {
            let line = line.replace('\t', " ");
            match job {
                Some(id) => replace_number(&line, id, "J"),
                None => line,
            }
        })
        .filter(|line| !line.trim().is_empty())
        .collect();
    if lines.is_empty() {
        "-".into()
    } else {
        lines.join(" | ")
    }
}

/// `text` with every whole number equal to `number` written `with`.
fn replace_number(text: &str, number: u32, with: &str) -> String {
    let wanted = number.to_string();
    let mut out = String::new();
    let mut digits = String::new();
    for ch in text.chars().chain(std::iter::once('\n')) {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        if !digits.is_empty() {
            out.push_str(if digits == wanted { with } else { &digits });
            digits.clear();
        }
        out.push(ch);
    }
    out.pop();
    out
}

/// The cluster configuration a measurement belongs to (what `cluster.sh up` was given).
struct Configuration {
    label: &'static str,
    file_suffix: &'static str,
}

fn configuration(c: &Cluster) -> Configuration {
    match (
        c.recorded("job_container").as_str(),
        c.recorded("namespace_linux").as_str(),
    ) {
        ("1", "1") => Configuration {
            label: "namespace/linux",
            file_suffix: "-namespace-linux",
        },
        ("1", _) => Configuration {
            label: "job container (job_container/tmpfs, from 25.11 namespace/tmpfs)",
            file_suffix: "-job-container",
        },
        _ => Configuration {
            label: "plain slurmd",
            file_suffix: "",
        },
    }
}

fn write_rows(file: &Path, version: &str, configuration: &str, rows: &[Row]) {
    let mut text = format!(
        "# {version}, one-node cluster, {configuration}: tests/scenarios/tests/spank_failures.rs\n{}\n",
        COLUMNS.join("\t")
    );
    for row in rows {
        let fields: Vec<&str> = COLUMNS.iter().map(|c| row[c].as_str()).collect();
        text.push_str(&fields.join("\t"));
        text.push('\n');
    }
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    eprintln!("wrote {}", file.display());
}
