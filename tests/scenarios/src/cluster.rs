//! The running test cluster: where its files are, commands against it, its logs, its
//! plugstack, and the helpers for a cluster of several nodes.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::cmd::{Cmd, Output};
use crate::users::UnixUser;

/// The one compute node of the test cluster.
pub const NODE: &str = "btnode1";
/// An ordinary user with an association in [`DEFAULT_ACCOUNT`], created by `cluster.sh up`.
pub const TEST_USER: &str = "btalice";
/// The Slurm account of ordinary users.
pub const DEFAULT_ACCOUNT: &str = "btusers";
/// The node count the multi-node scenarios need (`cluster.sh up --nodes 4`).
pub const MULTI_NODES: usize = 4;

const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A number no other call in this test process got, for unique file names.
pub(crate) fn unique() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The running test cluster, found once per test binary (see [`Cluster::from_env`]).
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::from_env)
}

/// A handle on the running test cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    slurm_conf: PathBuf,
    state: PathBuf,
}

/// The bt-submit the scenarios run: `$BT_SUBMIT` (scripts/test-all.sh sets the
/// installed one), else this checkout's release build.
#[track_caller]
pub fn bt_submit() -> PathBuf {
    let path = std::env::var_os("BT_SUBMIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Cluster::repo_root().join("target/release/bt-submit"));
    assert!(
        path.exists(),
        "{} is missing: build bt-submit (scripts/test-all.sh does)",
        path.display()
    );
    path
}

/// The mount points at or below `root` in this (the host's) mount namespace.
pub fn host_mounts_below(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .filter(|point| *point == root || point.starts_with(&format!("{root}/")))
        .collect()
}

/// Nothing a job did shows on the host: no mount at or below /beamline, and
/// /beamline itself still empty (every view the plugin builds is private to a task).
#[track_caller]
pub fn assert_host_untouched() {
    assert_eq!(
        host_mounts_below(Path::new("/beamline")),
        Vec::<String>::new(),
        "mounts left on the host"
    );
    let left: Vec<_> = std::fs::read_dir("/beamline")
        .expect("read /beamline")
        .map(|e| e.expect("a /beamline entry").path())
        .collect();
    assert!(
        left.is_empty(),
        "/beamline on the host is not empty: {left:?}"
    );
}

impl Cluster {
    /// The cluster that `eval "$(tests/cluster/cluster.sh env)"` points at.
    /// Panics — the test fails — when `SLURM_CONF`/`BT_TEST_STATE` are unset, when not
    /// running as root, or when slurmctld does not answer.
    #[track_caller]
    pub fn from_env() -> Cluster {
        const HOW: &str = "no test cluster: run tests/cluster/cluster.sh up first, then \
                           eval \"$(tests/cluster/cluster.sh env)\" in the shell that runs cargo test";
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let (Some(conf), Some(state)) = (var("SLURM_CONF"), var("BT_TEST_STATE")) else {
            panic!("{HOW} (SLURM_CONF or BT_TEST_STATE is not set)");
        };
        let cluster = Cluster {
            slurm_conf: conf.into(),
            state: state.into(),
        };
        assert!(
            cluster.slurm_conf.is_file(),
            "{HOW} ({} does not exist)",
            cluster.slurm_conf.display()
        );
        // SAFETY: getuid cannot fail.
        assert_eq!(
            unsafe { libc::getuid() },
            0,
            "the real-cluster tests run as root: they act as several Unix users and create beamtimes"
        );
        let out = cluster
            .cmd("sinfo")
            .args(["-h", "-o", "%P"])
            .timeout(Duration::from_secs(15))
            .run();
        assert!(
            out.success(),
            "{HOW} (sinfo cannot reach slurmctld):\n{out}"
        );
        cluster
    }

    pub fn slurm_conf(&self) -> &Path {
        &self.slurm_conf
    }

    /// The cluster's state folder (`BT_TEST_STATE`).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// `<state>/log`: slurmctld.log, slurmd.log (slurmstepd logs there too), slurmdbd.log, …
    pub fn log_dir(&self) -> PathBuf {
        self.state.join("log")
    }

    /// A cursor at the current end of `<state>/log/<name>` (e.g. `"slurmd.log"`).
    pub fn log_cursor(&self, name: &str) -> LogCursor {
        LogCursor::at_end(self.log_dir().join(name))
    }

    /// The repository's root (for scripts such as slurm-conf-examples/beamtime-start.sh).
    pub fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .expect("repository root")
    }

    /// A command run as root, with `SLURM_CONF` and `BT_TEST_STATE` set and nothing else
    /// inherited but `PATH`/`LANG`.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Cmd {
        Cmd::new(program)
            .env("PATH", CLEAN_PATH)
            .env("LANG", "C.UTF-8")
            .env("SLURM_CONF", &self.slurm_conf)
            .env("HOME", "/root")
            .env("BT_TEST_STATE", &self.state)
    }

    /// A command run as `user` (real uid/gid and supplementary groups, no PAM session) with
    /// a login-like environment (`HOME`, `USER`, `LOGNAME`, `SHELL`, `PATH`, `LANG`,
    /// `SLURM_CONF`) and the user's home as working directory unless `cwd` says otherwise.
    #[track_caller]
    pub fn as_user(&self, user: &str, program: impl AsRef<OsStr>) -> Cmd {
        let u = UnixUser::get(user);
        self.cmd(program)
            .env_remove("BT_TEST_STATE")
            .env("HOME", &u.home)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name)
            .env("SHELL", &u.shell)
            .cwd(&u.home)
            .with_user(u)
    }

    /// Runs `argv` as `user` in `workdir`; shorthand for [`Cluster::as_user`].
    #[track_caller]
    pub fn run_as(&self, user: &str, workdir: &Path, argv: &[&str]) -> Output {
        let (program, args) = argv.split_first().expect("argv must not be empty");
        self.as_user(user, program).args(args).cwd(workdir).run()
    }

    /// A fresh folder owned by `user` for one test's scripts and job output:
    /// `<state>/work/<user>/<label>-<pid>-<n>`. Not under /tmp (job_container/tmpfs gives
    /// jobs their own /tmp) and not root-owned (Slurm opens output files as the user).
    #[track_caller]
    pub fn workdir(&self, user: &str, label: &str) -> PathBuf {
        let u = UnixUser::get(user);
        let parent = self.state.join("work").join(user);
        let dir = parent.join(format!("{label}-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for d in [&parent, &dir] {
            std::os::unix::fs::chown(d, Some(u.uid), Some(u.gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", d.display()));
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", d.display()));
        }
        dir
    }

    /// A copy of the cluster's slurm.conf, readable by `user`, whose plugstack is
    /// empty: a host without the plugin, or a user skipping its client side.
    #[track_caller]
    pub fn slurm_conf_without_plugins(&self, user: &str) -> PathBuf {
        self.slurm_conf_with_plugstack(user, "no-plugins", "# nothing\n")
    }

    /// A copy of the cluster's slurm.conf, readable by `user`, whose plugstack.conf
    /// holds `plugstack`: what a login node with another plugstack file sees (slurmd
    /// keeps the cluster's own).
    #[track_caller]
    pub fn slurm_conf_with_plugstack(&self, user: &str, label: &str, plugstack: &str) -> PathBuf {
        let dir = self.workdir(user, label);
        let text = plugstack;
        let plugstack = dir.join("plugstack.conf");
        std::fs::write(&plugstack, text).expect("write plugstack.conf");
        let conf: String = std::fs::read_to_string(&self.slurm_conf)
            .expect("read slurm.conf")
            .lines()
            .filter(|line| !line.starts_with("PlugStackConfig"))
            .map(|line| format!("{line}\n"))
            .chain([format!("PlugStackConfig={}\n", plugstack.display())])
            .collect();
        let path = dir.join("slurm.conf");
        std::fs::write(&path, conf).expect("write slurm.conf");
        for file in [&plugstack, &path] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        path
    }

    /// The one `decision=refused` line slurmd's log has for the job whose node
    /// refusal `out` shows (`spank-beamtime: error: job N refused on …`): every
    /// refusal is logged exactly once per step and node, which admins count by rule.
    #[track_caller]
    pub fn refusal_logged_once(&self, out: &Output) -> String {
        let job = out
            .stderr
            .split("spank-beamtime: error: job ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("no node refusal in:\n{out}"));
        let log =
            std::fs::read_to_string(self.log_dir().join("slurmd.log")).expect("read slurmd.log");
        let prefix = format!("spank-beamtime: job={job} ");
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&prefix) && l.contains(" decision=refused rule="))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "job {job}: refusal lines in slurmd.log: {lines:#?}"
        );
        lines[0].to_owned()
    }

    /// What `cluster.sh up` recorded in `etc/cluster.args` under `key` (`plugin`,
    /// `plugin_args`, `nodes`, `job_container`, …); empty when it recorded nothing.
    pub fn recorded(&self, key: &str) -> String {
        let path = self.state_dir().join("etc/cluster.args");
        let recorded = std::fs::read_to_string(&path).unwrap_or_default();
        let prefix = format!("{key}=");
        recorded
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_default()
            .to_owned()
    }

    /// The plugin the cluster was started with and its plugstack arguments.
    #[track_caller]
    pub fn installed_plugin(&self) -> (PathBuf, String) {
        let plugin = self.recorded("plugin");
        assert!(
            !plugin.is_empty(),
            "the cluster runs without spank-beamtime: start it with --plugin"
        );
        (PathBuf::from(plugin), self.recorded("plugin_args"))
    }

    /// `cluster.sh plugstack` with `plugin` (none: an empty stack) and its arguments.
    fn plugstack_cmd(&self, plugin: Option<&Path>, plugin_args: &str) -> Cmd {
        let script = Cluster::repo_root().join("tests/cluster/cluster.sh");
        let mut cmd = self
            .cmd(&script)
            .arg("plugstack")
            .timeout(Duration::from_secs(120));
        // cluster.sh names a multi-host cluster's network namespaces after its ports: without
        // them it restarts slurmd into another cluster's namespaces (the defaults').
        for name in [
            "BT_CTLD_PORT",
            "BT_SLURMD_PORT",
            "BT_DBD_PORT",
            "BT_MYSQL_PORT",
            "BT_NET",
        ] {
            if let Some(value) = std::env::var_os(name) {
                cmd = cmd.env(name, value);
            }
        }
        match plugin {
            Some(p) => cmd
                .arg("--plugin")
                .arg(p)
                .args(["--plugin-args", plugin_args]),
            None => cmd,
        }
    }

    /// Rewrites plugstack.conf through `cluster.sh plugstack` (which restarts slurmd, the only
    /// daemon that reads it once). This changes the cluster for every test running at the
    /// same time: only for tests that run alone (their own test binary, one test).
    #[track_caller]
    pub fn set_plugstack(&self, plugin: Option<&Path>, plugin_args: &str) -> Output {
        let out = self.plugstack_cmd(plugin, plugin_args).run();
        out.assert_success();
        out
    }
}

