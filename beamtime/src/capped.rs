//! Reading a metadata-sized file: never more than [`MAX_METADATA_BYTES`], and
//! never blocking on a named pipe planted in a file's place. The user-side
//! reader ([`crate::discovery`]) and the trusted one ([`crate::trust`]) open
//! files differently but read them through [`read_capped`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::metadata::MAX_METADATA_BYTES;

pub enum ReadFailure {
    Io(io::Error),
    NotAFile(&'static str),
    TooLarge(u64),
}

impl fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadFailure::Io(error) => write!(f, "{error}"),
            ReadFailure::NotAFile(found) => write!(f, "it is {found}, not a regular file"),
            ReadFailure::TooLarge(size) => {
                write!(f, "it has {size} bytes, more than {MAX_METADATA_BYTES}")
            }
        }
    }
}

impl From<io::Error> for ReadFailure {
    fn from(error: io::Error) -> Self {
        ReadFailure::Io(error)
    }
}

fn describe_non_file(file_type: fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a named pipe"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Reads at most [`MAX_METADATA_BYTES`] from the regular file at `path`
/// (symlinks followed: for user-side tools).
pub fn read_file_capped(path: &Path) -> Result<Vec<u8>, ReadFailure> {
    // Non-blocking, so that a named pipe in the path's place is reported
    // instead of hanging the open until a writer appears.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let info = file.metadata()?;
    if !info.is_file() {
        return Err(ReadFailure::NotAFile(describe_non_file(info.file_type())));
    }
    if info.len() > MAX_METADATA_BYTES as u64 {
        return Err(ReadFailure::TooLarge(info.len()));
    }
    read_capped(&file, info.len())
}

/// Reads an open file whose size was checked on its descriptor, at most
/// [`MAX_METADATA_BYTES`]: the file may grow after the check, so one byte past
/// the cap is read to tell, and refused.
pub(crate) fn read_capped(file: &File, checked_size: u64) -> Result<Vec<u8>, ReadFailure> {
    let mut bytes = Vec::with_capacity(checked_size.min(MAX_METADATA_BYTES as u64) as usize);
    file.take(MAX_METADATA_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_METADATA_BYTES {
        return Err(ReadFailure::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}
