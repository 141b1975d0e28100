//! What bt-submit writes: its output on stdout, quiet on a reader that has
//! gone, and its messages on stderr.

use std::io::{self, Write};

use crate::failure::{Failure, Status};

/// A reader that has gone (`bt-submit show | head -1`) ends the output, not the
/// program with an error: Rust ignores SIGPIPE, so the write returns EPIPE,
/// taken here as the end ripgrep and the shell tools take it for.
pub fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(Failure::new(
            Status::IoError,
            format!("cannot write the output: {error}"),
            "check where the output goes",
        )),
        _ => Ok(()),
    }
}

/// A message for the person at the terminal. A stderr that cannot be written
/// leaves nowhere to say so, so that is no reason to stop (eprint! would panic).
pub fn tell(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

pub fn write_json(value: &serde_json::Value) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(value).map_err(|error| {
        Failure::new(
            Status::IoError,
            format!("cannot format JSON: {error}"),
            "report this as a bug",
        )
    })?;
    text.push('\n');
    write_stdout(text.as_bytes())
}
