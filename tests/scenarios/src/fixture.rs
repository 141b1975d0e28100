//! Beamtimes for the tests: what slurm-conf-examples/beamtime-start.sh is asked to create,
//! and what it made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::cluster::{Cluster, NODE};
use crate::cmd::{Cmd, Output};
use crate::slurm::Job;

/// What `slurm-conf-examples/beamtime-start.sh` should create. Defaults: one reservation
/// named after the id, one core of the node (so other tests' jobs still fit), partition
/// `ponline_<beamline>`, with online resources.
#[derive(Clone, Debug)]
pub struct BeamtimeSpec {
    pub id: String,
    pub beamline: String,
    pub account: String,
    pub partition: Option<String>,
    pub reservations: Vec<String>,
    /// Cores per reservation on each of its nodes. Always some: beamtime-start.sh would
    /// otherwise reserve whole nodes, as the facility does, and keep every job outside the
    /// reservation off the one-node cluster's only node.
    pub cores: u32,
    pub online: bool,
    /// Further options for beamtime-start.sh (`--title`, `--proposal-type`, …).
    pub extra_args: Vec<String>,
    /// `--pre-start`: the metadata only in the core folder, the beamline left alone.
    pub pre_start: bool,
    /// The beamtime this start takes the beamline over from, on purpose (see
    /// [`BeamtimeSpec::replacing`]).
    pub replaces: Option<String>,
}

impl BeamtimeSpec {
    pub fn new(id: &str, beamline: &str, account: &str) -> Self {
        BeamtimeSpec {
            id: id.into(),
            beamline: beamline.into(),
            account: account.into(),
            partition: None,
            reservations: Vec::new(),
            cores: 1,
            online: true,
            extra_args: Vec::new(),
            pre_start: false,
            replaces: None,
        }
    }

    /// A beamtime of `account` that no other test uses: a fresh id and beamline (see
    /// [`fresh_names`]), in partition `all` (slurm.conf has `ponline_<beamline>` partitions
    /// only for the beamlines it names).
    pub fn fresh(account: &str) -> Self {
        let (id, beamline) = fresh_names(account);
        BeamtimeSpec::new(&id, &beamline, account).partition("all")
    }

    pub fn partition(mut self, partition: &str) -> Self {
        self.partition = Some(partition.into());
        self
    }

