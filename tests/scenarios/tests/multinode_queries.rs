//! What the plugin costs slurmctld: RPCs per job, per node and per step, counted with
//! `sdiag` on the 4-node cluster, with the plugin's job cache on and off. Alone in its own
//! test binary (cargo runs binaries one after another), so no other test's scontrol
//! polling lands in the counts.
//!
//! `#[ignore]`d like multinode.rs; scripts/test-all.sh runs it with `--ignored`.

use std::collections::BTreeMap;

use scenarios::{BeamtimeSpec, Cluster, RestorePlugstack, MULTI_NODES};

/// RPC types slurm_load_job can send: the federation (unless SHOW_LOCAL), then the job.
const QUERIES: [&str; 2] = ["REQUEST_JOB_INFO_SINGLE", "REQUEST_FED_INFO"];

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, name: &str) -> i64 {
    *after.get(name).unwrap_or(&0) as i64 - *before.get(name).unwrap_or(&0) as i64
}

#[test]
#[ignore = "needs tests/cluster/cluster.sh up --nodes 4"]
fn controller_queries_per_job_node_and_step() {
    let c = Cluster::from_env();
    let nodes = c.require_nodes(MULTI_NODES).len();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest50").reservations_on(&["btnode[1-4]"]));
    let wd = c.workdir(&bt.account, "queries");
    let n = nodes.to_string();
    // salloc on the host runs the steps one after another; nothing in it polls the controller
    // for job records (measured: the same workload without --beamtime makes none).
    let measure = |beamtime: bool, steps: usize| -> BTreeMap<&'static str, i64> {
        let steps_script = vec![format!("srun -N{n} true"); steps].join(" && ");
        let mut cmd = c
            .as_user(&bt.account, "salloc")
            .cwd(&wd)
            .args([
                format!("--partition={}", bt.partition),
                format!("--reservation={}", bt.id),
            ])
            .args(["-N", &n]);
        if beamtime {
            cmd = cmd.arg(format!("--beamtime={}", bt.id));
        }
        c.reset_rpc_counts();
        let before = c.rpc_counts();
        cmd.args(["bash", "-c", &steps_script])
            .run()
            .assert_success();
        let after = c.rpc_counts();
        QUERIES
            .iter()
            .map(|q| (*q, delta(&before, &after, q)))
            .collect()
    };
    let plain = measure(false, 3);
    assert!(
        plain.values().all(|v| *v == 0),
        "a job without --beamtime queried the controller: {plain:?}"
    );
    // With the job cache (the default): a job's first step on a node asks, later steps reuse
    // the answer. The hosts of this cluster share one file system and so one cache folder:
    // a step may find what another host's step of the same job stored, hence "at most".
    for steps in [1, 3] {
        let got = measure(true, steps);
        eprintln!(
            "MEASURED: job cache on, {steps} step(s) of a {nodes}-node beamtime job: {got:?}"
        );
        record_queries(true, steps, nodes, &got);
        let count = got["REQUEST_JOB_INFO_SINGLE"];
        assert!(
            (1..=nodes as i64).contains(&count),
            "{count} job queries for {steps} step(s) on {nodes} nodes: want 1 to {nodes} whatever the steps"
        );
        assert_eq!(
            got["REQUEST_FED_INFO"], 0,
            "the plugin asked about the federation: {got:?}"
        );
    }

    // Without it (job_cache_seconds=0) every step asks on every node: the cache is what
    // bounds the count above.
    let (plugin, args) = c.installed_plugin();
    let _restore = RestorePlugstack::new(&c);
    c.set_plugstack(Some(&plugin), &format!("{args} job_cache_seconds=0"));
    for steps in [1, 3] {
        let got = measure(true, steps);
        eprintln!(
            "MEASURED: job cache off, {steps} step(s) of a {nodes}-node beamtime job: {got:?}"
        );
        record_queries(false, steps, nodes, &got);
        assert_eq!(
            got["REQUEST_JOB_INFO_SINGLE"],
            (steps * nodes) as i64,
            "{got:?}"
        );
        assert_eq!(got["REQUEST_FED_INFO"], 0, "{got:?}");
    }
}

fn record_queries(cache: bool, steps: usize, nodes: usize, got: &BTreeMap<&str, i64>) {
    scenarios::figures::record(
        "controller_queries",
        serde_json::json!({
            "job_cache": cache,
            "steps": steps,
            "nodes": nodes,
            "job_queries": got["REQUEST_JOB_INFO_SINGLE"],
            "federation_queries": got["REQUEST_FED_INFO"],
        }),
    );
}
