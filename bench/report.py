"""Turns bench/run.sh's raw measurements into docs/benchmarks.md and its two plots.

    report.py OUT CRITERION_DIR DOCS_DIR
    report.py --watch OUT DOCS_DIR     (section 8 only, from `bench/run.sh ROUNDS watch`)

OUT holds one file per series: timings in microseconds, one per line, except
queries-* ("JOB_INFO_SINGLE FED_INFO" per job), memory-* ("VmHWM VmRSS" in kB
per step) and mount-table-sizes ("extra total" per size); section 8's
watch-idle, watch-scan-looks, watch-first-start and watch-record-size hold a
line of counts each (WatchRun says which), ssh-burst-files the burst's size.
The pairs compared were measured interleaved in the same run. CRITERION_DIR is criterion's output
folder; only estimates written after OUT/criterion-start count, so stale
benchmarks of an earlier run never reach the document. bench/run.sh leaves the
last run's OUT in <target dir>/bench-last, to render it again after a change here.

Every verdict and explanation below is computed from the numbers of this run.
"""
import json
import math
import random
import re
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

BOOTSTRAP_ROUNDS = 2000


# ---------------------------------------------------------------- statistics


def load(folder: Path, name: str) -> list[float]:
    """A series of microsecond timings, in milliseconds."""
    return [int(word) / 1000 for word in (folder / name).read_text().split()]


def columns(folder: Path, name: str) -> list[list[int]]:
    rows = [[int(word) for word in line.split()] for line in (folder / name).read_text().splitlines() if line.strip()]
    return [list(column) for column in zip(*rows)]


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, q2, q3


def ratio_interval(base: list[float], variant: list[float]) -> tuple[float, float]:
    """95 % bootstrap interval of median(variant) / median(base)."""
    rng = random.Random(6)
    ratios = sorted(
        statistics.median(rng.choices(variant, k=len(variant))) / statistics.median(rng.choices(base, k=len(base)))
        for _ in range(BOOTSTRAP_ROUNDS)
    )
    return ratios[int(0.025 * BOOTSTRAP_ROUNDS)], ratios[int(0.975 * BOOTSTRAP_ROUNDS) - 1]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def nice_step(longest: float, ticks: int = 8) -> float:
    """A tick distance of 1, 2 or 5 times a power of ten giving about `ticks` ticks."""
    raw = longest / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def ms(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def signed(value: float) -> str:
    return ("+" if value >= 0 else "−") + ms(abs(value))


def spread(values: list[float]) -> str:
    q1, q2, q3 = quartiles(values)
    return f"{ms(q2)} ({ms(q1)}–{ms(q3)})"


class Pair:
    """Two series measured interleaved: baseline and variant."""

    def __init__(self, folder: Path, base: str, variant: str):
        self.base_name, self.variant_name = base, variant
        self.base, self.variant = load(folder, base), load(folder, variant)
        self.base_median = statistics.median(self.base)
        self.variant_median = statistics.median(self.variant)
        self.ratio = self.variant_median / self.base_median
        self.added = self.variant_median - self.base_median
        self.low, self.high = ratio_interval(self.base, self.variant)

    def interval(self) -> str:
        return f"{self.ratio:.3f} ({self.low:.3f}–{self.high:.3f})"

    def noise_note(self) -> str:
        if self.low <= 1.0 <= self.high:
            return " The ratio's 95 % interval includes 1.0: this run cannot tell the difference from noise."
        return ""


# ---------------------------------------------------------------- verdicts


# What #16 started from (bench/run.sh 40, 2026-11-26, 8ce8fb1: one namespace per task) and
# what was tried by hand for "unused means free" before the design stayed as it is.
BEFORE_16 = {
    "unused_ratio": "1.007",
    "unused_hwm_mib": "0.89",
    "setup_per_task_5000_ms": "5.91",
    "step_5000_plain_ms": "31.5",
    "step_5000_beamtime_ms": "37.9",
    "unused_tried": (
        "Tried by hand on 2026-12-01 (single runs on a loaded machine, VmHWM of slurmstepd with the plugin "
        "unused): leaving the argument parse in slurmstepd until a `--beamtime` job needs it saved about 0.1 MiB; "
        "`opt-level = \"s\"`, fat LTO and one codegen unit shrank the library from 2.0 to 1.35 MB and saved about "
        "0.2 MiB more, at the cost of slower code in every beamtime job; packed relative relocations "
        "(`-z pack-relative-relocs`) nothing measurable. None of them reaches +0.3 MiB, so none was kept. What "
        "would: a small front library that registers `--beamtime` and loads the implementation only when a job "
        "uses it (not built: it splits the plugin into two libraries that must be packaged and versioned together)."
    ),
}


def ratio_verdict(pair: Pair, target: float) -> str:
    if pair.ratio <= target:
        if pair.high > target:
            return f"met (median ratio); its 95 % interval reaches {pair.high:.3f}"
        return "met"
    allowed = (target - 1) * pair.base_median
    over = (pair.ratio - target) * 100
    return (
        f"NOT met: ratio {pair.ratio:.4f}, {over:.{1 if over >= 0.1 else 2}f} percentage points over "
        f"({signed(pair.added)} ms where {ms(allowed)} ms are allowed)"
    )


def added_verdict(pair: Pair, limit_ms: float) -> str:
    if pair.added <= limit_ms:
        return f"met ({signed(pair.added)} ms ≤ {ms(limit_ms)} ms)"
    return f"NOT met, by {ms(pair.added - limit_ms)} ms"


# ---------------------------------------------------------------- criterion


def criterion_estimates(folder: Path, since: float) -> dict[str, tuple[float, float, float]]:
    """full_id → (median, lower, upper) in microseconds, for this run's benchmarks."""
    found = {}
    for estimates in folder.glob("**/new/estimates.json"):
        if estimates.stat().st_mtime < since:
            continue
        benchmark = json.loads((estimates.parent / "benchmark.json").read_text())
        median = json.loads(estimates.read_text())["median"]
        interval = median["confidence_interval"]
        found[benchmark["full_id"]] = (
            median["point_estimate"] / 1000,
            interval["lower_bound"] / 1000,
            interval["upper_bound"] / 1000,
        )
    return found


def series(estimates, prefix: str) -> list[tuple[int, tuple[float, float, float]]]:
    return sorted((int(key.rsplit("/", 1)[1]), value) for key, value in estimates.items() if key.startswith(prefix))


def scheduling_delays(log: Path) -> list[float]:
    """Milliseconds from slurmctld accepting each batch job to allocating it, from its log."""
    stamp = r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\] "
    submitted, allocated = {}, {}
    for line in log.read_text(errors="replace").splitlines():
        if match := re.match(stamp + r"_slurm_rpc_submit_batch_job: JobId=(\d+)", line):
            submitted[match[2]] = datetime.fromisoformat(match[1])
        elif match := re.match(stamp + r"(?:sched: Allocate|sched/backfill: _start_job: Started) JobId=(\d+)", line):
            allocated.setdefault(match[2], datetime.fromisoformat(match[1]))
    return [(allocated[job] - at).total_seconds() * 1000 for job, at in submitted.items() if job in allocated]


# ---------------------------------------------------------------- plots