/// Puts back, when dropped, the plugstack the cluster was started with, cancels the test
/// user's jobs and returns the node to service: for tests that change plugstack.conf.
pub struct RestorePlugstack<'a> {
    c: &'a Cluster,
    plugin: Option<PathBuf>,
    args: String,
}

impl RestorePlugstack<'_> {
    pub fn new(c: &Cluster) -> RestorePlugstack<'_> {
        let plugin = Some(c.recorded("plugin"))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        RestorePlugstack {
            c,
            plugin,
            args: c.recorded("plugin_args"),
        }
    }
}

impl Drop for RestorePlugstack<'_> {
    fn drop(&mut self) {
        // No panicking here: this also runs while a failed test unwinds.
        let out = self
            .c
            .plugstack_cmd(self.plugin.as_deref(), &self.args)
            .run();
        if !out.success() {
            eprintln!("could not restore plugstack.conf:\n{out}");
        }
        let _ = self.c.cmd("scancel").args(["-u", TEST_USER]).run();
        self.c.resume_node();
    }
}

/// A position in a daemon's log; [`LogCursor::read_new`] returns what was written since.
/// Other tests write to the same logs concurrently: look for your job id, not line counts.
#[derive(Clone, Debug)]
pub struct LogCursor {
    pub path: PathBuf,
    offset: u64,
}