    /// Reservation names, each optionally `NAME@NODES` to put it on those nodes.
    pub fn reservations(mut self, names: &[&str]) -> Self {
        self.reservations = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Another beamtime's beamline, for a test of two beamtimes on one beamline (a
    /// pre-start beside the one that holds it, or a takeover with
    /// [`BeamtimeSpec::replacing`]).
    pub fn on_beamline(mut self, beamline: &str) -> Self {
        self.beamline = beamline.into();
        self
    }

    /// Reservations on these nodes (`btnode[1-2]`, …): the beamtime's own on the first,
    /// then `<id>_1`, `<id>_2`, … as the facility names further ones.
    pub fn reservations_on(mut self, nodes: &[&str]) -> Self {
        self.reservations = nodes
            .iter()
            .enumerate()
            .map(|(n, nodes)| match n {
                0 => format!("{}@{nodes}", self.id),
                n => format!("{}_{n}@{nodes}", self.id),
            })
            .collect();
        self
    }

    /// The beamtime's own reservation and a second one, `<id>_1`, as the facility names
    /// a second reservation of one beamtime.
    pub fn second_reservation(mut self) -> Self {
        self.reservations = vec![self.id.clone(), format!("{}_1", self.id)];
        self
    }

    pub fn cores(mut self, cores: u32) -> Self {
        self.cores = cores;
        self
    }

    pub fn no_online(mut self) -> Self {
        self.online = false;
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// The facility's pre-start (`beamtime-start.sh --pre-start`): account, Slurm account,
    /// reservation and the metadata in `<state>/core/<beamline>/<id>/`, where the test
    /// cluster's plugstack line looks; the beamline's `current` folder is not touched, so
    /// it may serve another beamtime meanwhile. Start the same spec without this later to
    /// bring the beamtime online.
    pub fn pre_start(mut self) -> Self {
        self.pre_start = true;
        self
    }

    /// This start takes the beamline over from beamtime `id`, which an earlier start in
    /// this test binary gave it: the facility's next beamtime (`--replace` moves the old
    /// folder aside). Without it, a second beamtime on one beamline is taken for a slip.
    pub fn replacing(mut self, id: &str) -> Self {
        self.replaces = Some(id.into());
        self
    }
}

/// `options`, then `more`, as the argument list sbatch is given.
fn then<'a>(options: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    options
        .iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// A beamtime id and a beamline name that no other test uses, made from the binary's name,
/// the test's name (its thread's, as cargo's test runner names it), the beamtime's account
/// and how many the test took before. The same test gets the same names at every run,
/// whatever order the tests run in, so that running it again on one cluster takes its
/// beamline and reservation over (as beamtime-start.sh --replace does) instead of reserving
/// more of the node's cores, and never meets another test's beamtime of an earlier run
/// (whose folders another account owns). Nine digits of a hash: two of a run's few hundred names meet with a chance of
/// about 1 in 10,000; a meeting within one binary fails the test at once. The ids begin
/// with 2 and have ten digits, so that they never meet the hand-picked ids (110…) that
/// tests needing a particular beamline use.
fn fresh_names(account: &str) -> (String, String) {
    static BINARY: OnceLock<String> = OnceLock::new();
    static TAKEN: Mutex<BTreeMap<u64, String>> = Mutex::new(BTreeMap::new());
    static IN_MAIN_THREAD: AtomicU32 = AtomicU32::new(0);
    thread_local! {
        static TAKEN_BY_THIS_TEST: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    let binary = BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let stem = exe.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        // cargo names a test binary <file>-<hash of the build>: the file part stays.
        stem.rsplit_once('-')
            .map_or(stem, |(name, _)| name)
            .to_owned()
    });
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("main");
    // With one test thread the runner may run the tests in its main thread, one after
    // another in a fixed order: then a count across them keeps them apart.
    let nth = if test == "main" {
        IN_MAIN_THREAD.fetch_add(1, Ordering::Relaxed)
    } else {
        TAKEN_BY_THIS_TEST.with(|n| n.replace(n.get() + 1))
    };
    let key = format!("{binary}/{test}/{account}/{nth}");
    // FNV-1a: a fixed function, so the names do not change between builds.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    }) % 1_000_000_000;
    if let Some(other) = TAKEN.lock().unwrap().insert(hash, key.clone()) {
        panic!("{key} and {other} got the same fresh beamtime: change one test's name");
    }
    (format!("2{hash:09}"), format!("f{hash:09}"))
}

/// A started beamtime.
#[derive(Clone, Debug)]
pub struct Beamtime {
    pub id: String,
    pub beamline: String,
    /// The beamtime's Unix account (`onlineAnalysis.userAccount`).
    pub account: String,
    /// The Slurm account (named after the id).
    pub slurm_account: String,
    pub partition: String,
    /// Empty without online resources.
    pub reservations: Vec<String>,
    /// `<source root>/<beamline>/current`, what the plugin shows as `/beamline/<bl>/current`.
    pub current_dir: PathBuf,
    pub metadata_path: PathBuf,
}

impl Beamtime {
    /// What a user passes by hand for a job of this beamtime, without bt-submit: the
    /// beamtime, its partition and its first reservation.
    pub fn job_options(&self) -> Vec<String> {
        let mut options = vec![
            format!("--beamtime={}", self.id),
            format!("--partition={}", self.partition),
        ];
        options.extend(
            self.reservations
                .first()
                .map(|r| format!("--reservation={r}")),
        );
        options
    }

    /// The metadata file, parsed.
    #[track_caller]
    pub fn metadata(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.metadata_path)
            .unwrap_or_else(|e| panic!("{}: {e}", self.metadata_path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", self.metadata_path.display()))
    }
}

/// Beamline -> beamtime id of the beamtimes this test process started. The facility has one
/// `current` beamtime per beamline, and beamtime-start.sh --replace moves an older one aside:
/// two tests of one binary sharing a beamline would pull folders from under each other.
static BEAMLINES: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

impl Cluster {
    /// srun as the beamtime's account with the beamtime's [`Beamtime::job_options`]; the
    /// caller adds its own options and the command.
    pub fn beamtime_srun(&self, bt: &Beamtime) -> Cmd {
        self.as_user(&bt.account, "srun").args(bt.job_options())
    }

