#!/bin/bash
# Section 8 of bench/run.sh (sourced by it, not run alone): bt-submit watch. It uses run.sh's
# settings and helpers (OUT, ROUNDS, the #22 sizes, as_user, say).

# Section 8: bt-submit watch, as bttest01, on folders this script writes into as the
# detector would. sbatch is found first in a folder whose sbatch notes the time it was
# started and then is the real one, so "file complete -> sbatch started" is measured where
# the watch hands over to Slurm; the jobs are real (and trivial).
measure_watch() {
    local dir=$BT_TEST_STATE/work/watch-bench uid gid pid pids=()
    uid=$(id -u bttest01) gid=$(id -g bttest01)
    rm -rf --one-file-system "$dir"
    mkdir -p "$dir"/{bin,inotify,polling,idle,scans,first,out}
    cat >"$dir/bin/sbatch" <<SBATCH
#!/bin/sh
echo "\$(date +%s%N) \$*" >>"$dir/sbatch-started"
exec /usr/bin/sbatch "\$@"
SBATCH
    printf '#!/bin/sh\ntrue\n' >"$dir/job.sh"
    chmod 755 "$dir/bin/sbatch" "$dir/job.sh"
    chown -R bttest01 "$dir"
    # setpriv execs: $! is the watch itself, whose CPU time /proc tells. The nodes see the
    # bench's folders where this host does (--map).
    watch_as_bttest01() {
        setpriv --reuid="$uid" --regid="$gid" --init-groups \
            env -C "$dir/out" SLURM_CONF="$SLURM_CONF" PATH="$dir/bin:$PATH" HOME="$dir" \
            BEAMTIME_METADATA_PATH="$BT_TEST_STATE/beamline-src/*/current/beamtime-metadata-{id}.json" \
            "$BT_SUBMIT" watch --beamtime "$BEAMTIME" --map "$dir=$dir" "$@" >>"$OUT/watch.log" 2>&1 &
    }
    say "8. bt-submit watch: file complete -> sbatch started, inotify vs looking only ($ROUNDS rounds)"
    watch_as_bttest01 --settle 1 --poll-interval 1 --state "$dir/inotify.json" "$dir/inotify" \
        -- -o /dev/null "$dir/job.sh" {}
    pids+=($!)
    watch_as_bttest01 --no-inotify --settle 1 --poll-interval 1 --state "$dir/polling.json" "$dir/polling" \
        -- -o /dev/null "$dir/job.sh" {}
    pids+=($!)
    sleep 2
    # One file at a time, alternately to each watch; a random pause between files, so that
    # the writes fall anywhere in the looking watch's 1 s cycle.
    python3 - "$dir" "$ROUNDS" "$OUT" <<'WRITE'
import os, random, sys, time
folder, rounds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
started = os.path.join(folder, "sbatch-started")
def lines():
    try:
        with open(started) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []
settle_ns = 1_000_000_000
results = {"inotify": [], "polling": []}
for i in range(rounds):
    for kind in ("inotify", "polling"):
        before = len(lines())
        path = f"{folder}/{kind}/frame_{i:04d}.dat"
        with open(path, "wb") as f:
            f.write(b"x" * 65536)
        complete = time.time_ns() + (0 if kind == "inotify" else settle_ns)
        deadline = time.time() + 30
        while len(lines()) == before:
            if time.time() > deadline:
                sys.exit(f"no sbatch started for {path} within 30 s")
            time.sleep(0.002)
        stamp, args = lines()[before].split(" ", 1)
        if not args.endswith(" " + path):
            sys.exit(f"sbatch started for another file: {args}")
        results[kind].append((int(stamp) - complete) // 1000)
        time.sleep(random.uniform(0.1, 1.1))
for kind, values in results.items():
    with open(f"{out}/watch-latency-{kind}", "w") as f:
        f.write("".join(f"{v}\n" for v in values))
WRITE
    kill -TERM "${pids[@]}"
    for pid in "${pids[@]}"; do
        wait "$pid" || die "bt-submit watch did not end cleanly on SIGTERM (see $OUT/watch.log)"
    done

    say "8. bt-submit watch idle with $WATCH_IDLE_FILES files already submitted (${WATCH_IDLE_SECONDS} s)"
    # 100 scan folders of 100 files, all in the state as submitted (job ids made up: the
    # watch asks Slurm about none of them while idle).
    python3 - "$dir/idle" "$dir/idle.json" "$WATCH_IDLE_FILES" <<'FILES'
import json, os, sys
folder, state, n = os.path.realpath(sys.argv[1]), sys.argv[2], int(sys.argv[3])
submitted = {}
for i in range(n):
    rel = f"scan_{i // 100:03d}/frame_{i % 100:03d}.dat"
    path = os.path.join(folder, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x" * 1024)
    st = os.stat(path)
    submitted[rel] = {"job": i + 1, "size": st.st_size, "mtimeNs": str(st.st_mtime_ns)}
with open(state, "w") as f:
    json.dump({"format": "bt-submit watch state 1", "watchId": "bench", "folder": folder,
               "nextMarker": 1, "submitting": None, "submitted": submitted}, f)
FILES
    chown -R bttest01 "$dir"
    watch_as_bttest01 --settle 1 --poll-interval 1 --state "$dir/idle.json" "$dir/idle" \
        -- -o /dev/null "$dir/job.sh" {}
    pid=$!
    sleep 5
    local before after
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sleep "$WATCH_IDLE_SECONDS"
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    echo "$WATCH_IDLE_FILES $WATCH_IDLE_SECONDS $((after - before)) $(getconf CLK_TCK)" \
        "$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")" >"$OUT/watch-idle"
    kill -TERM "$pid"
    wait "$pid" || die "bt-submit watch did not end cleanly on SIGTERM (see $OUT/watch.log)"
    (($(wc -l <"$dir/sbatch-started") == 2 * ROUNDS)) ||
        die "the idle watch ran sbatch (see $OUT/watch.log)"

    say "8. a scan folder of $SCAN_FRAMES frames still being written, --each folder --no-inotify (${SCAN_LOOK_SECONDS} looks)"
    # The frames stand still; the writer adds one every 2 s, so the scan is never done while
    # measured (and --done-file keeps the watch from taking a quiet moment for its end).
    python3 - "$dir/scans/scan_00001" "$SCAN_FRAMES" <<'FRAMES'
import os, sys
folder, n = sys.argv[1], int(sys.argv[2])
os.makedirs(folder)
for i in range(n):
    with open(f"{folder}/frame_{i:05d}.cbf", "wb") as f:
        f.write(b"x" * 4096)
FRAMES
    chown -R bttest01 "$dir"
    watch_as_bttest01 --each folder --done-file scan.done --no-inotify --poll-interval 1 \
        --settle "$SCAN_SETTLE_SECONDS" --state "$dir/scans.json" "$dir/scans" -- -o /dev/null "$dir/job.sh" {}
    pid=$!
    # The detector's writer (root here: python3 may be a shim only root can run).
    python3 - "$dir/scans/scan_00001" "$SCAN_FRAMES" <<'WRITER' &
import sys, time
folder, n = sys.argv[1], int(sys.argv[2])
while True:
    with open(f"{folder}/frame_{n:05d}.cbf", "wb") as f:
        f.write(b"x" * 4096)
    n += 1
    time.sleep(2)
WRITER
    local writer=$!
    # The first looks stat every frame (new to the watch, then not yet seen unchanged for the
    # settle time) and read them from the disk cache; the measured ones are the steady state
    # of a long scan, whose earlier frames stand still.
    sleep $((SCAN_SETTLE_SECONDS + 5))
    local start_ticks end_ticks
    start_ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sleep "$SCAN_LOOK_SECONDS"
    end_ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill -TERM "$writer"
    wait "$writer" || true
    echo "$SCAN_FRAMES $SCAN_LOOK_SECONDS 1 $((end_ticks - start_ticks)) $(getconf CLK_TCK)" \
        "$(find "$dir/scans/scan_00001" -type f | wc -l) $SCAN_SETTLE_SECONDS" >"$OUT/watch-scan-looks"
    kill -TERM "$pid"
    wait "$pid" || die "bt-submit watch did not end cleanly on SIGTERM (see $OUT/watch.log)"

    say "8. a first start with $FIRST_START_FILES files there, --skip-existing: until watch status shows them all skipped"
    python3 - "$dir/first" "$FIRST_START_FILES" <<'FILES'
import os, sys
folder, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    path = f"{folder}/scan_{i // 100:03d}/frame_{i % 100:03d}.h5"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x" * 1024)
FILES
    chown -R bttest01 "$dir"
    # watch status as the beamtime account, again and again from before the watch starts
    # until its totals show every file skipped (while there is no state yet, it says so and
    # is asked again). The time lies between the start of the last run that did not show
    # them all and the end of the first that did.
    python3 - "$dir/first.json" "$FIRST_START_FILES" "$dir/first-started" "$OUT/watch-first-start" \
        setpriv --reuid="$uid" --regid="$gid" --init-groups env SLURM_CONF="$SLURM_CONF" \
        "$BT_SUBMIT" watch status <<'STATUS' &
import json, os, subprocess, sys, time
state, n, started_file, out, status = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
runs, not_yet = 0, 0
deadline = time.time() + 300
while time.time() < deadline:
    began = time.time_ns()
    run = subprocess.run(status + ["--state", state, "--format", "json"], capture_output=True, text=True)
    ended = time.time_ns()
    if os.path.exists(started_file):
        runs += 1
        if run.returncode == 0 and json.loads(run.stdout)["totals"]["skipped"] == n:
            with open(started_file) as f:
                started = int(f.read())
            with open(out, "w") as f:
                f.write(f"{n} {(max(not_yet, started) - started) // 1000} {(ended - started) // 1000} {runs}\n")
            sys.exit(0)
        not_yet = began
    time.sleep(0.02)
sys.exit(f"watch status did not show {n} skipped files within 300 s")
STATUS
    local poller=$!
    sleep 1
    date +%s%N >"$dir/first-started"
    watch_as_bttest01 --skip-existing --poll-interval 1 --state "$dir/first.json" "$dir/first" \
        -- -o /dev/null "$dir/job.sh" {}
    pid=$!
    wait "$poller" || die "watch status never showed the first start's files skipped (see $OUT/watch.log)"
    # The peak covers the start; a few looks later nothing has grown it.
    sleep 3
    awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" >>"$OUT/watch-first-start"
    kill -TERM "$pid"
    wait "$pid" || die "bt-submit watch did not end cleanly on SIGTERM (see $OUT/watch.log)"
    (($(wc -l <"$dir/sbatch-started") == 2 * ROUNDS)) ||
        die "the scan folder's or the first start's watch ran sbatch (see $OUT/watch.log)"

    say "8. recording one submission with $RECORDED_FILES files recorded ($ROUNDS rounds)"
    # As the beamtime account, on the file system of this cluster's work folder.
    setpriv --reuid="$uid" --regid="$gid" --init-groups \
        "$WATCH_STATE_RECORD" "$dir" "$RECORDED_FILES" "$ROUNDS" "$OUT"

    say "8. a burst of $SSH_BURST_FILES submissions over ssh: one shared connection vs one per job ($SSH_BURST_ROUNDS rounds)"
    "$REPO/bench/ssh-reuse.sh" bttest01 "$SSH_BURST_FILES" "$SSH_BURST_ROUNDS" "$OUT"
    as_user bttest01 scancel -u bttest01 || true
    rm -rf --one-file-system "$dir"
}
