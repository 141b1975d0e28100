//! What Slurm says about jobs, nodes and reservations, read through its commands, and
//! the waits for a job or a node to settle. scontrol's records are parsed by bt-submit's
//! parser, so the tests read them as the product does.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bt_submit::slurm::text::parse_record;

use crate::cluster::{unique, Cluster, NODE};
use crate::cmd::{Output, DEFAULT_TIMEOUT};
use crate::users::UnixUser;
use crate::wait;

/// A submitted batch job and where its output goes.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: u32,
    pub user: String,
    pub workdir: PathBuf,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Job {
    /// The job's standard output file; a missing file is a test failure (Slurm creates it
    /// when the batch step starts, so a job that never started has none).
    #[track_caller]
    pub fn stdout(&self) -> String {
        read_job_file(&self.stdout_path, self.id)
    }

    #[track_caller]
    pub fn stderr(&self) -> String {
        read_job_file(&self.stderr_path, self.id)
    }
}

#[track_caller]
fn read_job_file(path: &Path, id: u32) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("job {id}: cannot read {}: {e}", path.display()))
}

/// Where a job ended up, as the controller (or, after it forgot the job, sacct) says.
#[derive(Clone, Debug)]
pub struct JobEnd {
    pub id: u32,
    /// `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, `NODE_FAIL`, … or `PENDING` for a
    /// job that Slurm requeued and held after a launch or prolog failure.
    pub state: String,
    /// scontrol's `Reason` (e.g. `launch_failed_requeued_held`), `None` if there is none.
    pub reason: Option<String>,
    /// The batch script's exit code and the signal that ended it (`ExitCode=<code>:<sig>`).
    pub exit_code: i32,
    pub signal: i32,
    /// The whole `scontrol show job -o` record (empty when the answer came from sacct).
    pub record: BTreeMap<String, String>,
}

impl JobEnd {
    /// The end of the job whose record this is, or the record back while the job has
    /// not settled yet.
    fn from_record(
        id: u32,
        record: BTreeMap<String, String>,
    ) -> Result<JobEnd, BTreeMap<String, String>> {
        let (exit_code, signal) = parse_exit_code(record.get("ExitCode").map_or("", |s| s));
        let end = JobEnd {
            id,
            state: record.get("JobState").cloned().unwrap_or_default(),
            reason: record
                .get("Reason")
                .filter(|r| r.as_str() != "None")
                .cloned(),
            exit_code,
            signal,
            record,
        };
        if FINAL_STATES.contains(&end.state.as_str()) || end.requeued_held() {
            Ok(end)
        } else {
            Err(end.record)
        }
    }

    pub fn completed_ok(&self) -> bool {
        self.state == "COMPLETED" && self.exit_code == 0 && self.signal == 0
    }

    /// Slurm gave up launching the job and held it (what a failing node-side plugin
    /// init or prolog causes for batch jobs, together with a drained node).
    pub fn requeued_held(&self) -> bool {
        REQUEUED_STATES.contains(&self.state.as_str())
            && self.reason.as_deref().is_some_and(is_held_reason)
    }

    #[track_caller]
    pub fn assert_completed_ok(&self) -> &Self {
        assert!(
            self.completed_ok(),
            "job {} did not complete with 0:0: {self:#?}",
            self.id
        );
        self
    }
}

const FINAL_STATES: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
];

/// States of a job that Slurm put back into the queue. (`Reason=Prolog` on a RUNNING job
/// only means the prolog is still running, which job_container/tmpfs's Contain makes common.)
const REQUEUED_STATES: &[&str] = &[
    "PENDING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "SPECIAL_EXIT",
];

fn is_held_reason(reason: &str) -> bool {
    reason.contains("launch_failed") || reason.to_ascii_lowercase().contains("held")
}

/// `ExitCode=<code>:<signal>` (scontrol) or `<code>:<signal>` (sacct); -1 for what is
/// not a number.
fn parse_exit_code(s: &str) -> (i32, i32) {
    let (code, sig) = s.split_once(':').unwrap_or((s, "0"));
    (
        code.trim().parse().unwrap_or(-1),
        sig.trim().parse().unwrap_or(-1),
    )
}

/// A node's state as sinfo prints it (`%T`, e.g. `idle`, `mixed`, `drained`, `down*`)
/// and its reason (`%E`, `none` when there is none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub state: String,
    pub reason: String,
}

