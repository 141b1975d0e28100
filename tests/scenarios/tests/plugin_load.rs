//! How spank-beamtime loads: the plugin adds no per-job prolog or epilog
//! process. What an admin's plugstack.conf mistake does is in admin_mistakes.rs.

use scenarios::Cluster;

#[test]
fn only_the_hooks_the_plugin_needs_are_exported_so_no_hook_runs_per_job() {
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
}
