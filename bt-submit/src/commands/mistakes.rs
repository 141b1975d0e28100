//! The mistakes of order and spelling on a submitting command line that clap
//! cannot see, because everything from the first argument that is not
//! bt-submit's own goes to sbatch/srun/salloc untouched. Each one would
//! otherwise submit a job nobody meant (`bt-submit job.sh --dry-run` runs
//! job.sh with the argument `--dry-run`), so each is refused, with the command
//! that was meant.
//!
//! The rule for the script's own arguments is sbatch's: everything after the
//! script is the script's. The one exception is a name of bt-submit's own
//! options there, which is far more often a misplaced option than an argument
//! the script expects; a script that does take one gets it after sbatch's own
//! end of options, a second `--` (`bt-submit -- -- job.sh --dry-run`).

use std::ffi::{OsStr, OsString};
use std::path::Path;

use beamtime::spelling::nearest;

use crate::failure::{Failure, Status};
use crate::slurm::options::{self as slurm_options, Program};

/// bt-submit's own long options on the submitting commands, and whether each takes a value.
const OWN_OPTIONS: [(&str, bool); 7] = [
    ("beamtime", true),
    ("metadata", true),
    ("reservation", true),
    ("dry-run", false),
    ("remote", false),
    ("node", true),
    ("format", true),
];

/// The words that choose what bt-submit does, for "did you mean".
const SUBCOMMANDS: [&str; 6] = ["sbatch", "srun", "salloc", "show", "doctor", "watch"];

/// The command line as typed, and the part of it clap handed on to the program.
pub struct Typed<'a> {
    /// bt-submit's arguments, without its own name.
    pub argv: &'a [OsString],
    /// The subcommand word, when one was given (`bt-submit srun …`).
    pub subcommand: Option<&'a str>,
    /// The arguments for the program: the end of `argv`.
    pub args: &'a [OsString],
}

/// Refuses a command line whose bt-submit options stand where the program
/// would take them, whose long option is one edit from a known one, or whose
/// "script" is a misspelled subcommand or `help`.
pub fn check(program: Program, typed: &Typed<'_>) -> Result<(), Failure> {
    let scanned = slurm_options::scan(program, typed.args);
    let mut moved: Vec<OsString> = Vec::new();
    let mut args: Vec<Option<OsString>> = typed.args.iter().cloned().map(Some).collect();
    let mut said: Vec<String> = Vec::new();
    let mut after_script = false;

    for (at, name) in &scanned.unknown_long {
        if let Some(takes_value) = own_option(name) {
            said.push(format!(
                "--{name} is bt-submit's option, but it stands among {}'s",
                program.name()
            ));
            move_option(&mut args, *at, takes_value, &mut moved);
        } else if let Some(meant) = misspelled_option(program, name) {
            said.push(format!(
                "--{name} is no option of bt-submit or {} (did you mean --{meant}?)",
                program.name()
            ));
            let typed_arg = args[*at].take().unwrap_or_default();
            let fixed = typed_arg.to_string_lossy().replacen(
                &format!("--{name}"),
                &format!("--{meant}"),
                1,
            );
            match own_option(meant) {
                Some(takes_value) => {
                    args[*at] = Some(fixed.into());
                    move_option(&mut args, *at, takes_value, &mut moved);
                }
                None => args[*at] = Some(fixed.into()),
            }
        }
    }

    if let Some(operand_at) = scanned.operand_at {
        let operand = typed.args[operand_at].to_string_lossy().into_owned();
        if typed.subcommand.is_none() && program == Program::Sbatch && said.is_empty() {
            if let Some(failure) = subcommand_mistaken(&operand, typed) {
                return Err(failure);
            }
        }
        if !scanned.options_ended {
            for at in operand_at + 1..typed.args.len() {
                let Some(arg) = &args[at] else { continue };
                let text = arg.to_string_lossy();
                let Some(name) = text.strip_prefix("--") else {
                    continue;
                };
                let name = name.split_once('=').map_or(name, |(name, _)| name);
                if let Some(takes_value) = own_option(name) {
                    after_script = true;
                    said.push(format!(
                        "--{name} after the script {operand} would be the script's argument, \
                         not bt-submit's option"
                    ));
                    move_option(&mut args, at, takes_value, &mut moved);
                }
            }
        }
    }

    if said.is_empty() {
        return Ok(());
    }
    let meant = corrected(typed, moved, args.into_iter().flatten().collect());
    let escape = if !after_script {
        String::new()
    } else {
        " (a script that takes an argument named like bt-submit's options gets it after a \
         second --, which ends sbatch's options: bt-submit -- -- SCRIPT --dry-run)"
            .to_owned()
    };
    Err(Failure::new(
        Status::Usage,
        format!("{}; nothing was submitted", said.join("; ")),
        format!("did you mean: {meant}{escape}"),
    ))
}

/// Whether `name` is one of bt-submit's own long options, and if so whether it takes a value.
fn own_option(name: &str) -> Option<bool> {
    OWN_OPTIONS
        .iter()
        .find(|(own, _)| *own == name)
        .map(|(_, takes_value)| *takes_value)
}

/// The option `name` was meant to be: bt-submit's or the program's, a typo
/// away. An unknown name far from every known one is left alone: it may be
/// another SPANK plugin's option, which only the program knows.
fn misspelled_option(program: Program, name: &str) -> Option<&'static str> {
    let within = if name.chars().count() >= 6 { 2 } else { 1 };
    let own = OWN_OPTIONS.iter().map(|(own, _)| *own);
    let known: Vec<&'static str> = own.chain(slurm_options::long_names(program)).collect();
    nearest(name, known.iter().copied(), within)
}