impl NodeState {
    /// Able to take jobs: not drained, draining, down, failing or unresponsive (`*`).
    /// `reserved` and `planned` are normal once beamtimes exist; `completing` passes in a
    /// moment.
    pub fn is_usable(&self) -> bool {
        // sinfo appends '+' while a job on the node is completing, and '-' while the
        // backfill scheduler has planned a job there (NODE_STATE_PLANNED; seen on 26.05
        // after the load burst) (node_state_string in Slurm's slurm_protocol_defs.c); the
        // base state decides. An idle node with a planned job reads "planned" (seen on
        // 24.11 with job_container/tmpfs while a pending job waited for a reservation).
        matches!(
            self.state.trim_end_matches(['+', '-']),
            "idle" | "planned" | "mixed" | "allocated" | "reserved" | "completing"
        )
    }
}

impl Cluster {
    /// Writes `script` to a file in `workdir` (owned by `user`) and runs
    /// `sbatch --parsable -o <workdir>/slurm-%j.out -e <workdir>/slurm-%j.err <args> <file>`
    /// as `user` in `workdir`. Later `-o`/`-e` in `args` win. `--wait` in `args` works, but
    /// [`Cluster::wait_job`] polls faster than sbatch does.
    #[track_caller]
    pub fn sbatch(&self, user: &str, workdir: &Path, args: &[&str], script: &str) -> Output {
        let u = UnixUser::get(user);
        let file = workdir.join(format!("job-{}.sh", unique()));
        std::fs::write(&file, script).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        std::os::unix::fs::chown(&file, Some(u.uid), Some(u.gid)).expect("chown job script");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
            .expect("chmod job script");
        let timeout = if args.contains(&"--wait") || args.contains(&"-W") {
            Duration::from_secs(300)
        } else {
            DEFAULT_TIMEOUT
        };
        self.as_user(user, "sbatch")
            .cwd(workdir)
            .arg("--parsable")
            .arg("-o")
            .arg(workdir.join("slurm-%j.out"))
            .arg("-e")
            .arg(workdir.join("slurm-%j.err"))
            .args(args)
            .arg(&file)
            .timeout(timeout)
            .run()
    }

    /// [`Cluster::sbatch`] that must succeed; returns the job and its output paths.
    #[track_caller]
    pub fn submit(&self, user: &str, workdir: &Path, args: &[&str], script: &str) -> Job {
        let out = self.sbatch(user, workdir, args, script);
        let id = out.job_id();
        Job {
            id,
            user: user.into(),
            workdir: workdir.into(),
            stdout_path: workdir.join(format!("slurm-{id}.out")),
            stderr_path: workdir.join(format!("slurm-{id}.err")),
        }
    }

    /// Submits and waits until the job has settled (see [`Cluster::wait_job`]).
    #[track_caller]
    pub fn submit_and_wait(
        &self,
        user: &str,
        workdir: &Path,
        args: &[&str],
        script: &str,
    ) -> (Job, JobEnd) {
        let job = self.submit(user, workdir, args, script);
        let end = self.wait_job(job.id, DEFAULT_TIMEOUT);
        (job, end)
    }

    /// The controller's record of a job (`scontrol show job -o`), `None` once it forgot it.
    pub fn job_record(&self, id: u32) -> Option<BTreeMap<String, String>> {
        let out = self
            .cmd("scontrol")
            .args(["show", "job", "-o", &id.to_string()])
            .run();
        if !out.success() {
            return None;
        }
        let line = out.stdout.lines().find(|l| l.starts_with("JobId="))?;
        Some(parse_record(line))
    }

    /// sacct's `(State, ExitCode)` of a job's allocation, `None` until accounting has it.
    pub fn sacct(&self, id: u32) -> Option<(String, String)> {
        let out = self
            .cmd("sacct")
            .args([
                "-n",
                "-P",
                "-X",
                "-j",
                &id.to_string(),
                "-o",
                "State,ExitCode",
            ])
            .timeout(Duration::from_secs(20))
            .run();
        let line = out.stdout.lines().next()?.trim().to_string();
        let (state, exit) = line.split_once('|')?;
        // "CANCELLED by 0" -> "CANCELLED"
        let state = state.split_whitespace().next().unwrap_or("").to_string();
        Some((state, exit.to_string()))
    }

    /// Polls until the job has settled: a final state, or requeued and held after a launch
    /// or prolog failure. Panics after `timeout` with the job's record and the node's state
    /// (a job pending on resources forever is a failing test, not a hang).
    #[track_caller]
    pub fn wait_job(&self, id: u32, timeout: Duration) -> JobEnd {
        wait::poll(timeout, || self.job_end(id)).unwrap_or_else(|last| {
            panic!(
                "job {id} did not settle within {timeout:?}; last record: {last:#?}; node: {:?}",
                self.node_state()
            )
        })
    }

