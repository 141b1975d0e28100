//! A safe start: `--dry-run` shows what the watch would submit now and
//! writes nothing; `--skip-existing` records what is already in the folder
//! as skipped, so that only what comes from now on is submitted.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use super::*;
use crate::slurm::ssh;

/// The files (or scan folders) below the watched folder that the state does
/// not hold yet, by their path below it, in order.
fn not_done_yet(options: &Options, record: &Record) -> Vec<String> {
    let done = |rel: &str| record.is_done(rel);
    let found = match options.each {
        Each::File => tree::walk(
            &options.folder,
            &options.patterns,
            &done,
            &HashSet::new(),
            &mut HashMap::new(),
            0,
        ),
        Each::Folder => scan::walk_scan_folders(
            &options.folder,
            &options.patterns,
            &done,
            &mut HashMap::new(),
            options.settle.as_millis() as u64,
            0,
        ),
    };
    let mut rels: Vec<String> = found.files.into_iter().map(|(rel, _)| rel).collect();
    rels.sort();
    rels
}

/// Records everything not submitted yet as skipped, before the first walk.
pub(super) fn skip_existing(
    options: &Options,
    state: &mut StateFile,
    record: &mut Record,
) -> Result<(), Failure> {
    let present = not_done_yet(options, record);
    let count = present.len();
    state
        .record(record, Change::Skip { files: present })
        .map_err(state_failure)?;
    log(
        options.format,
        &LogEvent::SkippedExisting {
            each: options.each,
            count,
            skipped_in_all: record.skipped.len(),
        },
    );
    Ok(())
}

/// `--dry-run`: one line per file that would be submitted now (once
/// complete), with the command it would get; the state is read, never
/// created, locked or written, and nothing is submitted.
pub fn dry_run(options: &Options, beamtime: &dyn Beamtime) -> Result<(), Failure> {
    let metadata = beamtime.metadata()?;
    let plan = beamtime.plan(&metadata)?;
    let record = StateFile::peek_watch(&options.state, &options.folder, options.each)
        .map_err(state_failure)?
        .unwrap_or_else(|| Record::new(String::new(), options.folder.clone(), options.each));
    let pending = not_done_yet(options, &record);
    let mut out = std::io::stdout().lock();
    let mut say = |line: &[u8]| -> std::io::Result<()> {
        out.write_all(line)?;
        out.write_all(b"\n")
    };
    let summary = format!(
        "# plan {}; state {}: {} submitted, {} skipped before; {} {} not submitted yet{}",
        plan.summary,
        options.state.display(),
        record.submitted.len(),
        record.skipped.len(),
        pending.len(),
        options.each.plural(),
        if options.skip_existing {
            " (--skip-existing would skip them all)"
        } else {
            ", each submitted once complete, with its own --comment, as:"
        }
    );
    let written = say(summary.as_bytes()).and_then(|()| {
        if options.skip_existing {
            return Ok(());
        }
        for rel in &pending {
            let args = arguments_for(&plan.template, &plan.on_nodes.folder, rel);
            let mut line = format!("{}: ", named(rel)).into_bytes();
            line.extend(ssh::shell_line(&plan.submitter.sbatch_command(&args)));
            say(&line)?;
        }
        Ok(())
    });
    written.map_err(|error| {
        Failure::new(
            Status::IoError,
            format!("cannot write the dry run's list: {error}"),
            "write it to a file or a pipe that takes it",
        )
    })
}
