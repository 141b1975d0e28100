#!/bin/bash
# What the facility's start script does when a beamtime with online-analysis resources
# begins, on a test cluster (tests/cluster/cluster.sh) or as a model for a real one:
#
#   beamtime-start.sh --id 11099001 --beamline p11 --account bttest01
#       [--partition ponline_p11] [--nodes btnode1] [--reservation NAME[@NODES]]…  [--cores N]
#       [--reserved-nodes NODES]
#       [--source-root DIR] [--metadata-dir DIR] [--core-root DIR] [--title TEXT]
#       [--proposal-type I] [--beamline-alias P11] [--no-online] [--replace | --pre-start]
#
#  1. the beamtime's own Unix account (--account, SSH-key login only: no password);
#  2. the Slurm account named after the beamtime id, and the account's association with
#     it as DefaultAccount;
#  3. the reservation(s), Users=<account>, one named after the id unless --reservation is
#     given (repeatable: <id>, <id>_1, …), on --nodes or on the NODES after @ (a Slurm
#     host list: dedicated resources split into reservations on disjoint nodes). Whole
#     nodes, as the facility does, unless --cores N asks for N cores per node: a
#     whole-node reservation on a one-node test cluster would keep every other job off it.
#     A reservation that exists already keeps its nodes and gets Users=<account>;
#  4. the beamline folder <source-root>/<beamline>/current/{raw,processed,shared,scratch_bl};
#  5. beamtime-metadata-<id>.json in current/ (or --metadata-dir), root-owned 0644;
#     reservedNodes lists every reservation's nodes, or --reserved-nodes (tests use it to
#     make the metadata disagree with the reservations).
# --no-online: an ordinary beamtime without online resources: no reservation and no
# onlineAnalysis block (accounts and folders are still made).
#
# --pre-start: the facility's phase before the beamtime starts, "so that users can set up
# their scripts and pipelines in advance": its storage exists only on the core filesystem.
# Steps 1-3 as above (the node is shared, so N=1 core per node unless --cores), then the
# core folder <core-root>/<beamline>/<id>/{raw,processed,shared,scratch_cc} (default core
# root: $BT_TEST_STATE/core, where the test cluster's plugstack line looks) with the key
# pair in shared/ and the metadata file, its corePath that folder. The beamline's folder
# <source-root>/<beamline> is made if missing (the beamline's file system), its current
# folder neither made nor looked into (another beamtime may still hold it), so
# --replace and --metadata-dir do not go with it. The later call without --pre-start
# (with --replace while another beamtime holds the beamline) starts the beamtime: steps
# 1-5, the same key pair in current/shared, the same metadata in the core folder too, and
# the pre-start reservations that its --reservation list no longer names deleted (one
# with jobs in it stays until they end: Slurm refuses to delete it; scontrol delete it
# then), so that the metadata names only reservations that exist.
#
# Permissions of the beamline folder (what the plugin's bind mount will show to jobs):
#   current/             root:<account> 0750  only the beamtime's members (and root) enter
#   current/raw          root:<account> 0750  written by the detector (root here), read-only to users
#   current/processed    <account>:<account> 2770  results of the online analysis
#   current/shared       <account>:<account> 2770  holds the account's SSH key pair (id_rsa)
#   current/shared/id_rsa <account>:<account> 0640  readable by the beamtime's participants
#                        (the account's group), who submit with bt-submit --remote from the
#                        beamline computer; ssh takes a key another user owns whatever its
#                        group bits, and only the participants, not the account, use it
#   current/scratch_bl   <account>:<account> 2770  beamline scratch
#   current/beamtime-metadata-<id>.json  root:root 0644  written only by this script
# The core folder likewise (scratch_cc for scratch_bl).
#
# Running it again for the same beamtime refreshes what exists and adds what is missing.
# A different beamtime already "current" on the beamline is refused unless --replace,
# which moves the old folder aside to <beamline>/previous-<old id> (reservations of the
# old beamtime stay; delete them with scontrol if needed).
# Prints the metadata file's path on stdout; everything else goes to stderr.
set -Eeuo pipefail