    /// Where the job ended, or what the controller still says about it while it has not.
    fn job_end(&self, id: u32) -> Result<JobEnd, Option<BTreeMap<String, String>>> {
        if let Some(record) = self.job_record(id) {
            return JobEnd::from_record(id, record).map_err(Some);
        }
        // Purged from the controller (MinJobAge): accounting has the end.
        match self.sacct(id) {
            Some((state, exit)) if FINAL_STATES.contains(&state.as_str()) => {
                let (exit_code, signal) = parse_exit_code(&exit);
                Ok(JobEnd {
                    id,
                    state,
                    reason: None,
                    exit_code,
                    signal,
                    record: BTreeMap::new(),
                })
            }
            _ => Err(None),
        }
    }

    /// Polls sacct until it reports a final state for the job (accounting lags behind the
    /// controller by a moment); returns `(State, ExitCode)` as sacct prints them.
    #[track_caller]
    pub fn wait_accounted(&self, id: u32, timeout: Duration) -> (String, String) {
        let accounted = wait::poll(timeout, || match self.sacct(id) {
            Some((state, exit)) if FINAL_STATES.contains(&state.as_str()) => Ok((state, exit)),
            got => Err(got),
        });
        accounted.unwrap_or_else(|last| {
            panic!("sacct has no final state for job {id} after {timeout:?} (last: {last:?})")
        })
    }

    /// The state and reason of [`NODE`], the one-node cluster's node.
    #[track_caller]
    pub fn node_state(&self) -> NodeState {
        self.state_of(NODE)
    }

    /// A node's state and reason from `sinfo -N`.
    #[track_caller]
    pub fn state_of(&self, node: &str) -> NodeState {
        let out = self
            .cmd("sinfo")
            .args(["-h", "-N", "-n", node, "-o", "%T|%E"])
            .timeout(Duration::from_secs(20))
            .run();
        out.assert_success();
        let line = out
            .stdout
            .lines()
            .next()
            .unwrap_or_else(|| panic!("sinfo does not list {node}:\n{out}"));
        let (state, reason) = line.split_once('|').unwrap_or((line, ""));
        NodeState {
            state: state.trim().into(),
            reason: reason.trim().into(),
        }
    }

    /// Fails the test when the node is drained, draining, down or not responding, showing
    /// Slurm's reason (a plugin error in the wrong hook drains the node for everybody).
    #[track_caller]
    pub fn assert_node_not_drained(&self) {
        let node = self.node_state();
        assert!(
            node.is_usable(),
            "node {NODE} is {} (reason: {}); slurmd.log: {}",
            node.state,
            node.reason,
            self.log_dir().join("slurmd.log").display()
        );
    }

    /// Fails the test when any node is drained, draining, down or not responding.
    #[track_caller]
    pub fn assert_nodes_not_drained(&self) {
        for node in self.nodes() {
            let st = self.state_of(&node);
            assert!(
                st.is_usable(),
                "node {node} is {} (reason: {})",
                st.state,
                st.reason
            );
        }
    }

    /// Puts a drained node back into service, for tests that drain it on purpose, and
    /// waits (30 s at most) until it takes jobs again: right after RESUME it can show as
    /// `idle*` (not responding) until slurmd answers the controller's next ping.
    #[track_caller]
    pub fn resume_node(&self) {
        let state = self.node_state();
        if state.state.contains("drain") || state.state.starts_with("down") {
            self.cmd("scontrol")
                .args(["update", &format!("NodeName={NODE}"), "State=RESUME"])
                .run()
                .assert_success();
        }
        let usable = wait::poll(Duration::from_secs(30), || {
            let state = self.node_state();
            if state.is_usable() {
                Ok(())
            } else {
                Err(state)
            }
        });
        if let Err(state) = usable {
            panic!("node {NODE} still {state:?} 30 s after RESUME");
        }
    }

    /// `scontrol show res -o <name>` as fields; `None` if there is no such reservation.
    pub fn reservation(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let out = self.cmd("scontrol").args(["show", "res", "-o", name]).run();
        if !out.success() {
            return None;
        }
        out.stdout
            .lines()
            .find(|l| l.starts_with("ReservationName="))
            .map(parse_record)
    }

