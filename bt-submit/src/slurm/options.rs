//! Reading the user's own `sbatch`/`srun`/`salloc` options the way those
//! programs' getopt does, to find the partition, reservation and beamtime
//! they ask for, and where the script or command starts.
//!
//! The one reader of Slurm's option syntax in bt-submit: every check on the
//! user's options (the watch's `--comment` refusal, the contradiction checks
//! for partition, reservation and beamtime) reads them through [`scan`]. It
//! resolves abbreviations and arity from the option tables of each supported
//! release, generated from Slurm's sources: knowing which options consume the
//! next argument is what tells `-J -p` (a job named `-p`) from `-p X`, and
//! `-N 2 job.sh --partition=x` (script argument) from an option, and knowing
//! every option name is what tells that sbatch reads `--com=x` as
//! `--comment=x`. Options not in the tables (another SPANK plugin's) are taken
//! as flags, which at worst ends the scan early; the plugin enforces the rules
//! on the cluster side anyway.

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
}

/// Each supported release's option table of sbatch, srun and salloc, generated
/// from its src/common/slurm_opt.c by scripts/slurm-option-table.py (never
/// typed by hand; bt-submit/slurm-options/README.md says where each came from).
const RELEASE_TABLES: &[(&str, &str)] = &[
    ("22.05", include_str!("../../slurm-options/22.05.tsv")),
    ("23.11", include_str!("../../slurm-options/23.11.tsv")),
    ("24.11", include_str!("../../slurm-options/24.11.tsv")),
    ("25.05", include_str!("../../slurm-options/25.05.tsv")),
    ("25.11", include_str!("../../slurm-options/25.11.tsv")),
    ("26.05", include_str!("../../slurm-options/26.05.tsv")),
];

/// What getopt lets an option take (`has_arg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    None,
    /// `--name value`, `--name=value`, `-x value`, `-xvalue`.
    Required,
    /// Only attached: `--name=value`, `-xvalue`.
    Optional,
}

/// One entry of a program's getopt table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Opt {
    name: &'static str,
    arity: Arity,
    /// getopt's `val`: `'p'` for an option with a short form, else Slurm's
    /// `LONG_OPT_*` constant. Two names with one `val` and arity are one option.
    val: &'static str,
}

/// The option the beamtime SPANK plugin adds to every program's table (SPANK
/// options are appended to the table getopt_long is given).
const BEAMTIME: Opt = Opt {
    name: "beamtime",
    arity: Arity::Required,
    val: "spank:beamtime",
};

/// `program`'s getopt table in one release's generated table text.
fn options_of(table: &'static str, program: Program) -> Vec<Opt> {
    let mut options: Vec<Opt> = table
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (name, arity, val, programs) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            if !programs.split(',').any(|p| p == program.name()) {
                return None;
            }
            let arity = match arity {
                "required" => Arity::Required,
                "optional" => Arity::Optional,
                _ => Arity::None,
            };
            Some(Opt { name, arity, val })
        })
        .collect();
    options.push(BEAMTIME);
    options
}

/// The option `name` means to getopt_long given `options`: the exact name,
/// else the options it is a prefix of, if they are all one option (same
/// `val` and arity, as glibc compares them); `None` for an unknown or
/// ambiguous name, which the program itself refuses.
fn resolve_long(options: &[Opt], name: &str) -> Option<Opt> {
    if name.is_empty() {
        return None;
    }
    if let Some(exact) = options.iter().find(|o| o.name == name) {
        return Some(*exact);
    }
    let mut matches = options.iter().filter(|o| o.name.starts_with(name));
    let first = *matches.next()?;
    matches
        .all(|o| o.val == first.val && o.arity == first.arity)
        .then_some(first)
}

