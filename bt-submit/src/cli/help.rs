//! The long help texts of bt-submit and its subcommands, which `--help` and
//! the man pages (xtask) show.

pub(super) const LONG_ABOUT: &str = "\
Submit Slurm jobs to a beamtime's online analysis resources.

bt-submit reads the beamtime metadata file and runs sbatch (or srun, salloc)
with --partition, --reservation and --beamtime taken from it, followed by
your own options and script. It replaces itself with that program, so its
output and exit status are yours.

The first word chooses what to do:
  bt-submit [OPTIONS] [--] [SBATCH_OPTIONS...] SCRIPT [ARGS...]
  bt-submit sbatch [OPTIONS] [--] [SBATCH_OPTIONS...] SCRIPT [ARGS...]
  bt-submit srun   [OPTIONS] [--] [SRUN_OPTIONS...] COMMAND [ARGS...]
  bt-submit salloc [OPTIONS] [--] [SALLOC_OPTIONS...] [COMMAND [ARGS...]]
  bt-submit show   [--beamtime ID | --metadata FILE] [--format json]
  bt-submit doctor [--beamtime ID | --metadata FILE] [--remote [--node NODE]] [--format json]
  bt-submit watch  [OPTIONS] DIR -- [SBATCH_OPTIONS...] SCRIPT [ARGS...]
bt-submit's own options come right after that word; the first argument that
is not one of them starts the options for sbatch/srun/salloc, and so does --.
(A batch script called sbatch, srun, salloc or show is given as ./NAME.)
Everything after the script is the script's, as for sbatch, except a name of
bt-submit's own options (--dry-run, --remote, --beamtime, ...): that is
refused, with the command meant, rather than handed to the script; a script
that takes such an argument gets it after a second --, which ends sbatch's
options (bt-submit -- -- job.sh --dry-run). So are a long option one typo
away from one of bt-submit's or the program's (--beamtme), and a script name
that is no file but a typo of a subcommand, or help.

Where each setting comes from, the first that is set winning:

  the metadata file   1. --metadata FILE
                      2. with --beamtime ID, the first search path set of:
                         BEAMTIME_METADATA_PATH, colon-separated patterns
                         such as /gpfs/current/beamtime-metadata-{id}.json
                         (* matches within one path component); the
                         metadata_path lines of $BT_SUBMIT_CONFIG or
                         /etc/beamtime/bt-submit.conf; the metadata= patterns
                         of the spank_beamtime line in Slurm's plugstack
                         (PlugStackConfig from 'scontrol show config', with its
                         include lines and plugstack.conf.d); the facility's
                         usual places
                      3. without either option, the metadata file in the
                         current folder or the nearest folder above it
  the beamline path   (show, --dry-run --format json) the target= of that
                      plugstack line, else /beamline/<beamline>/current

The plugstack is read (one 'scontrol show config') only for a setting that
the sources above it leave open; if it cannot be read (no scontrol, no
plugin line), the defaults hold. A plugin line the plugin cannot use (an
unknown key, a bad value, no source=, an unknown trusted_owners user)
refuses every --beamtime job, so bt-submit stops with status 78 when it
reads one.

Your own --partition/-p, --reservation and --beamtime options must agree with
the metadata file; if they do not, nothing is submitted. So must the batch
script's #SBATCH lines, read as sbatch reads them (from the top of the script
up to its first command); an option on the command line wins over the
script's, as in sbatch.

