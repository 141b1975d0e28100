#!/usr/bin/env python3
"""Makes docs/plugin.md's per-release table of SPANK callback failures from the
measurements in docs/spank-failures/ (written by tests/scenarios/tests/spank_failures.rs,
run on every release by scripts/spank-failures.sh), and writes it between the two marker
lines in docs/plugin.md. Nothing in the table is typed by hand.

    scripts/spank-failures-table.py          rewrite docs/plugin.md
    scripts/spank-failures-table.py --check  exit 1 if docs/plugin.md is not up to date
"""

import csv
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEASUREMENTS = REPO / "docs" / "spank-failures"
DOC = REPO / "docs" / "plugin.md"
BEGIN = "<!-- spank-failures table: made by scripts/spank-failures-table.py from docs/spank-failures/ -->"
END = "<!-- end of the spank-failures table -->"
JOB_CONTAINER = "-job-container"


def read(path):
    """The measured rows of one file, keyed by (mode, callback, context, rc, step), and the
    version line."""
    with path.open() as f:
        version = f.readline().lstrip("# ").split(",")[0].strip()
        rows = {}
        for row in csv.DictReader(f, delimiter="\t"):
            key = (row["failure_mode"], row["callback"], row["context"], int(row["rc"]), row["step"])
            rows[key] = row
    return version, rows


def measurements():
    """{release: (version, plain rows, job-container rows or None)}, oldest release first."""
    found = {}
    for path in MEASUREMENTS.glob("slurm-*.tsv"):
        name = path.stem[len("slurm-"):]
        if name.endswith(JOB_CONTAINER):
            continue
        version, plain = read(path)
        container = path.with_name(f"slurm-{name}{JOB_CONTAINER}.tsv")
        found[name] = (version, plain, read(container)[1] if container.exists() else None)
    if not found:
        sys.exit(f"no measurements in {MEASUREMENTS}: run scripts/spank-failures.sh")
    return dict(sorted(found.items(), key=lambda kv: tuple(int(n) for n in kv[0].split("."))))


def outcome(row):
    """What Slurm did, in the few words of one table cell."""
    parts = []
    if row["step"] == "srun":
        parts.append(f"srun {row['srun_exit']}")
    if row["job_state"] == "PENDING":
        # Held, or waiting for the BeginTime Slurm gives a requeued job: that varies
        # between runs of one release.
        parts.append("requeued")
    else:
        parts.append(f"{row['job_state']} {row['exit_code']}")
    if row["ran"] != "true":
        parts.append("not run")
    if row["node"].startswith("drained"):
        reason = row["node"].split(":", 1)[1].strip()
        parts.append(f"**drained** ({reason})")
    return ", ".join(parts)


def what_matters(row):
    """The fields that say what Slurm did (not the message's wording, nor how long a
    requeued job waits)."""
    return (row["job_state"], row["exit_code"], row["srun_exit"], row["ran"], row["node"])


def succeeded(row):
    """Slurm ignored the return value: the job ran and ended as if nothing failed."""
    return (
        row["job_state"] == "COMPLETED"
        and row["exit_code"] == "0:0"
        and row["srun_exit"] in ("0", "-")
        and row["ran"] == "true"
        and not row["node"].startswith("drained")
    )


def cell(rows, key):
    """One table cell: the -1 outcome, and what returning 1 did where it differs."""
    failed = rows.get(key)
    if failed is None:
        return "–"
    if failed["calls"] == "0":
        return "not called"
    positive = rows.get(key[:3] + (1,) + key[4:])
    if succeeded(failed):
        text = "no effect"
        if positive is not None and succeeded(positive):
            return "no effect (-1 or 1)"
    else:
        text = outcome(failed)
    if positive is not None:
        if succeeded(positive):
            text += "; 1: no effect"
        elif what_matters(positive) == what_matters(failed):
            text += "; 1: the same"
        else:
            text += f"; 1: {outcome(positive)}"
    return text


def table(found, step):
    releases = list(found)
    keys = []
    for _, plain, _ in found.values():
        for (mode, callback, context, rc, row_step) in plain:
            key = (mode, callback, context, -1, step)
            if row_step == step and rc == -1 and key not in keys:
                keys.append(key)
    keys.sort(key=lambda k: (k[0] != "default", k[0]))
    lines = [
        "| callback (context) | " + " | ".join(releases) + " |",
        "|---|" + "---|" * len(releases),
    ]
    for key in keys:
        mode, callback, context = key[:3]
        label = f"`{callback}` ({context})"
        if mode != "default":
            label += f" with `{mode}`"
        cells = [cell(found[r][1], key) for r in releases]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def container_differences(found):
    """Where the job container changed what Slurm did, release by release: the -1 cases,
    and a case returning 1 only where it did not just do what -1 did."""
    lines = []
    for release, (_, plain, container) in found.items():
        if container is None:
            lines.append(f"| {release} | every case | not measured | |")
            continue
        differ = 0
        for key in plain:
            if key not in container or outcome(plain[key]) == outcome(container[key]):
                continue
            mode, callback, _, rc, step = key
            if rc > 0:
                failed = container.get(key[:3] + (-1,) + key[4:])
                if failed is not None and outcome(failed) == outcome(container[key]):
                    continue
            label = f"`{callback}`" + (f" with `{mode}`" if mode != "default" else "")
            lines.append(f"| {release} | {label} {rc}, {step} | {outcome(container[key])} | {outcome(plain[key])} |")
            differ += 1
        if not differ:
            lines.append(f"| {release} | every case | the same as plain | |")
    return ["| Slurm | callback, return value, step | with the job container | plain |", "|---|---|---|---|", *lines]


def section(found):
    versions = ", ".join(v.split()[-1] for v, _, _ in found.values())
    intro = textwrap.fill(
        f"Measured on the one-node plain cluster (Slurm {versions}), one run each: each callback "
        "of btprobe returning -1, then returning 1. A cell: srun's exit status (srun step), the "
        "job's state and `ExitCode` (or requeued: pending again, held or waiting for the new "
        "`BeginTime` Slurm gives it, which varies between runs), \"not run\" when the program "
        "never started, and the node **drained** with Slurm's reason; \"no effect\": the job ran "
        "and ended as if nothing had failed; \"1: the same\": returning 1 did what -1 did; \"not "
        "called\": the release does not call that callback there. The raw measurements, with "
        "the messages the user saw: [docs/spank-failures/](spank-failures/).",
        width=92,
    )
    out = [
        BEGIN,
        "",
        intro,
        "",
        "A batch step (`sbatch`):",
        "",
        *table(found, "batch"),
        "",
        "An srun step (`srun` outside an allocation):",
        "",
        *table(found, "srun"),
        "",
        "With the job container (job_container/tmpfs; namespace/tmpfs from 25.11), where it",
        "differs from the plain cluster:",
        "",
        *container_differences(found),
        "",
        END,
    ]
    return "\n".join(out)


def main():
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{DOC}: the marker lines are missing:\n{BEGIN}\n{END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + section(measurements()) + tail
    if sys.argv[1:] == ["--check"]:
        if new != text:
            sys.exit(f"{DOC} is not what scripts/spank-failures-table.py makes from {MEASUREMENTS}")
        return
    DOC.write_text(new)


if __name__ == "__main__":
    main()
