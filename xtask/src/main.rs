//! `cargo run -p xtask -- assets DIR`: writes bt-submit's man pages and shell
//! completions, generated from the clap definition `--help` is made of, so the
//! packages cannot ship pages that disagree with the program.
//!
//! ```text
//! DIR/man/bt-submit.1  DIR/man/bt-submit-<subcommand>.1  DIR/man/spank-beamtime.8
//! DIR/completions/bt-submit.bash  DIR/completions/_bt-submit  DIR/completions/bt-submit.fish
//! ```
//!
//! spank-beamtime(8) is written by hand (docs/man/spank-beamtime.8) and copied;
//! the tests below hold its lists of plugstack arguments and log rules to the
//! code's.

// bt-submit's own command-line definition, through its library target: the
// pages are made from exactly what `--help` is made of.
use bt_submit::cli;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

const USAGE: &str = "usage: cargo run -p xtask -- assets DIR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, dir] = args.as_slice() else {
        eprintln!(
            "xtask: error: expected two arguments, got {}\n{USAGE}",
            args.len()
        );
        return ExitCode::from(64);
    };
    if command != "assets" {
        eprintln!("xtask: error: unknown command '{command}'\n{USAGE}");
        return ExitCode::from(64);
    }
    match write_assets(Path::new(dir)) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("xtask: error: writing into {dir}: {error}");
            ExitCode::from(74)
        }
    }
}

fn write_assets(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;
    let mut written = Vec::new();

    let mut command = cli::Cli::command();
    command.build();
    // A page per subcommand, and per subcommand of one (bt-submit-watch-status.1).
    let mut subpages: Vec<(String, clap::Command)> = Vec::new();
    for sub in command.get_subcommands() {
        subpages.push((sub.get_name().to_owned(), sub.clone()));
        for subsub in sub.get_subcommands() {
            let words = format!("{} {}", sub.get_name(), subsub.get_name());
            subpages.push((words, subsub.clone()));
        }
    }
    let page_name = |words: &str| format!("bt-submit-{}", words.replace(' ', "-"));
    let pages: Vec<String> = std::iter::once("bt-submit".to_owned())
        .chain(subpages.iter().map(|(words, _)| page_name(words)))
        .collect();
    let page = man_page(&command, "bt-submit", "bt-submit", &pages)?;
    written.push(write(&man.join("bt-submit.1"), &page)?);
    for (words, sub) in &subpages {
        let name = page_name(words);
        let invoked = format!("bt-submit {words}");
        let page = man_page(sub, &name, &invoked, &pages)?;
        written.push(write(&man.join(format!("{name}.1")), &page)?);
    }
    let plugin_page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/man/spank-beamtime.8");
    written.push(write(
        &man.join("spank-beamtime.8"),
        &fs::read(plugin_page)?,
    )?);

    for (shell, file) in [
        (Shell::Bash, "bt-submit.bash"),
        (Shell::Zsh, "_bt-submit"),
        (Shell::Fish, "bt-submit.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cli::Cli::command(), "bt-submit", &mut script);
        if shell == Shell::Bash {
            script = bash_arms_matched(&String::from_utf8_lossy(&script)).into_bytes();
        }
        written.push(write(&completions.join(file), &script)?);
    }
    Ok(written)
}

/// A man page in the usual sections: clap_mangen's title, description,
/// options and subcommands; NAME and SYNOPSIS written here, since
/// clap_mangen names a subcommand without its command and drops the value
/// names (`[--beamtime]` for `[--beamtime ID]`); the exit statuses in their
/// own EXIT STATUS section rather than under EXTRA; EXAMPLES; SEE ALSO.
fn man_page(
    command: &clap::Command,
    name: &str,
    invoked: &str,
    pages: &[String],
) -> io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(command.clone())
        .title(name)
        .section("1");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    let about = command
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut text = format!(".SH NAME\n{} \\- {}\n", roff(name), roff(&about));
    text.push_str(&format!(".SH SYNOPSIS\n{}\n", synopsis(command, invoked)));
    page.extend(text.into_bytes());
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    if command.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    let statuses = cli::EXIT_STATUS
        .lines()
        .skip_while(|line| line.ends_with(':'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut text = format!(".SH \"EXIT STATUS\"\n.nf\n{}\n.fi\n", roff(&statuses));
    text.push_str(".SH EXAMPLES\n");
    for (example, what) in examples(name) {
        text.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(example), roff(what)));
    }
    let others: Vec<String> = pages
        .iter()
        .filter(|page| page.as_str() != name)
        .map(|page| format!("\\fB{}\\fR(1)", roff(page)))
        .chain(
            [
                "spank-beamtime(8)",
                "sbatch(1)",
                "srun(1)",
                "salloc(1)",
                "ssh(1)",
            ]
            .iter()
            .map(|page| {
                let (page, section) = page.split_once('(').unwrap_or((page, ""));
                format!("\\fB{}\\fR({section}", roff(page))
            }),
        )
        .collect();
    text.push_str(&format!(".SH \"SEE ALSO\"\n{}\n", others.join(", ")));
    page.extend(text.into_bytes());
    if command.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}

