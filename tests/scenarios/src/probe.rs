//! The btprobe plugin (tests/cluster/probe/btprobe.c) for the tests that measure Slurm's own
//! handling of SPANK plugins (plugstack_probe.rs, spank_failures.rs): built for the cluster's
//! release, its records read back, one of its hooks failed through its control file.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::wait;

/// A folder for one test's probe builds, records and control file: root-owned, readable
/// by the job's user (the plugin runs as the user in some hooks).
pub fn probe_dir(c: &Cluster, label: &str) -> PathBuf {
    let base = c
        .state_dir()
        .join(format!("probe-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    base
}

/// Compiles btprobe.c into `dir/name` with the extra compiler arguments `defines`, against
/// the Slurm headers of the machine (or release root) the test runs on.
pub fn build_probe(c: &Cluster, dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    let so = dir.join(name);
    let src = Cluster::repo_root().join("tests/cluster/probe/btprobe.c");
    c.cmd("gcc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror"])
        .args(defines)
        .arg("-o")
        .arg(&so)
        .arg(&src)
        .run()
        .assert_success();
    so
}

/// An empty folder `base/name` where every hook, as root or as the user, appends its record.
pub fn fresh_records_dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

/// The "<hook>-<ctx>" names of the records in `dir`, waiting up to 10 s for `want` (the
/// epilog runs after the job is reported complete). What ran by then, complete or not:
/// the caller names each missing hook.
pub fn records(dir: &Path, want: &[&str]) -> BTreeSet<String> {
    let present = || -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".log")
                    .map(String::from)
            })
            .collect()
    };
    let (Ok(got) | Err(got)) = wait::poll(Duration::from_secs(10), || {
        let got = present();
        if want.iter().all(|w| got.contains(*w)) {
            Ok(got)
        } else {
            Err(got)
        }
    });
    got
}

/// The lines hook `name` ("<hook>-<ctx>") recorded in `dir` so far.
pub fn record_lines(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// btprobe's control file (its `ctl=` argument): which hook returns what, read by the
/// plugin at every call.
pub struct Control {
    pub path: PathBuf,
}

impl Control {
    /// A control file in `dir` that fails nothing yet.
    pub fn new(dir: &Path) -> Control {
        let control = Control {
            path: dir.join("control"),
        };
        control.fail_nothing();
        control
    }

    /// From now on hook `hook` returns `rc` in context `ctx` ("remote", "local",
    /// "job_script" …), every other hook 0. Written whole and renamed into place, so a
    /// hook never reads half a line.
    pub fn fail(&self, hook: &str, ctx: &str, rc: i32) {
        self.write(&format!("{hook}:{ctx} {rc}\n"));
    }

    pub fn fail_nothing(&self) {
        self.write("");
    }

    fn write(&self, text: &str) {
        let new = self.path.with_extension("new");
        std::fs::write(&new, text).unwrap();
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&new, &self.path).unwrap();
    }
}

/// The cluster's Slurm: the whole version (`slurm 24.11.5`) and its release (`24.11`).
pub fn slurm_release(c: &Cluster) -> (String, String) {
    let out = c.cmd("sinfo").arg("-V").run();
    out.assert_success();
    let version = out.stdout.trim().to_string();
    let release = version
        .split_whitespace()
        .last()
        .and_then(|v| v.rsplit_once('.'))
        .map(|(major_minor, _)| major_minor.to_string())
        .unwrap_or_else(|| panic!("sinfo -V: no release in {version:?}"));
    (version, release)
}

/// Whether `release` ("25.05") is `major.minor` or later.
pub fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let parsed = release
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    match parsed {
        Some(found) => found >= (major, minor),
        None => panic!("not a Slurm release: {release:?}"),
    }
}

/// A job's record once it has settled after a failure: ended (its epilog done), or requeued
/// and pending — held, or waiting for the `BeginTime` Slurm gives a requeued job (both seen
/// on 24.11). [`Cluster::wait_job`] waits for a held job only. Panics after 60 s.
pub fn settle(c: &Cluster, id: u32) -> BTreeMap<String, String> {
    wait::poll(Duration::from_secs(60), || {
        let record = c.job_record(id).unwrap_or_default();
        let state = record.get("JobState").map_or("", String::as_str);
        let requeued = record.get("Restarts").is_some_and(|n| n != "0");
        let held = record.get("Reason").is_some_and(|r| r.contains("held"));
        let ended = !matches!(
            state,
            "" | "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING"
        );
        if ended || (state == "PENDING" && (requeued || held)) {
            Ok(record)
        } else {
            Err(record)
        }
    })
    .unwrap_or_else(|record| panic!("job {id} did not settle in 60 s: {record:#?}"))
}
