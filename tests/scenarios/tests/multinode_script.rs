//! bt-submit reads a batch script's `#SBATCH` lines as sbatch does, on the 4-host cluster
//! (`tests/cluster/cluster.sh up --nodes 4`: btnode1..2 with the `cpu` feature, btnode3..4
//! with `gpu`): `-N2 -C gpu` in the script choose the beamtime's GPU reservation, and a
//! `--reservation=` line that contradicts the metadata is refused, naming the line, before
//! anything is submitted.
//!
//! `#[ignore]`d like multinode.rs: scripts/test-all.sh runs it in the 4-host pass.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use scenarios::{bt_submit, Beamtime, BeamtimeSpec, Cluster, UnixUser, MULTI_NODES};

fn multinode_cluster() -> &'static Cluster {
    static CHECKED: Once = Once::new();
    CHECKED.call_once(|| {
        scenarios::cluster().require_nodes(MULTI_NODES);
    });
    scenarios::cluster()
}

/// A beamtime whose first reservation holds the cpu nodes and its second the gpu nodes.
fn cpu_then_gpu() -> &'static Beamtime {
    static BEAMTIME: OnceLock<Beamtime> = OnceLock::new();
    BEAMTIME.get_or_init(|| {
        let spec = BeamtimeSpec::fresh("bttest48");
        let cpu = format!("{}@btnode[1-2]", spec.id);
        let gpu = format!("{}_1@btnode[3-4]", spec.id);
        multinode_cluster().start_beamtime(&spec.reservations(&[&cpu, &gpu]))
    })
}

/// `text` as `job.sh` in a fresh working folder of the beamtime's account.
fn script_in_workdir(bt: &Beamtime, label: &str, text: &str) -> (PathBuf, PathBuf) {
    let workdir = multinode_cluster().workdir(&bt.account, label);
    let script = workdir.join("job.sh");
    fs::write(&script, text).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let account = UnixUser::get(&bt.account);
    std::os::unix::fs::chown(&script, Some(account.uid), Some(account.gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", script.display()));
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", script.display()));
    (workdir, script)
}

fn job_hosts(workdir: &Path, job: u32) -> Vec<String> {
    let output = workdir.join(format!("slurm-{job}.out"));
    let text = fs::read_to_string(&output).unwrap_or_else(|e| panic!("{}: {e}", output.display()));
    let mut hosts: Vec<String> = text.lines().map(str::to_owned).collect();
    hosts.sort();
    hosts
}

#[test]
#[ignore = "needs tests/cluster/cluster.sh up --nodes 4"]
fn script_lines_asking_for_two_gpu_nodes_land_in_the_gpu_reservation() {
    let c = multinode_cluster();
    let bt = cpu_then_gpu();
    let (workdir, _) = script_in_workdir(
        bt,
        "sbatch-lines",
        "#!/bin/bash\n#SBATCH -N2\n#SBATCH -C gpu   # the GPU nodes\nsrun hostname\n",
    );
    let out = c
        .as_user(&bt.account, bt_submit())
        .cwd(&workdir)
        .arg("--metadata")
        .arg(&bt.metadata_path)
        .args(["--parsable", "job.sh"])
        .run();
    out.assert_success();
    let gpu = format!("{}_1", bt.id);
    assert!(
        out.stderr
            .contains(&format!("bt-submit: using reservation {gpu} ")),
        "{out}"
    );
    let job = out.job_id();
    c.wait_job(job, Duration::from_secs(120))
        .assert_completed_ok();
    assert_eq!(job_hosts(&workdir, job), ["btnode3", "btnode4"]);
    c.assert_nodes_not_drained();
}

#[test]
#[ignore = "needs tests/cluster/cluster.sh up --nodes 4"]
fn a_script_line_naming_another_reservation_is_refused_with_its_line() {
    let c = multinode_cluster();
    let bt = cpu_then_gpu();
    let (workdir, script) = script_in_workdir(
        bt,
        "sbatch-contradiction",
        "#!/bin/bash\n#SBATCH -N1\n#SBATCH --reservation=maintenance\nhostname\n",
    );
    let out = c
        .as_user(&bt.account, bt_submit())
        .cwd(&workdir)
        .arg("--metadata")
        .arg(&bt.metadata_path)
        .arg(&script)
        .run();
    assert_eq!(out.code(), Some(65), "{out}");
    assert!(out.stdout.trim().is_empty(), "nothing submitted: {out}");
    assert!(
        out.stderr.contains(&format!(
            "{}:3: the #SBATCH line asks for reservation maintenance, which is not one of \
             beamtime {}'s reservations",
            script.display(),
            bt.id
        )),
        "{out}"
    );
    let queued = c
        .cmd("squeue")
        .args(["-h", "-u", &bt.account, "-o", "%i"])
        .run();
    assert!(queued.stdout.trim().is_empty(), "{queued}");
}