    /// [`Cluster::sbatch`] as the beamtime's account with the beamtime's
    /// [`Beamtime::job_options`], then `more`: for a submission that may be refused.
    #[track_caller]
    pub fn sbatch_beamtime_job(
        &self,
        bt: &Beamtime,
        workdir: &Path,
        more: &[&str],
        script: &str,
    ) -> Output {
        let options = bt.job_options();
        self.sbatch(&bt.account, workdir, &then(&options, more), script)
    }

    /// [`Cluster::submit`] as the beamtime's account with the beamtime's
    /// [`Beamtime::job_options`], then `more`.
    #[track_caller]
    pub fn submit_beamtime_job(
        &self,
        bt: &Beamtime,
        workdir: &Path,
        more: &[&str],
        script: &str,
    ) -> Job {
        let options = bt.job_options();
        self.submit(&bt.account, workdir, &then(&options, more), script)
    }

    /// Where beamtime-start.sh creates beamline folders by default: `<state>/beamline-src`.
    pub fn beamline_src(&self) -> PathBuf {
        self.state_dir().join("beamline-src")
    }

    /// Runs slurm-conf-examples/beamtime-start.sh for `spec` and returns what it made.
    /// Passes `--replace` (but not for a pre-start, which leaves the beamline alone), so a
    /// beamline's `current` left by an earlier test binary does not block; within this test
    /// process, a beamline may serve one beamtime id only (give every test its own beamline
    /// name, e.g. `p11` in one test, `p99` with partition `all` in another), unless the spec
    /// says whose beamline it takes over ([`BeamtimeSpec::replacing`]) — this panics
    /// otherwise. A pre-start's `metadata_path` is in the core folder.
    #[track_caller]
    pub fn start_beamtime(&self, spec: &BeamtimeSpec) -> Beamtime {
        if !spec.pre_start {
            let mut beamlines = BEAMLINES.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(other) = beamlines.get(&spec.beamline) {
                if spec.replaces.as_ref() != Some(other) {
                    assert_eq!(
                        other, &spec.id,
                        "beamline {} already serves beamtime {other} in this test binary; use another beamline name for {}",
                        spec.beamline, spec.id
                    );
                }
            }
            beamlines.insert(spec.beamline.clone(), spec.id.clone());
        }
        let script = Cluster::repo_root().join("slurm-conf-examples/beamtime-start.sh");
        let mut cmd = self
            .cmd(&script)
            .args([
                "--id",
                &spec.id,
                "--beamline",
                &spec.beamline,
                "--account",
                &spec.account,
            ])
            .arg(if spec.pre_start {
                "--pre-start"
            } else {
                "--replace"
            })
            .args(["--nodes", NODE])
            .args(["--cores", &spec.cores.to_string()])
            .timeout(Duration::from_secs(180));
        if let Some(p) = &spec.partition {
            cmd = cmd.args(["--partition", p]);
        }
        for r in &spec.reservations {
            cmd = cmd.args(["--reservation", r]);
        }
        if !spec.online {
            cmd = cmd.arg("--no-online");
        }
        let out = cmd.args(&spec.extra_args).run();
        out.assert_success();
        let metadata_path = PathBuf::from(out.stdout.trim());
        let reservations = match (spec.online, spec.reservations.is_empty()) {
            (false, _) => Vec::new(),
            (true, true) => vec![spec.id.clone()],
            // `NAME@NODES` asks beamtime-start.sh for a reservation on those nodes.
            (true, false) => spec
                .reservations
                .iter()
                .map(|r| r.split('@').next().unwrap_or(r).to_owned())
                .collect(),
        };
        Beamtime {
            id: spec.id.clone(),
            beamline: spec.beamline.clone(),
            account: spec.account.clone(),
            slurm_account: spec.id.clone(),
            partition: spec
                .partition
                .clone()
                .unwrap_or_else(|| format!("ponline_{}", spec.beamline)),
            reservations,
            current_dir: self.beamline_src().join(&spec.beamline).join("current"),
            metadata_path,
        }
    }
}
