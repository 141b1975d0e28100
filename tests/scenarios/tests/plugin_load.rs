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
    let exported: Vec<&str> = symbols
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .filter(|name| name.starts_with("slurm_spank_"))
        .collect();
    // Not a hook: the variable that tells Slurm 25.05+ what a failed init is.
    let failure_mode = "slurm_spank_init_failure_mode";
    let hooks: Vec<&str> = exported
        .iter()
        .copied()
        .filter(|name| *name != failure_mode)
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

    // Declared where Slurm reads it (25.05 on), and only there.
    let slurm = c.cmd("sinfo").arg("-V").run();
    slurm.assert_success();
    let release = slurm
        .stdout
        .split_whitespace()
        .last()
        .and_then(|version| {
            let mut parts = version.split('.').map(|n| n.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or_else(|| panic!("sinfo -V: no release in {:?}", slurm.stdout));
    assert_eq!(
        exported.contains(&failure_mode),
        release >= (25, 5),
        "{failure_mode} exported on Slurm {}.{:02}: {exported:?}",
        release.0,
        release.1
    );
}