die() { echo "beamtime-start.sh: error: $*" >&2; exit 1; }
note() { echo "beamtime-start.sh: $*" >&2; }
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

ID='' BEAMLINE='' ACCOUNT='' PARTITION='' NODES=btnode1 CORES='' TITLE='' ALIAS='' PROPOSAL_TYPE=I
META_NODES=''
SOURCE_ROOT=${BT_TEST_STATE:-/var/lib/spank-beamtime-test}/beamline-src
CORE_ROOT=${BT_TEST_STATE:-/var/lib/spank-beamtime-test}/core
METADATA_DIR='' ONLINE=1 REPLACE=0 PRESTART=0
RESERVATIONS=()
while (($#)); do
    case $1 in
    --id) ID=${2:?}; shift ;;
    --beamline) BEAMLINE=${2:?}; shift ;;
    --account) ACCOUNT=${2:?}; shift ;;
    --partition) PARTITION=${2:?}; shift ;;
    --nodes) NODES=${2:?}; shift ;;
    --reservation) RESERVATIONS+=("${2:?}"); shift ;;
    --cores) CORES=${2:?}; shift ;;
    --reserved-nodes) META_NODES=${2:?}; shift ;;
    --source-root) SOURCE_ROOT=${2:?}; shift ;;
    --metadata-dir) METADATA_DIR=${2:?}; shift ;;
    --core-root) CORE_ROOT=${2:?}; shift ;;
    --title) TITLE=${2:?}; shift ;;
    --beamline-alias) ALIAS=${2:?}; shift ;;
    --proposal-type) PROPOSAL_TYPE=${2:?}; shift ;;
    --no-online) ONLINE=0 ;;
    --replace) REPLACE=1 ;;
    --pre-start) PRESTART=1 ;;
    -h | --help) usage ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

