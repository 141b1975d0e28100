//! Reading the user's own `sbatch`/`srun`/`salloc` options the way those
//! programs' getopt does, to find the partition, reservation and beamtime
//! they ask for, and where the script or command starts.
//!
//! Only option *arity* matters here: knowing which options consume the next
//! argument is what tells `-J -p` (a job named `-p`) from `-p X`, and
//! `-N 2 job.sh --partition=x` (script argument) from an option. Options not
//! in the tables are taken as flags, which at worst ends the scan early; the
//! plugin enforces the rules on the cluster side anyway.

use std::ffi::OsString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Sbatch,
    Srun,
    Salloc,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::Sbatch => "sbatch",
            Program::Srun => "srun",
            Program::Salloc => "salloc",
        }
    }

    /// Short options that take an argument, attached (`-pX`) or next (`-p X`).
    fn short_options_with_value(self) -> &'static str {
        match self {
            Program::Sbatch => "aAbBcCdDeFGiJLmMnNopqStwx",
            Program::Srun => "ABcCdDeGiJLmMnNopqrStTwWx",
            Program::Salloc => "AbBcCdDFGJLmMnNpqStwx",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    /// `--name value` or `--name=value`.
    Required,
    /// A flag, or an optional argument that must be attached with `=`.
    NoSeparateValue,
}

/// Long options of the three programs that take a required argument, plus
/// `--beamtime` from the beamtime SPANK plugin.
const LONG_WITH_VALUE: &[&str] = &[
    "accel-bind",
    "account",
    "acctg-freq",
    "array",
    "batch",
    "bb",
    "bbf",
    "beamtime",
    "begin",
    "chdir",
    "cluster-constraint",
    "clusters",
    "comment",
    "constraint",
    "container",
    "container-id",
    "core-spec",
    "cores-per-socket",
    "cpu-bind",
    "cpu-freq",
    "cpus-per-gpu",
    "cpus-per-task",
    "deadline",
    "delay-boot",
    "dependency",
    "distribution",
    "epilog",
    "error",
    "exclude",
    "export",
    "export-file",
    "extra",
    "extra-node-info",
    "gid",
    "gpu-bind",
    "gpu-freq",
    "gpus",
    "gpus-per-node",
    "gpus-per-socket",
    "gpus-per-task",
    "gres",
    "gres-flags",
    "het-group",
    "hint",
    "input",
    "job-name",
    "jobid",
    "kill-on-invalid-dep",
    "licenses",
    "mail-type",
    "mail-user",
    "mcs-label",
    "mem",
    "mem-bind",
    "mem-per-cpu",
    "mem-per-gpu",
    "mincpus",
    "mpi",
    "network",
    "nodefile",
    "nodelist",
    "nodes",
    "ntasks",
    "ntasks-per-core",
    "ntasks-per-gpu",
    "ntasks-per-node",
    "ntasks-per-socket",
    "open-mode",
    "output",
    "partition",
    "power",
    "prefer",
    "priority",
    "profile",
    "prolog",
    "qos",
    "relative",
    "reservation",
    "segment",
    "signal",
    "slurmd-debug",
    "sockets-per-node",
    "switches",
    "task-epilog",
    "task-prolog",
    "thread-spec",
    "threads",
    "threads-per-core",
    "time",
    "time-min",
    "tmp",
    "tres-bind",
    "tres-per-task",
    "uid",
    "wait-all-nodes",
    "wckey",
    "wrap",
];

/// Long flags and options with optional arguments; listed so that
/// abbreviations like `--part` resolve the way getopt_long resolves them.
const LONG_WITHOUT_SEPARATE_VALUE: &[&str] = &[
    "bcast",
    "bell",
    "compress",
    "contiguous",
    "disable-status",
    "exact",
    "exclusive",
    "external-launcher",
    "get-user-env",
    "help",
    "hold",
    "ignore-pbs",
    "immediate",
    "kill-command",
    "kill-on-bad-exit",
    "label",
    "multi-prog",
    "nice",
    "no-allocate",
    "no-bell",
    "no-kill",
    "no-requeue",
    "no-shell",
    "overcommit",
    "overlap",
    "oversubscribe",
    "parsable",
    "preserve-env",
    "propagate",
    "pty",
    "quiet",
    "quit-on-interrupt",
    "requeue",
    "resv-ports",
    "send-libs",
    "spread-job",
    "test-only",
    "unbuffered",
    "usage",
    "use-min-nodes",
    "verbose",
    "version",
    "wait",
    "x11",
];

fn long_arity(program: Program, name: &str) -> Option<Arity> {
    if name == "wait" {
        // srun's --wait takes seconds; sbatch's and salloc's is a flag.
        return Some(if program == Program::Srun {
            Arity::Required
        } else {
            Arity::NoSeparateValue
        });
    }
    if LONG_WITH_VALUE.contains(&name) {
        Some(Arity::Required)
    } else if LONG_WITHOUT_SEPARATE_VALUE.contains(&name) {
        Some(Arity::NoSeparateValue)
    } else {
        None
    }
}

/// The option a long name means: the exact name, or, like getopt_long, the
/// only known option it abbreviates. Unknown or ambiguous names give `None`.
fn resolve_long(name: &str) -> Option<&'static str> {
    let mut known = LONG_WITH_VALUE.iter().chain(LONG_WITHOUT_SEPARATE_VALUE);
    if let Some(exact) = known.clone().find(|candidate| **candidate == name) {
        return Some(exact);
    }
    let first = known.find(|candidate| candidate.starts_with(name))?;
    let unique = !LONG_WITH_VALUE
        .iter()
        .chain(LONG_WITHOUT_SEPARATE_VALUE)
        .any(|candidate| candidate != first && candidate.starts_with(name));
    (unique && !name.is_empty()).then_some(first)
}

