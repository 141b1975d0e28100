//! spank-beamtime on several hosts: `tests/cluster/cluster.sh up --nodes 4` starts btnode1..4,
//! each slurmd in its own network and UTS namespace (own hostname and address), btnode3 and
//! btnode4 with the `gpu` feature, btnode1 and btnode2 with `cpu`.
//!
//! Every test here is `#[ignore]`d: the one-node passes skip them visibly, and
//! scripts/test-all.sh runs them on the 4-node cluster with
//! `cargo test -p scenarios --test multinode --test multinode_queries -- --ignored`.
//! On a smaller cluster they fail (`Cluster::require_nodes`).
//!
//! Beamtimes reserve one core per node, so the tests of this file run side by side.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Once, OnceLock};

use scenarios::{bt_submit, Beamtime, BeamtimeSpec, Cluster, Output, MULTI_NODES};

/// A refused task's exit status (EX_NOPERM).
const REFUSED: i32 = 77;

/// The cluster, checked once to have the nodes these scenarios spread over.
fn multinode_cluster() -> &'static Cluster {
    static CHECKED: Once = Once::new();
    CHECKED.call_once(|| {
        scenarios::cluster().require_nodes(MULTI_NODES);
    });
    scenarios::cluster()
}

/// Dedicated resources split in two: `<id>` on btnode[1-2], `<id>_1` on btnode[3-4].
fn split() -> &'static Beamtime {
    static SPLIT: OnceLock<Beamtime> = OnceLock::new();
    SPLIT.get_or_init(|| {
        let bt = multinode_cluster().start_beamtime(
            &BeamtimeSpec::fresh("bttest41").reservations_on(&["btnode[1-2]", "btnode[3-4]"]),
        );
        put_detector_file(&bt);
        bt
    })
}

fn put_detector_file(bt: &Beamtime) {
    let raw = bt.current_dir.join("raw/detector.txt");
    fs::write(&raw, format!("frame data of {}\n", bt.id)).unwrap();
    fs::set_permissions(&raw, fs::Permissions::from_mode(0o644)).unwrap();
}

fn beamtime_args(bt: &Beamtime, reservation: &str) -> Vec<String> {
    vec![
        format!("--beamtime={}", bt.id),
        format!("--partition={}", bt.partition),
        format!("--reservation={reservation}"),
    ]
}

/// Each task prints one line: `<hostname> <SLURMD_NODENAME> <beamlines> <BEAMTIME_ID> <detector file>`.
const WHERE_AND_WHAT: &str = r#"echo "$(hostname) $SLURMD_NODENAME [$(ls -A /beamline | tr '\n' ' ')] $BEAMTIME_ID $(cat /beamline/$BEAMTIME_BEAMLINE/current/raw/detector.txt 2>&1)""#;

/// The hostnames of the lines that show `bt`'s beamline and nothing else.
#[track_caller]
fn hosts_that_saw(bt: &Beamtime, output: &str) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words.len() >= 3, "unexpected line {line:?} in:\n{output}");
        assert_eq!(
            words[0], words[1],
            "hostname differs from the node name: {line}"
        );
        let expected = format!("[{} ] {} frame data of {}", bt.beamline, bt.id, bt.id);
        assert!(
            line.ends_with(&expected),
            "{line:?} does not end with {expected:?}:\n{output}"
        );
        hosts.insert(words[0].to_owned());
    }
    hosts
}

fn set(nodes: &[&str]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.to_string()).collect()
}

#[track_caller]
fn assert_accepted_in_logs(
    logs: &[(String, scenarios::LogCursor)],
    bt: &Beamtime,
    job: u32,
    step: &str,
    nodes: &[&str],
    reservation: &str,
) {
    for (node, cursor) in logs {
        let text = cursor.read_new();
        let needle = format!(
            "job={job} step={step} uid={} beamtime={} node={node} decision=accepted phase=online reservation={reservation}",
            scenarios::UnixUser::get(&bt.account).uid,
            bt.id
        );
        let found = text.contains(&needle);
        assert_eq!(
            found,
            nodes.contains(&node.as_str()),
            "{needle:?} in {}: expected {}:\n{text}",
            cursor.path.display(),
            nodes.contains(&node.as_str())
        );
    }
}

