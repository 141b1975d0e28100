# Shared by demo.sh and test-all.sh: what both need before anything runs.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BT_TEST_STATE=${BT_TEST_STATE:-/var/lib/spank-beamtime-test}
# slurmstepd loads the plugin as root: build it against the headers of the Slurm on this host.
# slurm-wlm-basic-plugins: the package's dependency (dpkg -i does not fetch it).
BUILD_PACKAGES=(libslurm-dev libclang-dev pkg-config slurm-wlm-basic-plugins)

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
    [[ $(id -u) == 0 ]] || die "run as root: the tests start Slurm daemons, create users and mount file systems"
}

# ensure_packages PACKAGE…: installs those of them that are missing, from Debian's archive.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_build_packages() { ensure_packages "${BUILD_PACKAGES[@]}"; }

ensure_cargo() {
    if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
        export PATH=$HOME/.cargo/bin:$PATH
    fi
    command -v cargo >/dev/null ||
        die "cargo not found: install a Rust toolchain (1.77 or newer) with rustup, then run this again"
}

TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

# Builds the plugin and bt-submit in release mode; sets PLUGIN_SO and BT_SUBMIT.
build_release() {
    say "building spank-beamtime and bt-submit (release)"
    (cd "$REPO" && cargo build --release --locked -p spank-beamtime -p bt-submit)
    PLUGIN_SO=$TARGET_DIR/release/libspank_beamtime.so
    BT_SUBMIT=$TARGET_DIR/release/bt-submit
}

