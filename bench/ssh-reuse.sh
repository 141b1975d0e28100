#!/bin/bash
# A burst of sbatch over ssh, as bt-submit watch --remote makes it (issue #22): N submissions
# with one shared connection (the ControlMaster/ControlPath/ControlPersist options the watch
# adds, slurm/ssh.rs) against one new connection per submission, interleaved in rounds on
# the same machine. Uses the running test cluster (tests/cluster/cluster.sh up; its sshd on
# BT_SSHD_PORT) and submits trivial jobs as the beamtime account ACCOUNT with a key made
# here, authorized for this run only. Run as root:
#
#   bench/ssh-reuse.sh ACCOUNT [FILES] [ROUNDS] [RAW]     (default 200 files, 3 rounds)
#
# Prints, per variant, the seconds each round took and the median, and the ratio. With RAW
# (a folder; bench/run.sh's section 8 passes its own), it also writes there the microseconds
# of each round, one per line, to ssh-burst-per-job and ssh-burst-shared, and FILES to
# ssh-burst-files, for bench/report.py. The jobs are submitted held (--hold), so that 2 × FILES
# × ROUNDS of them never run beside the measurement; cancel them after (scancel -u ACCOUNT).
set -Eeuo pipefail
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
need_root
ACCOUNT=${1:?usage: bench/ssh-reuse.sh ACCOUNT [FILES] [ROUNDS] [RAW]}
FILES=${2:-200}
ROUNDS=${3:-3}
RAW=${4:-}
[[ -z $RAW || -d $RAW ]] || die "RAW: $RAW is no folder (give an existing one for the raw measurements)"
: "${BT_TEST_STATE:?source the cluster settings first (BT_TEST_STATE, BT_SSHD_PORT)}"
: "${BT_SSHD_PORT:?}"
AUTHORIZED=$BT_TEST_STATE/etc/sshd/authorized_keys/$ACCOUNT
[[ ! -e $AUTHORIZED ]] || die "$AUTHORIZED exists: another test uses $ACCOUNT's login now"
WORK=$(mktemp -d /tmp/bt-ssh-reuse.XXXXXX)
trap 'rm -rf "$WORK"; rm -f "$AUTHORIZED"' EXIT
ssh-keygen -q -t ed25519 -N '' -f "$WORK/key"
install -m 644 "$WORK/key.pub" "$AUTHORIZED"
echo "[127.0.0.1]:$BT_SSHD_PORT $(cut -d' ' -f1-2 "$BT_TEST_STATE/etc/sshd/host_ed25519_key.pub")" >"$WORK/known_hosts"
mkdir -m 700 "$WORK/sockets"

# The options bt-submit passes (slurm/ssh.rs fixed_options), and the port of the test sshd.
ssh_base=(ssh -i "$WORK/key" -l "$ACCOUNT" -p "$BT_SSHD_PORT" -o BatchMode=yes
    -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o LogLevel=ERROR
    -o "UserKnownHostsFile=$WORK/known_hosts")
shared=(-o ControlMaster=auto -o "ControlPath=$WORK/sockets/%C" -o ControlPersist=60)
job=(sbatch --parsable --hold --partition=all --output=/dev/null --wrap=true)

# burst VARIANT: FILES submissions; prints the microseconds they took.
burst() {
    local variant=$1 start end n
    local options=()
    [[ $variant == shared ]] && options=("${shared[@]}")
    start=$(date +%s%N)
    for ((n = 0; n < FILES; n++)); do
        "${ssh_base[@]}" "${options[@]}" 127.0.0.1 "${job[*]}" >/dev/null
    done
    end=$(date +%s%N)
    if [[ $variant == shared ]]; then
        "${ssh_base[@]}" "${shared[@]}" -O exit 127.0.0.1 2>/dev/null || true
    fi
    echo "$(((end - start) / 1000))"
}

seconds() { awk -v us="$1" 'BEGIN {printf "%.2f", us / 1e6}'; }
declare -a per_job_times shared_times
for ((round = 1; round <= ROUNDS; round++)); do
    per_job_times+=("$(burst per-job)")
    shared_times+=("$(burst shared)")
    say "round $round: one connection per job $(seconds "${per_job_times[-1]}") s, shared $(seconds "${shared_times[-1]}") s"
done
if [[ -n $RAW ]]; then
    printf '%s\n' "${per_job_times[@]}" >"$RAW/ssh-burst-per-job"
    printf '%s\n' "${shared_times[@]}" >"$RAW/ssh-burst-shared"
    echo "$FILES" >"$RAW/ssh-burst-files"
fi
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
per_job=$(median "${per_job_times[@]}")
shared_median=$(median "${shared_times[@]}")
printf '%s submissions over ssh, median of %s rounds: one connection per job %s s, one shared connection %s s, %sx faster\n' \
    "$FILES" "$ROUNDS" "$(seconds "$per_job")" "$(seconds "$shared_median")" \
    "$(awk -v a="$per_job" -v b="$shared_median" 'BEGIN {printf "%.1f", a / b}')"