#[test]
#[ignore = "needs tests/cluster/cluster.sh up --nodes 4"]
fn every_host_has_its_own_name_and_address() {
    let c = multinode_cluster();
    let nodes = c.require_nodes(MULTI_NODES);
    let out = c
        .cmd("srun")
        .args(["-N", &nodes.len().to_string(), "--partition=all"])
        .args([
            "bash",
            "-c",
            "echo $(hostname) $SLURMD_NODENAME $(ip -4 -o addr show eth0 | awk '{print $4}')",
        ])
        .run();
    out.assert_success();
    let mut addresses = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for line in out.stdout.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(w.len(), 3, "{line:?}:\n{out}");
        assert_eq!(w[0], w[1], "hostname is not the node name:\n{out}");
        hosts.insert(w[0].to_owned());
        addresses.insert(w[2].to_owned());
    }
    assert_eq!(hosts.len(), nodes.len(), "{out}");
    assert_eq!(
        addresses.len(),
        nodes.len(),
        "hosts share an address:\n{out}"
    );
    let gpu = c.cmd("sinfo").args(["-h", "-N", "-o", "%N %f"]).run();
    let gpu_nodes: BTreeSet<String> = gpu
        .stdout
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|f| f.split(',').any(|f| f == "gpu"))
        })
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(gpu_nodes, set(&["btnode3", "btnode4"]), "{gpu}");
}

#[test]
#[ignore = "needs tests/cluster/cluster.sh up --nodes 4"]
fn srun_across_a_reservations_nodes_sees_the_beamline_on_every_node() {
    let c = multinode_cluster();
    let bt = split();
    let logs = c.slurmd_log_cursors();
    let out = c
        .as_user(&bt.account, "srun")
        .args(beamtime_args(bt, &bt.reservations[0]))
        .args(["-N2", "bash", "-c", WHERE_AND_WHAT])
        .run();
    out.assert_success();
    assert_eq!(
        hosts_that_saw(bt, &out.stdout),
        set(&["btnode1", "btnode2"]),
        "{out}"
    );
    // A batch job in the second reservation, its steps across both of that reservation's nodes.
    let wd = c.workdir(&bt.account, "split");
    let script = format!(
        "#!/bin/bash\nsrun -N2 bash -c '{}'\n",
        WHERE_AND_WHAT.replace('\'', "'\\''")
    );
    let args = beamtime_args(bt, &bt.reservations[1]);
    let args: Vec<&str> = args.iter().map(String::as_str).chain(["-N2"]).collect();
    let (job, end) = c.submit_and_wait(&bt.account, &wd, &args, &script);
    end.assert_completed_ok();
    assert_eq!(
        hosts_that_saw(bt, &job.stdout()),
        set(&["btnode3", "btnode4"]),
        "{}",
        job.stderr()
    );
    assert_accepted_in_logs(
        &logs,
        bt,
        job.id,
        "0",
        &["btnode3", "btnode4"],
        &bt.reservations[1],
    );
    c.assert_nodes_not_drained();
}

#[test]
#[ignore = "needs tests/cluster/cluster.sh up --nodes 4"]
fn a_job_in_the_second_reservation_runs_only_on_its_nodes() {
    let c = multinode_cluster();
    let bt = split();
    // Slurm itself keeps the job inside the reservation's nodes: asking for a node of the
    // other reservation, or for more nodes than it holds, is refused at submission.
    for extra in [&["-w", "btnode1"][..], &["-N3"]] {
        let out = c
            .as_user(&bt.account, "srun")
            .args(beamtime_args(bt, &bt.reservations[1]))
            .args(extra)
            .args(["--immediate=5", "hostname"])
            .run();
        out.assert_failure();
        assert!(out.stdout.trim().is_empty(), "ran somewhere:\n{out}");
        assert!(
            out.stderr
                .contains("Requested node configuration is not available")
                || out.stderr.contains("Requested nodes are busy")
                || out.stderr.contains("Unable to allocate resources"),
            "{out}"
        );
    }
    let out = c
        .as_user(&bt.account, "srun")
        .args(beamtime_args(bt, &bt.reservations[1]))
        .args(["-n1", "bash", "-c", WHERE_AND_WHAT])
        .run();
    out.assert_success();
    let hosts = hosts_that_saw(bt, &out.stdout);
    assert!(
        hosts.is_subset(&set(&["btnode3", "btnode4"])) && hosts.len() == 1,
        "{out}"
    );
}