/// The synopsis line, each option with its value name.
fn synopsis(command: &clap::Command, invoked: &str) -> String {
    let mut words = vec![format!("\\fB{}\\fR", roff(invoked))];
    for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
        let values: Vec<String> = arg
            .get_value_names()
            .unwrap_or_default()
            .iter()
            .map(|value| format!("\\fI{}\\fR", roff(value)))
            .collect();
        let takes_value = arg.get_action().takes_values();
        let word = match (arg.get_long(), arg.get_short()) {
            (Some(long), short) => {
                let mut flag = format!("\\fB\\-\\-{}\\fR", roff(long));
                if let Some(short) = short {
                    flag = format!("\\fB\\-{short}\\fR|{flag}");
                }
                if takes_value && !values.is_empty() {
                    flag = format!("{flag} {}", values.join(" "));
                }
                flag
            }
            (None, Some(short)) => format!("\\fB\\-{short}\\fR"),
            (None, None) => {
                let value = values.join(" ");
                let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
                let value = if many { format!("{value}...") } else { value };
                if arg.is_last_set() {
                    format!("\\fB\\-\\-\\fR {value}")
                } else {
                    value
                }
            }
        };
        words.push(if arg.is_required_set() {
            word
        } else {
            format!("[{word}]")
        });
    }
    if command.has_subcommands() {
        words.push("[\\fISUBCOMMAND\\fR]".to_owned());
    }
    words.join(" ")
}