def launch_svg(rows: list[tuple[str, list[float]]], path: Path) -> None:
    width, row_height, left, top = 760, 44, 250, 36
    height = top + row_height * len(rows) + 50
    longest = max(max(values) for _, values in rows)
    scale = (width - left - 30) / longest
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="18" font-size="14">Launch latency, ms (box: quartiles, line: median, dots: every run)</text>',
    ]
    y = top
    for label, values in rows:
        q1, q2, q3 = quartiles(values)
        mid = y + 14
        parts.append(f'<text x="10" y="{mid + 4}">{label}</text>')
        parts.append(f'<rect x="{left + q1 * scale:.1f}" y="{mid - 9}" width="{max((q3 - q1) * scale, 1):.1f}" height="18" fill="#cde" stroke="#357"/>')
        parts.append(f'<line x1="{left + q2 * scale:.1f}" y1="{mid - 11}" x2="{left + q2 * scale:.1f}" y2="{mid + 11}" stroke="#024" stroke-width="2"/>')
        for value in values:
            parts.append(f'<circle cx="{left + value * scale:.1f}" cy="{mid + 15}" r="1.5" fill="#a33"/>')
        y += row_height
    axis_y = y + 10
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{width - 30}" y2="{axis_y}" stroke="#000"/>')
    step = nice_step(longest)
    tick = 0.0
    while tick <= longest:
        x = left + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 5}" stroke="#000"/>')
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 18}" text-anchor="middle">{tick:g}</text>')
        tick += step
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def mounts_svg(points: list[tuple[int, list[float], list[float]]], target_ms: float, path: Path) -> None:
    """Setup time (quartiles) and the kernel's namespace copy (median) against extra mounts."""
    width, height, left, right, top, bottom = 760, 440, 70, 70, 60, 60
    most = max(n for n, _, _ in points)
    highest = max(max(quartiles(setup)[2] for _, setup, _ in points), target_ms) * 1.15
    x_of = lambda n: left + n / most * (width - left - right)  # noqa: E731
    y_of = lambda v: height - bottom - v / highest * (height - top - bottom)  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="18" font-size="14">Mount setup per beamtime step and node, ms, against extra mounts on the node</text>',
        f'<line x1="{left}" y1="{y_of(target_ms):.1f}" x2="{width - right}" y2="{y_of(target_ms):.1f}" stroke="#c33" stroke-dasharray="6 4"/>',
        f'<text x="{left + 8}" y="{y_of(target_ms) - 5:.1f}" fill="#c33">target: {target_ms:g} ms at 5 000</text>',
        '<text x="10" y="38">● plugin setup, median (bar: quartiles); dashed grey: unshare + slave remount alone, median</text>',
    ]
    setup_line, copy_line = [], []
    labelled = -1000.0
    for n, setup, copy in points:
        q1, q2, q3 = quartiles(setup)
        x = x_of(n)
        parts.append(f'<line x1="{x:.1f}" y1="{y_of(q1):.1f}" x2="{x:.1f}" y2="{y_of(q3):.1f}" stroke="#024" stroke-width="2"/>')
        parts.append(f'<circle cx="{x:.1f}" cy="{y_of(q2):.1f}" r="4" fill="#024"/>')
        # Points close together (0 and 100 mounts) would print over each other.
        if x - labelled > 45:
            parts.append(f'<text x="{x + 8:.1f}" y="{y_of(q2) - 8:.1f}">{q2:.2f} ms</text>')
            labelled = x
        setup_line.append(f"{x:.1f},{y_of(q2):.1f}")
        copy_line.append(f"{x:.1f},{y_of(statistics.median(copy)):.1f}")
    parts.append(f'<polyline points="{" ".join(setup_line)}" fill="none" stroke="#024"/>')
    parts.append(f'<polyline points="{" ".join(copy_line)}" fill="none" stroke="#888" stroke-dasharray="3 3"/>')
    axis_y = height - bottom
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{width - right}" y2="{axis_y}" stroke="#000"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" stroke="#000"/>')
    for n in range(0, most + 1, 1000):
        parts.append(f'<text x="{x_of(n):.1f}" y="{axis_y + 18}" text-anchor="middle">{n}</text>')
    tick, step = 0.0, nice_step(highest, 8)
    while tick <= highest:
        parts.append(f'<text x="{left - 8}" y="{y_of(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
        tick += step
    parts.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 20}" text-anchor="middle">extra mounts in slurmd\'s namespace</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


# ---------------------------------------------------------------- 8: bt-submit watch

WATCH_HEADING = "## 8: bt-submit watch"
# The summary table's rows that section 8 renders, replaced with it by `report.py --watch`.
WATCH_ROW = "| 8 |"


class WatchRun:
    """Section 8's raw files of one run (bench/run.sh measure_watch)."""

    def __init__(self, folder: Path):
        self.measured = datetime.fromtimestamp((folder / "watch-latency-inotify").stat().st_mtime, timezone.utc)
        self.source = (folder / "source").read_text().strip()
        self.machine = (folder / "machine").read_text().strip()
        self.inotify = load(folder, "watch-latency-inotify")
        self.polling = load(folder, "watch-latency-polling")
        self.idle_files, self.idle_seconds, self.idle_ticks, clk_tck, self.idle_hwm_kb = (
            int(v) for v in (folder / "watch-idle").read_text().split()
        )
        self.idle_cpu_seconds = self.idle_ticks / clk_tck
        # A scan folder still being written, looked at once per poll interval from 5 s after its
        # frames stood still for the watch's settle time.
        frames, seconds, poll, ticks, clk_tck, self.scan_frames_at_end, self.scan_settle_seconds = (
            int(v) for v in (folder / "watch-scan-looks").read_text().split()
        )
        self.scan_frames, self.scan_looks = frames, seconds // poll
        self.scan_ms_per_look = 1000 * ticks / clk_tck / self.scan_looks
        self.scan_resolution_ms = 1000 / clk_tck / self.scan_looks
        # A first start with --skip-existing: files; µs after the start when status did not show
        # them all yet (at the latest) and when it did (at the earliest); status runs; VmHWM.
        first = (folder / "watch-first-start").read_text().split()
        self.first_files, not_yet_us, shown_us, self.first_status_runs, self.first_hwm_kb = (int(v) for v in first)
        self.first_after, self.first_by = not_yet_us / 1e6, shown_us / 1e6
        # Recording one submission in the journal, against rewriting the whole snapshot.
        self.record = Pair(folder, "watch-record-journal", "watch-record-rewrite")
        # Two fsync'ed appends to a file of their own, interleaved: what any durable journal pays.
        self.floor = Pair(folder, "watch-record-fsync-floor", "watch-record-journal")
        self.recorded_files, self.snapshot_bytes = (int(v) for v in (folder / "watch-record-size").read_text().split())
        # A burst over ssh: the shared connection is the baseline, so the ratio is "times faster".
        self.ssh = Pair(folder, "ssh-burst-shared", "ssh-burst-per-job")
        self.ssh_files = int((folder / "ssh-burst-files").read_text())


SCAN_TARGET_MS, RECORD_TARGET_MS, SSH_TARGET_RATIO = 20.0, 5.0, 5.0


def watch_rows(run: WatchRun) -> list[str]:
    """Section 8's rows of the summary table (#22's goals)."""
    ssh = run.ssh
    record_ms = run.record.base_median
    return [
        f"{WATCH_ROW} a burst of {run.ssh_files} submissions over ssh: one shared connection (`watch --remote`) vs "
        f"one connection per job | ≥ {SSH_TARGET_RATIO:g}× faster | {ssh.ratio:.1f}× ({ssh.low:.1f}–{ssh.high:.1f}): "
        f"{ssh.variant_median / 1000:.1f} s vs {ssh.base_median / 1000:.1f} s | "
        + (
            ("met" if ssh.low >= SSH_TARGET_RATIO else f"met (median ratio); its 95 % interval reaches down to {ssh.low:.1f}")
            if ssh.ratio >= SSH_TARGET_RATIO
            else f"NOT met: {ssh.ratio:.1f}× (why: section 8b below)"
        )
        + " |",
        f"{WATCH_ROW} a scan folder of {run.scan_frames:,} frames still being written, `--each folder --no-inotify`: "
        f"CPU per look | ≤ {SCAN_TARGET_MS:g} ms | {ms(run.scan_ms_per_look)} ms (over {run.scan_looks} looks) | "
        + (
            "met (section 8c below)"
            if run.scan_ms_per_look <= SCAN_TARGET_MS
            else f"NOT met, by {ms(run.scan_ms_per_look - SCAN_TARGET_MS)} ms (why: section 8c below)"
        )
        + " |",
        f"{WATCH_ROW} first start with {run.first_files:,} files there, `--skip-existing`: until `watch status` "
        f"shows them all skipped; the watch's peak memory | none (report) | {run.first_after:.2f}–{run.first_by:.2f} s, "
        f"VmHWM {run.first_hwm_kb / 1024:.1f} MiB | — |",
        f"{WATCH_ROW} recording one submission with {run.recorded_files:,} files recorded | ≤ {RECORD_TARGET_MS:g} ms "
        f"| {spread(run.record.base)} ms | "
        + (
            "met"
            if record_ms <= RECORD_TARGET_MS
            else f"NOT met, by {ms(record_ms - RECORD_TARGET_MS)} ms; two fsync'ed appends alone took "
            f"{ms(run.floor.base_median)} ms here (why: section 8e below)"
        )
        + " |",
    ]


