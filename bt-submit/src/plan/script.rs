//! A batch script's `#SBATCH` lines, read as sbatch reads them
//! (src/sbatch/opt.c, `_opt_batch_script` and `get_argument`): lines that
//! start with `#SBATCH` (or the old `#SLURM`) exactly, from the top of the
//! file up to the first line that is neither blank nor a comment; each split
//! into arguments at white space, with `'…'` and `"…"` grouping, `\` taking
//! the next character as it is, and an unquoted `#` ending the line. The
//! arguments of all lines are one option list, read by the one option reader
//! ([`scan`]); sbatch then reads its command line again, so an option there
//! wins over the script's.
//!
//! Pure: the caller reads the file (commands/submit.rs).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::slurm::options::{scan, Program, UserOptions};

/// The script's options that bt-submit checks or chooses by, each with the
/// line it is on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// The script, as the user named it.
    pub path: PathBuf,
    pub partitions: Vec<(usize, String)>,
    pub reservations: Vec<(usize, String)>,
    pub beamtimes: Vec<(usize, String)>,
    pub nodes: Vec<(usize, String)>,
    pub constraints: Vec<(usize, String)>,
    pub outputs: Vec<(usize, String)>,
    pub errors: Vec<(usize, String)>,
    pub chdirs: Vec<(usize, String)>,
}

/// Why a script's directives cannot be read the way sbatch would read them
/// (sbatch itself stops with the same complaint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub line: usize,
    pub what: String,
}

/// The directives of the script whose first bytes are `head` (at least up
/// to its first command line).
pub fn directives(path: PathBuf, head: &[u8]) -> Result<Directives, Unreadable> {
    let mut found = Directives {
        path,
        ..Directives::default()
    };
    let mut args: Vec<OsString> = Vec::new();
    let mut seen = UserOptions::default();
    for (index, line) in head.split(|&byte| byte == b'\n').enumerate() {
        let number = index + 1;
        let line = String::from_utf8_lossy(line);
        let rest = match line
            .strip_prefix("#SBATCH")
            .or_else(|| line.strip_prefix("#SLURM"))
        {
            Some(rest) => rest,
            None if is_command(&line) => break,
            None => continue,
        };
        args.extend(arguments(rest, number)?.into_iter().map(OsString::from));
        // Scanning the list so far after each line tells which line each
        // value came from, even for an option whose value is on the next one.
        let now = scan(Program::Sbatch, &args);
        for (into, before, after) in [
            (&mut found.partitions, &seen.partitions, &now.partitions),
            (
                &mut found.reservations,
                &seen.reservations,
                &now.reservations,
            ),
            (&mut found.beamtimes, &seen.beamtimes, &now.beamtimes),
            (&mut found.nodes, &seen.nodes, &now.nodes),
            (&mut found.constraints, &seen.constraints, &now.constraints),
            (&mut found.outputs, &seen.outputs, &now.outputs),
            (&mut found.errors, &seen.errors, &now.errors),
            (&mut found.chdirs, &seen.chdirs, &now.chdirs),
        ] {
            into.extend(
                after[before.len()..]
                    .iter()
                    .map(|value| (number, value.clone())),
            );
        }
        seen = now;
    }
    Ok(found)
}

/// A line that is neither blank nor a comment ends the directives.
fn is_command(line: &str) -> bool {
    line.trim_start()
        .chars()
        .next()
        .is_some_and(|first| first != '#')
}

/// One directive line's arguments, split as sbatch's `get_argument` splits them.
fn arguments(line: &str, number: usize) -> Result<Vec<String>, Unreadable> {
    let mut arguments = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(arguments),
            Some(':') => {
                return Err(Unreadable {
                    line: number,
                    what: "an unexpected ':' (sbatch refuses it too)".to_owned(),
                })
            }
            Some(_) => {}
        }
        let mut argument = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            if quote.is_none() && (c.is_whitespace() || c == '#') {
                break;
            }
            chars.next();
            match (c, quote) {
                ('\\', _) => argument.extend(chars.next()),
                (c, Some(q)) if c == q => quote = None,
                ('"' | '\'', None) => quote = Some(c),
                (c, _) => argument.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(Unreadable {
                line: number,
                what: format!("an unmatched {q} (sbatch refuses it too)"),
            });
        }
        if !argument.is_empty() {
            arguments.push(argument);
        }
        // An unquoted '#' ends the line, as in sbatch.
        if chars.peek() == Some(&'#') {
            return Ok(arguments);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(script: &str) -> Directives {
        directives(PathBuf::from("job.sh"), script.as_bytes())
            .unwrap_or_else(|error| panic!("{error:?}"))
    }

    #[test]
    fn directives_are_read_up_to_the_first_command() {
        let found = read(
            "#!/bin/bash\n\
             # a comment\n\
             \n\
             #SBATCH --nodes=2 -C gpu\n\
             #SBATCH --partition maxgpu   # why: the GPUs\n\
             #SLURM --reservation=11099005_1\n\
             echo start\n\
             #SBATCH --partition=after-the-command\n",
        );
        assert_eq!(found.nodes, [(4, "2".to_owned())]);
        assert_eq!(found.constraints, [(4, "gpu".to_owned())]);
        assert_eq!(found.partitions, [(5, "maxgpu".to_owned())]);
        assert_eq!(found.reservations, [(6, "11099005_1".to_owned())]);
    }

    #[test]
    fn only_the_exact_magic_word_at_the_line_start_counts() {
        let found = read(" #SBATCH -p a\n#sbatch -p b\n# SBATCH -p c\n##SBATCH -p d\nrun\n");
        assert!(found.partitions.is_empty(), "{found:?}");
    }

    #[test]
    fn quotes_and_backslashes_group_as_in_sbatch() {
        let found = read("#SBATCH -C \"gpu&v100\" --partition='a b' -N\\ 2\n");
        assert_eq!(found.constraints, [(1, "gpu&v100".to_owned())]);
        assert_eq!(found.partitions, [(1, "a b".to_owned())]);
        assert_eq!(found.nodes, [(1, " 2".to_owned())]);
        let found = read("#SBATCH --partition=x#comment\n");
        assert_eq!(found.partitions, [(1, "x".to_owned())]);
    }

    #[test]
    fn a_value_on_the_next_line_belongs_to_its_option() {
        let found = read("#SBATCH -p\n#SBATCH maxgpu\n");
        assert_eq!(found.partitions, [(2, "maxgpu".to_owned())]);
    }

    #[test]
    fn what_sbatch_refuses_is_refused_with_the_line() {
        for (script, line) in [("#SBATCH -p 'open\n", 1), ("\n#SBATCH : -N1\n", 2)] {
            let refused = directives(PathBuf::from("job.sh"), script.as_bytes());
            assert_eq!(refused.map_err(|error| error.line), Err(line), "{script}");
        }
    }
}
