//! A node cut off from slurmctld while srun can still reach it: the beamtime step there
//! cannot learn the job's reservation, so it is refused — with a message, within
//! libslurm's bounded retry, without draining the node.
//!
//! The 4-host cluster gives slurmctld an address of its own (tests/cluster/README.md); a
//! `prohibit` route to it inside one node's network namespace cuts that node's connections
//! to the controller and nothing else. Alone in its own test binary: the cut node's
//! messages to slurmctld wait until the route is gone.
//!
//! `#[ignore]`d like multinode.rs; scripts/test-all.sh runs it with `--ignored`.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use scenarios::{BeamtimeSpec, Cluster, DEFAULT_TIMEOUT, MULTI_NODES};

/// slurmctld's address, from `SlurmctldHost=name(address)` in slurm.conf.
fn controller_address(c: &Cluster) -> String {
    let conf = fs::read_to_string(c.slurm_conf()).unwrap();
    conf.lines()
        .find_map(|line| line.strip_prefix("SlurmctldHost="))
        .and_then(|host| {
            host.split_once('(')
                .map(|(_, rest)| rest.trim_end_matches(')').to_owned())
        })
        .expect("slurm.conf has no SlurmctldHost=name(address)")
}

/// The network namespace `node`'s slurmd runs in (its pid file, written by cluster.sh).
fn netns_of(c: &Cluster, node: &str) -> String {
    let pid_file = c.state_dir().join(format!("run/slurmd-{node}.pid"));
    let pid =
        fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
    let out = Command::new("ip")
        .args(["netns", "identify", pid.trim()])
        .output()
        .unwrap();
    let ns = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !ns.is_empty(),
        "slurmd of {node} (pid {}) is in no named network namespace",
        pid.trim()
    );
    ns
}

/// A route that makes the controller unreachable from one node, removed when dropped.
struct Cut {
    netns: String,
    address: String,
}

impl Cut {
    fn new(netns: &str, address: &str) -> Cut {
        let status = Command::new("ip")
            .args([
                "-n",
                netns,
                "route",
                "add",
                "prohibit",
                &format!("{address}/32"),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "could not cut {netns} off from {address}");
        Cut {
            netns: netns.to_owned(),
            address: address.to_owned(),
        }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args([
                "-n",
                &self.netns,
                "route",
                "del",
                "prohibit",
                &format!("{}/32", self.address),
            ])
            .status();
    }
}

#[test]
#[ignore = "needs tests/cluster/cluster.sh up --nodes 4"]
fn a_node_cut_off_from_the_controller_refuses_the_step_in_bounded_time_and_stays_up() {
    let c = Cluster::from_env();
    let nodes = c.require_nodes(MULTI_NODES);
    let node = nodes.last().unwrap().clone();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest52").reservations_on(&["btnode[1-4]"]));
    let wd = c.workdir(&bt.account, "cut-off");
    let logs = c.slurmd_log_cursors();
    let cut = Cut::new(&netns_of(&c, &node), &controller_address(&c));

    let step_on_the_node = || {
        c.as_user(&bt.account, "srun")
            .cwd(&wd)
            .args([
                format!("--beamtime={}", bt.id),
                format!("--partition={}", bt.partition),
                format!("--reservation={}", bt.id),
                format!("--nodelist={node}"),
                "-N1".to_owned(),
                "-n1".to_owned(),
            ])
            .args(["bash", "-c", "echo ran-on-$(hostname)"])
            .timeout(Duration::from_secs(120))
            .run()
    };
    let started = Instant::now();
    let out = step_on_the_node();
    let took = started.elapsed();
    drop(cut);

    out.assert_failure();
    assert!(!out.stdout.contains("ran-on-"), "the task ran:\n{out}");
    assert!(
        out.stderr.contains(&format!(
            "refused on {node}: the controller did not answer for job"
        )),
        "{out}"
    );
    assert!(out.stderr.contains("resubmit in a minute"), "{out}");
    // libslurm retries the controller for MessageTimeout (10 s here), then gives up.
    assert!(took < Duration::from_secs(60), "the refusal took {took:?}");
    eprintln!("MEASURED: a step on a node cut off from slurmctld was refused after {took:?}");
    scenarios::figures::record(
        "controller_unreachable",
        serde_json::json!({ "node": node, "refused_after_s": took.as_secs_f64() }),
    );

    let job: u32 = out
        .stderr
        .split("spank-beamtime: error: job ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no job id in the refusal:\n{out}"));
    let logged: String = logs
        .iter()
        .filter(|(name, _)| *name == node)
        .map(|(_, cursor)| cursor.read_new())
        .collect();
    assert!(
        logged.contains(&format!("job={job} step=0 uid="))
            && logged.contains("rule=controller-unavailable"),
        "{logged}"
    );
    // Once the route is back, the node finishes the job and goes on serving.
    c.wait_job(job, DEFAULT_TIMEOUT);
    c.assert_nodes_not_drained();
    step_on_the_node()
        .assert_success()
        .assert_stdout_contains(&format!("ran-on-{node}"));
}
