#!/bin/bash
# The main job, end to end on this machine: builds spank-beamtime and bt-submit,
# starts a local Slurm with the plugin in plugstack.conf, starts a beamtime the
# way the facility's start script does, submits a job with bt-submit as the
# beamtime's account, and shows what the job saw under /beamline/p11/current.
# Run as root on Debian 12. The cluster stays up afterwards; stop it with
#   tests/cluster/cluster.sh down
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"

ID=11099001 BEAMLINE=p11 ACCOUNT=bttest01

start_cluster_with_fresh_plugin

say "starting beamtime $ID on $BEAMLINE (account $ACCOUNT)"
# One core of the single test node, so the node stays usable for other jobs.
metadata=$("$REPO/slurm-conf-examples/beamtime-start.sh" --id "$ID" --beamline "$BEAMLINE" \
    --account "$ACCOUNT" --partition "ponline_$BEAMLINE" --cores 1 --replace)
current=$(dirname "$metadata")
for frame in 0001 0002 0003; do
    echo "detector frame $frame" >"$current/raw/frame_$frame.txt"
done
chmod 644 "$current"/raw/frame_*.txt

home=$(getent passwd "$ACCOUNT" | cut -d: -f6)
cat >"$home/analyse.sh" <<'JOB'
#!/bin/bash
echo "running as $(id -un) in job $SLURM_JOB_ID on $(hostname), beamtime $BEAMTIME_ID"
echo "--- what /beamline holds:"
ls /beamline
echo "--- $BEAMTIME_BEAMLINE_PATH:"
ls -l "$BEAMTIME_BEAMLINE_PATH"
echo "--- raw/ (read-only):"
ls "$BEAMTIME_BEAMLINE_PATH/raw"
touch "$BEAMTIME_BEAMLINE_PATH/raw/result.txt" 2>&1 | sed 's/^/    /'
echo "--- processed/ (writable):"
wc -l "$BEAMTIME_BEAMLINE_PATH"/raw/*.txt >"$BEAMTIME_BEAMLINE_PATH/processed/summary.txt"
cat "$BEAMTIME_BEAMLINE_PATH/processed/summary.txt"
echo "--- the job's environment:"
env | grep -E '^BEAMTIME_(ID|BEAMLINE|BEAMLINE_PATH|CORE_PATH)=' | sort
JOB
chown "$ACCOUNT:" "$home/analyse.sh"
chmod 755 "$home/analyse.sh"

as_beamtime() {
    runuser -u "$ACCOUNT" -- env -C "$home" HOME="$home" SLURM_CONF="$SLURM_CONF" PATH="$PATH" \
        BEAMTIME_METADATA_PATH="$BT_TEST_STATE/beamline-src/*/current/beamtime-metadata-{id}.json" "$@"
}

say "$ACCOUNT\$ bt-submit show --beamtime $ID"
as_beamtime "$BT_SUBMIT" show --beamtime "$ID"
say "$ACCOUNT\$ bt-submit --beamtime $ID --dry-run analyse.sh"
as_beamtime "$BT_SUBMIT" --beamtime "$ID" --dry-run analyse.sh
say "$ACCOUNT\$ bt-submit --beamtime $ID --wait -o analyse-%j.out analyse.sh"
as_beamtime "$BT_SUBMIT" --beamtime "$ID" --wait -o 'analyse-%j.out' analyse.sh
say "what the job saw"
# The newest output file: this run's job.
find "$home" -maxdepth 1 -name 'analyse-*.out' -printf '%T@ %p\n' | sort -rn | head -1 | cut -d' ' -f2- | xargs cat

say "and another user is refused"
as_other() { runuser -u btalice -- env -C /tmp SLURM_CONF="$SLURM_CONF" PATH="$PATH" "$@"; }
as_other sbatch --beamtime="$ID" --wrap true || true

cat <<EOF2

The cluster is still running. Try it yourself:
  eval "\$(tests/cluster/cluster.sh env)"
  runuser -u $ACCOUNT -- env SLURM_CONF=\$SLURM_CONF srun --beamtime=$ID -p ponline_$BEAMLINE --reservation=$ID ls /beamline/$BEAMLINE/current
Stop it with:
  tests/cluster/cluster.sh down
EOF2