    /// Creates (again) a one-core reservation on the node that admits `user`.
    #[track_caller]
    pub fn create_reservation(&self, name: &str, user: &str) {
        let _ = self
            .cmd("scontrol")
            .args(["delete", &format!("ReservationName={name}")])
            .run();
        self.cmd("scontrol")
            .args([
                "create",
                "reservation",
                &format!("ReservationName={name}"),
                &format!("Users={user}"),
            ])
            .args([
                &format!("Nodes={NODE}"),
                "CoreCnt=1",
                "StartTime=now",
                "Duration=infinite",
                "Flags=IGNORE_JOBS",
            ])
            .run()
            .assert_success();
    }
}

/// A refused task's exit status (EX_NOPERM), on srun and in sacct.
pub const REFUSED: i32 = 77;

impl Cluster {
    /// A step refused on the node: srun exits [`REFUSED`], the node's refusal and each of
    /// `expected` are on its stderr, the payload (which prints `payload-ran`) never ran,
    /// slurmd logged one refusal line and the node is not drained. Returns that line.
    #[track_caller]
    pub fn assert_refused_by_node(&self, out: &Output, expected: &[&str]) -> String {
        assert_eq!(
            out.code(),
            Some(REFUSED),
            "srun must fail with {REFUSED}:\n{out}"
        );
        assert!(
            out.stderr.contains("spank-beamtime: error: job ")
                && out.stderr.contains(&format!(" refused on {NODE}: ")),
            "no refusal message from the node:\n{out}"
        );
        for text in expected {
            assert!(out.stderr.contains(text), "stderr lacks {text:?}:\n{out}");
        }
        assert!(
            !out.stdout.contains("payload-ran"),
            "the refused task ran:\n{out}"
        );
        let logged = self.refusal_logged_once(out);
        self.assert_node_not_drained();
        logged
    }
}

/// A submission `program` (srun, sbatch, salloc) refused before a job existed: it failed,
/// printed no job id, and its stderr has the plugin's refusal and each of `expected`.
#[track_caller]
pub fn assert_refused_by_client(out: &Output, program: &str, expected: &[&str]) {
    out.assert_failure();
    assert!(out.stdout.trim().is_empty(), "a job was submitted:\n{out}");
    assert!(
        out.stderr
            .contains(&format!("{program}: error: spank-beamtime: ")),
        "no client-side refusal:\n{out}"
    );
    for text in expected {
        assert!(out.stderr.contains(text), "stderr lacks {text:?}:\n{out}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_job_has_settled_with_its_exit_code_and_signal() {
        let end = JobEnd::from_record(
            7,
            parse_record(
                "JobId=7 JobName=my job JobState=FAILED Reason=NonZeroExitCode ExitCode=77:0",
            ),
        )
        .unwrap();
        assert_eq!(
            (end.state.as_str(), end.reason.as_deref()),
            ("FAILED", Some("NonZeroExitCode"))
        );
        assert_eq!((end.exit_code, end.signal), (77, 0));
        assert!(!end.completed_ok());
        assert_eq!(end.record["JobName"], "my job");
    }

    #[test]
    fn a_running_job_has_not_settled_and_a_held_one_has() {
        let running = parse_record("JobId=8 JobState=RUNNING Reason=None ExitCode=0:0");
        assert_eq!(
            JobEnd::from_record(8, running.clone()).unwrap_err(),
            running
        );
        let held = JobEnd::from_record(
            9,
            parse_record(
                "JobId=9 JobState=PENDING Reason=launch_failed_requeued_held ExitCode=0:0",
            ),
        )
        .unwrap();
        assert!(held.requeued_held(), "{held:?}");
        let waiting = parse_record("JobId=10 JobState=PENDING Reason=Resources ExitCode=0:0");
        assert!(JobEnd::from_record(10, waiting).is_err());
    }

    #[test]
    fn exit_codes_read_as_code_and_signal() {
        assert_eq!(parse_exit_code("0:0"), (0, 0));
        assert_eq!(parse_exit_code("0:9"), (0, 9));
        assert_eq!(parse_exit_code("3"), (3, 0));
        assert_eq!(parse_exit_code(""), (-1, 0));
    }

    #[test]
    fn drained_down_or_unresponsive_nodes_are_not_usable() {
        let node = |state: &str| NodeState {
            state: state.into(),
            reason: "none".into(),
        };
        for usable in ["idle", "mixed", "reserved", "completing", "mixed+"] {
            assert!(node(usable).is_usable(), "{usable}");
        }
        for unusable in ["drained", "draining", "down*", "idle*", "fail"] {
            assert!(!node(unusable).is_usable(), "{unusable}");
        }
    }
}
