#!/usr/bin/env python3
"""Writes reliability.md (to stdout) from what scripts/test-all.sh collected in REPORT_DIR:
the test logs (unit.log, scenarios-<config>.log), the figures the tests recorded
(figures.jsonl, see tests/scenarios/src/figures.rs), the fuzzing summary (fuzz.txt),
machine.txt, and for each other Slurm release a folder slurm-<major.minor>/ with its own
scenarios-<config>.log, figures.jsonl and release.txt (scripts/release-tests.sh). Every
number in the document comes from those files.

    scripts/reliability_report.py REPORT_DIR > reliability.md
"""
import json
import re
import sys
from collections import OrderedDict
from pathlib import Path

# What each scenario binary proves, in the order the document lists them.
BINARIES = OrderedDict([
    ("hostile", "Hostile inputs: metadata content, races between check and use, symlinked target, metadata replaced mid-job"),
    ("beamtime", "Accepted and refused beamtime jobs: users, reservations, nodes, ids, metadata trust, mounts"),
    ("faults", "Faults: slurmd restarted under running jobs, metadata deleted between steps, mount source gone or unmounted"),
    ("job_cache", "Faults of the plugin's own state folder: removed, full, open to others, damaged entry"),
    ("multinode_faults", "Fault: a node cut off from slurmctld"),
    ("load", "Load: a burst of mixed jobs and concurrent steps"),
    ("multinode", "Several hosts: reservations on disjoint nodes, srun -N, features"),
    ("multinode_queries", "Controller queries per job, node and step"),
    ("multinode_remote", "bt-submit --remote to reserved nodes by their own addresses and sshds; the first cut off, the next takes the job"),
    ("admin_mistakes", "Admin mistakes: a bad plugstack line, on both sides or on one, fails only --beamtime jobs"),
    ("one_configuration", "bt-submit finds metadata and the beamline path where the plugin does"),
    ("plugin_load", "The installed plugin's exported symbols"),
    ("plugstack_probe", "What Slurm does with the plugin's return codes (measured)"),
    ("doctor", "bt-submit doctor on the real cluster"),
    ("remote", "bt-submit --remote from a beamline computer over the harness's sshd: account, reservation and beamline on the node, the next node when the first is down, exact arguments; unknown host key, wrong, unreadable and too-open keys refused with nothing submitted"),
    ("watch", "bt-submit watch: one job per new, complete file, exactly once across a SIGKILL and restart; --max-in-flight; retries"),
    ("cluster_smoke", "The test cluster itself"),
    ("prestart", "A beamtime before its start: no beamline shown, or refused with prestart=refuse"),
    ("step_namespace", "One mount namespace per step and node: tasks share it, steps never do, nothing reaches a node with a shared /"),
    ("attack_messages", "Independent attack (#17): key variants, unbounded log values, misleading messages, option precedence"),
    ("attack_runs", "Independent attack (#17): requeue and the job cache, reservation changes, tasks outliving their job, writable names"),
    ("remote", "bt-submit --remote: sbatch on a reserved node over a real sshd, host keys checked, exact quoting"),
    ("watch", "bt-submit watch: one job per new complete file, exactly once across restarts"),
])

CONFIGS = OrderedDict([
    ("plain_slurmd", "1 node"),
    ("job_container_tmpfs", "1 node, job_container/tmpfs"),
    ("plain_slurmd__core", "1 node, core files"),
    ("job_container_tmpfs__core", "1 node, job container, core files"),
    ("namespace_tmpfs", "1 node, namespace/tmpfs"),
    ("namespace_linux", "1 node, namespace/linux"),
    ("shared_root", "1 node, shared /"),
    ("4_hosts", "4 hosts"),
    ("bt_submit_watch", "1 node, bt-submit watch"),
])


