//! `bt-submit --remote` against real reserved nodes: in the 4-host cluster each node runs
//! an sshd of its own on port 22 of its own address, in its network and UTS namespaces
//! (cluster.sh `start_sshd`), and the beamline computer (the host, user bttest811) knows
//! the nodes by name, address and host key, as a site's would. remote.rs proves the rest
//! on the one-node cluster's loopback sshd.
//!
//! A fresh beamtime of account bttest810, one reservation on btnode2 and btnode3, so
//! `reservedNodes` is btnode2, btnode3. The two tests take turns (one cuts btnode2 off
//! from the host for a while). `#[ignore]`d like multinode.rs; scripts/test-all.sh runs it
//! in the 4-host pass with `--ignored`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use scenarios::{
    beamline_computer_of_nodes, bt_submit, cluster, Beamtime, BeamtimeSpec, Cluster, LogCursor,
    Output, MULTI_NODES,
};

const BEAMLINE_COMPUTER: &str = "bttest811";

/// One test at a time: cutting a node off would make the other's submission move on.
static TURN: Mutex<()> = Mutex::new(());

fn beamtime() -> &'static Beamtime {
    static BT: OnceLock<Beamtime> = OnceLock::new();
    BT.get_or_init(|| {
        let c = cluster();
        c.require_nodes(MULTI_NODES);
        let bt =
            c.start_beamtime(&BeamtimeSpec::fresh("bttest810").reservations_on(&["btnode[2-3]"]));
        let key = bt.current_dir.join("shared/id_rsa");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
        c.sshd().authorize(&bt.account, &key.with_extension("pub"));
        c.ensure_unix_user(BEAMLINE_COMPUTER, &[&bt.account]);
        let nodes: Vec<_> = c.nodes().iter().map(|n| c.node_sshd(n)).collect();
        beamline_computer_of_nodes(BEAMLINE_COMPUTER, &nodes);
        bt
    })
}

fn remote_submit(bt: &Beamtime, args: &[&str]) -> Output {
    cluster()
        .as_user(BEAMLINE_COMPUTER, bt_submit())
        .env_remove("SLURM_CONF")
        .arg("--metadata")
        .arg(&bt.metadata_path)
        .arg("--remote")
        .args(args)
        .timeout(Duration::from_secs(60))
        .run()
}

fn job_script(bt: &Beamtime, label: &str) -> (PathBuf, PathBuf) {
    let dir = cluster().workdir(&bt.account, label);
    let script = dir.join("job.sh");
    fs::write(&script, "#!/bin/bash\nhostname\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    (dir, script)
}

fn job_id(out: &Output) -> u32 {
    out.stdout
        .strip_prefix("Submitted batch job ")
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no 'Submitted batch job ID':\n{out}"))
}

#[test]
#[ignore = "needs the 4-host cluster: cluster.sh up --nodes 4, then --ignored"]
fn remote_sbatch_logs_in_to_the_first_reserved_node_at_its_own_address() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let c = cluster();
    let bt = beamtime();
    let node2 = c.node_sshd("btnode2");
    let log = LogCursor::at_end(&node2.log);
    let (dir, script) = job_script(bt, "multinode-remote");
    let output = dir.join("out.txt");
    let out = remote_submit(
        bt,
        &[
            &format!("--output={}", output.display()),
            script.to_str().unwrap(),
        ],
    );
    out.assert_success();
    out.assert_stderr_contains("bt-submit: submitted on btnode2");
    let logged = log.read_new();
    assert!(
        logged.contains(&format!("Accepted publickey for {}", bt.account)),
        "btnode2's sshd did not log the login:\n{logged}"
    );
    c.wait_job(job_id(&out), Duration::from_secs(120))
        .assert_completed_ok();
    let ran_on = fs::read_to_string(&output).unwrap();
    assert!(
        ["btnode2\n", "btnode3\n"].contains(&ran_on.as_str()),
        "the job ran on {ran_on:?}, outside its reservation"
    );
}

/// A `prohibit` route to the host's address inside `node`'s network namespace: the node
/// cannot answer the host's connections (its SYN-ACKs go nowhere) until dropped.
struct CutOff {
    netns: String,
    host: String,
}

impl CutOff {
    fn new(c: &Cluster, node: &str) -> CutOff {
        let pid_file = c.state_dir().join(format!("run/sshd-{node}.pid"));
        let pid =
            fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        let out = Command::new("ip")
            .args(["netns", "identify", pid.trim()])
            .output()
            .unwrap();
        let netns = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(!netns.is_empty(), "no network namespace for {node}'s sshd");
        // The host reaches the nodes from <net>.1 (tests/cluster/README.md).
        let address = c.node_sshd(node).address;
        let host = format!("{}.1", address.rsplit_once('.').unwrap().0);
        let status = Command::new("ip")
            .args([
                "-n",
                &netns,
                "route",
                "add",
                "prohibit",
                &format!("{host}/32"),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "ip route add prohibit {host} in {netns}");
        CutOff { netns, host }
    }
}

impl Drop for CutOff {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args([
                "-n",
                &self.netns,
                "route",
                "del",
                "prohibit",
                &format!("{}/32", self.host),
            ])
            .status();
    }
}

#[test]
#[ignore = "needs the 4-host cluster: cluster.sh up --nodes 4, then --ignored"]
fn the_first_reserved_node_cut_off_the_next_one_takes_the_submission() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let c = cluster();
    let bt = beamtime();
    let (_, script) = job_script(bt, "multinode-remote-cut");
    let node3 = c.node_sshd("btnode3");
    let log = LogCursor::at_end(&node3.log);
    let started = Instant::now();
    let out = {
        let _cut = CutOff::new(c, "btnode2");
        remote_submit(
            bt,
            &[
                "--format",
                "json",
                "--output=/dev/null",
                script.to_str().unwrap(),
            ],
        )
    };
    let waited = started.elapsed();
    out.assert_success();
    let value: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(value["node"], "btnode3", "{out}");
    assert!(
        waited >= Duration::from_secs(9),
        "btnode2 was given up after {waited:?}, before ssh's ConnectTimeout"
    );
    assert!(
        log.read_new()
            .contains(&format!("Accepted publickey for {}", bt.account)),
        "btnode3's sshd did not log the login"
    );
    let id = value["jobId"].as_u64().unwrap_or_else(|| panic!("{out}"));
    c.wait_job(id as u32, Duration::from_secs(120))
        .assert_completed_ok();
}
