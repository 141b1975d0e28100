//! What recording one submission costs in `bt-submit watch`'s state file when
//! FILES files are recorded already (#22: goal ≤ 5 ms with 100,000), run by
//! bench/run.sh in section 8 and rendered by bench/report.py:
//!
//! ```text
//! watch-state-record SCRATCH FILES ROUNDS OUT
//! ```
//!
//! In a new folder below SCRATCH (on the file system whose fsync is to be
//! measured), a state of FILES submitted files is written and opened as a
//! watch opens it; then ROUNDS submissions are recorded as the watch records
//! them (the intent, then the job id: two journal lines, each fsync'ed), each
//! timed. Interleaved with them, the floor: two lines of [`FLOOR_LINE_BYTES`]
//! appended to a file of their own, each fsync'ed, as any journal that makes
//! each change durable before acting on it must. Beside that, REWRITES times
//! the whole snapshot rendered, written and fsync'ed: what every change cost
//! before the journal, and about what a compaction costs now (it renames the
//! file and fsyncs the folder besides).
//!
//! Writes to OUT: `watch-record-journal`, `watch-record-fsync-floor` and
//! `watch-record-rewrite` (microseconds, one line per round) and
//! `watch-record-size` ("FILES BYTES").

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use bt_submit::watch_state::{Change, Each, Look, Record, Sharing, StateFile};

/// Rewrites of a 10 MB snapshot take long enough that a few show the spread.
const REWRITES: usize = 5;
/// About a journal line's length (a path, a job id, a look); one block either way.
const FLOOR_LINE_BYTES: usize = 128;
const USAGE: &str = "usage: watch-state-record SCRATCH FILES ROUNDS OUT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [scratch, files, rounds, out] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (Ok(files), Ok(rounds)) = (files.parse::<u64>(), rounds.parse::<u64>()) else {
        eprintln!("FILES and ROUNDS: want whole numbers; {USAGE}");
        return ExitCode::from(2);
    };
    let folder = Path::new(scratch).join(format!("watch-state-record.{}", std::process::id()));
    let measured = measure(&folder, files, rounds, Path::new(out));
    // The scratch folder goes either way; a failure to remove it only hides the measurement's own.
    let _ = fs::remove_dir_all(&folder);
    match measured {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("watch-state-record: {why}");
            ExitCode::FAILURE
        }
    }
}

/// What the watch records of a file it found complete; the same for every file.
fn look() -> Look {
    Look {
        size: 4 << 20,
        mtime_ns: 1_790_000_000_123_456_789,
        files: 1,
    }
}

fn finish(file: String, job: u64) -> Change {
    Change::Finish {
        file,
        job,
        look: look(),
    }
}

fn measure(folder: &Path, files: u64, rounds: u64, out: &Path) -> Result<(), String> {
    let failed = |what: &str, path: &Path, error: std::io::Error| {
        format!("{what} {}: {error}", path.display())
    };
    fs::DirBuilder::new()
        .mode(0o700)
        .create(folder)
        .map_err(|e| failed("cannot create", folder, e))?;
    let watched = PathBuf::from("/data");
    // Names as a detector writes them: a thousand frames per scan folder.
    let mut record = Record::new("0123abcd".into(), watched.clone(), Each::File);
    for n in 0..files {
        let file = format!("scan_{:03}/frame_{n:06}.h5", n / 1000);
        record.apply(&record.begin(&file).0);
        record.apply(&finish(file, n + 1));
    }
    let path = folder.join("state.json");
    let snapshot = record.render();
    write_synced(&path, &snapshot).map_err(|e| failed("cannot write", &path, e))?;
    let (mut state, mut record) = StateFile::open(&path, &watched, Each::File, Sharing::OnlyMine)
        .map_err(|e| e.to_string())?;
    if record.submitted.len() as u64 != files {
        return Err(format!(
            "{} read back {} submitted files of {files}",
            path.display(),
            record.submitted.len()
        ));
    }
    let before = fs::metadata(&path).map_err(|e| failed("cannot stat", &path, e))?;

    let floor_path = folder.join("floor.journal");
    let mut floor_file = fs::OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&floor_path)
        .map_err(|e| failed("cannot create", &floor_path, e))?;
    let floor_line = format!("{}\n", "x".repeat(FLOOR_LINE_BYTES - 1));
    let mut journal = String::new();
    let mut floor = String::new();
    for n in 0..rounds {
        let file = format!("new/frame_{n:06}.h5");
        let started = Instant::now();
        let (begin, _comment) = record.begin(&file);
        state
            .record(&mut record, begin)
            .map_err(|e| e.to_string())?;
        state
            .record(&mut record, finish(file, files + n + 1))
            .map_err(|e| e.to_string())?;
        journal.push_str(&format!("{}\n", started.elapsed().as_micros()));

        let started = Instant::now();
        for _ in 0..2 {
            floor_file
                .write_all(floor_line.as_bytes())
                .and_then(|()| floor_file.sync_data())
                .map_err(|e| failed("cannot append to", &floor_path, e))?;
        }
        floor.push_str(&format!("{}\n", started.elapsed().as_micros()));
    }
    // Every timed submission must have been a journal append, not a compaction.
    let after = fs::metadata(&path).map_err(|e| failed("cannot stat", &path, e))?;
    if (after.ino(), after.len()) != (before.ino(), before.len()) {
        return Err(format!(
            "{} was compacted during the {rounds} rounds: fewer rounds, or more files",
            path.display()
        ));
    }

    let mut rewrite = String::new();
    let whole = folder.join("rewritten.json");
    for _ in 0..REWRITES {
        let started = Instant::now();
        write_synced(&whole, &record.render()).map_err(|e| failed("cannot write", &whole, e))?;
        rewrite.push_str(&format!("{}\n", started.elapsed().as_micros()));
        fs::remove_file(&whole).map_err(|e| failed("cannot remove", &whole, e))?;
    }

    for (name, text) in [
        ("watch-record-journal", journal),
        ("watch-record-fsync-floor", floor),
        ("watch-record-rewrite", rewrite),
        ("watch-record-size", format!("{files} {}\n", snapshot.len())),
    ] {
        let target = out.join(name);
        fs::write(&target, text).map_err(|e| failed("cannot write", &target, e))?;
    }
    Ok(())
}

/// A new file with `text`, fsync'ed before this returns.
fn write_synced(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