def parse_test_log(text):
    """{binary: {"tests": {name: status}, "seconds": float}} from `cargo test` output."""
    binaries = OrderedDict()
    current = None
    for line in text.splitlines():
        m = re.match(r"\s*Running (?:tests/(\w+)\.rs|unittests \S+) ", line)
        if m:
            current = binaries.setdefault(m.group(1) or "unit", {"tests": OrderedDict(), "seconds": 0.0})
            continue
        m = re.match(r"test (\S+) \.\.\. (ok|FAILED|ignored)", line)
        if m and current is not None:
            current["tests"][m.group(1)] = m.group(2)
            continue
        m = re.match(r"test result: \w+\. .* finished in ([0-9.]+)s", line)
        if m and current is not None:
            current["seconds"] = float(m.group(1))
    return binaries


def unit_totals(text):
    passed = failed = 0
    for m in re.finditer(r"test result: \w+\. (\d+) passed; (\d+) failed", text):
        passed += int(m.group(1))
        failed += int(m.group(2))
    return passed, failed


def read_figures(path):
    figures = []
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                figures.append(json.loads(line))
    return figures


def read_fuzz(path):
    rows = []
    if path.exists():
        pattern = re.compile(r"fuzz (\S+)\s+(\d+) executions in (\d+)s, (?:cov: (\d+) ft: (\d+) corp: (\d+))?, crashes: (\d+)")
        for line in path.read_text().splitlines():
            m = pattern.search(line)
            if m:
                rows.append(m.groups())
    return rows


def table(w, header, rows):
    """A Markdown table, then a blank line."""
    w("| " + " | ".join(header) + " |")
    w("|" + "---|" * len(header))
    for row in rows:
        w("| " + " | ".join(str(cell) for cell in row) + " |")
    w("")


def humanize(name):
    return name.replace("_", " ")


def release_of(version_line):
    """'22.05' from sinfo -V's 'slurm 22.05.8' or 'slurm-wlm 24.11.5'."""
    m = re.search(r"(\d+\.\d+)\.\d+", version_line or "")
    return m.group(1) if m else "?"