[[ $(id -u) == 0 ]] || die "must run as root"
[[ $ID =~ ^[A-Za-z0-9_]+$ ]] || die "--id: want letters, digits, _ (got '$ID')"
[[ $BEAMLINE =~ ^[a-z][a-z0-9]*$ ]] || die "--beamline: want e.g. p11 (got '$BEAMLINE')"
[[ $ACCOUNT =~ ^[a-z][a-z0-9_-]*$ ]] || die "--account: want a Unix user name (got '$ACCOUNT')"
[[ -z $CORES || $CORES =~ ^[1-9][0-9]*$ ]] || die "--cores: want a positive number"
[[ $SOURCE_ROOT == /* ]] || die "--source-root must be absolute"
[[ $CORE_ROOT == /* ]] || die "--core-root must be absolute"
if ((PRESTART)); then
    ((!REPLACE)) || die "--pre-start does not touch the beamline folder: --replace does not apply"
    [[ -z $METADATA_DIR ]] || die "--pre-start writes the metadata into the core folder: --metadata-dir does not apply"
    # The node is shared with other beamtimes' pre-start reservations.
    CORES=${CORES:-1}
fi
PARTITION=${PARTITION:-ponline_$BEAMLINE}
# "slurm 22.05.8" → 22.05.8: how CoreCnt is written depends on the release.
SLURM_RELEASE=$(scontrol --version | awk '{print $2}')
ALIAS=${ALIAS:-${BEAMLINE^^}}
TITLE=${TITLE:-Online analysis test beamtime $ID}
((${#RESERVATIONS[@]})) || RESERVATIONS=("$ID")
((ONLINE)) || RESERVATIONS=()
# NAME@NODES -> RESERVATIONS (names) and RES_NODES (each one's host list).
RES_NODES=()
for i in "${!RESERVATIONS[@]}"; do
    r=${RESERVATIONS[$i]}
    if [[ $r == *@* ]]; then RES_NODES+=("${r#*@}") RESERVATIONS[i]=${r%%@*}; else RES_NODES+=("$NODES"); fi
    [[ ${RESERVATIONS[$i]} =~ ^[A-Za-z0-9_]+$ ]] || die "--reservation: want letters, digits, _ (got '$r')"
    [[ ${RES_NODES[$i]} =~ ^[][A-Za-z0-9,_-]+$ ]] || die "--reservation: bad node list in '$r'"
done
command -v python3 >/dev/null || die "python3 is needed to write the metadata file"

# sacctmgr hangs for ~30 s when slurmdbd is unreachable: never wait on it unbounded.
sacctmgr_t() { timeout 30 sacctmgr "$@"; }

mkdir -p "$SOURCE_ROOT"
# Serialise concurrent starts (tests start beamtimes from parallel threads): useradd
# fails on a locked /etc/passwd, and the OVERLAP decision must see the other reservations.
exec 9>"$SOURCE_ROOT/.beamtime-start.lock"
flock -w 120 9 || die "another beamtime-start.sh holds $SOURCE_ROOT/.beamtime-start.lock"

CURRENT=$SOURCE_ROOT/$BEAMLINE/current
CORE=$CORE_ROOT/$BEAMLINE/$ID
CORE_META=$CORE/beamtime-metadata-$ID.json
# Checked before anything is created, so a refused start leaves nothing behind.
OTHER=
if ((PRESTART)); then
    # Only this beamtime's own file is looked for: whatever else current/ holds is not
    # this script's business before the start.
    [[ ! -e $CURRENT/beamtime-metadata-$ID.json ]] ||
        die "beamtime $ID has started already ($CURRENT holds its metadata): no pre-start now"
elif [[ -d $CURRENT ]]; then
    OTHER=$(find "$CURRENT" -maxdepth 1 -name 'beamtime-metadata-*.json' -printf '%f\n' |
        sed 's/^beamtime-metadata-\(.*\)\.json$/\1/' | grep -vxF "$ID" | head -1 || true)
    [[ -z $OTHER ]] || ((REPLACE)) || die "$CURRENT belongs to beamtime $OTHER (use --replace)"
fi

# ---- 1. Unix account
if ! id -u "$ACCOUNT" >/dev/null 2>&1; then
    useradd -m -s /bin/bash -c "beamtime $ID" "$ACCOUNT"
    note "created Unix account $ACCOUNT"
fi
GROUP=$(id -gn "$ACCOUNT")

# ---- 2. Slurm account and association
scontrol ping >/dev/null 2>&1 || die "slurmctld not reachable (SLURM_CONF=${SLURM_CONF:-unset})"
if [[ -z $(sacctmgr_t -n -P show account "$ID" format=Account) ]]; then
    sacctmgr_t -i add account "$ID" Description="beamtime $ID" Organization="$BEAMLINE" >/dev/null
    note "created Slurm account $ID"
fi
# slurmctld receives new associations, and the user's new default account, from slurmdbd
# asynchronously; a reservation or job for the account before that is refused (a job
# without --account is charged to the old default: "Invalid account or account/partition
# combination"). So: the association first, waited for; then the default account, waited
# for. In that order because of what Slurm 22.05 did with both at once for a user who
# already had another beamtime's account (measured): when the new account's name sorts
# before the old one's, slurmctld applied the new default and then lost it to the new
# association (DefAccount=(null) in `scontrol show assoc_mgr`), for good, while sacctmgr
# showed the right default.
# wait_for_controller WHAT PATTERN SCONTROL-ARGS…: until scontrol's answer matches, 30 s.
wait_for_controller() {
    local what=$1 pattern=$2 deadline=$((SECONDS + 30))
    shift 2
    until scontrol show assoc_mgr "$@" 2>/dev/null | grep -qE "$pattern"; do
        ((SECONDS < deadline)) || die "slurmctld did not learn $what within 30 s"
        sleep 0.2
    done
}
if [[ -z $(sacctmgr_t -n -P show assoc where user="$ACCOUNT" account="$ID" format=User) ]]; then
    if [[ -z $(sacctmgr_t -n -P show user "$ACCOUNT" format=User) ]]; then
        sacctmgr_t -i add user "$ACCOUNT" Account="$ID" DefaultAccount="$ID" >/dev/null
    else
        sacctmgr_t -i add user "$ACCOUNT" Account="$ID" >/dev/null
    fi
fi
wait_for_controller "association $ACCOUNT/$ID" "UserName=$ACCOUNT\\(" \
    users="$ACCOUNT" accounts="$ID" flags=assoc
if [[ $(sacctmgr_t -n -P show user "$ACCOUNT" format=DefaultAccount) != "$ID" ]]; then
    sacctmgr_t -i modify user where name="$ACCOUNT" set DefaultAccount="$ID" >/dev/null
fi
wait_for_controller "$ACCOUNT's default account $ID" "UserName=$ACCOUNT\\([0-9]+\\).* DefAccount=$ID( |\$)" \
    users="$ACCOUNT" flags=users

# ---- 3. reservations
scontrol show partition "$PARTITION" >/dev/null 2>&1 || die "no partition $PARTITION"
# reservedNodes: every reservation's nodes, in order, once each (or --reserved-nodes).
if [[ -n $META_NODES ]]; then
    want_nodes=$(scontrol show hostnames "$META_NODES")
elif ((${#RES_NODES[@]})); then
    want_nodes=$(for n in "${RES_NODES[@]}"; do scontrol show hostnames "$n"; done | awk '!seen[$0]++')
else
    want_nodes=$(scontrol show hostnames "$NODES")
fi
reserved_nodes() { # nodes of all existing reservations but $1
    scontrol show res -o 2>/dev/null | grep -v "^ReservationName=$1 " |
        grep -o 'Nodes=[^ ]*' | cut -d= -f2 | grep -v '^(null)$' |
        while read -r hl; do scontrol show hostnames "$hl"; done
}
for i in "${!RESERVATIONS[@]}"; do
    r=${RESERVATIONS[$i]} rnodes=${RES_NODES[$i]}
    if scontrol show res "$r" >/dev/null 2>&1; then
        scontrol update ReservationName="$r" Users="$ACCOUNT" >/dev/null
        note "reservation $r exists, Users=$ACCOUNT"
        continue
    fi
    flags=IGNORE_JOBS
    # Slurm refuses a reservation on nodes another one holds unless it may overlap.
    if grep -qxF -f <(scontrol show hostnames "$rnodes") <(reserved_nodes "$r"); then flags+=,OVERLAP; fi
    # N cores on each node. Up to 23.02 CoreCnt takes one count per node of the list
    # (N,N,…); from 23.11 on it is one total for all of them, and a list is refused.
    cores=''
    if [[ -n $CORES ]]; then
        count=$(scontrol show hostnames "$rnodes" | wc -l)
        if [[ $(printf '%s\n' 23.11 "$SLURM_RELEASE" | sort -V | head -1) == 23.11 ]]; then
            cores=$((CORES * count))
        else
            cores=$(for ((k = 0; k < count; k++)); do echo "$CORES"; done | paste -sd,)
        fi
    fi
    scontrol create reservation ReservationName="$r" Users="$ACCOUNT" Nodes="$rnodes" \
        PartitionName="$PARTITION" StartTime=now Duration=infinite Flags="$flags" \
        ${cores:+CoreCnt=$cores} >/dev/null
    note "created reservation $r (Nodes=$rnodes${cores:+ CoreCnt=$cores} Flags=$flags)"
done
# The start after a pre-start: the reservation may have been renamed (<id> -> <id>_1);
# Slurm cannot rename one, so the pre-start's that the new list lacks go.
if ((!PRESTART)) && [[ -f $CORE_META && ! -e $CURRENT/beamtime-metadata-$ID.json ]]; then
    listed=$(python3 -c 'import json, sys
r = (json.load(open(sys.argv[1])).get("onlineAnalysis") or {}).get("slurmReservation")
print("\n".join([r] if isinstance(r, str) else r or []))' "$CORE_META") ||
        die "cannot read the pre-start reservations from $CORE_META"
    while read -r old; do
        [[ -n $old ]] || continue
        printf '%s\n' "${RESERVATIONS[@]}" | grep -qxF "$old" && continue
        scontrol show res "$old" >/dev/null 2>&1 || continue
        if scontrol delete ReservationName="$old" >/dev/null 2>&1; then
            note "deleted pre-start reservation $old"
        else
            note "pre-start reservation $old still has jobs: left in place (scontrol delete it when they end)"
        fi
    done <<<"$listed"
fi

# ---- 4. the beamline folder (the core folder in pre-start)
# /beamline is where jobs see the beamline on the node, under the plugin's private tmpfs.
install -d -o root -g root -m 755 /beamline
# The beamline's own file system (<source-root>/<beamline>) is there whatever beamtime it
# holds, pre-start included: the plugin tells "not started yet" from a missing current/
# under it, and a missing beamline folder from a file system that is not mounted.
install -d -o root -g root -m 755 "$SOURCE_ROOT/$BEAMLINE"
# Permissions as the header says; chown/chmod after mkdir (not install -d -m): they must
# also correct a folder that exists. $1: the folder, $2: its scratch subfolder's name.
make_storage() {
    mkdir -p "$1"/{raw,processed,shared,"$2"}
    chown root:"$GROUP" "$1" "$1/raw"
    chmod 750 "$1" "$1/raw"
    chown "$ACCOUNT:$GROUP" "$1"/{processed,shared,"$2"}
    chmod 2770 "$1"/{processed,shared,"$2"}
}
# The account's key pair in $1/shared: the core folder's when it has one (made in
# pre-start), so that the beamtime keeps one key, else a new one.
install_key() {
    local shared=$1/shared home
    [[ -f $shared/id_rsa ]] && return
    if [[ $1 != "$CORE" && -f $CORE/shared/id_rsa ]]; then
        install -o "$ACCOUNT" -g "$GROUP" -m 640 "$CORE/shared/id_rsa" "$shared/id_rsa"
        install -o "$ACCOUNT" -g "$GROUP" -m 644 "$CORE/shared/id_rsa.pub" "$shared/id_rsa.pub"
    elif command -v ssh-keygen >/dev/null; then
        runuser -u "$ACCOUNT" -- ssh-keygen -q -t rsa -b 2048 -N '' -C "$ACCOUNT@beamtime-$ID" \
            -f "$shared/id_rsa"
        # ssh-keygen leaves it 0600; the participants read it through the group.
        chgrp "$GROUP" "$shared/id_rsa"
        chmod 640 "$shared/id_rsa"
        home=$(getent passwd "$ACCOUNT" | cut -d: -f6)
        install -d -o "$ACCOUNT" -g "$GROUP" -m 700 "$home/.ssh"
        cat "$shared/id_rsa.pub" >>"$home/.ssh/authorized_keys"
        chown "$ACCOUNT:$GROUP" "$home/.ssh/authorized_keys"
        chmod 600 "$home/.ssh/authorized_keys"
    else
        note "ssh-keygen not installed: no key pair in $shared (the metadata still names it)"
    fi
}
if ((PRESTART)); then
    install -d -o root -g root -m 755 "$CORE_ROOT" "$CORE_ROOT/$BEAMLINE"
    make_storage "$CORE" scratch_cc
    install_key "$CORE"
else
    install -d -o root -g root -m 755 "$SOURCE_ROOT" "$SOURCE_ROOT/$BEAMLINE"
    if [[ -n $OTHER ]]; then
        rm -rf --one-file-system "$SOURCE_ROOT/$BEAMLINE/previous-$OTHER"
        mv "$CURRENT" "$SOURCE_ROOT/$BEAMLINE/previous-$OTHER"
        note "moved beamtime $OTHER's folder to $SOURCE_ROOT/$BEAMLINE/previous-$OTHER"
    fi
    make_storage "$CURRENT" scratch_bl
    install_key "$CURRENT"
fi

# ---- 5. the metadata file
if ((PRESTART)); then
    METADATA_DIR=$CORE
else
    METADATA_DIR=${METADATA_DIR:-$CURRENT}
fi
[[ -d $METADATA_DIR ]] || install -d -m 755 "$METADATA_DIR"
META=$METADATA_DIR/beamtime-metadata-$ID.json
# A beamtime with a core folder (made in pre-start) names it; others a made-up one.
CORE_PATH=
if ((PRESTART)) || [[ -f $CORE_META ]]; then CORE_PATH=$CORE; fi
BT_ID=$ID BT_BEAMLINE=$BEAMLINE BT_ALIAS=$ALIAS BT_ACCOUNT=$ACCOUNT BT_PARTITION=$PARTITION \
    BT_NODES="$want_nodes" BT_RESERVATIONS="${RESERVATIONS[*]}" BT_ONLINE=$ONLINE \
    BT_TITLE=$TITLE BT_PROPOSAL_TYPE=$PROPOSAL_TYPE BT_CORE_PATH=$CORE_PATH BT_OUT=$META.new \
    python3 - <<'EOF'
import datetime, json, os

e = os.environ
now = datetime.datetime.now().replace(microsecond=0)
fmt = "%Y-%m-%d %H:%M:%S"
bid, bl = e["BT_ID"], e["BT_BEAMLINE"]
# Made-up people, as in the project's fixtures: no real names in test data.
pi = {"email": "erika.beispiel@example.org", "institute": "Example University",
      "lastname": "Beispiel", "userId": "90001", "username": "beispiee"}
leader = {"email": "max.muster@example.org", "institute": "Example University",
          "lastname": "Muster", "userId": "90002", "username": "musterma"}
meta = {
    "applicant": pi,
    "asapo": {"beamtimeClbtTokenPath": "shared/asapo-token-clbt.txt",
              "beamtimeTokenPath": "shared/asapo-token.txt",
              "endpoint": "asapo-ps-0.example.org:8400"},
    "beamline": bl,
    "beamlineAlias": e["BT_ALIAS"],
    "beamlineSetup": "Online analysis test setup",
    "beamtimeId": bid,
    "contact": "Jan Probe",
    "corePath": e["BT_CORE_PATH"] or f"/asap3/petra3/gpfs/{bl}/{now.year}/data/{bid}",
    "eventEnd": (now + datetime.timedelta(days=3)).strftime(fmt),
    "eventStart": now.strftime(fmt),
    "facility": "PETRA III",
    "generated": now.strftime(fmt),
    "leader": leader,
    "pi": pi,
    "proposalId": f"{now.year - 1}{bid[-4:]}",
    "proposalType": e["BT_PROPOSAL_TYPE"],
    "retentionPeriod": "default",
    "title": e["BT_TITLE"],
    "unixId": "None",
    "users": {"doorDb": ["beispiee", "musterma", "probej"], "special": [], "unknown": []},
}
if e["BT_ONLINE"] == "1":
    res = e["BT_RESERVATIONS"].split()
    meta["onlineAnalysis"] = {
        "reservedNodes": e["BT_NODES"].split(),
        "slurmPartition": e["BT_PARTITION"],
        # One reservation is a string in every file seen; several are a list.
        "slurmReservation": res[0] if len(res) == 1 else res,
        "sshPrivateKeyPath": "shared/id_rsa",
        "sshPublicKeyPath": "shared/id_rsa.pub",
        "userAccount": e["BT_ACCOUNT"],
    }
with open(e["BT_OUT"], "w") as f:
    json.dump(meta, f, sort_keys=True, indent=4)
    f.write("\n")
EOF
chown root:root "$META.new"
chmod 644 "$META.new"
if ((PRESTART)); then
    mv -f "$META.new" "$META"
    note "beamtime $ID in pre-start: $CORE (the beamline folder $CURRENT is left alone)"
else
    # The core folder's copy says the same: it names the reservations that exist now.
    [[ -z $CORE_PATH || $META == "$CORE_META" ]] || cp -p "$META.new" "$CORE_META.new"
    mv -f "$META.new" "$META"
    [[ ! -f $CORE_META.new ]] || mv -f "$CORE_META.new" "$CORE_META"
    note "beamtime $ID started: $CURRENT"
fi
echo "$META"
