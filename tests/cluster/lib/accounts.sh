# shellcheck shell=bash
# Accounting: the cluster, the ordinary users' account and test user in slurmdbd, and the
# wait until slurmctld knows an association.

sacctmgr_t() { timeout 20 sacctmgr -i "$@"; }

# The cluster must exist in the database before slurmctld registers with slurmdbd.
register_cluster() { sacctmgr_t add cluster "$CLUSTER_NAME" >/dev/null; }

# slurmctld learns about new associations from slurmdbd asynchronously; a job submitted
# before that is rejected as "Invalid account". Wait until the controller has it.
wait_assoc() {
    local user=$1 account=$2
    wait_for 30 "association $user/$account in slurmctld" "$LOG/slurmctld.log" -- \
        bash -c "scontrol show assoc_mgr users='$user' accounts='$account' flags=assoc |
                 grep -q 'UserName=$user('"
}

ensure_user() {
    local user=$1
    id -u "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
}

accounting_base() {
    sacctmgr_t add account "$DEFAULT_ACCOUNT" Cluster="$CLUSTER_NAME" \
        Description="ordinary users" Organization=facility >/dev/null
    ensure_user "$TEST_USER"
    sacctmgr_t add user "$TEST_USER" DefaultAccount="$DEFAULT_ACCOUNT" Cluster="$CLUSTER_NAME" >/dev/null
    wait_assoc "$TEST_USER" "$DEFAULT_ACCOUNT"
}
