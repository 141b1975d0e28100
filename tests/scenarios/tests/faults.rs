//! Faults while beamtime jobs run: slurmd restarted under them, and the
//! metadata file deleted between two steps of one job. Alone in its file: it
//! restarts slurmd for the whole cluster.

use std::fs;
use std::time::Duration;

use scenarios::{BeamtimeSpec, Cluster, RestorePlugstack};

fn installed_plugin(c: &Cluster) -> (String, String) {
    let recorded = fs::read_to_string(c.state_dir().join("etc/cluster.args")).unwrap();
    let field = |key: &str| {
        recorded
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let plugin = field("plugin");
    assert!(!plugin.is_empty(), "the cluster runs without spank-beamtime: start it with --plugin");
    (plugin, field("plugin_args"))
}

#[test]
fn beamtime_jobs_survive_a_slurmd_restart_and_a_vanished_metadata_file_stops_only_new_steps() {
    let c = Cluster::from_env();
    let (plugin, args) = installed_plugin(&c);
    let _restore = RestorePlugstack::new(&c);
    let bt = c.start_beamtime(&BeamtimeSpec::new("11099040", "p60", "bttest40").partition("all").cores(2));
    let wd = c.workdir(&bt.account, "faults");
    let go = wd.join("go");
    // Each step waits for the test's signal, so the fault lands while the job runs.
    let script = format!(
        "#!/bin/bash\n\
         while [ ! -e {go}-1 ]; do sleep 0.2; done\n\
         echo first-step $(ls -A /beamline)\n\
         touch {go}-2\n\
         while [ ! -e {go}-3 ]; do sleep 0.2; done\n\
         srun bash -c 'echo second-step $(ls -A /beamline)'\n\
         echo second-step-status=$?\n\
         echo batch-still-sees $(ls -A /beamline)\n",
        go = go.display()
    );
    let job = c.submit(
        &bt.account,
        &wd,
        &[&format!("--beamtime={}", bt.id), "--partition=all", &format!("--reservation={}", bt.id)],
        &script,
    );
    let wait_for = |path: &std::path::Path| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "job {} never reached {}", job.id, path.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let signal = |n: u32| {
        let path = wd.join(format!("go-{n}"));
        fs::write(&path, "").unwrap();
        path
    };

    // slurmd restarts while the batch step runs: the step is its own process and goes on.
    c.set_plugstack(Some(std::path::Path::new(&plugin)), &args);
    signal(1);
    wait_for(&wd.join("go-2"));

    // The metadata disappears (the beamtime was stopped): the running batch script keeps
    // its view, the next step is refused (already by srun's own check) and fails alone.
    fs::remove_file(&bt.metadata_path).unwrap();
    signal(3);
    let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
    let output = job.stdout();
    assert!(output.contains("first-step p60"), "{output}");
    assert!(output.contains("second-step-status=1"), "{output}");
    assert!(!output.contains("second-step p60"), "{output}");
    assert!(output.contains("batch-still-sees p60"), "{output}");
    let stderr = job.stderr();
    assert!(stderr.contains("srun: error: spank-beamtime: no metadata file for beamtime 11099040"), "{stderr}");
    assert_eq!(end.state, "COMPLETED", "{end:#?}");
    c.assert_node_not_drained();
    assert!(!fs::read_to_string("/proc/self/mountinfo").unwrap().contains(" /beamline"));
}
