//! Faults while beamtime jobs run: slurmd restarted under them, the metadata
//! file deleted between two steps of one job, the mount source gone or
//! unmounted. The tests take turns (`TURN`): one of them restarts slurmd for
//! the whole cluster.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use scenarios::{wait, Beamtime, BeamtimeSpec, Cluster, Output, RestorePlugstack};

static TURN: Mutex<()> = Mutex::new(());

fn take_turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn beamtime_jobs_survive_a_slurmd_restart_and_a_vanished_metadata_file_stops_only_new_steps() {
    let _turn = take_turn();
    let c = Cluster::from_env();
    let (plugin, args) = c.installed_plugin();
    let _restore = RestorePlugstack::new(&c);
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest40").cores(2));
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
    let job = c.submit_beamtime_job(&bt, &wd, &[], &script);
    let signal = |n: u32| {
        let path = wd.join(format!("go-{n}"));
        fs::write(&path, "").unwrap();
        path
    };

    // slurmd restarts while the batch step runs: the step is its own process and goes on.
    c.set_plugstack(Some(&plugin), &args);
    signal(1);
    wait::for_path(
        &wd.join("go-2"),
        Duration::from_secs(60),
        &format!("job {}", job.id),
    );

    // The metadata disappears (the beamtime was stopped): the running batch script keeps
    // its view, the next step is refused (already by srun's own check) and fails alone.
    fs::remove_file(&bt.metadata_path).unwrap();
    signal(3);
    let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
    let output = job.stdout();
    let beamline = &bt.beamline;
    assert!(
        output.contains(&format!("first-step {beamline}")),
        "{output}"
    );
    assert!(output.contains("second-step-status=1"), "{output}");
    assert!(
        !output.contains(&format!("second-step {beamline}")),
        "{output}"
    );
    assert!(
        output.contains(&format!("batch-still-sees {beamline}")),
        "{output}"
    );
    let stderr = job.stderr();
    assert!(
        stderr.contains(&format!(
            "srun: error: spank-beamtime: no metadata file for beamtime {}",
            bt.id
        )),
        "{stderr}"
    );
    assert_eq!(end.state, "COMPLETED", "{end:#?}");
    c.assert_node_not_drained();
    assert!(!fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" /beamline"));
}

/// A beamtime whose metadata also lies on the core file system, as the facility keeps
/// it: the plugin still finds it when the beamline folder is gone.
fn beamtime_with_core_metadata(c: &Cluster, account: &str) -> Beamtime {
    let bt = c.start_beamtime(&BeamtimeSpec::fresh(account).cores(1));
    let core = c
        .state_dir()
        .join(format!("core/{}/{}", bt.beamline, bt.id));
    fs::create_dir_all(&core).unwrap();
    fs::copy(
        &bt.metadata_path,
        core.join(format!("beamtime-metadata-{}.json", bt.id)),
    )
    .unwrap();
    bt
}

fn beamtime_step(c: &Cluster, bt: &Beamtime) -> Output {
    let wd = c.workdir(&bt.account, "source-fault");
    c.beamtime_srun(bt)
        .cwd(&wd)
        .args(["bash", "-c", "echo payload-ran; ls -A /beamline/*/current"])
        .run()
}

/// Puts a moved folder back, also when the test fails.
struct MovedAside {
    from: PathBuf,
    to: PathBuf,
}

impl Drop for MovedAside {
    fn drop(&mut self) {
        let _ = fs::rename(&self.to, &self.from);
    }
}

#[test]
fn a_beamline_folder_that_is_gone_runs_the_step_without_it_and_creates_nothing() {
    let _turn = take_turn();
    let c = Cluster::from_env();
    let bt = beamtime_with_core_metadata(&c, "bttest46");
    beamtime_step(&c, &bt)
        .assert_success()
        .assert_stdout_contains("payload-ran");

    let aside = MovedAside {
        from: bt.current_dir.clone(),
        to: bt.current_dir.with_extension("gone"),
    };
    fs::rename(&aside.from, &aside.to).unwrap();
    // What a beamline looks like between two beamtimes (stopBeamtime unlinks current/):
    // the step runs as in pre-start, with nothing under /beamline.
    let out = beamtime_step(&c, &bt);
    // The payload ran; its `ls` of the beamline found nothing (2).
    assert_eq!(out.code(), Some(2), "{out}");
    out.assert_stdout_contains("payload-ran");
    assert!(
        out.stderr.contains(&format!(
            "beamtime {} has not started on beamline {} yet",
            bt.id, bt.beamline
        )),
        "no pre-start note:\n{out}"
    );
    assert!(
        !out.stdout.contains("raw"),
        "something of a beamline shows:\n{out}"
    );
    assert!(
        !bt.current_dir.exists(),
        "the plugin created the missing source"
    );
    // The beamline's own folder gone too is a file system that is not there: refused.
    let beamline = bt.current_dir.parent().unwrap().to_owned();
    let beamline_aside = MovedAside {
        from: beamline.clone(),
        to: beamline.with_extension("gone"),
    };
    fs::rename(&beamline_aside.from, &beamline_aside.to).unwrap();
    let out = beamtime_step(&c, &bt);
    scenarios::cluster().assert_refused_by_node(
        &out,
        &[&format!(
            "the beamline folder could not be set up: {} does not exist",
            beamline.display()
        )],
    );
    scenarios::assert_host_untouched();
    drop(beamline_aside);
    c.assert_node_not_drained();
}

/// Unmounts the tmpfs standing in for the beamline file system, also when the test fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_unmounted_source_is_not_shown_as_an_empty_beamline() {
    let _turn = take_turn();
    let c = Cluster::from_env();
    let bt = beamtime_with_core_metadata(&c, "bttest47");
    // The beamline folder becomes a mount of its own (as on GPFS) holding the data; the
    // folder under it, what an unmount uncovers, is empty.
    let data = bt.current_dir.with_extension("data");
    let _aside = MovedAside {
        from: bt.current_dir.clone(),
        to: data.clone(),
    };
    fs::rename(&bt.current_dir, &data).unwrap();
    fs::create_dir(&bt.current_dir).unwrap();
    let mount = |args: &[&str], target: &Path| {
        let status = Command::new("mount")
            .args(args)
            .arg(target)
            .status()
            .unwrap();
        assert!(status.success(), "mount {args:?} {}", target.display());
    };
    mount(&["--bind", data.to_str().unwrap()], &bt.current_dir);
    let mounted = Mounted(bt.current_dir.clone());
    beamtime_step(&c, &bt)
        .assert_success()
        .assert_stdout_contains("payload-ran");

    drop(mounted);
    let out = beamtime_step(&c, &bt);
    scenarios::cluster().assert_refused_by_node(
        &out,
        &[&format!(
            "{dir} holds no beamtime's metadata file, not even beamtime-metadata-{id}.json: \
             is the beamline file system mounted on this node?",
            dir = bt.current_dir.display(),
            id = bt.id
        )],
    );
    scenarios::assert_host_untouched();
    fs::remove_dir(&bt.current_dir).unwrap();
    c.assert_node_not_drained();
}
