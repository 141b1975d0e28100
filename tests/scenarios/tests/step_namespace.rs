//! One mount namespace per step and node: the node's task 0 builds it, the
//! step's other tasks join it (spank-beamtime/src/stepd/step_namespace.rs).
//! Every task must still see the beamline and the job's /tmp, two steps that
//! run at the same time must never share a namespace, and nothing may show on
//! the host.
//!
//! Run by scripts/test-all.sh plainly and with job_container/tmpfs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use scenarios::{assert_host_untouched, cluster, Beamtime, BeamtimeSpec, Output};

const TASKS: usize = 4;

/// What every task prints: its local id, its mount namespace, whether it sees
/// the beamline's marker and task 0's file in /tmp. Each task leaves its pid in
/// `pid.<task>` and its namespace in `<label>-<task>`, then waits until
/// `together` files named `…-<number>` exist in the work folder (the other
/// step's tasks, or a file the test adds), so every namespace looked at is
/// alive at the same time: the kernel reuses a freed namespace's inode number.
fn task_script(bt: &Beamtime, workdir: &Path, label: &str, together: usize) -> String {
    let target = format!("/beamline/{}/current", bt.beamline);
    format!(
        r#"set -u
tag="bt-step-ns-$SLURM_JOB_ID"
[ "$SLURM_LOCALID" = 0 ] && echo "from task 0" > "/tmp/$tag"
echo $$ > "{wd}/pid.$SLURM_LOCALID"
echo "$(readlink /proc/self/ns/mnt)" > "{wd}/{label}-$SLURM_LOCALID"
for i in $(seq 600); do
  [ "$(ls {wd} | grep -c -- '-[0-9]*$')" -ge {together} ] && break
  sleep 0.1
done
marker=no; [ -f "{target}/step-namespace-marker" ] && marker=yes
tmp=no; [ -f "/tmp/$tag" ] && tmp=yes
echo "task=$SLURM_LOCALID ns=$(readlink /proc/self/ns/mnt) marker=$marker tmp=$tmp"
"#,
        wd = workdir.display(),
    )
}

/// `srun -n TASKS --beamtime` running `script`, as the beamtime's account.
fn srun_tasks(bt: &Beamtime, workdir: &Path, script: &str) -> Output {
    cluster()
        .beamtime_srun(bt)
        .cwd(workdir)
        .args([format!("-n{TASKS}")])
        .args(["bash", "-c", script])
        .timeout(scenarios::DEFAULT_TIMEOUT)
        .run()
}

/// Each task's line, by task id, as `key=value` pairs.
fn task_lines(out: &Output) -> BTreeMap<String, BTreeMap<String, String>> {
    out.stdout
        .lines()
        .filter(|line| line.starts_with("task="))
        .map(|line| {
            let fields: BTreeMap<String, String> = line
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            (fields["task"].clone(), fields)
        })
        .collect()
}

/// Checks one step's tasks: all four ran, all in one namespace that is not the
/// test's own, all saw the beamline and task 0's /tmp file. Returns the namespace.
#[track_caller]
fn one_namespace_for_the_step(out: &Output) -> String {
    out.assert_success();
    let tasks = task_lines(out);
    assert_eq!(tasks.len(), TASKS, "one line per task:\n{out}");
    let namespaces: BTreeSet<&str> = tasks.values().map(|t| t["ns"].as_str()).collect();
    assert_eq!(
        namespaces.len(),
        1,
        "the step's tasks are in several namespaces:\n{out}"
    );
    let namespace = namespaces.into_iter().next().unwrap().to_owned();
    let own = fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_ne!(
        namespace,
        own.to_string_lossy(),
        "the tasks run in the host's namespace:\n{out}"
    );
    for (task, fields) in &tasks {
        assert_eq!(
            fields["marker"], "yes",
            "task {task} does not see the beamline:\n{out}"
        );
        assert_eq!(
            fields["tmp"], "yes",
            "task {task} does not see task 0's /tmp:\n{out}"
        );
    }
    namespace
}