/// What the user's options ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserOptions {
    pub partitions: Vec<String>,
    pub reservations: Vec<String>,
    pub beamtimes: Vec<String>,
    /// `-N`/`--nodes` and `-C`/`--constraint`, for choosing a reservation (choose.rs).
    pub nodes: Vec<String>,
    pub constraints: Vec<String>,
    /// A script (sbatch) or command (srun, salloc) follows the options.
    pub has_operand: bool,
    /// sbatch `--wrap`, which stands in for a script.
    pub has_wrap: bool,
    /// `--comment`, which `bt-submit watch` gives its jobs itself.
    pub comments: Vec<String>,
}

impl UserOptions {
    fn record(&mut self, option: &str, value: Option<String>) {
        let Some(value) = value else {
            return;
        };
        match option {
            "partition" => self.partitions.push(value),
            "reservation" => self.reservations.push(value),
            "beamtime" => self.beamtimes.push(value),
            "nodes" => self.nodes.push(value),
            "constraint" => self.constraints.push(value),
            "wrap" => self.has_wrap = true,
            "comment" => self.comments.push(value),
            _ => {}
        }
    }
}

/// Scans `args` (the user's options, then the script or command and its
/// arguments) up to the first operand.
pub fn scan(program: Program, args: &[OsString]) -> UserOptions {
    let mut found = UserOptions::default();
    let mut args = args.iter().map(|arg| arg.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        if arg == "--" {
            found.has_operand = args.next().is_some();
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (long, None),
            };
            let Some(option) = resolve_long(name) else {
                continue;
            };
            let value = match (attached, long_arity(program, option)) {
                (Some(value), _) => Some(value),
                (None, Some(Arity::Required)) => args.next(),
                (None, _) => None,
            };
            found.record(option, value);
        } else if arg.len() > 1 && arg.starts_with('-') {
            for (index, short) in arg.char_indices().skip(1) {
                if program.short_options_with_value().contains(short) {
                    let attached = &arg[index + short.len_utf8()..];
                    let value = if attached.is_empty() {
                        args.next()
                    } else {
                        Some(attached.to_owned())
                    };
                    match short {
                        'p' => found.record("partition", value),
                        'N' => found.record("nodes", value),
                        'C' => found.record("constraint", value),
                        _ => {}
                    }
                    break;
                }
            }
        } else {
            found.has_operand = true;
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(program: Program, args: &[&str]) -> UserOptions {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        scan(program, &args)
    }

    #[test]
    fn every_spelling_of_partition_is_found() {
        for args in [
            &["-p", "X", "job.sh"][..],
            &["-pX", "job.sh"],
            &["--partition", "X", "job.sh"],
            &["--partition=X", "job.sh"],
            &["--part=X", "job.sh"],
            &["-vvpX", "job.sh"],
            &["-Hp", "X", "job.sh"],
        ] {
            let found = scanned(Program::Sbatch, args);
            assert_eq!(found.partitions, ["X"], "{args:?}");
            assert!(found.has_operand, "{args:?}");
        }
    }

    #[test]
    fn reservation_and_beamtime_are_found() {
        let found = scanned(
            Program::Sbatch,
            &[
                "--reservation",
                "r1",
                "--rese=r2",
                "--beamtime=1",
                "--beam",
                "2",
                "x",
            ],
        );
        assert_eq!(found.reservations, ["r1", "r2"]);
        assert_eq!(found.beamtimes, ["1", "2"]);
    }

    #[test]
    fn values_of_other_options_are_not_mistaken_for_options() {
        let found = scanned(
            Program::Sbatch,
            &["-J", "-p", "--output", "--partition=x", "job.sh"],
        );
        assert!(found.partitions.is_empty());
        assert!(found.has_operand);
        let found = scanned(
            Program::Sbatch,
            &["-oout.txt", "-N", "2", "job.sh", "-p", "X"],
        );
        assert!(
            found.partitions.is_empty(),
            "options after the script are the script's"
        );
    }

    #[test]
    fn double_dash_ends_options() {
        let found = scanned(Program::Srun, &["-N1", "--", "-p", "X"]);
        assert!(found.partitions.is_empty());
        assert!(found.has_operand);
        assert!(!scanned(Program::Salloc, &["-N1", "--"]).has_operand);
    }

    #[test]
    fn wait_takes_a_value_only_for_srun() {
        assert!(scanned(Program::Srun, &["--wait", "30"])
            .has_operand
            .eq(&false));
        assert!(scanned(Program::Sbatch, &["--wait", "job.sh"]).has_operand);
        assert!(scanned(Program::Srun, &["-W", "30", "hostname"]).has_operand);
    }

    #[test]
    fn wrap_stands_in_for_a_script() {
        let found = scanned(Program::Sbatch, &["--wrap", "hostname"]);
        assert!(found.has_wrap && !found.has_operand);
    }

    #[test]
    fn ambiguous_and_unknown_abbreviations_are_not_resolved() {
        assert_eq!(resolve_long("p"), None);
        assert_eq!(resolve_long("par"), None, "partition and parsable");
        assert_eq!(resolve_long("part"), Some("partition"));
        assert_eq!(resolve_long("res"), None, "reservation and resv-ports");
        assert_eq!(resolve_long("nonsense"), None);
        assert_eq!(resolve_long(""), None);
        assert_eq!(
            resolve_long("mem"),
            Some("mem"),
            "exact names win over longer ones"
        );
    }
}
