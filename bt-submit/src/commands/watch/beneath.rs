//! Everything the watch looks at is reached from a handle on the watched
//! folder, one real folder at a time, never through a symbolic link: whoever
//! can write the watched folder can swap a subfolder for a link between two
//! looks, and a lookup by path would then follow it out of the tree (to the
//! watch user's own private files, which the watch would submit). A name is
//! resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, or, where
//! the kernel has no openat2 (before 5.6), by the same walk the library does
//! for metadata files ([`beamtime::walk::open_child_folder`]), component by
//! component with `O_NOFOLLOW`.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What a folder entry is, told without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Folder,
    File,
    /// A link, a FIFO, a socket, a device: never looked into or submitted.
    Other,
}

/// Size and mtime of a plain file or folder, from `fstat` on a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    pub mtime_ns: i128,
}

/// A handle on a folder inside (or being) the watched one.
pub struct Folder {
    fd: OwnedFd,
}

impl Folder {
    /// The watched folder itself, by its absolute path, following no link on
    /// the way (the watch resolved its links once, when it started).
    pub fn open_root(path: &Path) -> io::Result<Folder> {
        use beamtime::walk::WalkError;
        let fd = beamtime::walk::open_folder(path, &|_| false).map_err(|error| match error {
            WalkError::Io { error, .. } => error,
            WalkError::UntrustedLink { link, .. } => io::Error::other(format!(
                "{} is a symbolic link, which the watch does not follow",
                link.display()
            )),
            // Only a file's walk reports these; no link is followed here.
            WalkError::FileIsLink | WalkError::TooManyLinks { .. } => {
                io::Error::from_raw_os_error(libc::ELOOP)
            }
        })?;
        Ok(Folder { fd })
    }

    /// The folder `rel` ("" for this one) below this one.
    pub fn folder(&self, rel: &str) -> io::Result<Folder> {
        if rel.is_empty() {
            return Ok(Folder {
                fd: self.fd.try_clone()?,
            });
        }
        let fd = self.open_beneath(rel, libc::O_PATH | libc::O_DIRECTORY)?;
        Ok(Folder { fd })
    }

    /// The subfolder `name` of this folder; a link there is refused (`ELOOP`).
    pub fn child(&self, name: &OsStr) -> io::Result<Folder> {
        let fd = openat(
            self.fd.as_fd(),
            name,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        )?;
        Ok(Folder { fd })
    }

    /// What `rel` below this folder is, without following a link anywhere on
    /// the way or at its end.
    pub fn stat_beneath(&self, rel: &str) -> io::Result<Stat> {
        let fd = self.open_beneath(rel, libc::O_PATH | libc::O_NOFOLLOW)?;
        fstat(fd.as_fd())
    }

    /// This folder's own size and mtime.
    pub fn stat(&self) -> io::Result<Stat> {
        fstat(self.fd.as_fd())
    }

