# shellcheck shell=bash
# The state folder ($BT_TEST_STATE): emptied for every up, its leftover mounts removed
# for every down.

unmount_leftovers() {
    local mp
    # Deepest first, so nested mounts come off before their parents.
    awk -v s="$STATE/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r mp; do umount -l "$mp" 2>/dev/null || true; done
}

# reset_state JOB_CONTAINER: the state folder emptied and made again, for an up. Every up
# starts from empty state, so runs cannot leak reservations, accounts or jobs into each
# other. Logs of the previous run move to log.prev/ for post-mortems.
reset_state() {
    local job_container=$1 n
    unmount_leftovers
    mkdir -p "$STATE"
    chmod 755 "$STATE"
    rm -rf --one-file-system "$STATE/log.prev"
    [[ -d $LOG ]] && mv "$LOG" "$STATE/log.prev"
    # Everything but the previous logs goes, whatever wrote it (the daemons, the plugin's
    # job cache — a fresh controller hands out job ids from 1 again — and what scenarios
    # leave behind: core files, hide roots, copies), so no run sees another's leftovers.
    find "$STATE" -mindepth 1 -maxdepth 1 ! -name log.prev -exec rm -rf --one-file-system {} +
    install -d -m 755 "$ETC" "$RUN" "$LOG" "$STATE/spool" "$STATE/spool/slurmd" "$STATE/beamline-src" "$STATE/work"
    install -d -o slurm -g slurm -m 755 "$STATE/ctld"
    if [[ $job_container == 1 ]]; then
        install -d -m 700 "$STATE/jobcontainer"
        if ((NODE_COUNT > 1)); then for n in "${NODES[@]}"; do install -d -m 700 "$STATE/jobcontainer/$n"; done; fi
    fi
    # Daemons that drop privileges cannot create files in the root-owned log folder, and
    # mariadbd then logs to stderr instead: each log exists beforehand, owned by its writer.
    install -o slurm -g slurm -m 644 /dev/null "$LOG/slurmctld.log"
    install -o slurm -g slurm -m 644 /dev/null "$LOG/slurmdbd.log"
    for n in "${NODES[@]}"; do install -o root -g root -m 644 /dev/null "$LOG/$(slurmd_name "$n").log"; done
    install -o mysql -g mysql -m 644 /dev/null "$LOG/mariadbd.log"
    install -o munge -g munge -m 644 /dev/null "$LOG/munged.log"
    # The plugin mounts a private tmpfs over /beamline inside jobs; the host keeps it empty.
    install -d -o root -g root -m 755 /beamline
}
