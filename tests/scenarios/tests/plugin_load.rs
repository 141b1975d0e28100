//! How spank-beamtime loads: what an admin's plugstack.conf mistake looks like,
//! and that the plugin adds no per-job prolog or epilog process.
//!
//! One test, alone in its file: it rewrites plugstack.conf for the whole
//! cluster and restores it when done, even on failure.

use scenarios::{Cluster, RestorePlugstack, TEST_USER};

#[test]
fn a_bad_plugstack_argument_is_a_load_error_naming_it_and_no_hook_runs_per_job() {
    let c = Cluster::from_env();
    let (plugin, _) = c.installed_plugin();

    // slurmd forks a spank prolog/epilog for every job when a plugin exports those hooks.
    let symbols = c
        .cmd("nm")
        .args(["-D", "--defined-only"])
        .arg(&plugin)
        .run();
    symbols.assert_success();
    let hooks: Vec<&str> = symbols
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .filter(|name| name.starts_with("slurm_spank_"))
        .collect();
    assert_eq!(
        hooks,
        [
            "slurm_spank_init",
            "slurm_spank_init_post_opt",
            "slurm_spank_task_init",
            "slurm_spank_task_init_privileged"
        ]
    );

    let _restore = RestorePlugstack::new(&c);
    c.set_plugstack(Some(&plugin), "source=/srv/{beamline}/current sourse=/typo");
    let wd = c.workdir(TEST_USER, "bad-config");
    let out = c.run_as(TEST_USER, &wd, &["srun", "true"]);
    out.assert_failure().assert_stderr_contains(
        "spank-beamtime: plugstack.conf argument 'sourse=/typo': unknown key 'sourse'",
    );
    let out = c.sbatch(TEST_USER, &wd, &[], "#!/bin/bash\ntrue\n");
    out.assert_failure()
        .assert_stderr_contains("unknown key 'sourse'");
}