impl LogCursor {
    pub fn at_end(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        LogCursor { path, offset }
    }

    pub fn read_new(&self) -> String {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return String::new();
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_ok() {
            let _ = f.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

// Several nodes (`cluster.sh up --nodes N`).
impl Cluster {
    /// The cluster's node names as sinfo lists them (`btnode1` … `btnodeN`), each once.
    #[track_caller]
    pub fn nodes(&self) -> Vec<String> {
        let out = self
            .cmd("sinfo")
            .args(["-h", "-N", "-o", "%N"])
            .timeout(Duration::from_secs(20))
            .run();
        out.assert_success();
        let mut nodes: Vec<String> = Vec::new();
        for n in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !nodes.iter().any(|m| m == n) {
                nodes.push(n.to_owned());
            }
        }
        nodes.sort_by_key(|n| n.trim_start_matches("btnode").parse::<u32>().unwrap_or(0));
        nodes
    }

    /// Fails the test unless the cluster has at least `n` nodes: multi-node scenarios are
    /// `#[ignore]`d by default and run with `--ignored` on `cluster.sh up --nodes 4`.
    #[track_caller]
    pub fn require_nodes(&self, n: usize) -> Vec<String> {
        let nodes = self.nodes();
        assert!(
            nodes.len() >= n,
            "this scenario needs a cluster of {n} nodes, this one has {nodes:?}: run \
             tests/cluster/cluster.sh up --nodes {n}"
        );
        nodes
    }

    /// The slurmd log of `node`: `slurmd-<node>.log` on a multi-node cluster, `slurmd.log`
    /// on the one-node cluster. slurmstepd of that node logs there too.
    pub fn slurmd_log(&self, node: &str) -> PathBuf {
        let per_node = self.log_dir().join(format!("slurmd-{node}.log"));
        if per_node.exists() {
            per_node
        } else {
            self.log_dir().join("slurmd.log")
        }
    }

    /// Cursors at the end of every node's slurmd log.
    pub fn slurmd_log_cursors(&self) -> Vec<(String, LogCursor)> {
        self.nodes()
            .into_iter()
            .map(|n| {
                let cursor = LogCursor::at_end(self.slurmd_log(&n));
                (n, cursor)
            })
            .collect()
    }

    /// slurmctld's RPC counts by message type since the last reset (`sdiag`), e.g.
    /// `REQUEST_JOB_INFO_SINGLE` -> 4.
    #[track_caller]
    pub fn rpc_counts(&self) -> BTreeMap<String, u64> {
        let out = self.cmd("sdiag").timeout(Duration::from_secs(20)).run();
        out.assert_success();
        let mut counts = BTreeMap::new();
        let mut in_types = false;
        for line in out.stdout.lines() {
            if line.starts_with("Remote Procedure Call statistics by message type") {
                in_types = true;
                continue;
            }
            if line.starts_with("Remote Procedure Call statistics by user") {
                break;
            }
            if !in_types {
                continue;
            }
            // "\tREQUEST_JOB_INFO_SINGLE   ( 2021) count:4   ave_time:224 total_time:899"
            let mut words = line.split_whitespace();
            let (Some(name), Some(count)) = (words.next(), line.split("count:").nth(1)) else {
                continue;
            };
            let count = count.split_whitespace().next().and_then(|c| c.parse().ok());
            if let Some(count) = count {
                counts.insert(name.to_owned(), count);
            }
        }
        counts
    }

    /// Resets slurmctld's RPC statistics (`sdiag --reset`).
    #[track_caller]
    pub fn reset_rpc_counts(&self) {
        self.cmd("sdiag")
            .arg("--reset")
            .timeout(Duration::from_secs(20))
            .run()
            .assert_success();
    }
}