/// Takes the option at `at` (and its value, when it takes one and none is
/// attached) out of `args` and onto `moved`.
fn move_option(
    args: &mut [Option<OsString>],
    at: usize,
    takes_value: bool,
    moved: &mut Vec<OsString>,
) {
    let Some(option) = args[at].take() else {
        return;
    };
    let attached = option.to_string_lossy().contains('=');
    moved.push(option);
    if takes_value && !attached {
        if let Some(value) = args.get_mut(at + 1).and_then(Option::take) {
            moved.push(value);
        }
    }
}

/// "Did you mean" for a script that is no file but a subcommand's name a typo
/// away, or `help`.
fn subcommand_mistaken(operand: &str, typed: &Typed<'_>) -> Option<Failure> {
    if Path::new(operand).exists() {
        return None;
    }
    let (meant, rest) = if operand == "help" {
        ("--help".to_owned(), Vec::new())
    } else {
        let word = nearest(operand, SUBCOMMANDS, 1)?;
        let at = typed.argv.iter().position(|arg| arg == OsStr::new(operand));
        let rest = at.map_or(&[][..], |at| &typed.argv[at + 1..]);
        (word.to_owned(), rest.to_vec())
    };
    let command = std::iter::once(OsString::from(meant)).chain(rest);
    Some(Failure::new(
        Status::Usage,
        format!(
            "{operand} is no file here, so it is not a batch script, and it is not a bt-submit \
             command; nothing was submitted"
        ),
        format!(
            "did you mean: {} (a script of that name is given as ./{operand})",
            shell_line(OsString::from("bt-submit"), command)
        ),
    ))
}

/// The command line with the misplaced options moved to right after the
/// subcommand word (or `bt-submit`), where clap takes them.
fn corrected(typed: &Typed<'_>, moved: Vec<OsString>, args: Vec<OsString>) -> String {
    let before_args = &typed.argv[..typed.argv.len() - typed.args.len()];
    let (head, tail) = match typed.subcommand {
        Some(_) if !before_args.is_empty() => before_args.split_at(1),
        _ => before_args.split_at(0),
    };
    let words = head
        .iter()
        .cloned()
        .chain(moved)
        .chain(tail.iter().cloned())
        .chain(args);
    shell_line(OsString::from("bt-submit"), words)
}

fn shell_line(first: OsString, rest: impl Iterator<Item = OsString>) -> String {
    let words: Vec<String> = std::iter::once(first)
        .chain(rest)
        .map(|word| word.to_string_lossy().into_owned())
        .collect();
    beamtime::shell::join(words.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(argv: &[&str], subcommand: Option<&str>, args_from: usize) -> Result<(), String> {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        let typed = Typed {
            argv: &argv,
            subcommand,
            args: &argv[args_from..],
        };
        check(Program::Sbatch, &typed)
            .map_err(|failure| format!("{}\n{}", failure.problem.what, failure.problem.fix))
    }

    #[test]
    fn own_options_after_the_script_are_moved_in_front() {
        let refused = checked(&["job.sh", "--dry-run", "--beamtime", "1"], None, 0).unwrap_err();
        assert!(
            refused.contains("did you mean: bt-submit --dry-run --beamtime 1 job.sh"),
            "{refused}"
        );
        let refused =
            checked(&["sbatch", "-N2", "job.sh", "--remote"], Some("sbatch"), 1).unwrap_err();
        assert!(
            refused.contains("did you mean: bt-submit sbatch --remote -N2 job.sh"),
            "{refused}"
        );
    }

    #[test]
    fn the_scripts_own_arguments_pass() {
        assert_eq!(
            checked(&["job.sh", "--input", "x", "-p", "y"], None, 0),
            Ok(())
        );
        assert_eq!(
            checked(&["--", "job.sh", "--dry-run"], None, 0),
            Ok(()),
            "after sbatch's own --, everything is the script's"
        );
    }

    #[test]
    fn a_misspelled_option_is_named_with_the_one_meant() {
        let refused = checked(&["--beamtme", "11099001", "job.sh"], None, 0).unwrap_err();
        assert!(refused.contains("did you mean --beamtime?"), "{refused}");
        assert!(
            refused.contains("bt-submit --beamtime 11099001 job.sh"),
            "{refused}"
        );
        let refused = checked(&["--partiton=x", "job.sh"], None, 0).unwrap_err();
        assert!(refused.contains("did you mean --partition?"), "{refused}");
        assert_eq!(
            checked(&["--container-image=x", "job.sh"], None, 0),
            Ok(()),
            "another plugin's option, far from every known one, is sbatch's to judge"
        );
    }

    #[test]
    fn a_misspelled_subcommand_or_help_is_no_script() {
        let refused = checked(&["shwo", "--beamtime", "1"], None, 0).unwrap_err();
        assert!(
            refused.contains("did you mean: bt-submit show --beamtime 1"),
            "{refused}"
        );
        let refused = checked(&["help"], None, 0).unwrap_err();
        assert!(refused.contains("bt-submit --help"), "{refused}");
        assert_eq!(checked(&["run-analysis.sh"], None, 0), Ok(()));
    }
}
