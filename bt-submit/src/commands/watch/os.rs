//! The system calls `bt-submit watch` needs that std does not offer: inotify,
//! waiting on it with a timeout, the SIGINT/SIGTERM/SIGHUP flags and the state file's
//! lock. Every `unsafe` of bt-submit is in this file and in beneath.rs (the
//! folder handles).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use super::beneath::Folder;

/// The signal that asked the watch to stop (0: none yet). The handler only
/// stores into it; the loop reads it between submissions.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Set by SIGHUP: read the metadata again now. A hangup (the terminal closed
/// at logout) must not end a watch meant to run for days, and "read your
/// configuration again" is what daemons take SIGHUP for.
static REREAD: AtomicBool = AtomicBool::new(false);

extern "C" fn remember_signal(signal: libc::c_int) {
    if signal == libc::SIGHUP {
        REREAD.store(true, Ordering::SeqCst);
    } else {
        STOP_SIGNAL.store(signal, Ordering::SeqCst);
    }
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP. Without SA_RESTART,
/// so a signal that arrives while the loop waits in [`Inotify::wait`] ends
/// the wait.
pub fn catch_signals() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
        // the handler is async-signal-safe (one atomic store).
        let result = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = remember_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The name of the signal that asked to stop, once one has.
pub fn stop_requested() -> Option<&'static str> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some("SIGINT"),
        _ => Some("SIGTERM"),
    }
}

/// Whether SIGHUP came since the last call.
pub fn reread_requested() -> bool {
    REREAD.swap(false, Ordering::SeqCst)
}

/// What inotify reported about a name in a watched folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub watch: i32,
    pub name: OsString,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A file opened for writing was closed.
    ClosedAfterWrite,
    /// A file or folder was renamed into the folder.
    MovedIn,
    /// A folder was created (to be watched too).
    FolderCreated,
    /// The watched folder itself was moved or deleted (`name` is empty), or
    /// a subfolder was moved out of it (`name` says which): the names its
    /// events carried are no longer where they were.
    FolderMoved,
    /// The kernel dropped events: everything must be looked at again.
    Overflow,
}

/// An inotify instance. Events only shorten the wait: on a cluster
/// filesystem, writes from other hosts raise none, so polling stays on.
pub struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    pub fn new() -> io::Result<Inotify> {
        // SAFETY: plain system call; a non-negative result is a new fd we own.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is open and owned by nothing else.
        Ok(Inotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches one folder (not its subfolders), the very one behind the
    /// handle, for closed writes, renames in and out, new folders and its own
    /// move; returns the watch descriptor events carry.
    pub fn watch(&self, folder: &Folder) -> io::Result<i32> {
        let path = CString::new(folder.proc_path().as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        let mask = libc::IN_CLOSE_WRITE
            | libc::IN_MOVED_TO
            | libc::IN_MOVED_FROM
            | libc::IN_CREATE
            | libc::IN_MOVE_SELF
            | libc::IN_DELETE_SELF
            | libc::IN_ONLYDIR;
        // SAFETY: fd is an inotify fd, path a NUL-terminated string.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Stops watching a folder whose events no longer mean its old name.
    pub fn unwatch(&self, watch: i32) {
        // SAFETY: plain system call; an unknown descriptor only returns EINVAL.
        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), watch) };
    }

    /// Waits up to `timeout` for events (or a signal), then returns those
    /// queued; an empty list after the timeout or a signal.
    pub fn wait(&self, timeout: Duration) -> io::Result<Vec<Event>> {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            return if error.kind() == io::ErrorKind::Interrupted {
                Ok(Vec::new())
            } else {
                Err(error)
            };
        }
        self.read_events()
    }

    fn read_events(&self) -> io::Result<Vec<Event>> {
        let mut events = Vec::new();
        // Aligned for inotify_event, big enough for many events at once.
        let mut buffer = vec![0u64; 4096];
        loop {
            let bytes = buffer.len() * 8;
            // SAFETY: the buffer is `bytes` long and writable.
            let read = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast::<libc::c_void>(),
                    bytes,
                )
            };
            if read < 0 {
                let error = io::Error::last_os_error();
                return match error.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(events),
                    _ => Err(error),
                };
            }
            let read = read as usize;
            // SAFETY: the kernel wrote `read` bytes into the buffer.
            let bytes: &[u8] =
                unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), read) };
            let header = std::mem::size_of::<libc::inotify_event>();
            let mut offset = 0;
            while offset + header <= bytes.len() {
                // SAFETY: a whole header lies at offset (the kernel writes
                // whole events); read_unaligned needs no alignment.
                let event: libc::inotify_event = unsafe {
                    std::ptr::read_unaligned(bytes[offset..].as_ptr().cast::<libc::inotify_event>())
                };
                let name_start = offset + header;
                let name_end = (name_start + event.len as usize).min(bytes.len());
                let raw_name = &bytes[name_start..name_end];
                let name = raw_name.split(|&b| b == 0).next().unwrap_or_default();
                offset = name_end;
                let kind = if event.mask & libc::IN_Q_OVERFLOW != 0 {
                    EventKind::Overflow
                } else if event.mask & libc::IN_CLOSE_WRITE != 0 {
                    EventKind::ClosedAfterWrite
                } else if event.mask & libc::IN_MOVED_TO != 0 {
                    EventKind::MovedIn
                } else if event.mask & libc::IN_CREATE != 0 && event.mask & libc::IN_ISDIR != 0 {
                    EventKind::FolderCreated
                } else if event.mask
                    & (libc::IN_MOVE_SELF | libc::IN_DELETE_SELF | libc::IN_IGNORED)
                    != 0
                    || event.mask & libc::IN_MOVED_FROM != 0 && event.mask & libc::IN_ISDIR != 0
                {
                    EventKind::FolderMoved
                } else {
                    continue;
                };
                events.push(Event {
                    watch: event.wd,
                    name: OsStr::from_bytes(name).to_os_string(),
                    kind,
                });
            }
        }
    }
}

/// Takes an exclusive lock on `file` without waiting, so that two watches
/// never share one state file; held until the file is closed.
/// `Ok(false)`: another process holds it.
/// This host's name, for the lock file's "who holds it".
pub fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer and its length match; gethostname writes at most that.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return "an unknown host".to_owned();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

pub fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: plain system call on an open fd.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}