When the beamtime has several reservations and you give -N/--nodes or
-C/--constraint (on the command line or in #SBATCH lines) but no
reservation, bt-submit asks the controller which nodes each reservation
holds, takes the first one that can satisfy them, and says which it chose.

--remote submits from one of the beamtime's reserved nodes instead, for a
computer that sees the beamline filesystem but is no Slurm submit host (the
beamline's own): bt-submit logs in there with ssh as the beamtime account
(userAccount) with its key (sshPrivateKeyPath), to --node or else to the
first of reservedNodes that answers, and runs the same sbatch command there,
every argument quoted exactly. Host keys are checked against known_hosts
(an unknown node is refused, never added); BatchMode=yes, IdentitiesOnly=yes
and a connect timeout keep ssh from prompting, from offering other keys and
from hanging on a node that is down. sbatch runs in the account's home on
the node, so the script and every path must be ones the node sees (the
beamline filesystem is shared): give them absolutely (bt-submit warns of a
relative script, --output, --error or --chdir, and of a job with neither
--output nor --chdir, whose output would land in that home). It prints 'Submitted
batch job ID' as sbatch does, and the node on stderr (with --format json:
jobId, cluster, node and the ssh command), and exits with sbatch's status. Only the metadata file is read
here; the controller is asked on the node. srun and salloc are interactive
and are not run over --remote: log in with the command 'bt-submit show'
prints.";

pub(super) const WATCH_STATUS_ABOUT: &str = "\
What a watch did, from its state file (read beside the running watch, never
changed): per file or scan folder, its job and the job's state as Slurm
tells it (squeue for the jobs the controller still holds, then sacct where
the site keeps accounting), how often it was tried, and what sbatch said
when it last refused it; then the totals. Name the watch by its folder (and
--each folder for a watch of scan folders), as when it was started, or by
--state FILE. With --remote, Slurm is asked on a reserved node over ssh, as
the watch does.

  bt-submit watch status /gpfs/p11/current/raw
  bt-submit watch status --state ~/p11.json --format json";

pub(super) const WATCH_RESUBMIT_ABOUT: &str = "\
Marks the files (or scan folders) of a watch whose jobs failed (FAILED,
TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE; not CANCELLED), and
those the watch failed after refusals no retry could fix, to be
submitted again: the state keeps the failed job as an earlier attempt, and
the next start of the watch submits each of them once, as a new file. It
takes the state's lock, so it refuses while the watch runs: stop the watch,
resubmit, start the watch again. Run twice, it marks nothing the second
time (a marked file has no failed job until it is submitted again).

  bt-submit watch resubmit /gpfs/p11/current/raw";

pub(super) const WATCH_ABOUT: &str = "\
Submit one batch job per new file below DIR (subfolders included), once the
file is complete, exactly once, even across restarts of the watch. On the
beamline computer (no Slurm there), submitting over ssh from a reserved node,
with where jobs see the beamline folder said by --map:

  bt-submit watch --metadata /gpfs/p11/current/beamtime-metadata-11099001.json \
      --remote --skip-existing --map /gpfs/p11/current=/beamline/p11/current \
      --pattern '*.h5' /gpfs/p11/current/raw \
      -- /gpfs/p11/current/shared/analyse.sh {}

On a login node, where Slurm's plugstack names the plugin's source= and
target=, the watch finds that mapping itself:

  bt-submit watch --beamtime 11099001 --each folder --pattern 'scan_*' \
      --done-file scan.done /gpfs/p11/current/raw -- analyse-scan.sh {}

(with --each folder, one job per new scan folder directly below DIR, once
everything in it is complete; {} is then the folder).

Try either first with --dry-run: it lists what would be submitted now, each
with its command, and submits nothing and writes no state.

Everything after -- is what 'bt-submit sbatch' takes: sbatch options, then
the script and its arguments. Paths are given as the job sees them: each
argument that is exactly {} becomes the file's path on the job's node, and
{path} (the same), {name} (its name), {stem} (its name without the last
extension) and {rel} (its path below DIR) are replaced anywhere in an
argument, e.g. -o '/gpfs/p11/current/processed/{stem}.out'; without any of
them, the path is added
as the script's last argument ({} inside an argument is left alone). Where
the job sees DIR: in the beamline folder as the nodes have it (source=),
the same place below the folder jobs see (target=, /beamline/p11/current);
in that folder or in the beamtime's core path, the same path; elsewhere,
what --map FROM=TO says (--map DIR=DIR when the nodes see it at the same
path); a folder none of these places is refused. The script, -o and -e are
not mapped: give them as absolute paths the node that submits (with
--remote, a reserved node) and the job's node have outside the job's view of
/beamline (sbatch reads the script there, and Slurm opens the output before
that view exists). Each job gets
--comment=bt-submit-watch:<id>:<n> (so no --comment of your own): by it the
watch counts its jobs and finds, after a crash, a job it submitted but had
not recorded.