def main():
    report = Path(sys.argv[1])
    machine = dict(
        line.split("=", 1) for line in (report / "machine.txt").read_text().splitlines() if "=" in line
    )
    # One column per release and cluster configuration: the host's release first, then
    # each root's (slurm-<release>/).
    host_release = release_of(machine.get("slurm"))
    folders = [(host_release, report)]
    folders += [(d.name[len("slurm-"):], d) for d in sorted(report.glob("slurm-*")) if d.is_dir()]
    runs = OrderedDict()
    labels = {}
    for release, folder in folders:
        for slug in CONFIGS:
            log = folder / f"scenarios-{slug}.log"
            if log.exists():
                runs[(release, slug)] = parse_test_log(log.read_text())
                labels[(release, slug)] = f"Slurm {release}, {CONFIGS[slug]}"
    figures = read_figures(report / "figures.jsonl")
    # A failed remote init: what each release does with the job and the node.
    init_failures = [(host_release, f) for f in figures if f["figure"] == "init_failure"]
    for release, folder in folders[1:]:
        init_failures += [(release, f) for f in read_figures(folder / "figures.jsonl")
                          if f["figure"] == "init_failure"]
    fuzz = read_fuzz(report / "fuzz.txt")
    unit_passed, unit_failed = unit_totals((report / "unit.log").read_text())

    out = []
    w = out.append
    w("# Reliability: what the tests tried and what held")
    w("")
    w(f"Generated by `scripts/reliability.sh` (which runs `scripts/test-all.sh`) from commit "
      f"{machine.get('commit')} on {machine.get('date')}: {machine.get('slurm')}, Linux "
      f"{machine.get('kernel')}, {machine.get('cpus')} CPUs. Every figure below was produced by "
      "that run's tests; nothing is typed in by hand. The threat model and which test proves "
      "each defence: [security.md](security.md).")
    w("")

    w("## Summary")
    w("")
    total = sum(len(b["tests"]) for r in runs.values() for name, b in r.items() if name != "unit")
    failed = sum(1 for r in runs.values() for name, b in r.items() if name != "unit"
                 for s in b["tests"].values() if s == "FAILED")
    releases = sorted({release for release, _ in runs})
    w(f"- Real-cluster scenario runs: {total} (over {len(runs)} cluster configurations on Slurm "
      f"{', '.join(releases)}), failed: {failed}.")
    w(f"- Unit and property tests: {unit_passed} passed, {unit_failed} failed.")
    times = report / "release-times.txt"
    if times.exists():
        parts = [line.split() for line in times.read_text().splitlines() if line.strip()]
        w("- Other releases, seconds per part (root, part): "
          + ", ".join(f"{root} {part} {secs} s" for root, part, secs in parts) + ".")
    for release, folder in folders:
        pass_times = folder / "times.txt"
        if pass_times.exists():
            rows = [line.rsplit(" ", 1) for line in pass_times.read_text().splitlines() if line.strip()]
            w(f"- Slurm {release}, seconds per scenario pass: "
              + ", ".join(f"{label} {secs} s" for label, secs in rows) + ".")
    if fuzz:
        execs = sum(int(r[1]) for r in fuzz)
        crashes = sum(int(r[6]) for r in fuzz)
        w(f"- Fuzzing: {execs:,} executions over {len(fuzz)} targets, {crashes} crashes.")
    load = [f for f in figures if f["figure"] == "load"]
    for f in load:
        w(f"- Load ({f.get('cluster', '?')}): {f['jobs']} jobs ({f['beamtime_jobs']} beamtime, {f['plain_jobs']} ordinary), "
          f"end states {f['states']}, {f['drained_nodes']} drained nodes, "
          f"{f['leftover_mounts']} mounts, {f['leftover_entries_under_beamline']} entries, "
          f"{f.get('leftover_namespaces', '?')} mount namespaces in use and "
          f"{f.get('pinned_namespaces_added', '?')} pinned left on the host.")
    for f in figures:
        if f["figure"] == "controller_unreachable":
            w(f"- A node cut off from slurmctld refused its beamtime step after "
              f"{f['refused_after_s']:.1f} s and was not drained.")
    w("")

    w("## Scenarios by what they prove")
    w("")
    header = "| binary | what it proves | " + " | ".join(labels[k] for k in runs) + " |"
    w(header)
    w("|" + "---|" * (2 + len(runs)))
    names = [b for b in BINARIES if any(b in r for r in runs.values())]
    names += sorted({b for r in runs.values() for b in r if b not in BINARIES and b != "unit"})
    for binary in names:
        cells = []
        for r in runs.values():
            b = r.get(binary)
            if not b or not any(s != "ignored" for s in b["tests"].values()):
                cells.append("–")
                continue
            ran = [s for s in b["tests"].values() if s != "ignored"]
            ok = sum(1 for s in ran if s == "ok")
            cells.append(f"{ok}/{len(ran)} passed in {b['seconds']:.0f} s")
        w(f"| `{binary}` | {BINARIES.get(binary, '')} | " + " | ".join(cells) + " |")
    w("")
    w("A dash: the binary's tests are `#[ignore]`d in that configuration (the multi-node ones "
      "need 4 hosts) or it did not run there.")
    w("")
    for binary in names:
        tests = OrderedDict()
        for r in runs.values():
            for name, status in r.get(binary, {"tests": {}})["tests"].items():
                if status != "ignored":
                    tests.setdefault(name, []).append(status)
        if not tests:
            continue
        w(f"<details><summary><code>{binary}</code>: {len(tests)} tests</summary>")
        w("")
        for name, statuses in tests.items():
            mark = "passed" if all(s == "ok" for s in statuses) else "FAILED"
            w(f"- {humanize(name)} — {mark} ({len(statuses)} run{'s' if len(statuses) > 1 else ''})")
        w("")
        w("</details>")
        w("")

    if init_failures:
        w("## Failure outcomes per Slurm release")
        w("")
        w("A plugin whose remote `init` fails in a batch step (`plugstack_probe.rs`, with the "
          "btprobe plugin): what each release did with the job and the node. Failure mode "
          "`ESPANK_JOB_FAILURE`: btprobe built to declare its init failures the job's fault "
          "(`slurm_spank_init_failure_mode`, from 25.05 on).")
        w("")
        table(w, ["Slurm", "cluster", "failure mode", "job state", "job reason", "requeued",
                  "exit code", "node", "node reason"],
              [[f["slurm"], "job container" if f["job_container"] else "plain", f["failure_mode"],
                f["job_state"], f["job_reason"] or "–", f["restarts"], f["exit_code"],
                f["node_state"], f["node_reason"] or "–"] for _, f in init_failures])

    if load:
        w("## Load")
        w("")
        w("One burst per cluster configuration, the same jobs in each.")
        w("")
        columns = OrderedDict()
        for f in load:
            rows = [
                ("jobs submitted", f["jobs"]),
                ("… beamtime jobs (every tenth with two concurrent tasks)", f["beamtime_jobs"]),
                ("… ordinary jobs on the same node", f["plain_jobs"]),
                ("end states", ", ".join(f"{k}: {v}" for k, v in f["states"].items())),
                ("every job's output checked", "yes (the test compares each one)"),
                ("submitted in", f"{f['submitted_s']:.1f} s"),
                ("all ended after", f"{f['all_ended_s']:.1f} s"),
                ("drained nodes", f["drained_nodes"]),
                ("mounts left on the host", f["leftover_mounts"]),
                ("entries left under /beamline on the host", f["leftover_entries_under_beamline"]),
                ("mount namespaces still in use after the burst", f.get("leftover_namespaces", "?")),
                ("namespaces newly pinned (nsfs) in the host's table", f.get("pinned_namespaces_added", "?")),
                ("slurmstepd peak memory, first 50 beamtime jobs (median)", f"{f['stepd_peak_kib_first50_beamtime']} KiB"),
                ("slurmstepd peak memory, last 50 beamtime jobs (median)", f"{f['stepd_peak_kib_last50_beamtime']} KiB"),
                ("slurmstepd peak memory, ordinary jobs (median)", f"{f['stepd_peak_kib_plain']} KiB"),
                ("slurmd resident memory before → after", f"{f['slurmd_rss_kib_before']} → {f['slurmd_rss_kib_after']} KiB"),
            ]
            for k, v in rows:
                columns.setdefault(k, []).append(v)
        table(w, ["figure"] + [f.get("cluster", "?") for f in load],
              [[k] + values for k, values in columns.items()])

    races = [f for f in figures if f["figure"] == "race"]
    if races:
        w("## Races between check and use")
        w("")
        w("The beamtime's own account swaps a name for a symbolic link to another beamtime's "
          "in a tight loop while 24 steps run (`hostile.rs`); a step either ran with its own "
          "beamline only or was refused, and the test fails on any step that saw or wrote the other. "
          "One row per run: the matrix runs in both one-node configurations.")
        w("")
        table(w, ["swapped", "cluster", "swaps", "steps that ran", "steps refused",
                  "steps or writes that reached the other beamtime"],
              [[f["what"], f.get("cluster", "not recorded"), f"{f['swaps']:,}", f["steps_ran"],
                f["steps_refused"], f["saw_the_other"]] for f in races])

    queries = [f for f in figures if f["figure"] == "controller_queries"]
    if queries:
        w("## Controller queries per job")
        w("")
        w("`sdiag` counts around one `salloc -N4` job of 1 or 3 beamtime steps on the 4-host "
          "cluster. The hosts share one file system and so one job-cache folder, so a host may "
          "find what another stored: on separate machines it is one query per node.")
        w("")
        table(w, ["job cache", "steps", "nodes", "job queries", "federation queries"],
              [["on" if f["job_cache"] else "off", f["steps"], f["nodes"], f["job_queries"],
                f["federation_queries"]] for f in queries])

    if fuzz:
        w("## Fuzzing")
        w("")
        w(f"libFuzzer through cargo-fuzz, {machine.get('fuzz_seconds')} s per target, seeded "
          "with the metadata fixtures and fuzz/seeds/ (scripts/fuzz.sh).")
        w("")
        table(w, ["target", "executions", "seconds", "coverage (edges)", "features", "corpus", "crashes"],
              [[target, f"{int(execs):,}", secs, cov or "–", ft or "–", corp or "–", crashes]
               for target, execs, secs, cov, ft, corp, crashes in fuzz])

    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