    /// The entries of this folder (not `.` and `..`), each with its kind.
    pub fn entries(&self) -> io::Result<Vec<(OsString, Kind)>> {
        let listing = openat(
            self.fd.as_fd(),
            OsStr::new("."),
            libc::O_RDONLY | libc::O_DIRECTORY,
        )?;
        // SAFETY: fdopendir takes over the descriptor, closedir below releases it.
        let dir = unsafe { libc::fdopendir(listing.as_raw_fd()) };
        if dir.is_null() {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(listing);
        let mut entries = Vec::new();
        loop {
            // SAFETY: dir is an open DIR stream; the entry is read before the next call.
            let entry = unsafe { libc::readdir(dir) };
            if entry.is_null() {
                break;
            }
            // SAFETY: readdir returned a valid entry with a NUL-terminated name.
            let (name, d_type) = unsafe {
                (
                    CStr::from_ptr((*entry).d_name.as_ptr()).to_bytes().to_vec(),
                    (*entry).d_type,
                )
            };
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(&name).to_os_string();
            let kind = match d_type {
                libc::DT_DIR => Kind::Folder,
                libc::DT_REG => Kind::File,
                // A filesystem that does not fill in d_type: ask, not following.
                libc::DT_UNKNOWN => self.stat_entry(&name).map_or(Kind::Other, |stat| stat.kind),
                _ => Kind::Other,
            };
            entries.push((name, kind));
        }
        // SAFETY: dir came from fdopendir and is closed once.
        unsafe { libc::closedir(dir) };
        Ok(entries)
    }

    /// Opens the entry `name` of this folder with `flags` (and `mode` when it
    /// is created), never through a link (`ELOOP`).
    pub fn open_entry(
        &self,
        name: &OsStr,
        flags: libc::c_int,
        mode: libc::mode_t,
    ) -> io::Result<std::fs::File> {
        let name = c_name(name)?;
        // SAFETY: a valid folder descriptor and a NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                libc::c_uint::from(mode),
            )
        };
        owned(fd).map(std::fs::File::from)
    }

    /// Removes the entry `name` (a link itself, never what it points to); one
    /// that is not there is no error.
    pub fn remove_entry(&self, name: &OsStr) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: a valid folder descriptor and a NUL-terminated name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        match io::Error::last_os_error() {
            error if error.kind() == io::ErrorKind::NotFound => Ok(()),
            error => Err(error),
        }
    }

    /// Renames the entry `from` to `to` in this folder, replacing what `to`
    /// names (a link there is replaced, not followed).
    pub fn rename_entry(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: a valid folder descriptor and two NUL-terminated names.
        if unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Flushes this folder's entries to disk (after a rename in it).
    pub fn sync(&self) -> io::Result<()> {
        let listing = openat(
            self.fd.as_fd(),
            OsStr::new("."),
            libc::O_RDONLY | libc::O_DIRECTORY,
        )?;
        std::fs::File::from(listing).sync_all()
    }

    /// The folder's owner and permission bits.
    pub fn owner_and_mode(&self) -> io::Result<(u32, u32)> {
        // SAFETY: stat is plain data, filled in by the call.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a writable stat.
        if unsafe { libc::fstat(self.fd.as_raw_fd(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((stat.st_uid, stat.st_mode & 0o7777))
    }

    /// A path naming this very folder object (not whatever its name holds
    /// now), for calls that take only paths, such as `inotify_add_watch`.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// What the entry `name` of this folder is, not following it.
    pub fn stat_entry(&self, name: &OsStr) -> io::Result<Stat> {
        let fd = openat(self.fd.as_fd(), name, libc::O_PATH | libc::O_NOFOLLOW)?;
        fstat(fd.as_fd())
    }

    fn open_beneath(&self, rel: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
        match openat2_beneath(self.fd.as_fd(), rel, flags) {
            Err(error) if error.raw_os_error() == Some(libc::ENOSYS) => {
                self.walk_beneath(rel, flags)
            }
            result => result,
        }
    }

    /// openat2's guarantee without openat2: each folder on the way opened
    /// from the one before, no link followed, no `..` taken.
    fn walk_beneath(&self, rel: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
        let mut names: Vec<&str> = rel.split('/').filter(|n| !n.is_empty()).collect();
        let last = names.pop().unwrap_or(".");
        if last == ".." || names.contains(&"..") {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        let mut current = self.fd.try_clone()?;
        for name in names {
            current = openat(
                current.as_fd(),
                OsStr::new(name),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            )?;
        }
        openat(current.as_fd(), OsStr::new(last), flags | libc::O_NOFOLLOW)
    }
}

fn openat2_beneath(folder: BorrowedFd<'_>, rel: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let name = c_name(OsStr::new(rel))?;
    // SAFETY: open_how is plain data; zero is "no mode, no resolve flags".
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a valid folder descriptor, a NUL-terminated name and an
    // open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            folder.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    owned(fd as libc::c_int)
}

fn openat(folder: BorrowedFd<'_>, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let name = c_name(name)?;
    // SAFETY: a valid folder descriptor and a NUL-terminated name.
    let fd = unsafe { libc::openat(folder.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    owned(fd)
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    // SAFETY: stat is plain data, filled in by the call.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let kind = match stat.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Folder,
        libc::S_IFREG => Kind::File,
        _ => Kind::Other,
    };
    Ok(Stat {
        kind,
        size: stat.st_size as u64,
        mtime_ns: i128::from(stat.st_mtime) * 1_000_000_000 + i128::from(stat.st_mtime_nsec),
    })
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name contains NUL"))
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn nothing_is_reached_through_a_link_on_the_way_or_at_the_end() {
        let base =
            std::env::temp_dir().join(format!("bt-submit-watch-beneath-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("watched/real")).unwrap();
        fs::create_dir_all(base.join("private")).unwrap();
        fs::write(base.join("private/n1.h5"), b"secret").unwrap();
        fs::write(base.join("watched/real/a.h5"), b"data").unwrap();
        std::os::unix::fs::symlink(base.join("private"), base.join("watched/swapped")).unwrap();
        std::os::unix::fs::symlink(base.join("private/n1.h5"), base.join("watched/n1.h5")).unwrap();
        let root = Folder::open_root(&base.join("watched")).unwrap();
        assert_eq!(root.stat_beneath("real/a.h5").unwrap().size, 4);
        for rel in [
            "swapped/n1.h5",
            "n1.h5",
            "../private/n1.h5",
            "real/../../private/n1.h5",
        ] {
            // At most the link itself is seen (with O_PATH | O_NOFOLLOW), never its target.
            let found = root.stat_beneath(rel).map(|stat| stat.kind);
            assert!(!matches!(found, Ok(Kind::File)), "{rel} was reached");
            let walked = root.walk_beneath(rel, libc::O_PATH);
            let walked = walked
                .and_then(|fd| fstat(fd.as_fd()))
                .map(|stat| stat.kind);
            assert!(!matches!(walked, Ok(Kind::File)), "{rel} was walked");
        }
        assert!(root.folder("swapped").is_err());
        assert!(root.child(OsStr::new("swapped")).is_err());
        let mut names: Vec<(OsString, Kind)> = root.entries().unwrap();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            names,
            [
                ("n1.h5".into(), Kind::Other),
                ("real".into(), Kind::Folder),
                ("swapped".into(), Kind::Other)
            ]
        );
        fs::remove_dir_all(&base).unwrap();
    }
}