A file is complete when inotify reports it closed after writing or renamed
into place (and it has not changed since), or else when two looks --settle
seconds apart find the same size and mtime. The folder is looked through
every --poll-interval seconds whether or not inotify works: on a cluster
filesystem (GPFS) files written by another host raise no inotify event here.
A folder whose mtime has not changed since it was last listed costs one stat
(nothing was added to it); each is listed at least once a minute.
--pattern matches file names (not folders, never paths) with the full glob
syntax: * any run of characters, ? one character, [0-9] or [!x] one of a set,
{h5,cbf} one of several; repeat --pattern to submit names matching any of
them. A pattern with / or one that is not a glob is refused. Names starting
with . are skipped unless the pattern starts with . too, so a detector's
hidden temporary file renamed into place is submitted under its final name
only. Symbolic links are not followed.

With --each folder, --pattern matches the names of the folders directly
below DIR (files there are left alone), and a scan folder is complete when
two looks --settle seconds apart find every file below it (hidden ones
included) as before: the same files, sizes and mtimes. A scan that pauses
longer than that would be submitted early; if the detector or the beamline
control writes a last file when a scan ends, name it with --done-file NAME:
the folder is then complete once NAME is in it and nothing changed between
that look and the one right before sbatch, and never by settling. Every
folder not submitted yet is summed up file by file at every look.

