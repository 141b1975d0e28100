# shellcheck shell=bash
# Messages, failing, waiting and the checks every command makes first. Sourced by
# cluster.sh, whose settings (STATE, LOG, PACKAGES, T0) these read.

die() { echo "cluster.sh: error: $*" >&2; exit 1; }

elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }
say() { printf '[cluster %6ss] %s\n' "$(elapsed)" "$*" >&2; }

need_root() { [[ $(id -u) == 0 ]] || die "must run as root (it starts daemons and creates users)"; }

# rm -rf on a path from the environment: refuse anything that is not clearly ours.
check_state_path() {
    [[ $STATE == /* && $STATE != *..* && $(tr -cd / <<<"$STATE" | wc -c) -ge 2 ]] ||
        die "BT_TEST_STATE=$STATE: want an absolute path at least two levels deep"
    case $STATE in /tmp/* | /dev/shm/*)
        die "BT_TEST_STATE=$STATE is under /tmp or /dev/shm: job_container/tmpfs hides those from jobs" ;;
    esac
}

ensure_packages() {
    local missing=() p wanted=("${PACKAGES[@]}")
    slurm_from_source || wanted+=("${SLURM_PACKAGES[@]}")
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    say "installing ${missing[*]}"
    # policy-rc.d keeps package scripts from starting distribution-configured daemons,
    # which would hold the default sockets and ports behind our back.
    local policy=/usr/sbin/policy-rc.d created_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    [[ -n $created_policy ]] && rm -f "$policy"
    return 0
}

# The installed Slurm's release as a number, major * 100 + minor (22.05 → 2205), for
# the settings that changed between releases. `slurmd -V` prints "slurm 22.05.8"
# or, in Debian from 24.11 on, "slurm-wlm 24.11.5".
slurm_release() {
    local version
    version=$(slurmd -V 2>/dev/null | awk '{print $2}')
    [[ $version =~ ^([0-9]+)\.([0-9]+)\. ]] || die "slurmd -V: no Slurm release in '${version}'"
    echo $((10#${BASH_REMATCH[1]} * 100 + 10#${BASH_REMATCH[2]}))
}

log_tail() {
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        echo "---- last lines of $f ----" >&2
        tail -n 30 "$f" >&2
    done
}

# wait_for SECONDS WHAT LOGFILE -- command…: poll until the command succeeds.
wait_for() {
    local secs=$1 what=$2 logf=$3 deadline
    shift 4
    deadline=$(($(date +%s) + secs))
    until "$@" >/dev/null 2>&1; do
        if (($(date +%s) >= deadline)); then
            echo "cluster.sh: error: $what not ready after ${secs}s" >&2
            log_tail "$logf" "$LOG/$(basename "$logf" .log).stdout"
            return 1
        fi
        sleep 0.2
    done
}