/// Text for roff: backslashes and hyphens escaped, and no line that roff
/// would take for a request.
fn roff(text: &str) -> String {
    text.replace('\\', "\\e")
        .replace('-', "\\-")
        .lines()
        .map(|line| {
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each page's examples: the command, and what it does.
fn examples(page: &str) -> &'static [(&'static str, &'static str)] {
    match page {
        "bt-submit" | "bt-submit-sbatch" => &[
            (
                "bt-submit --beamtime 11099001 -N 1 analyse.sh run_042",
                "Submit analyse.sh (with its argument run_042) to beamtime 11099001's partition and reservation.",
            ),
            (
                "bt-submit --dry-run job.sh",
                "Print the sbatch command for the beamtime of the current folder instead of running it.",
            ),
            (
                "bt-submit --remote --output=/gpfs/current/processed/%j.out /gpfs/current/processed/job.sh",
                "From the beamline computer: submit on a reserved node as the beamtime account, every path absolute.",
            ),
            (
                "bt-submit -- -- job.sh --dry-run",
                "Give the script an argument named like one of bt-submit's options (after sbatch's own --).",
            ),
        ],
        "bt-submit-srun" => &[(
            "bt-submit srun -N 1 --pty bash",
            "An interactive shell on a node of the beamtime's reservation.",
        )],
        "bt-submit-salloc" => &[(
            "bt-submit salloc -N 2",
            "An allocation of two nodes of the reservation, with a shell here.",
        )],
        "bt-submit-show" => &[
            (
                "bt-submit show --beamtime 11099001",
                "The beamtime's window, nodes, reservations, how to log in and its phase.",
            ),
            ("bt-submit show --format json", "The same as JSON, for scripts."),
        ],
        "bt-submit-doctor" => &[(
            "bt-submit doctor --beamtime 11099001",
            "Check everything that decides whether the beamtime's jobs run, with a fix for each failure.",
        )],
        "bt-submit-watch" => &[
            (
                "bt-submit watch --beamtime 11099001 --skip-existing --pattern '*.h5' /gpfs/p11/current/raw -- analyse.sh {}",
                "On a login node: one job per new .h5 file, once complete, with the file's path as the job sees it as the argument; the files already there are skipped.",
            ),
            (
                "bt-submit watch --beamtime 11099001 --each folder --done-file scan.done /gpfs/p11/current/raw -- analyse-scan.sh {}",
                "One job per new scan folder, once scan.done is in it.",
            ),
            (
                "bt-submit watch --metadata /gpfs/p11/current/beamtime-metadata-11099001.json --remote --map /gpfs/p11/current=/beamline/p11/current /gpfs/p11/current/raw -- /gpfs/p11/current/shared/analyse.sh {}",
                "The same from the beamline computer, over ssh to a reserved node; --map says where jobs see the beamline folder.",
            ),
        ],
        _ => &[],
    }
}

/// clap_complete's bash script names a subcommand's state one way where it
/// sets it (`bt__submit__subcmd__watch`) and another in the case arm that
/// completes it (`bt__subcmd__submit__subcmd__watch`) when the binary's name
/// has a hyphen, so no subcommand option was ever completed. The arms are
/// renamed to what is set; once clap_complete agrees with itself this
/// changes nothing (the test sources the script and completes an option).
fn bash_arms_matched(script: &str) -> String {
    script.replace("bt__subcmd__submit__subcmd__", "bt__submit__subcmd__")
}

fn write(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    fs::write(path, bytes)?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use beamtime::plugin_config::PluginConfig;

    fn repo_file(path: &str) -> String {
        let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
        fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
    }

    /// The tags (the line after each `.TP`) of the page's section `name`.
    fn tags(page: &str, name: &str) -> Vec<String> {
        let start = page
            .find(&format!(".SH {name}\n"))
            .unwrap_or_else(|| panic!("spank-beamtime.8 has no section {name}"));
        let rest = &page[start + 4..];
        let lines: Vec<&str> = rest[..rest.find("\n.SH").unwrap_or(rest.len())]
            .lines()
            .collect();
        lines
            .windows(2)
            .filter(|pair| pair[0] == ".TP")
            .map(|pair| pair[1].to_owned())
            .collect()
    }

    /// The keys the plugin accepts, as its own error message lists them.
    fn plugin_keys() -> BTreeSet<String> {
        let error = PluginConfig::parse(["no_such_key=1"])
            .unwrap_err()
            .to_string();
        let list = error
            .split("known keys: ")
            .nth(1)
            .unwrap_or_else(|| panic!("{error}"));
        let list = &list[..list.find(')').unwrap_or_else(|| panic!("{error}"))];
        list.split(", ").map(str::to_owned).collect()
    }

    #[test]
    fn the_man_page_documents_exactly_the_plugstack_keys_the_plugin_accepts() {
        let page = repo_file("docs/man/spank-beamtime.8");
        let documented: BTreeSet<String> = tags(&page, "ARGUMENTS")
            .iter()
            .filter_map(|l| l.strip_prefix(".B "))
            .filter_map(|l| l.split('=').next())
            .map(|k| k.trim_matches('"').to_owned())
            .collect();
        assert_eq!(documented, plugin_keys());
    }

    /// Rule::as_str's arms are the one list of rule names there is.
    fn rules_in_code() -> BTreeSet<String> {
        let refusal = repo_file("beamtime/src/refusal.rs");
        let rules: BTreeSet<String> = refusal
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Rule::"))
            .filter_map(|l| l.split("=> \"").nth(1))
            .map(|l| l.trim_end_matches("\",").to_owned())
            .collect();
        assert!(
            rules.len() > 10,
            "could not read the rule names from refusal.rs: {rules:?}"
        );
        rules
    }

    #[test]
    fn the_admin_guide_troubleshoots_exactly_the_rules_the_plugin_logs() {
        let guide = repo_file("docs/admin.md");
        let table = guide
            .split("## Troubleshoot")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/admin.md has a Troubleshoot section");
        let documented: BTreeSet<String> = table
            .split("`rule=")
            .skip(1)
            .filter_map(|rest| rest.split('`').next())
            .map(str::to_owned)
            .collect();
        assert_eq!(documented, rules_in_code());
    }

    #[test]
    fn the_man_page_lists_exactly_the_rules_the_plugin_logs() {
        let rules = rules_in_code();
        let page = repo_file("docs/man/spank-beamtime.8");
        let documented: BTreeSet<String> = tags(&page, "LOG")
            .iter()
            .filter_map(|l| l.strip_prefix(".BR "))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(documented, rules);
    }

    #[test]
    fn the_example_drop_in_uses_only_keys_the_plugin_accepts() {
        let conf = repo_file("slurm-conf-examples/plugstack.conf.d/beamtime.conf");
        let line = conf
            .lines()
            .find(|l| l.starts_with("required "))
            .expect("a required line");
        let args: Vec<&str> = line.split_whitespace().skip(2).collect();
        PluginConfig::parse(args).unwrap();
    }

    #[test]
    fn assets_are_written_for_every_subcommand_and_shell() {
        let dir = std::env::temp_dir().join(format!("xtask-assets-{}", std::process::id()));
        let written = write_assets(&dir).unwrap();
        let names: BTreeSet<String> = written
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        for expected in [
            "man/bt-submit.1",
            "man/bt-submit-doctor.1",
            "man/bt-submit-show.1",
            "man/bt-submit-watch.1",
            "man/bt-submit-watch-status.1",
            "man/bt-submit-watch-resubmit.1",
            "man/spank-beamtime.8",
            "completions/bt-submit.bash",
            "completions/_bt-submit",
            "completions/bt-submit.fish",
        ] {
            assert!(
                names.contains(expected),
                "{expected} missing from {names:?}"
            );
        }
        let main_page = fs::read_to_string(dir.join("man/bt-submit.1")).unwrap();
        assert!(main_page.contains("doctor"), "{main_page}");
        let doctor = fs::read_to_string(dir.join("man/bt-submit-doctor.1")).unwrap();
        assert!(doctor.contains("reservation\\-access"), "{doctor}");
        let watch = fs::read_to_string(dir.join("man/bt-submit-watch.1")).unwrap();
        assert!(watch.contains("\\-\\-max\\-in\\-flight"), "{watch}");
        for page in ["bt-submit", "bt-submit-watch", "bt-submit-doctor"] {
            let text = fs::read_to_string(dir.join(format!("man/{page}.1"))).unwrap();
            for section in [
                ".SH NAME\n",
                ".SH SYNOPSIS\n",
                ".SH \"EXIT STATUS\"\n",
                ".SH EXAMPLES\n",
                ".SH \"SEE ALSO\"\n",
            ] {
                assert!(text.contains(section), "{page}: no {section:?}:\n{text}");
            }
            assert!(
                !text.contains(".SH EXTRA"),
                "{page}: the exit statuses have their own section"
            );
            assert!(text.contains("77   \\-\\-remote"), "{page}: {text}");
            assert!(text.contains("spank\\-beamtime\\fR(8)"), "{page}: {text}");
        }
        assert!(
            watch.contains("[\\fB\\-\\-settle\\fR \\fISECONDS\\fR]"),
            "value names kept in the synopsis: {watch}"
        );
        assert!(
            watch.contains(".SH NAME\nbt\\-submit\\-watch \\- "),
            "{watch}"
        );
        let bash = fs::read_to_string(dir.join("completions/bt-submit.bash")).unwrap();
        assert!(bash.contains("--beamtime"), "{bash}");
        assert!(bash.contains("--max-in-flight"), "{bash}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// What bash offers for the word being typed last in `words`, by the
    /// generated script, sourced as bash-completion sources it.
    fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
        let program = r#"
            source "$1"; shift
            function=$(complete -p bt-submit | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
            COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
            "$function" bt-submit "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
            printf '%s\n' "${COMPREPLY[@]}"
        "#;
        let output = std::process::Command::new("bash")
            .args(["-c", program, "bash"])
            .arg(script)
            .args(words)
            .output()
            .expect("bash runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn bash_completes_the_options_of_each_subcommand() {
        let dir = std::env::temp_dir().join(format!("xtask-bash-{}", std::process::id()));
        write_assets(&dir).unwrap();
        let script = dir.join("completions/bt-submit.bash");
        assert_eq!(
            bash_completes(&script, &["bt-submit", "watch", "--max"]),
            ["--max-in-flight"]
        );
        assert_eq!(
            bash_completes(&script, &["bt-submit", "doctor", "--form"]),
            ["--format"]
        );
        assert_eq!(
            bash_completes(&script, &["bt-submit", "show", "--format", "j"]),
            ["json"]
        );
        assert_eq!(
            bash_completes(&script, &["bt-submit", "--dry"]),
            ["--dry-run"]
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