#[test]
#[ignore = "needs tests/cluster/cluster.sh up --nodes 4"]
fn a_node_outside_reserved_nodes_refuses_while_the_others_accept() {
    let c = multinode_cluster();
    // The reservation holds btnode1 and btnode2; the metadata lists only btnode1.
    let bt = c.start_beamtime(
        &BeamtimeSpec::fresh("bttest42")
            .reservations_on(&["btnode[1-2]"])
            .arg("--reserved-nodes")
            .arg("btnode1"),
    );
    put_detector_file(&bt);
    let logs = c.slurmd_log_cursors();
    let out: Output = c
        .as_user(&bt.account, "srun")
        .args(beamtime_args(&bt, &bt.id))
        .args(["-N2", "bash", "-c", WHERE_AND_WHAT])
        .run();
    assert_eq!(
        out.code(),
        Some(REFUSED),
        "srun must fail with {REFUSED}:\n{out}"
    );
    let refusals: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("spank-beamtime: error:"))
        .collect();
    assert_eq!(
        refusals.len(),
        1,
        "want exactly one refusal message:\n{out}"
    );
    assert!(refusals[0].contains(" refused on btnode2: "), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "node btnode2 is not one of beamtime {}'s reserved nodes (btnode1)",
            bt.id
        )),
        "{out}"
    );
    // btnode1 accepted and ran its task; btnode2's task never ran user code.
    assert_eq!(hosts_that_saw(&bt, &out.stdout), set(&["btnode1"]), "{out}");
    for (node, cursor) in &logs {
        let text = cursor.read_new();
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(&format!("beamtime={} ", bt.id)))
            .collect();
        match node.as_str() {
            "btnode1" => assert!(
                mine.iter().any(|l| l.contains("decision=accepted")),
                "{node}: {mine:?}"
            ),
            "btnode2" => assert!(
                mine.iter()
                    .any(|l| l.contains("decision=refused rule=wrong-node")),
                "{node}: {mine:?}"
            ),
            _ => assert!(mine.is_empty(), "{node} saw the job: {mine:?}"),
        }
    }
    c.assert_nodes_not_drained();
}

#[test]
#[ignore = "needs tests/cluster/cluster.sh up --nodes 4"]
fn two_beamtimes_on_the_same_nodes_each_see_only_their_own_beamline() {
    let c = multinode_cluster();
    let a = c.start_beamtime(&BeamtimeSpec::fresh("bttest43").reservations_on(&["btnode[3-4]"]));
    let b = c.start_beamtime(&BeamtimeSpec::fresh("bttest44").reservations_on(&["btnode[3-4]"]));
    put_detector_file(&a);
    put_detector_file(&b);
    // Both jobs hold their step open until the other one's step has started: they run at once.
    let meeting = c.workdir("root", "meeting");
    fs::set_permissions(&meeting, fs::Permissions::from_mode(0o1777)).unwrap();
    let script = |me: &Beamtime, other: &Beamtime| {
        format!(
            "#!/bin/bash\nsrun -N2 bash -c '{look}; touch {m}/{me}-$(hostname); \
             for i in $(seq 100); do [ -e {m}/{other}-$(hostname) ] && exit 0; sleep 0.1; done; echo alone; exit 1'\n",
            look = WHERE_AND_WHAT.replace('\'', "'\\''"),
            m = meeting.display(),
            me = me.id,
            other = other.id,
        )
    };
    let mut jobs = Vec::new();
    for (me, other) in [(&a, &b), (&b, &a)] {
        let wd = c.workdir(&me.account, "together");
        let args = beamtime_args(me, &me.reservations[0]);
        let args: Vec<&str> = args.iter().map(String::as_str).chain(["-N2"]).collect();
        jobs.push((me, c.submit(&me.account, &wd, &args, &script(me, other))));
    }
    for (bt, job) in &jobs {
        c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT)
            .assert_completed_ok();
        assert_eq!(
            hosts_that_saw(bt, &job.stdout()),
            set(&["btnode3", "btnode4"]),
            "{}",
            job.stderr()
        );
    }
    c.assert_nodes_not_drained();
}