#[test]
fn the_tasks_of_a_step_share_one_namespace_and_two_steps_never_do() {
    let c = cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest901").cores(2 * TASKS as u32));
    fs::write(
        bt.current_dir.join("step-namespace-marker"),
        "the beamline\n",
    )
    .unwrap();
    // A run that failed half-way left its files: they would be counted below.
    tmp_files_on_host()
        .iter()
        .for_each(|file| fs::remove_file(file).unwrap());

    // One step alone.
    let wd = c.workdir(&bt.account, "step-ns-alone");
    let out = srun_tasks(&bt, &wd, &task_script(&bt, &wd, "alone", TASKS));
    one_namespace_for_the_step(&out);

    // Two steps (two jobs) of the same beamtime at the same time: each its own.
    let wd = c.workdir(&bt.account, "step-ns-together");
    let script_a = task_script(&bt, &wd, "a", 2 * TASKS);
    let script_b = task_script(&bt, &wd, "b", 2 * TASKS);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| srun_tasks(&bt, &wd, &script_a));
        let b = s.spawn(|| srun_tasks(&bt, &wd, &script_b));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (ns_a, ns_b) = (
        one_namespace_for_the_step(&a),
        one_namespace_for_the_step(&b),
    );
    assert_ne!(ns_a, ns_b, "two steps share a namespace:\n{a}\n{b}");

    // With job_container/tmpfs each job's /tmp is its own: task 0's file is not
    // on the host. Without it /tmp is the host's: one file per job, removed here.
    let on_host = tmp_files_on_host();
    if c.recorded("job_container") == "1" {
        assert!(
            on_host.is_empty(),
            "the jobs' /tmp files are on the host: {on_host:?}"
        );
    } else {
        on_host
            .iter()
            .for_each(|file| fs::remove_file(file).unwrap());
        assert_eq!(
            on_host.len(),
            3,
            "one /tmp file per job on the host: {on_host:?}"
        );
    }
    c.assert_node_not_drained();
    assert_host_untouched();
}

/// The files task 0 of each job left in the host's /tmp.
fn tmp_files_on_host() -> Vec<std::path::PathBuf> {
    fs::read_dir("/tmp")
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("bt-step-ns-")
        })
        .collect()
}

/// The mount points at or below /beamline in the mount table of process `pid`.
fn beamline_mounts_of(pid: &str) -> Vec<String> {
    let table = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| *point == "/beamline" || point.starts_with("/beamline/"))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs a node whose / is shared: cluster.sh up --shared-root (scripts/test-all.sh runs it)"]
fn nothing_the_plugin_mounts_reaches_a_node_whose_root_is_shared() {
    let c = cluster();
    let slurmd = fs::read_to_string(c.state_dir().join("run/slurmd.pid")).unwrap();
    let slurmd = slurmd.trim();
    let table = fs::read_to_string(format!("/proc/{slurmd}/mountinfo")).unwrap();
    let root = table
        .lines()
        .find(|line| line.split(' ').nth(4) == Some("/"))
        .expect("slurmd's mount table has /");
    assert!(
        root.split(" - ").next().unwrap().contains(" shared:"),
        "slurmd's / is not a shared mount, so this proves nothing (cluster.sh up --shared-root): {root}"
    );

    // The control: a namespace copied from slurmd's without changing propagation
    // (what a plugin that forgot the slave remount would make) sends its mount back.
    let probe = c.state_dir().join("work/shared-root-probe");
    fs::create_dir_all(&probe).unwrap();
    let probe_text = probe.to_string_lossy().into_owned();
    c.cmd("nsenter")
        .args(["--mount", "--target", slurmd, "--"])
        .args(["unshare", "--mount", "--propagation", "unchanged", "--"])
        .args([
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=16k",
            "tmpfs",
            &probe_text,
        ])
        .run()
        .assert_success();
    let table = fs::read_to_string(format!("/proc/{slurmd}/mountinfo")).unwrap();
    let propagated = table
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&probe_text));
    c.cmd("nsenter")
        .args(["--mount", "--target", slurmd, "--", "umount", &probe_text])
        .run();
    assert!(
        propagated,
        "a mount in a copy of slurmd's namespace did not reach slurmd's: the node's / does \
         not propagate, so this proves nothing"
    );

    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest902").cores(TASKS as u32));
    fs::write(
        bt.current_dir.join("step-namespace-marker"),
        "the beamline\n",
    )
    .unwrap();
    let wd = c.workdir(&bt.account, "step-ns-shared-root");
    // The tasks hold until the test adds the one file more they wait for.
    let script = task_script(&bt, &wd, "task", TASKS + 1);
    std::thread::scope(|s| {
        let step = s.spawn(|| srun_tasks(&bt, &wd, &script));
        for task in 0..TASKS {
            scenarios::wait::for_path(
                &wd.join(format!("task-{task}")),
                scenarios::DEFAULT_TIMEOUT,
                "a beamtime task",
            );
        }
        // While every task runs: the tasks have the beamline mounted, slurmd has nothing.
        for task in 0..TASKS {
            let pid = fs::read_to_string(wd.join(format!("pid.{task}"))).unwrap();
            let mounts = beamline_mounts_of(pid.trim());
            assert!(
                mounts.contains(&format!("/beamline/{}/current", bt.beamline)),
                "task {task} has no beamline mount: {mounts:?}"
            );
        }
        let leaked = beamline_mounts_of(slurmd);
        assert!(
            leaked.is_empty(),
            "in slurmd's table while tasks run: {leaked:?}"
        );
        fs::write(wd.join("release-0"), "").unwrap();
        one_namespace_for_the_step(&step.join().unwrap());
    });
    let leaked = beamline_mounts_of(slurmd);
    assert!(
        leaked.is_empty(),
        "in slurmd's table after the step: {leaked:?}"
    );
    c.assert_node_not_drained();
    assert_host_untouched();
}