\"The same file\" is the same path below DIR (a scan folder: the same name):
a path once submitted is never submitted again, even if the file is
rewritten or more files come into the folder. The state file (--state,
default $XDG_STATE_HOME/bt-submit/ or ~/.local/state/bt-submit/, named after
DIR and whether it watches files or folders; never inside DIR, where the
watch writes nothing) records every submitted path and its job: each change
is a line appended to its journal beside it (FILE.journal) and fsync'ed,
folded into the state file now and then and at every start (temporary file,
fsync, rename, fsync of its folder). Before each sbatch it records the
submission it starts; a watch killed during one asks Slurm on restart for
the job by its comment (squeue, so within the controller's MinJobAge of the
job's end) and records it instead of submitting again. On start it submits
every file not in the state: on the first start, all files already there,
unless --skip-existing records them as skipped (never submitted; the log
says how many). Another watch of the same state is refused, with its pid,
host and start: stop that one to take over; a second state for the same
folder would submit every file again.

With --remote, sbatch and squeue run on a reserved node over ssh as for
'bt-submit --remote' (see bt-submit --help); DIR is read here.

The watch follows the beamtime: every 10 s (and at once on SIGHUP) it reads
the metadata again, as every bt-submit command chooses it, and when it
changed it plans again (reservation, partition, with --remote the nodes)
and logs the plan, old -> new: a watch started in pre-start sends the files
after the start into the online reservation.

A refused submission is logged (and counted in the state, for 'watch
status') and tried again after 2 s, then 4, 8, ... up to 5 minutes. A refusal no retry can fix (an invalid reservation, partition
or account, the beamtime plugin's refusal) is told apart from one that
passes (the controller down or busy): after 3 of them a file is failed and
not tried again until the plan changes; when every submission has been
refused so for --give-up-after seconds, the watch says so and exits 69, for
a supervisor to alert someone. At most --max-in-flight (default 50; 0: no
limit) of the watch's jobs are pending or running, as squeue says. When the
state's disk is full the watch says so and submits nothing until it can
record again, then goes on by itself. With --remote, one ssh connection per
node serves a burst of submissions (OpenSSH connection sharing, its socket
in a private folder; closed when the watch stops).

SIGHUP does not stop it (it reads the metadata again), so it outlives the
logout; its log then needs a file instead of the terminal:
  nohup bt-submit watch ... >> watch.log 2>&1 < /dev/null &
or, where the host runs systemd (not tested by this project), a user service:
  systemd-run --user --unit bt-watch-p11 bt-submit watch ... (journalctl
  --user -u bt-watch-p11 for its log; loginctl enable-linger to outlive
  the last session)
SIGINT and SIGTERM stop the watch after the submission under way (a local
sbatch runs in a process group of its own, so Ctrl-C does not interrupt it;
with --remote it does reach ssh, and the next start asks Slurm by the
comment what that submission did). One line
per event on stdout, with the time in UTC: a file and its job id, why a file
was not submitted, a plan change, and every minute (and when it stops) the
counters: files seen, waiting to be complete, submitted, jobs in flight,
refused, failed. --format json writes each event as one JSON object per line
instead: time, event (submitted, refused, failed, plan-changed, counters,
waiting-for-disk, ...) and its fields (file, the path below DIR as it is,
job, node, attempt, error, oldPlan and newPlan, the counters), for the
programs around the watch. The watch never changes or deletes anything in DIR.

'bt-submit watch status DIR' shows per file its job and the job's state in
Slurm, and 'bt-submit watch resubmit DIR' marks the files whose jobs failed
to be submitted again (see their --help); a folder to watch that is named
status or resubmit is written ./status.";

pub(super) const SHOW_ABOUT: &str = "\
Show the beamtime: window, nodes, partition, reservations, how to log in, and
its phase, which says what its --beamtime jobs get. The window's times are
the facility's local time (the metadata file names no zone): they are shown
with this host's zone (TZ) and where now stands to them (starts in, running,
ended ... ago).

  online               the beamline folder (the plugin's source=) holds the
                       beamtime's metadata file: jobs see the beamline
  pre-start            it does not exist yet, or holds another beamtime's
                       file (the beamtime has not started on the beamline, or
                       the beamline has moved on): jobs run without the
                       beamline, with BEAMTIME_PHASE=pre-start, unless the
                       site refuses them (prestart=refuse)
  no-online-resources  the metadata has no onlineAnalysis block yet: jobs are
                       refused

The phase is decided as the plugin decides it on the node, from the same
folder; where this host does not see that folder (or may not look into it),
show says that the node decides. --format json prints the same fields as
JSON, the phase as \"phase\" (null when the node decides), \"jobs\" (\"run\",
\"refused\" or null) and \"phaseNote\".";

pub(super) const DOCTOR_ABOUT: &str = "\
Check, in order, everything that decides whether a beamtime job will run,
and print one line per check (ok, FAIL or skip) with a fix for each failure:

  controller          this host reaches the Slurm controller (the first
                      question to it); when it does not, the one cause
                      ('cannot reach the Slurm controller', or 'no Slurm
                      host: use --remote') and every check that asks
                      the controller is skipped, not asked again
  plugstack-line      only when the plugin cannot use its line in Slurm's
                      plugstack (an unknown key, a bad value, no source=, an
                      unknown trusted_owners user): that line, file:line, and
                      the argument, first, since every --beamtime job is
                      refused over it
  metadata            the metadata file is where the plugin looks (its
                      metadata= patterns) and is trusted (owned by one of
                      its trusted_owners, not writable by others)
  online-resources    the file has a complete onlineAnalysis block
  user                you are the beamtime's account (userAccount)
  reservations        its reservations exist and are ACTIVE
  reservation-access  their Users=/Accounts= admit you
  nodes               its reservedNodes are up and not drained
  partition           its partition is UP
  plugin              the spank_beamtime plugin is in Slurm's plugstack
                      configuration (PlugStackConfig and its includes) and
                      srun here offers --beamtime
  beamline-source     the beamtime's phase, from the beamline folder (the
                      plugin's source=), reached without symbolic links:
                      online when it holds the beamtime's metadata file,
                      owned by a trusted owner and not writable by others,
                      as the plugin requires before it mounts it; pre-start
                      when it does not exist yet or holds another
                      beamtime's, which passes (jobs run without the
                      beamline until the beamtime starts) unless the site
                      refuses such jobs (prestart=refuse); a folder this
                      host does not see is left to the node
  task-lifetime       Slurm tracks every process of a job
                      (ProctrackType=proctrack/cgroup); any other
                      ProctrackType is a warning for the admins: a process
                      that leaves its session outlives its job with the
                      beamline it was shown (a warning does not fail)

A check that needs an earlier one that failed is skipped. The plugstack
configuration must be readable, as it is for srun and sbatch. The metadata
check says where it searched: the plugin's metadata= patterns when its line
can be used (bt-submit's own search path does not change where the plugin
looks), else bt-submit's search path (see bt-submit --help), trusting only
root.

With --remote, on the beamline computer (no Slurm), it checks instead what
'bt-submit --remote' needs, in the order it needs it:

  metadata            the metadata file, found as for --remote
  online-resources    the file has a complete onlineAnalysis block
  key                 the beamtime's key (sshPrivateKeyPath) exists, can be
                      read, and ssh will take it
  known-hosts         each reserved node's host key is in known_hosts under
                      the name ssh looks up (ssh -G: [host]:port for another
                      port, or the HostKeyAlias); else the exact line to add
  reach               each reserved node answers on its ssh port
  login               a BatchMode login as the account with the key, on
                      --node or the first node that passed both
  sbatch              sbatch runs there
  node-view           the node's own 'bt-submit doctor' for the beamtime";