def watch_section(run: WatchRun) -> list[str]:
    """Section 8: latency and idle CPU, and #22's burst, scan folder, first start and journal."""
    inotify, polling = run.inotify, run.polling
    cpu_percent = 100 * run.idle_cpu_seconds / run.idle_seconds
    cpu_ms_per_look = 1000 * run.idle_cpu_seconds / run.idle_seconds
    poll_ms, settle_ms = 1000, 1000
    inotify_median, polling_median = statistics.median(inotify), statistics.median(polling)

    def verdict(median: float, target: float) -> str:
        return "met" if median <= target else f"NOT met, by {ms(median - target)} ms"

    ssh, record = run.ssh, run.record
    per_frame_us = 1000 * run.scan_ms_per_look / run.scan_frames
    # A submission is two changes (the intent, then the job id); before the journal each
    # change rewrote the whole state file.
    before_ratio = 2 * record.variant_median / record.base_median
    # A compaction rewrites the snapshot once the journal holds as many lines as it holds
    # files (state.rs): every files / 2 submissions at this size.
    amortized_us = 1000 * record.variant_median / (run.recorded_files // 2)
    return [
        WATCH_HEADING,
        "",
        f"Measured on {run.measured:%Y-%m-%d %H:%M} UTC from `{run.source}` ({run.machine}), {len(inotify)} files per "
        "variant, by `bench/run.sh ROUNDS watch` (or as part of the whole run). Two watches run at once as the "
        f"beamtime account, `--settle {settle_ms // 1000} --poll-interval {poll_ms // 1000}`, one with inotify, "
        "one with `--no-inotify` (as for files another host writes on GPFS); the script writes one 64 KiB file "
        "at a time, alternately into each folder, with a random pause of 0.1–1.1 s between files so that the "
        "writes fall anywhere in the looking watch's cycle. The watch's sbatch is a two-line wrapper first on "
        "PATH that notes the time it was started and then execs the real sbatch: the time measured ends where "
        "the watch hands the job to Slurm. *Complete* is the moment the writer closed the file with inotify, "
        "and that moment plus the settle time without it (when the file has been unchanged for the settle "
        "time). Times in ms, median (q1–q3).",
        "",
        "| what | target | measured | max | verdict |",
        "|---|---|---|---|---|",
        f"| file complete → sbatch started, inotify | ≤ 100 ms | {spread(inotify)} | {ms(max(inotify))} "
        f"| {verdict(inotify_median, 100)} |",
        f"| file complete → sbatch started, looking only | ≤ poll interval + 100 ms = {poll_ms + 100} ms "
        f"| {spread(polling)} | {ms(max(polling))} | {verdict(polling_median, poll_ms + 100)} |",
        f"| CPU while idle, {run.idle_files:,} files already submitted | ≈ 0 | {cpu_percent:.2f} % of one core "
        f"({cpu_ms_per_look:.1f} ms per look through the folder, one look a second) | — | — |",
        "",
        "Without inotify the watch first sees the file as it finally is at its next look, up to one poll "
        "interval after the last write, and counts the settle time from there, on its own clock (not from "
        "the file's mtime, which comes from the writing host's clock, docs/user.md), with one more look "
        "exactly when it is up: so it submits between 0 and one interval after the settle time is up. "
        "While idle the watch stats the folder and its "
        f"{run.idle_files // 100} subfolders once a second and lists only a folder whose mtime changed since its last "
        "listing (and each at least once a minute, bt-submit/src/commands/watch/tree.rs); a file already submitted "
        "costs no stat. Its peak resident memory with the "
        f"{run.idle_files:,} files in its state was {run.idle_hwm_kb / 1024:.1f} MiB (VmHWM).",
        "",
        "### 8b: a burst over ssh, one shared connection vs one per job (#22)",
        "",
        f"`bench/ssh-reuse.sh` (run by `bench/run.sh`): {run.ssh_files} `sbatch --hold` submissions in a row "
        "over ssh to this cluster's sshd, as the beamtime account, with the options `bt-submit --remote` passes; "
        "once with one shared connection (OpenSSH's ControlMaster in a private socket folder, what "
        "`watch --remote` does for a burst) and once with a new connection per submission, interleaved, "
        f"{len(ssh.base)} rounds. Held jobs never run, so the measurement is the submissions alone. Seconds per "
        "burst, median (q1–q3):",
        "",
        "| variant | burst | per submission |",
        "|---|---|---|",
        f"| one connection per job | {spread([v / 1000 for v in ssh.variant])} s "
        f"| {ms(ssh.variant_median / run.ssh_files)} ms |",
        f"| one shared connection | {spread([v / 1000 for v in ssh.base])} s "
        f"| {ms(ssh.base_median / run.ssh_files)} ms |",
        "",
        f"The shared connection is {ssh.ratio:.1f}× faster (95 % interval {ssh.low:.1f}–{ssh.high:.1f}; goal "
        f"≥ {SSH_TARGET_RATIO:g}×: {'met' if ssh.ratio >= SSH_TARGET_RATIO else 'NOT met'}). A new connection "
        "pays for the TCP and key exchange, the login (the key, PAM's account checks) and a new session process "
        f"on the node: {ms((ssh.variant_median - ssh.base_median) / run.ssh_files)} ms more per submission here; "
        "over the shared one each submission is a new session in the connection that is already open.",
        "",
        "### 8c: a scan folder still being written, polling only (#22)",
        "",
        f"One watch as the beamtime account, `--each folder --done-file scan.done --no-inotify --poll-interval 1 "
        f"--settle {run.scan_settle_seconds}`, on a folder holding one scan folder of {run.scan_frames:,} frames "
        "(4 KiB each, standing still) to which a writer adds one frame every 2 s, so that the scan is never done "
        f"while measured ({run.scan_frames_at_end:,} frames at the end). After {run.scan_settle_seconds + 5} s (the "
        "first looks stat every frame: new to the watch, then not yet seen unchanged for the settle time; and they "
        "read the folder into the cache), the watch's CPU time (utime + stime from /proc/PID/stat) over "
        f"{run.scan_looks} s, one look a second: **{ms(run.scan_ms_per_look)} ms per look** "
        f"(resolution {ms(run.scan_resolution_ms)} ms), {per_frame_us:.2f} µs per frame of the scan; goal ≤ {SCAN_TARGET_MS:g} ms: "
        + (
            "met."
            if run.scan_ms_per_look <= SCAN_TARGET_MS
            else f"NOT met, by {ms(run.scan_ms_per_look - SCAN_TARGET_MS)} ms."
        )
        + " A frame being written changes its size, not its folder's mtime, so the watch keeps what it saw of each "
        "frame (bt-submit/src/commands/watch/scan.rs): a look stats the scan's folders and only the frames that "
        f"are new or changed within the settle time, here the few the writer added in the last {run.scan_settle_seconds} s; "
        "a frame that stood still costs no stat. Each new frame changes the folder's mtime, so the folder is listed again (one readdir of "
        "its names, no stat per name) at nearly every look here. Right before a scan is submitted one whole pass "
        "stats every frame again, and any change it finds restarts the settle time: a late write to a frame that "
        "stood still is caught at the latest there.",
        "",
        "### 8d: a first start with files already there (#22)",
        "",
        f"{run.first_files:,} files ({run.first_files // 100} folders of 100) are there when a watch as the beamtime account starts "
        "with `--skip-existing --poll-interval 1`; `bt-submit watch status --state … --format json` runs as the "
        "beamtime account again and again (20 ms apart, from before the watch starts) until its totals show every "
        f"file skipped: after **{run.first_after:.2f}–{run.first_by:.2f} s** from starting the watch (from the start "
        "of the last status run that did not show them all to the end of the first that did; "
        f"{run.first_status_runs} status runs, each of which competes with the watch for the 2 cores). The "
        f"watch's peak resident memory (VmHWM), 3 s later: **{run.first_hwm_kb / 1024:.1f} MiB**.",
        "",
        "### 8e: recording one submission with many files recorded (#22)",
        "",
        f"`watch-state-record` (bench/src/bin/watch-state-record.rs, over bt-submit's state file) writes a state "
        f"of {run.recorded_files:,} submitted files ({run.snapshot_bytes / 1e6:.1f} MB), opens it as the watch "
        f"does, and records {len(record.base)} submissions as the watch records them (the intent, then the job id: "
        "two lines appended to the journal, each fsync'ed), as the beamtime account on this cluster's work folder. "
        "Beside it, the whole snapshot rendered, written and fsync'ed, what each change cost before the journal "
        "and about what a compaction costs now. Median (q1–q3) ms:",
        "",
        "| what | time |",
        "|---|---|",
        f"| one submission recorded (two journal lines, each fsync'ed) | {spread(record.base)} |",
        f"| the floor: two lines appended to a file of their own, each fsync'ed | {spread(run.floor.base)} |",
        f"| the whole snapshot written and fsync'ed ({len(record.variant)} times) | {spread(record.variant)} |",
        "",
        f"Recording one submission: {ms(record.base_median)} ms, goal ≤ {RECORD_TARGET_MS:g} ms: "
        + ("met" if record.base_median <= RECORD_TARGET_MS else f"NOT met, by {ms(record.base_median - RECORD_TARGET_MS)} ms")
        + f"; {run.floor.ratio:.2f}× the floor (95 % interval {run.floor.low:.2f}–{run.floor.high:.2f}): "
        + (
            f"it costs what the two fsyncs cost, the {run.recorded_files:,} files recorded add nothing this run "
            "can tell from noise"
            if run.floor.low <= 1.0 <= run.floor.high
            else f"{signed(run.floor.added)} ms beside the two fsyncs"
        )
        + (
            ""
            if run.floor.base_median <= RECORD_TARGET_MS
            else f", and two fsyncs alone took more than the goal here ({ms(run.floor.base_median)} ms, on a disk "
            "other work shared while measured)"
        )
        + f". Before the journal a submission rewrote the file twice, {before_ratio:.0f}× what it costs now. "
        "The snapshot is rewritten now only when the journal holds as many lines as the snapshot holds files "
        f"(bt-submit/src/commands/watch/state.rs): at this size once every {run.recorded_files // 2:,} submissions, "
        f"{amortized_us:.1f} µs per submission spread over them.",
        "",
    ]


def splice_watch(docs: Path, rows: list[str], section: list[str]) -> None:
    """Replaces section 8 of docs/benchmarks.md (or adds it before ## 9 or at the end) and
    section 8's rows of its summary table (or adds them before row 9 or at the table's end),
    leaving the rest."""
    path = docs / "benchmarks.md"
    lines = path.read_text().splitlines()
    if WATCH_HEADING in lines:
        start = lines.index(WATCH_HEADING)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = section
    else:
        # Before the first later section (## 9, …), or at the end.
        later = next(
            (i for i, line in enumerate(lines) if (m := re.match(r"## (\d+)", line)) and int(m.group(1)) > 8),
            None,
        )
        if later is None:
            while lines and not lines[-1]:
                lines.pop()
            lines += [""] + section
        else:
            lines[later:later] = section
    header = next(i for i, line in enumerate(lines) if line.startswith("| # | what |"))
    table_end = next((i for i in range(header, len(lines)) if not lines[i].startswith("|")), len(lines))
    table = [line for line in lines[header:table_end] if not line.startswith(WATCH_ROW)]
    at = next((i for i, line in enumerate(table) if line.startswith("| 9 |")), len(table))
    table[at:at] = rows
    lines[header:table_end] = table
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def tasks_svg(runs: dict, path: Path) -> None:
    """Milliseconds a --beamtime step adds (median) against its task count, one line per table size."""
    width, height, left, right, top, bottom = 760, 400, 70, 150, 50, 60
    counts = sorted({tasks for _, tasks in runs})
    added = {key: pair.added for key, (pair, *_) in runs.items()}
    highest = max(max(added.values()), 0.1) * 1.2
    lowest = min(min(added.values()), 0.0)
    x_of = lambda t: left + counts.index(t) / max(len(counts) - 1, 1) * (width - left - right)  # noqa: E731
    y_of = lambda v: height - bottom - (v - lowest) / (highest - lowest) * (height - top - bottom)  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="18" font-size="14">Time a --beamtime step adds, ms (median), against its tasks on one node</text>',
    ]
    colours = ["#024", "#a60", "#a33", "#363"]
    for i, n in enumerate(sorted({n for n, _ in runs})):
        points = [(x_of(t), y_of(added[n, t])) for t in counts if (n, t) in added]
        colour = colours[i % len(colours)]
        parts.append(
            f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for x, y in points:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>')
        x, y = points[-1]
        parts.append(f'<text x="{x + 10:.1f}" y="{y + 4:.1f}" fill="{colour}">{n:,} extra mounts</text>')
    axis_y = y_of(0.0)
    parts.append(f'<line x1="{left}" y1="{axis_y:.1f}" x2="{width - right}" y2="{axis_y:.1f}" stroke="#000"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#000"/>')
    for t in counts:
        parts.append(f'<text x="{x_of(t):.1f}" y="{height - bottom + 18}" text-anchor="middle">{t}</text>')
    tick, step = 0.0, nice_step(highest, 6)
    while tick <= highest:
        parts.append(f'<text x="{left - 8}" y="{y_of(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
        tick += step
    parts.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 20}" text-anchor="middle">tasks in the step (srun -nN)</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


# ---------------------------------------------------------------- the document


def main() -> None:
    if sys.argv[1] == "--watch":
        run = WatchRun(Path(sys.argv[2]))
        splice_watch(Path(sys.argv[3]), watch_rows(run), watch_section(run))
        return
    folder, criterion_dir, docs = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    rounds = int((folder / "rounds").read_text())
    # When the run started (run.sh writes the rounds first): re-rendering keeps the date.
    measured = datetime.fromtimestamp((folder / "rounds").stat().st_mtime, timezone.utc)
    source = (folder / "source").read_text().strip()
    machine = (folder / "machine").read_text().strip()

    plugin_mib = int((folder / "plugin-size").read_text()) / 2**20
    delays = quartiles(scheduling_delays(folder / "slurmctld-batch.log"))
    job = Pair(folder, "job-no-plugin", "job-plugin-unused")
    batch_wait = Pair(folder, "batch-no-plugin-wait", "batch-plugin-unused-wait")
    batch_submitted = Pair(folder, "batch-no-plugin-submitted", "batch-plugin-unused-submitted")
    batch_started = Pair(folder, "batch-no-plugin-started", "batch-plugin-unused-started")
    step = Pair(folder, "step-plain", "step-beamtime")
    submit = Pair(folder, "submit-sbatch", "submit-bt-submit")
    remote = Pair(folder, "remote-mento", "remote-bt-submit")
    remote_target = 0.05
    process_start = statistics.median(load(folder, "remote-process-start"))
    dlopen = load(folder, "dlopen")
    dlopen_median = statistics.median(dlopen)

    estimates = criterion_estimates(criterion_dir, (folder / "criterion-start").stat().st_mtime)
    config_parse = estimates.get("metadata/plugin_config_parse", (0.0, 0.0, 0.0))[0] / 1000

    # Controller queries: per job shape, JOB_INFO_SINGLE + FED_INFO.
    queries = {}
    for kind in ("plain", "beamtime"):
        for steps in (1, 10):
            info, fed = columns(folder, f"queries-{kind}-{steps}")
            queries[kind, steps] = [a + b for a, b in zip(info, fed)], info, fed

    def added_queries(steps: int) -> int:
        return statistics.median(queries["beamtime", steps][0]) - statistics.median(queries["plain", steps][0])

    # Mount table.
    sizes = dict(tuple(map(int, line.split())) for line in (folder / "mount-table-sizes").read_text().splitlines())
    mount_points = [
        (n, load(folder, f"mounts-{n}-setup"), load(folder, f"mounts-{n}-unshare")) for n in sorted(sizes)
    ]
    largest, largest_setup, largest_copy = mount_points[-1]
    setup_at_largest = statistics.median(largest_setup)
    copy_at_largest = statistics.median(largest_copy)
    setup_slope = slope([(n, statistics.median(setup)) for n, setup, _ in mount_points]) * 1000
    copy_slope = slope([(n, statistics.median(copy)) for n, _, copy in mount_points]) * 1000
    mount_target = 5.0
    # Steps of several tasks (#16): task 0 sets the namespace up, the others join it.
    task_runs = {}
    for n in sorted(sizes):
        for tasks in (1, 8, 32):
            name = f"mounts-{n}-tasks-{tasks}"
            if (folder / f"{name}-step-plain").exists():
                task_runs[n, tasks] = (
                    Pair(folder, f"{name}-step-plain", f"{name}-step-beamtime"),
                    load(folder, f"{name}-set-up"),
                    load(folder, f"{name}-joined"),
                    load(folder, f"{name}-waited"),
                )
    join_target, many_tasks_target = 0.3, 1.05
    empty_setup = statistics.median(mount_points[0][1])
    metadata_read = estimates.get("load_trusted_metadata/patterns/2", (0.0, 0.0, 0.0))[0] / 1000
    known_step_work = empty_setup + 2 * metadata_read

    # Memory, kB → MiB.
    memory = {name: columns(folder, f"memory-{name}") for name in ("no-plugin", "plugin-unused", "beamtime")}
    hwm = {name: statistics.median(values[0]) for name, values in memory.items()}
    # Runs from before #16 printed VmHWM and VmRSS only.
    split = all(len(values) >= 4 for values in memory.values())
    anon = {name: statistics.median(values[2]) for name, values in memory.items()} if split else {}
    file_pages = {name: statistics.median(values[3]) for name, values in memory.items()} if split else {}
    unused_added = (hwm["plugin-unused"] - hwm["no-plugin"]) / 1024
    unused_target, unused_ratio_target = 0.3, 1.005

    lines = [
        "# Benchmarks",
        "",
        f"Measured by `bench/run.sh {rounds}` on {measured:%Y-%m-%d %H:%M} UTC from `{source}`"
        f"{' (a working tree with uncommitted changes)' if source.endswith('-dirty') else ''} "
        f"({machine}; the local test cluster of tests/cluster, on a machine other work may share: interleaving "
        "lets both variants of a comparison share its load). Each comparison ran interleaved, A B A B …, "
        f"{rounds} rounds; times are medians with quartiles (q1–q3) in ms; ratios are of medians, with a 95 % "
        "bootstrap interval. Regenerate everything here with `bench/run.sh [ROUNDS]` (as root; it brings the "
        "test cluster up and down).",
        "",
        "## The issue's targets",
        "",
        "| # | what | target | measured | verdict |",
        "|---|---|---|---|---|",
        f"| 1 | new one-task job, `srun -n1 true`: plugin loaded but unused vs no plugin | ratio ≤ 1.01 "
        f"| {job.interval()}, {signed(job.added)} ms | {ratio_verdict(job, 1.01)}"
        + ("" if job.ratio <= 1.01 else " (why: **Item 1, `srun`** below)")
        + " |",
        f"| 1 | new one-task job, `sbatch --wait`: plugin loaded but unused vs no plugin | ratio ≤ 1.01 "
        f"| {batch_wait.interval()} | {ratio_verdict(batch_wait, 1.01)} (see below: this measure cannot resolve the plugin) |",
        f"| 2 | step in an allocation: `srun --beamtime` vs plain `srun` | ratio ≤ 1.05, ≤ 1.5 ms added "
        f"| {step.interval()}, {signed(step.added)} ms | {ratio_verdict(step, 1.05)}; {added_verdict(step, 1.5)}"
        + ("" if step.ratio <= 1.05 and step.added <= 1.5 else " (why: **Item 2** below)")
        + " |",
    ]
    later = added_queries(10) - added_queries(1)
    lines.append(
        f"| 3 | second and later steps of a beamtime job | no repeated controller query | queries added per job: "
        f"{added_queries(1):g} with 1 step, {added_queries(10):g} with 10 | "
        + ("met: the 9 later steps asked nothing" if later == 0 else f"NOT met: the 9 later steps asked {later:g} more times")
        + " |"
    )
    lines.append(
        f"| 4 | mount setup with {largest:,} extra mounts on the node | ≤ {mount_target:g} ms "
        f"| median {spread(largest_setup)} ms, per step and node | "
        + (
            "met"
            if setup_at_largest <= mount_target
            else f"NOT met, by {ms(setup_at_largest - mount_target)} ms (why: section 4 below)"
        )
        + " |"
    )
    if task_runs:
        most = max(n for n, _ in task_runs)
        joins = task_runs[most, 32][2]
        join = statistics.median(joins)
        lines.append(
            f"| 4 | second and later tasks of a step, {most:,} extra mounts | ≤ {join_target:g} ms each (a join, "
            f"no copy) | median {spread(joins)} ms per task, 32-task steps | "
            + ("met" if join <= join_target else f"NOT met, by {ms(join - join_target)} ms (why: section 4b below)")
            + " |"
        )
        wide = task_runs[1000, 32][0]
        lines.append(
            f"| 4 | a 32-task step, 1,000 extra mounts: `srun -n32 --beamtime` vs plain | ratio ≤ "
            f"{many_tasks_target:g} | {wide.interval()}, {signed(wide.added)} ms | "
            + ratio_verdict(wide, many_tasks_target)
            + " |"
        )
    realistic = estimates.get("load_trusted_metadata/beamtimes/10")
    by_beamtimes = series(estimates, "load_trusted_metadata/beamtimes/")
    by_patterns = series(estimates, "load_trusted_metadata/patterns/")
    lines.append(
        "| 5 | metadata discovery + parse + trust checks | none (report) | "
        + (
            f"{realistic[0]:.0f} µs with 10 beamtimes on the node and 1 pattern; about "
            f"{slope([(n, v[0]) for n, v in by_beamtimes]):.2f} µs more per beamtime, "
            f"{slope([(n, v[0]) for n, v in by_patterns]):.1f} µs per pattern | —"
            if realistic and len(by_beamtimes) > 1 and len(by_patterns) > 1
            else "not measured | —"
        )
        + " |"
    )
    lines.append(
        f"| 6 | `bt-submit` vs `sbatch` directly | ≤ 5 ms added | {signed(submit.added)} ms "
        f"(ratio {submit.interval()}) | {added_verdict(submit, 5.0)}"
        + ("" if submit.added <= 5.0 else " (why: **Item 6** below)")
        + " |"
    )
    lines.append(
        f"| 1 | unused means free (#16): `srun -n1 true`, plugin loaded but unused vs no plugin | ratio ≤ "
        f"{unused_ratio_target:g} (before: {BEFORE_16['unused_ratio']}) | {job.interval()} | "
        + ratio_verdict(job, unused_ratio_target)
        + " |"
    )
    lines.append(
        f"| 7 | unused means free (#16): slurmstepd VmHWM, plugin loaded but unused | ≤ +{unused_target:g} MiB "
        f"(before: +{BEFORE_16['unused_hwm_mib']}) | {unused_added:+.2f} MiB | "
        + (
            "met"
            if unused_added <= unused_target
            else f"NOT met, by {unused_added - unused_target:.2f} MiB (why: section 7 below)"
        )
        + " |"
    )
    lines.append(
        f"| 7 | slurmstepd peak memory (VmHWM) | none (report) | no plugin {hwm['no-plugin'] / 1024:.1f} MiB, "
        f"loaded {hwm['plugin-unused'] / 1024:.1f} MiB ({(hwm['plugin-unused'] - hwm['no-plugin']) / 1024:+.2f}), "
        f"`--beamtime` {hwm['beamtime'] / 1024:.1f} MiB ({(hwm['beamtime'] - hwm['no-plugin']) / 1024:+.2f}) | — |"
    )
    watch = WatchRun(folder)
    lines += watch_rows(watch)
    lines.append(
        f"| 9 | from the beamline computer: `bt-submit --remote --dry-run` vs MENTO 0.2.1 building its ssh+sbatch "
        f"command | ratio ≤ {remote_target:g} | {remote.interval()} ({ms(remote.variant_median)} vs "
        f"{ms(remote.base_median)} ms) | "
        + (
            ("met" if remote.high <= remote_target else f"met (median ratio); its 95 % interval reaches {remote.high:.3f}")
            if remote.ratio <= remote_target
            else f"NOT met: ratio {remote.ratio:.3f}; starting any process here is already "
            f"{process_start / remote.base_median:.3f} of MENTO's time (why: section 9 below)"
        )
        + " |"
    )

    # ---- 1, 2, 6: launch latency
    lines += [
        "",
        "## 1, 2, 6: launch latency",
        "",
        "| comparison | baseline | with spank-beamtime | ratio (95 % interval) | added |",
        "|---|---|---|---|---|",
    ]
    for title, pair in [
        ("new job, `srun -n1 true` (no plugin → loaded, unused)", job),
        ("new job, `sbatch --wait` until it reports the end", batch_wait),
        ("  the same jobs: `sbatch` until it printed the job id", batch_submitted),
        ("  the same jobs: submission until the batch script ran", batch_started),
        ("step in an allocation (plain `srun` → `srun --beamtime`)", step),
        ("submitting (`sbatch` → `bt-submit`)", submit),
    ]:
        lines.append(
            f"| {title} | {spread(pair.base)} | {spread(pair.variant)} | {pair.interval()} | {signed(pair.added)} ms |"
        )

    allowed = 0.01 * job.base_median
    load_cost = 2 * dlopen_median + 2 * config_parse
    lines += [
        "",
        f"**Item 1, `srun`.** A job that does not use the plugin pays for loading it twice, in srun and in the "
        f"step's slurmstepd: `dlopen` (measured alone in a fresh process, libslurm loaded: median {ms(dlopen_median)} ms, "
        f"q1–q3 {ms(quartiles(dlopen)[0])}–{ms(quartiles(dlopen)[2])}; the library is {plugin_mib:.1f} MiB) and `init`, "
        f"which parses the plugin's arguments ({config_parse * 1000:.1f} µs, item 5) and registers `--beamtime`. No file, "
        f"controller or mount work happens for such jobs. Expected: 2 × load + 2 × parse ≈ {ms(load_cost)} ms. The "
        f"target allows {ms(allowed)} ms on this {ms(job.base_median)} ms job; measured: {signed(job.added)} ms. ",
    ]
    if load_cost > allowed:
        lines[-1] += (
            "Loading alone is expected to cost more than the target allows: Slurm loads every plugstack plugin "
            "into srun and slurmstepd for every job, used or not, and only a library that loads faster (fewer "
            "pages to map, fewer relocations to bind) would bring that down."
        )
        if job.ratio <= 1.01:
            lines[-1] += " This run's medians came out within the target all the same, inside its noise."
    elif job.ratio <= 1.01:
        lines[-1] += "Loading is expected to stay within the target, and the medians did."
    else:
        lines[-1] += (
            f"Loading explains {ms(load_cost)} ms of that; the remaining {ms(job.added - load_cost)} ms are not "
            "accounted for by anything the plugin does for such a job."
        )
    lines[-1] += job.noise_note()

    early = lambda values: sum(v < 5000 for v in values)  # noqa: E731
    lines += [
        "",
        f"**Item 1, `sbatch --wait`.** sbatch looks at its job first 2 s after submitting it, then 8 s later "
        "(Slurm's sbatch.c), so every run takes about 2 s or about 10 s: "
        f"{early(batch_wait.base)} of {rounds} jobs without the plugin and {early(batch_wait.variant)} of {rounds} "
        "with it were seen finished at the first look. Which one it is depends on when slurmctld's scheduler "
        f"starts the job: submission to script start took {spread(batch_started.base)} ms without the plugin, "
        f"a spread of seconds: slurmctld started these jobs at its next scheduling pass, {ms(delays[1] / 1000)} s "
        f"(q1–q3 {ms(delays[0] / 1000)}–{ms(delays[2] / 1000)} s) after accepting them (`_slurm_rpc_submit_batch_job` "
        "to `sched: Allocate` in its log), not on submission. A sub-millisecond cost "
        f"cannot show through that, and the ratio of {batch_wait.ratio:.3f} measures the scheduler. What the "
        "plugin can add in a batch job is the same as for srun: loading it into sbatch "
        f"(`sbatch` until it printed the job id: {signed(batch_submitted.added)} ms, ratio {batch_submitted.interval()}) "
        "and into the batch step's slurmstepd." + batch_submitted.noise_note(),
    ]

    lines += [
        "",
        f"**Item 2.** Median difference of a `--beamtime` step: {signed(step.added)} ms. Its extra work: "
        "srun and slurmstepd each find, check and parse the metadata (item 5: about "
        f"{metadata_read * 1000:.0f} µs each with this cluster's two patterns), slurmstepd asks the controller about "
        f"the job once per job and node (item 3: here only the first of the {rounds} steps asked), and the task "
        f"builds its mount namespace (item 4: {ms(empty_setup)} ms without extra mounts)."
        + (
            ""
            if step.ratio <= 1.05 and step.added <= 1.5
            else f" Those measured parts come to about {ms(known_step_work)} ms; the other "
            f"{ms(step.added - known_step_work)} ms of the difference are not broken down here."
        )
        + step.noise_note(),
        "",
        f"**Item 6.** Median difference of `bt-submit` over `sbatch`: {signed(submit.added)} ms. It reads the "
        "metadata, builds the arguments and runs sbatch, which then does what the direct call does."
        + submit.noise_note(),
        "",
        "![launch latency](benchmarks.svg)",
    ]

    # ---- 3
    lines += [
        "",
        "## 3: controller queries per job",
        "",
        f"`sdiag --reset` before and `sdiag` after each `salloc -n1` job (as the beamtime's account, in its "
        f"reservation) that runs 1 or 10 steps `srun -n1 true`, plain or with `--beamtime`; {len(queries['plain', 1][0])} "
        "jobs of each shape, nothing else using this cluster's controller. Counted: `REQUEST_JOB_INFO_SINGLE` "
        "and `REQUEST_FED_INFO`, what `slurm_load_job()` sends. Median per job (min–max when the jobs differed):",
        "",
        "| job | plain: JOB_INFO_SINGLE + FED_INFO | `--beamtime`: JOB_INFO_SINGLE + FED_INFO | added by the plugin |",
        "|---|---|---|---|",
    ]

    def count(values: list[int]) -> str:
        median = statistics.median(values)
        return f"{median:g}" if min(values) == max(values) else f"{median:g} ({min(values)}–{max(values)})"

    for steps in (1, 10):
        plain_total, plain_info, plain_fed = queries["plain", steps]
        bt_total, bt_info, bt_fed = queries["beamtime", steps]
        lines.append(
            f"| salloc, {steps} step{'s' if steps > 1 else ''} | {count(plain_info)} + {count(plain_fed)} "
            f"| {count(bt_info)} + {count(bt_fed)} | {added_queries(steps):g} |"
        )
    lines += [
        "",
        f"Later steps of the same job on the same node asked the controller {later:g} more times than a job with "
        "one step."
        + (
            " The plugin keeps the controller's answer per job and node (its job cache, `state_dir=`), so "
            "only the first beamtime step on a node asks (one node here)."
            if later == 0
            else ""
        ),
    ]

    # ---- 4
    lines += [
        "",
        "## 4: mount setup against the node's mount table",
        "",
        "slurmd runs in a mount namespace of its own (`cluster.sh up --private-mounts`), where the benchmark adds "
        "small tmpfs mounts; slurmstepd and the tasks inherit it, the host's own table stays as it was. The plugin "
        "logs, per task at `SlurmdDebug=verbose`, how long its mount namespace took (`mount namespace set up in N us`, "
        "from unshare to the last mount). \"Namespace copy alone\" is the plugin's first two calls, `unshare(CLONE_NEWNS)` "
        "and making every mount a slave, timed in a fresh process in the same namespace. Steps are one-task "
        f"`srun -n1 true` in an allocation, plain and `--beamtime` interleaved, {rounds} each.",
        "",
        "| extra mounts | mounts in the namespace | plugin setup, ms | max | namespace copy alone, ms | step plain | step `--beamtime` | added per step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, setup, copy in mount_points:
        steps = Pair(folder, f"mounts-{n}-step-plain", f"mounts-{n}-step-beamtime")
        lines.append(
            f"| {n:,} | {sizes[n]:,} | {spread(setup)} | {ms(max(setup))} | {spread(copy)} "
            f"| {ms(steps.base_median)} | {ms(steps.variant_median)} | {signed(steps.added)} ms |"
        )
    lines += [
        "",
        f"Setup grows by about {ms(setup_slope)} ms per 1 000 mounts, the namespace copy alone by about "
        f"{ms(copy_slope)} ms. At {largest:,} extra mounts the median setup is {ms(setup_at_largest)} ms "
        + (
            f"(target ≤ {mount_target:g} ms: met). "
            if setup_at_largest <= mount_target
            else f"(target ≤ {mount_target:g} ms: not met, by {ms(setup_at_largest - mount_target)} ms). "
        )
        + f"The namespace copy alone takes {ms(copy_at_largest)} ms there, "
        f"{100 * copy_at_largest / setup_at_largest:.0f} % of the setup: for each step and node the kernel copies "
        "every mount of the node into the step's new namespace and the plugin makes them all slaves, both in "
        "proportion to the table. Setup minus copy, the plugin's path walks, checks, tmpfs and bind mounts: "
        f"{signed(empty_setup - statistics.median(mount_points[0][2]))} ms with no extra mounts, "
        f"{signed(setup_at_largest - copy_at_largest)} ms at {largest:,} (medians of separate measurements); "
        "where that grows, those mount calls get slower with the table too, which this benchmark does not break "
        "down further. The cost is per step and node, paid by the node's task 0 (section 4b); it is the "
        "price of a private namespace per step, which is what keeps each job's view of the beamline apart "
        "(docs/plugin.md). The step columns include what the namespace costs besides its setup, such as its "
        "teardown when the task exits, which the logged time does not.",
        "",
        "![mount setup against mounts](benchmarks-mounts.svg)",
    ]

    # ---- 4b
    if task_runs:
        lines += [
            "",
            "## 4b: steps of several tasks",
            "",
            "The namespace is built once per step and node: the node's task 0 copies the mount table and mounts, "
            "and hands the namespace to the step's other tasks there, which join it (`setns`, docs/plugin.md). "
            "Steps are `srun -nN true` in an allocation of N cores in the beamtime's reservation, plain and "
            f"`--beamtime` interleaved, {rounds} each; task 0 logs `mount namespace set up in`, every other task "
            "`mount namespace joined in` (from its wait for task 0 to its join).",
            "",
            "| extra mounts | tasks | step plain, ms | step `--beamtime`, ms | ratio | task 0 setup, ms | join per other task, ms | its wait for task 0, ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for (n, tasks), (pair, setup, joins, waits) in sorted(task_runs.items()):
            lines.append(
                f"| {n:,} | {tasks} | {spread(pair.base)} | {spread(pair.variant)} | {pair.interval()} "
                f"| {spread(setup)} | {spread(joins) if joins else '–'} | {spread(waits) if waits else '–'} |"
            )
        lines += [
            "",
            "A task that joins first waits for task 0's namespace (the last column: task 0's setup, where the task "
            "started first), then joins it (the join column: `setns` and back to its working folder). The wait "
            "is the step's one copy of the table, paid once however many tasks the step has.",
            "",
            "**Before and after (#16).** Before, every task built a namespace of its own: "
            f"{BEFORE_16['setup_per_task_5000_ms']} ms per task at 5,000 extra mounts "
            f"(one-task steps {BEFORE_16['step_5000_plain_ms']} ms plain, {BEFORE_16['step_5000_beamtime_ms']} ms "
            "`--beamtime`; bench/run.sh 40 on 2026-11-26, 8ce8fb1), so a 32-task step paid that copy 32 times. "
            + (
                f"Now the later tasks of a 32-task step pay {ms(statistics.median(task_runs[max(n for n, _ in task_runs), 32][2]))} ms "
                "each at that table size (the join), task 0 the one copy. The figures before come from another machine "
                "of the same kind (Linux 6.18.44-fc-v769), whose kernel copied the table about twice as fast (the "
                "namespace copy alone there: 3.52 ms at 5,000 mounts; here: section 4); within this run, a 32-task "
                "step at 5,000 mounts costs what the plain one does, where the per-task design paid the copy in "
                "every task. That nothing is left mounted or pinned after 500 jobs is checked by the load scenario "
                "in every run of the tests, not here (docs/reliability.md, \"Load\": mounts, namespaces in use, "
                "namespaces pinned)."
                if (max(n for n, _ in task_runs), 32) in task_runs and task_runs[max(n for n, _ in task_runs), 32][2]
                else ""
            ),
            "",
            "Why one per step and node, not one per task or per job: the copy of the table is the kernel's "
            "(`unshare(CLONE_NEWNS)` copies every mount, whatever the plugin does after it), so no namespace of a "
            "task's own can cost less than that copy on a large table; a join copies nothing. Not one per job, "
            "not even where job_container/tmpfs already gives the job a namespace of its own: a job's steps may "
            "start in different phases of the beamtime (a step started before the beamtime did keeps its empty "
            "view, a later one gets the beamline, section 5 of user.md), and a mount made in the job's namespace "
            "would change the view of steps already running. The step is the smallest unit whose view never "
            "changes, and the largest that can share one copy. With job_container/tmpfs, task 0 copies the job's "
            "namespace (its `/tmp` stays), the cost is the same copy of the same table.",
            "",
            "![step time added against tasks](benchmarks-tasks.svg)",
        ]

    # ---- 5
    lines += [
        "",
        "## 5: metadata discovery, parsing and trust checks (criterion)",
        "",
        "`cargo bench -p beamtime-bench` (bench/benches/metadata.rs) on the beamtime library's public API, with "
        "the realistic fixture `beamtime/tests/fixtures/beamtime-metadata-11099001.json` (1.8 kB). A made-up node "
        "in a scratch folder holds `beamline/<bl>/current/beamtime-metadata-<id>.json`, one current beamtime per "
        "beamline; patterns that do not match walk ten beamline folders each. Local file system, warm caches: "
        "CPU and system calls, not a cold network file system. Median per call in µs, with criterion's 95 % "
        "interval.",
        "",
        "| benchmark | µs | 95 % interval |",
        "|---|---|---|",
    ]
    labels = {
        "metadata/plugin_config_parse": "`PluginConfig::parse` of a site's plugstack arguments (every job, every context)",
        "metadata/parse": "`parse_metadata` of the file's bytes",
        "metadata/read_trusted": "`read_trusted`: open without following links, fstat checks, read",
    }
    for key, label in labels.items():
        if key in estimates:
            median, low, high = estimates[key]
            lines.append(f"| {label} | {median:.2f} | {low:.2f}–{high:.2f} |")
    for prefix, what in [
        ("load_trusted_metadata/beamtimes/", "`load_trusted_metadata`, 1 pattern, {n} beamtime(s) on the node"),
        ("load_trusted_metadata/patterns/", "`load_trusted_metadata`, 10 beamtimes, {n} pattern(s), the last matching"),
    ]:
        for n, (median, low, high) in series(estimates, prefix):
            lines.append(f"| {what.format(n=n)} | {median:.2f} | {low:.2f}–{high:.2f} |")
    if len(by_beamtimes) > 1 and len(by_patterns) > 1:
        lines += [
            "",
            f"Least-squares slopes: about {slope([(n, v[0]) for n, v in by_beamtimes]):.2f} µs per beamtime on the node "
            "(the pattern's `*` lists every beamline folder and checks each for the file) and about "
            f"{slope([(n, v[0]) for n, v in by_patterns]):.2f} µs per pattern that does not match (a directory listing "
            f"and ten lookups each). The largest case measured, {by_beamtimes[-1][0]} beamtimes, takes "
            f"{by_beamtimes[-1][1][0]:.0f} µs per read on a warm local file system (slurmstepd reads once per "
            "beamtime step and node, srun, sbatch and salloc once more when given `--beamtime`); on a network file "
            "system each of those lookups may cost more.",
        ]

    # ---- 7
    lines += [
        "",
        "## 7: slurmstepd memory",
        "",
        "A one-task step (`srun -n1`, a new job in the beamtime's reservation) reads `VmHWM` and `VmRSS` of its "
        "parent, the step's slurmstepd, while it runs: the peak covers the plugin's loading, `init` and, with "
        "`--beamtime`, the metadata read and the controller query; the mount setup runs in the task's forked "
        f"child and is not included. Interleaved, {rounds} rounds; median MiB (q1–q3).",
        "",
        "| slurmstepd | VmHWM | VmRSS | of it RssAnon | of it RssFile | VmHWM added |",
        "|---|---|---|---|---|---|",
    ]
    for name, title in [("no-plugin", "no plugin"), ("plugin-unused", "plugin loaded, unused"), ("beamtime", "`--beamtime`")]:
        peak, resident, *parts = ([v / 1024 for v in column] for column in memory[name])
        own, mapped = (spread(parts[0]), spread(parts[1])) if split else ("–", "–")
        lines.append(
            f"| {title} | {spread(peak)} | {spread(resident)} | {own} | {mapped} | {(hwm[name] - hwm['no-plugin']) / 1024:+.2f} |"
        )
    if split:
        file_added = (file_pages["plugin-unused"] - file_pages["no-plugin"]) / 1024
        anon_added = (anon["plugin-unused"] - anon["no-plugin"]) / 1024
        lines += [
            "",
            f"**Unused means free (#16).** Loaded but unused, the plugin adds {unused_added:+.2f} MiB to slurmstepd's "
            f"peak (target ≤ +{unused_target:g} MiB: "
            + ("met" if unused_added <= unused_target else f"not met, by {unused_added - unused_target:.2f} MiB")
            + f"). Of the resident set while the task runs, {file_added:+.2f} MiB are pages of mapped files and "
            f"{anon_added:+.2f} MiB the process's own (RssAnon). The file pages are the plugin library's code and "
            "read-only data that `dlopen` (relocations) and `init` touch, read in by the kernel in 64 KiB blocks "
            "around each page fault (fault-around): they are counted in the VmHWM of every process that maps the "
            "library, but they are the page cache's, in memory once for every slurmstepd, srun and sbatch on the "
            "node. "
            + BEFORE_16["unused_tried"],
        ]
    lines += [
        "",
        f"VmHWM is the most resident memory the process has had, so the pages of the plugin library that loading and "
        f"`init` touch count once it is loaded (the library file is {plugin_mib:.1f} MiB, the Rust standard library "
        "linked in); a beamtime step adds the metadata read, the controller's reply and the allocations around them.",
        "",
    ]

    lines += watch_section(watch)
    # ---- 9
    mento_command = (folder / "remote-mento-command").read_text().strip()
    bt_command = (folder / "remote-bt-submit-command").read_text().strip()
    floor_share = process_start / remote.variant_median if remote.variant_median else 0.0
    lines += [
        "## 9: from the beamline computer: `bt-submit --remote --dry-run` vs MENTO 0.2.1",
        "",
        "What each takes to turn the beamtime metadata into the ssh command that submits a script on a reserved "
        "node, as a new process on the beamline computer, for the same metadata file (the fixture "
        "`beamtime-metadata-11099005.json`: two reservations, four nodes, in `<root>/current/` with its key): "
        "MENTO 0.2.1 from PyPI (in a venv) locating and parsing it and calling `get_ssh_command` and "
        "`get_sbatch_command`, as `Trigger.run` does before it starts ssh; `bt-submit --remote --dry-run`, which "
        "finds the file from the folder it runs in, parses and checks it strictly, plans the sbatch options and "
        f"quotes the remote command. Interleaved with a `/bin/true` as the floor, {rounds} rounds; median ms (q1–q3).",
        "",
        "| command | time |",
        "|---|---|",
        f"| MENTO 0.2.1 (python3, `import mento`, metadata, both commands) | {spread(remote.base)} |",
        f"| `bt-submit --remote --dry-run` | {spread(remote.variant)} |",
        f"| `/bin/true` (starting any process here) | {spread(load(folder, 'remote-process-start'))} |",
        "",
        f"Ratio bt-submit / MENTO: {remote.interval()}. Starting a process alone takes {ms(process_start)} ms here, "
        f"{floor_share:.0%} of bt-submit's median: what bt-submit itself does is a small part of its time, while "
        "MENTO's is mostly the Python interpreter's start and its imports. "
        + (
            ""
            if remote.ratio <= remote_target
            else f"The target ratio of {remote_target:g} cannot be reached on this machine by any program started "
            f"as a process: the start alone is {process_start / remote.base_median:.3f} of MENTO's median. Above "
            f"that floor, bt-submit takes {ms(remote.variant_median - process_start)} ms and MENTO "
            f"{ms(remote.base_median - process_start)} ms, a ratio of "
            f"{(remote.variant_median - process_start) / (remote.base_median - process_start):.3f}. (The earlier "
            "run that met the target measured both on a machine under load, where Python's start grew far more "
            "than bt-submit's.)"
        ),
        "",
        "The two commands, for the record (the key's folder is this run's):",
        "",
        "```",
        mento_command,
        bt_command,
        "```",
        "",
        "MENTO's turns host-key checking off, pastes the remote command into double quotes (its arguments are split "
        "again on the node, their `;` or `$(…)` run there) and passes the list of reservations as one Python list "
        "literal; bt-submit's checks host keys, quotes every argument exactly and adds `--beamtime` "
        "([user.md](user.md), \"From the beamline computer\").",
        "",
    ]

    (docs / "benchmarks.md").write_text("\n".join(lines))
    launch_svg(
        [
            ("srun -n1: no plugin", job.base),
            ("srun -n1: plugin unused", job.variant),
            ("sbatch (to job id): no plugin", batch_submitted.base),
            ("sbatch (to job id): unused", batch_submitted.variant),
            ("step: plain", step.base),
            ("step: --beamtime", step.variant),
            ("submit: sbatch", submit.base),
            ("submit: bt-submit", submit.variant),
        ],
        docs / "benchmarks.svg",
    )
    mounts_svg(mount_points, mount_target, docs / "benchmarks-mounts.svg")
    if task_runs:
        tasks_svg(task_runs, docs / "benchmarks-tasks.svg")


if __name__ == "__main__":
    main()
