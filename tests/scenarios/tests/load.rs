//! A burst of 500 jobs, beamtime and ordinary ones interleaved, some with
//! concurrent steps on the node: every outcome right, no drained node,
//! nothing left on the host (no mount, no mount namespace still held by a
//! process or pinned by a bind mount), and slurmstepd's memory flat from the
//! first beamtime jobs to the last.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use scenarios::{BeamtimeSpec, Cluster, TEST_USER};

const JOBS: usize = 500;

#[test]
fn a_burst_of_mixed_jobs_all_end_right_and_leave_nothing_behind() {
    let c = scenarios::cluster();
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest30").cores(4));
    let beamtime_args = bt.job_options();
    let beamtime_args: Vec<&str> = beamtime_args.iter().map(String::as_str).collect();
    let bt_dir = c.workdir(&bt.account, "load");
    let plain_dir = c.workdir(TEST_USER, "load");

    // Every tenth beamtime job runs two tasks at once, sharing the namespace task 0 builds.
    // Each batch script also reports the peak memory of its slurmstepd (its parent).
    let peak = "echo \"stepd-peak-kib $(awk '/^VmHWM/ {print $2}' /proc/$PPID/status)\"\n";
    let beamtime_job = format!("#!/bin/bash\necho \"$BEAMTIME_ID $(ls -A /beamline)\"\n{peak}");
    let two_step_job = format!(
        "#!/bin/bash\n#SBATCH -n 2\nsrun -n 2 bash -c 'echo \"$BEAMTIME_ID $(ls -A /beamline)\"' | sort\n{peak}"
    );
    let plain_job = format!(
        "#!/bin/bash\necho \"plain $(ls -A /beamline | wc -l) ${{BEAMTIME_ID:-none}}\"\n{peak}"
    );
    let slurmd_rss_before = slurmd_rss_kib(c);
    let namespaces_before = mount_namespaces_in_use();
    let pinned_before = pinned_namespaces();

    let started = Instant::now();
    let mut submitted = Vec::with_capacity(JOBS);
    for n in 0..JOBS {
        let job = if n % 2 == 1 {
            c.submit(TEST_USER, &plain_dir, &[], &plain_job)
        } else if n % 20 == 0 {
            c.submit(&bt.account, &bt_dir, &beamtime_args, &two_step_job)
        } else {
            c.submit(&bt.account, &bt_dir, &beamtime_args, &beamtime_job)
        };
        submitted.push((n, job));
    }
    let submitted_after = started.elapsed();

    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let (mut beamtime_peaks, mut plain_peaks) = (Vec::new(), Vec::new());
    for (n, job) in &submitted {
        let end = c.wait_job(job.id, Duration::from_secs(600));
        *states.entry(end.state.clone()).or_default() += 1;
        end.assert_completed_ok();
        let expected = if n % 2 == 1 {
            "plain 0 none\n".to_owned()
        } else if n % 20 == 0 {
            format!("{id} {bl}\n{id} {bl}\n", id = bt.id, bl = bt.beamline)
        } else {
            format!("{} {}\n", bt.id, bt.beamline)
        };
        let stdout = job.stdout();
        let (seen, peak) = stdout.split_once("stepd-peak-kib ").unwrap_or_else(|| {
            panic!(
                "job {} (#{n}) did not report its slurmstepd's memory:\n{stdout}",
                job.id
            )
        });
        assert_eq!(seen, expected, "job {} (#{n})", job.id);
        let peak: u64 = peak
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("job {}: {peak:?}", job.id));
        if n % 2 == 1 {
            plain_peaks.push(peak)
        } else {
            beamtime_peaks.push(peak)
        }
    }
    let took = started.elapsed();
    eprintln!(
        "{JOBS} jobs: submitted in {submitted_after:.1?}, all ended after {took:.1?}: {states:?}"
    );
    c.assert_node_not_drained();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let leftover_mounts = mounts.lines().filter(|l| l.contains(" /beamline")).count();
    assert_eq!(leftover_mounts, 0, "mounts left on the host");
    let leftover_entries = fs::read_dir("/beamline").unwrap().count();
    assert_eq!(leftover_entries, 0, "/beamline on the host is not empty");
    // A job's slurmstepd may take a moment after the job's end to exit, and job_container/tmpfs
    // unpins a job's namespace when slurmd ends the job.
    let (leftover_namespaces, pinned_added) =
        scenarios::wait::poll(Duration::from_secs(30), || {
            let in_use: BTreeMap<String, Vec<String>> = mount_namespaces_in_use()
                .into_iter()
                .filter(|(ns, _)| !namespaces_before.contains_key(ns))
                .collect();
            let pinned: BTreeSet<String> = pinned_namespaces()
                .difference(&pinned_before)
                .cloned()
                .collect();
            if in_use.is_empty() && pinned.is_empty() {
                Ok((0, 0))
            } else {
                Err((in_use, pinned))
            }
        })
        .unwrap_or_else(|(in_use, pinned)| {
            panic!(
                "after every job ended, mount namespaces still in use: {in_use:?}; \
             namespaces pinned (nsfs) in the host's table: {pinned:?}"
            )
        });

    // Every job has a slurmstepd of its own: a plugin that leaked would show in the peak
    // of each, through what it keeps on the node (its job cache), not across processes.
    let first = median(&beamtime_peaks[..50]);
    let last = median(&beamtime_peaks[beamtime_peaks.len() - 50..]);
    assert!(
        last <= first + 1024,
        "slurmstepd's peak grew from {first} KiB (first 50 beamtime jobs) to {last} KiB (last 50)"
    );
    let slurmd_rss_after = slurmd_rss_kib(c);
    scenarios::figures::record(
        "load",
        serde_json::json!({
            "cluster": if c.recorded("job_container") == "1" { "1 node, job_container/tmpfs" } else { "1 node" },
            "jobs": JOBS,
            "beamtime_jobs": beamtime_peaks.len(),
            "plain_jobs": plain_peaks.len(),
            "states": states,
            "submitted_s": submitted_after.as_secs_f64(),
            "all_ended_s": took.as_secs_f64(),
            "drained_nodes": 0,
            "leftover_mounts": leftover_mounts,
            "leftover_entries_under_beamline": leftover_entries,
            "leftover_namespaces": leftover_namespaces,
            "pinned_namespaces_added": pinned_added,
            "stepd_peak_kib_first50_beamtime": first,
            "stepd_peak_kib_last50_beamtime": last,
            "stepd_peak_kib_plain": median(&plain_peaks),
            "slurmd_rss_kib_before": slurmd_rss_before,
            "slurmd_rss_kib_after": slurmd_rss_after,
        }),
    );
}

/// Each mount namespace a process on this machine is in, with those processes ("pid comm").
fn mount_namespaces_in_use() -> BTreeMap<String, Vec<String>> {
    let mut namespaces: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process that ended while being looked at is no namespace in use.
        let Ok(ns) = fs::read_link(entry.path().join("ns/mnt")) else {
            continue;
        };
        let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        namespaces
            .entry(ns.to_string_lossy().into_owned())
            .or_default()
            .push(format!("{name} {}", comm.trim()));
    }
    namespaces
}

/// The mount points of namespace files (nsfs) in the host's table: a namespace pinned there
/// outlives every process in it.
fn pinned_namespaces() -> BTreeSet<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| line.contains(" - nsfs "))
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .collect()
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

/// slurmd lives through the whole burst (it loads plugstack.conf's plugins once).
fn slurmd_rss_kib(c: &Cluster) -> u64 {
    let pid_file = c.state_dir().join("run/slurmd.pid");
    let pid =
        fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
    let status = fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in slurmd's status")
}