/// What a long option name may mean to `program`: its meaning in each
/// supported release, without repeats. bt-submit does not know which release
/// will read the options, so a check takes every meaning any release gives.
fn long_meanings(program: Program, name: &str) -> Vec<Opt> {
    let mut meanings: Vec<Opt> = Vec::new();
    for (_, table) in RELEASE_TABLES {
        if let Some(option) = resolve_long(&options_of(table, program), name) {
            if !meanings.contains(&option) {
                meanings.push(option);
            }
        }
    }
    meanings
}

/// What the short option `letter` may mean to `program`, in any supported release.
fn short_meanings(program: Program, letter: char) -> Vec<Opt> {
    let val = format!("'{letter}'");
    let mut meanings: Vec<Opt> = Vec::new();
    for (_, table) in RELEASE_TABLES {
        for option in options_of(table, program) {
            if option.val == val && !meanings.contains(&option) {
                meanings.push(option);
            }
        }
    }
    meanings
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
    /// Where in the arguments that script or command is.
    pub operand_at: Option<usize>,
    /// A `--` ended the options: what follows is the script's, whatever it looks like.
    pub options_ended: bool,
    /// Long option names no supported release knows (another SPANK plugin's,
    /// bt-submit's own, or a typo), with where each is in the arguments.
    pub unknown_long: Vec<(usize, String)>,
    /// sbatch `--wrap`, which stands in for a script.
    pub has_wrap: bool,
    /// `--comment`, which `bt-submit watch` gives its jobs itself.
    pub comments: Vec<String>,
    /// `-o`/`--output`, `-e`/`--error` and `-D`/`--chdir`: paths that, with
    /// `--remote`, the node reads from the account's home.
    pub outputs: Vec<String>,
    pub errors: Vec<String>,
    pub chdirs: Vec<String>,
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
            "output" => self.outputs.push(value),
            "error" => self.errors.push(value),
            "chdir" => self.chdirs.push(value),
            _ => {}
        }
    }
}

/// Scans `args` (the user's options, then the script or command and its
/// arguments) up to the first operand, as getopt_long reads them: long
/// options by any unique prefix, `--name value` and `--name=value`, short
/// options clustered (`-vvpX`). An option that means different things in
/// different releases counts as each of them.
pub fn scan(program: Program, args: &[OsString]) -> UserOptions {
    let mut found = UserOptions::default();
    let mut args = args
        .iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .enumerate();
    while let Some((at, arg)) = args.next() {
        if arg == "--" {
            found.options_ended = true;
            found.operand_at = args.next().map(|(at, _)| at);
            found.has_operand = found.operand_at.is_some();
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (long, None),
            };
            let meanings = long_meanings(program, name);
            if meanings.is_empty() {
                found.unknown_long.push((at, name.to_owned()));
            }
            let value = match attached {
                Some(value) => Some(value),
                None if meanings.iter().any(|o| o.arity == Arity::Required) => {
                    args.next().map(|(_, value)| value)
                }
                None => None,
            };
            for option in meanings {
                found.record(option.name, value.clone());
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            for (index, letter) in arg.char_indices().skip(1) {
                let meanings = short_meanings(program, letter);
                let takes = |arity| meanings.iter().any(|o| o.arity == arity);
                if !takes(Arity::Required) && !takes(Arity::Optional) {
                    continue;
                }
                let attached = &arg[index + letter.len_utf8()..];
                let value = if !attached.is_empty() {
                    Some(attached.to_owned())
                } else if takes(Arity::Required) {
                    args.next().map(|(_, value)| value)
                } else {
                    None
                };
                for option in meanings {
                    found.record(option.name, value.clone());
                }
                break;
            }
        } else {
            found.has_operand = true;
            found.operand_at = Some(at);
            break;
        }
    }
    found
}