/// One beamtime with a `cpu` reservation (btnode[1-2]) and a `gpu` one (btnode[3-4]).
fn mixed() -> &'static Beamtime {
    static MIXED: OnceLock<Beamtime> = OnceLock::new();
    MIXED.get_or_init(|| {
        let bt = multinode_cluster().start_beamtime(
            &BeamtimeSpec::fresh("bttest45").reservations_on(&["btnode[1-2]", "btnode[3-4]"]),
        );
        put_detector_file(&bt);
        bt
    })
}

#[test]
#[ignore = "needs tests/cluster/cluster.sh up --nodes 4"]
fn bt_submit_constraint_gpu_picks_the_gpu_reservation() {
    let c = multinode_cluster();
    let bt = mixed();
    let out = c
        .as_user(&bt.account, bt_submit())
        .args(["srun", "--metadata"])
        .arg(&bt.metadata_path)
        .args(["--constraint=gpu", "-N2", "bash", "-c", WHERE_AND_WHAT])
        .run();
    out.assert_success();
    assert!(
        out.stderr
            .contains(&format!("bt-submit: using reservation {}_1", bt.id)),
        "{out}"
    );
    assert_eq!(
        hosts_that_saw(bt, &out.stdout),
        set(&["btnode3", "btnode4"]),
        "{out}"
    );
    // cpu: the first reservation; a count no reservation holds: refused before submitting.
    let out = c
        .as_user(&bt.account, bt_submit())
        .args(["srun", "--metadata"])
        .arg(&bt.metadata_path)
        .args(["-C", "cpu", "--nodes=2", "bash", "-c", WHERE_AND_WHAT])
        .run();
    out.assert_success();
    assert!(
        out.stderr
            .contains(&format!("bt-submit: using reservation {} ", bt.id)),
        "{out}"
    );
    assert_eq!(
        hosts_that_saw(bt, &out.stdout),
        set(&["btnode1", "btnode2"]),
        "{out}"
    );
    let out = c
        .as_user(&bt.account, bt_submit())
        .args(["srun", "--metadata"])
        .arg(&bt.metadata_path)
        .args(["-C", "gpu", "-N3", "hostname"])
        .run();
    assert_eq!(out.code(), Some(65), "{out}");
    assert!(out.stdout.trim().is_empty(), "{out}");
    assert!(
        out.stderr
            .contains(&format!("no reservation of beamtime {}", bt.id)),
        "{out}"
    );
}

/// doctor's node verdict on reservations of several nodes: each node of each
/// reservation, as `scontrol show hostnames` expands `btnode[1-2]`, is judged
/// by the node's own policy, and every one admits the beamtime's jobs.
#[test]
#[ignore = "needs tests/cluster/cluster.sh up --nodes 4"]
fn doctor_judges_every_node_of_every_reservation_as_the_node_does() {
    let bt = split();
    let out = multinode_cluster()
        .as_user(&bt.account, bt_submit())
        .args(["doctor", "--beamtime", &bt.id])
        .run();
    out.assert_success();
    assert!(
        out.doctor_check("node-verdict").ends_with(&format!(
            "the node's rules admit your jobs in {}, {}_1",
            bt.id, bt.id
        )),
        "{out}"
    );
}