# Builds the .debs (scripts/package.sh: spank-beamtime and the bt-submit it depends on) and
# installs them; sets PLUGIN_SO and BT_SUBMIT to the installed files, so that the scenarios
# test what a site gets.
install_package() {
    local debs start
    start=$(date +%s)
    mapfile -t debs < <("$REPO/scripts/package.sh")
    ((${#debs[@]} == 2)) || die "scripts/package.sh printed ${#debs[@]} packages, not 2"
    # The bt-submit package alone, for the beamline-computer pass.
    export BT_SUBMIT_DEB=${debs[1]}
    say "installing ${debs[*]} (built in $(($(date +%s) - start)) s)"
    dpkg -i --force-confnew "${debs[@]}" >&2
    # shellcheck disable=SC2034 # read by the scripts that source this file
    PLUGIN_SO=/usr/lib/x86_64-linux-gnu/slurm-wlm/spank_beamtime.so
    # shellcheck disable=SC2034
    BT_SUBMIT=/usr/bin/bt-submit
}

# The plugstack arguments the local cluster uses: metadata and beamline data live
# in the harness's beamline folder, as they would on a facility's GPFS; core/
# stands for the core filesystem, where a beamtime's metadata outlives its turn
# as the beamline's current one. Each test cluster keeps its own job cache: two
# clusters on one machine hand out the same job ids.
plugin_args() {
    local src=$BT_TEST_STATE/beamline-src
    printf '%s ' \
        "metadata=$src/*/current/beamtime-metadata-{id}.json" \
        "metadata=$BT_TEST_STATE/core/*/{id}/beamtime-metadata-{id}.json" \
        "source=$src/{beamline}/current" \
        "writable=processed,shared" \
        "state_dir=$BT_TEST_STATE/plugin-state"
}

# Builds the plugin and bt-submit and (re)starts the local cluster with that plugin in
# plugstack.conf; exports SLURM_CONF and BT_TEST_STATE for the caller. Used by demo.sh
# and bench/run.sh.
start_cluster_with_fresh_plugin() {
    need_root
    ensure_cargo
    ensure_build_packages
    build_release
    say "starting the local Slurm cluster with the plugin"
    "$REPO/tests/cluster/cluster.sh" down >/dev/null 2>&1 || true
    "$REPO/tests/cluster/cluster.sh" up --plugin "$PLUGIN_SO" --plugin-args "$(plugin_args)"
    eval "$("$REPO/tests/cluster/cluster.sh" env)"
}

# The real-Slurm scenario passes, declared once for test-all.sh (the host's release) and
# release-tests.sh (the others). A pass is a cluster configuration (cluster.sh up options)
# and the scenarios run on it (cargo test arguments); the scenarios that need a
# configuration of their own are #[ignore]d elsewhere and named, with --ignored, by the
# pass that has it. pass_definition NAME sets PASS_LABEL, PASS_UP and PASS_TESTS.
#   plain, job-container   every one-node scenario file, plainly / with the release's job
#                          container (job_container/tmpfs; namespace/tmpfs from 25.11)
#   core, core-container   the files that prove loading, refusals and acceptance, mounts,
#                          pre-start, admin mistakes, remote submission and failure
#                          handling (plugstack_probe); core-container those that concern
#                          the job container: for releases that get less time
#   namespace-tmpfs,       25.11+: namespace_plugins.rs under namespace/tmpfs / under
#   namespace-linux        namespace/linux with its own pid and user namespaces
#   watch                  bt-submit watch's (about bt-submit, not the node: one release)
#   shared-root            a node whose / is shared (step_namespace's propagation proof)
#   nodes                  the 4-host scenarios
#   beamline-computer      the bt-submit package installed alone in a root without Slurm
#                          (BT_NO_SLURM_ROOT: scripts/release-root.sh no-slurm; BT_SUBMIT_DEB:
#                          install_package), submitting with --remote from there
CORE_SCENARIOS=(plugin_load cluster_smoke beamtime prestart admin_mistakes remote plugstack_probe)
CORE_CONTAINER_SCENARIOS=(cluster_smoke beamtime plugstack_probe)
pass_definition() {
    local file
    PASS_UP=()
    PASS_TESTS=(-- --test-threads=4)
    case $1 in
    plain) PASS_LABEL="plain slurmd" ;;
    job-container) PASS_LABEL="job_container/tmpfs" PASS_UP=(--job-container) ;;
    core)
        PASS_LABEL="plain slurmd, core"
        PASS_TESTS=()
        for file in "${CORE_SCENARIOS[@]}"; do PASS_TESTS+=(--test "$file"); done
        PASS_TESTS+=(-- --test-threads=4)
        ;;
    core-container)
        PASS_LABEL="job_container/tmpfs, core" PASS_UP=(--job-container) PASS_TESTS=()
        for file in "${CORE_CONTAINER_SCENARIOS[@]}"; do PASS_TESTS+=(--test "$file"); done
        PASS_TESTS+=(-- --test-threads=4)
        ;;
    namespace-tmpfs)
        PASS_LABEL="namespace/tmpfs" PASS_UP=(--job-container)
        PASS_TESTS=(--test namespace_plugins -- --ignored --test-threads=2)
        ;;
    namespace-linux)
        PASS_LABEL="namespace/linux" PASS_UP=(--namespace-linux)
        PASS_TESTS=(--test namespace_plugins -- --ignored --test-threads=2)
        ;;
    watch)
        PASS_LABEL="bt-submit watch"
        PASS_TESTS=(--test watch --test watch_follow --test watch_status -- --ignored --test-threads=2)
        ;;
    shared-root)
        PASS_LABEL="shared root" PASS_UP=(--shared-root)
        PASS_TESTS=(--test step_namespace -- --ignored --test-threads=1)
        ;;
    nodes)
        PASS_LABEL="4 hosts" PASS_UP=(--nodes 4)
        PASS_TESTS=(--test multinode --test multinode_queries --test multinode_faults
            --test multinode_remote --test multinode_script -- --ignored --test-threads=4)
        ;;
    beamline-computer)
        PASS_LABEL="beamline computer"
        PASS_TESTS=(--test beamline_computer -- --ignored --test-threads=1)
        ;;
    *) die "unknown scenario pass '$1' (see pass_definition in scripts/lib.sh)" ;;
    esac
}

# run_pass NAME REPORT: brings the local cluster up as the pass needs it (with PLUGIN_SO
# and BT_SUBMIT), runs its scenarios against the installed plugin, and takes the cluster
# down again. Their output goes to REPORT/scenarios-<label>.log, the seconds the pass took
# to REPORT/times.txt. Returns cargo test's status; the cluster goes down either way.
run_pass() {
    local report=$2 start rc=0
    pass_definition "$1"
    say "real-Slurm scenarios: $PASS_LABEL ($(slurmd -V))"
    start=$(date +%s)
    # Explicit returns: callers that go on after a failed pass call this where set -e
    # does not apply.
    "$REPO/tests/cluster/cluster.sh" up --plugin "$PLUGIN_SO" --plugin-args "$(plugin_args)" "${PASS_UP[@]}" ||
        return
    eval "$("$REPO/tests/cluster/cluster.sh" env)" || return
    export BT_SUBMIT
    cargo test --locked --no-fail-fast -p scenarios "${PASS_TESTS[@]}" 2>&1 |
        tee "$report/scenarios-${PASS_LABEL//[^a-z0-9]/_}.log" || rc=$?
    "$REPO/tests/cluster/cluster.sh" down
    echo "$PASS_LABEL $(($(date +%s) - start))" >>"$report/times.txt"
    return "$rc"
}