/// Every long option name `program` has in some supported release (and
/// `--beamtime`), for suggesting the one a misspelled name was meant to be.
pub fn long_names(program: Program) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for (_, table) in RELEASE_TABLES {
        for option in options_of(table, program) {
            if !names.contains(&option.name) {
                names.push(option.name);
            }
        }
    }
    names
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

    /// Whether another option of `program`'s table in that release starts with
    /// `prefix` too and is another option (getopt_long's ambiguity), told
    /// from the table itself.
    fn others_start_with(options: &[Opt], option: &Opt, prefix: &str) -> bool {
        options.iter().any(|o| {
            o.name != option.name
                && o.name.starts_with(prefix)
                && (o.val != option.val || o.arity != option.arity)
        })
    }

    #[test]
    fn every_unique_prefix_resolves_in_every_release_and_an_ambiguous_one_does_not() {
        for (release, table) in RELEASE_TABLES {
            for program in [Program::Sbatch, Program::Srun, Program::Salloc] {
                let options = options_of(table, program);
                // A table that did not load would pass everything below.
                assert!(
                    options.len() > 50,
                    "{release} {program:?}: {}",
                    options.len()
                );
                for option in &options {
                    for end in 1..=option.name.len() {
                        let prefix = &option.name[..end];
                        let exact = options.iter().find(|o| o.name == prefix);
                        let resolved = resolve_long(&options, prefix);
                        match exact {
                            Some(exact) => assert_eq!(resolved, Some(*exact)),
                            None if others_start_with(&options, option, prefix) => assert_eq!(
                                resolved, None,
                                "{release} {program:?}: --{prefix} is ambiguous"
                            ),
                            None => assert_eq!(
                                resolved.map(|o| (o.val, o.arity)),
                                Some((option.val, option.arity)),
                                "{release} {program:?}: --{prefix} means --{}",
                                option.name
                            ),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_checked_options_are_found_by_every_prefix_some_release_takes() {
        // The values bt-submit checks, each with every prefix that any release's
        // sbatch resolves to it: the check must see what sbatch sees.
        for checked in ["comment", "reservation", "partition", "beamtime"] {
            for end in 1..=checked.len() {
                let prefix = &checked[..end];
                let taken = RELEASE_TABLES.iter().any(|(_, table)| {
                    resolve_long(&options_of(table, Program::Sbatch), prefix)
                        .is_some_and(|o| o.name == checked)
                });
                let arg = format!("--{prefix}=v");
                let found = scanned(Program::Sbatch, &[&arg, "job.sh"]);
                let seen = match checked {
                    "comment" => found.comments,
                    "reservation" => found.reservations,
                    "partition" => found.partitions,
                    _ => found.beamtimes,
                };
                assert_eq!(seen == ["v"], taken, "{arg}");
            }
        }
    }

    #[test]
    fn the_abbreviations_of_the_attack_are_read_as_sbatch_reads_them() {
        assert_eq!(
            scanned(Program::Sbatch, &["--com=mine", "x"]).comments,
            ["mine"]
        );
        assert_eq!(
            scanned(Program::Sbatch, &["--com", "mine", "x"]).comments,
            ["mine"]
        );
        assert_eq!(
            scanned(Program::Sbatch, &["--res=other", "x"]).reservations,
            ["other"]
        );
        // srun has --resv-ports too: there --res is ambiguous, and srun refuses it.
        assert!(scanned(Program::Srun, &["--res=other", "x"])
            .reservations
            .is_empty());
        let unknown = scanned(Program::Sbatch, &["--nonsense", "x"]);
        assert_eq!(unknown.unknown_long, [(0, "nonsense".to_owned())]);
        assert_eq!(
            unknown.operand_at,
            Some(1),
            "an unknown option takes no value"
        );
        assert_eq!(
            UserOptions {
                unknown_long: Vec::new(),
                operand_at: Some(0),
                ..unknown
            },
            scanned(Program::Sbatch, &["x"])
        );
    }

    #[test]
    fn short_options_take_values_as_the_tables_say() {
        // -k (--no-kill) takes its value only attached: "-k" then the script.
        let found = scanned(Program::Sbatch, &["-k", "job.sh", "-p", "X"]);
        assert!(found.has_operand && found.partitions.is_empty());
        let found = scanned(Program::Salloc, &["-kpX"]);
        assert!(found.partitions.is_empty(), "pX is -k's value");
    }
}
