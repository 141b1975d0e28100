//! Opening a metadata file the way a root process must: from `/`, one path
//! component at a time, each opened relative to the folder before it, so no
//! name on the way is looked up twice. A symbolic link on the way is followed
//! only when its owner is trusted (root or a `trusted_owners` user, who could
//! write the metadata anyway): a link that someone who can write in a folder
//! on a search pattern planted there could otherwise point the lookup at
//! another trusted-owned copy of the same beamtime's file (a stale one). The
//! file itself is never reached through a link. The mount side
//! (`spank-beamtime/src/stepd/task_root.rs`) walks its folders with the same
//! [`open_folder`] and follows no link at all.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// As many links as the kernel follows in one lookup (MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// Why the file was not opened.
#[derive(Debug)]
pub enum WalkError {
    /// A link on the way is owned by someone who is not trusted.
    UntrustedLink {
        link: PathBuf,
        owner: u32,
    },
    /// The last component is a link.
    FileIsLink,
    TooManyLinks {
        path: PathBuf,
    },
    /// Opening `at` failed (not found, permission, not a folder …).
    Io {
        at: PathBuf,
        error: io::Error,
    },
}

impl WalkError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, WalkError::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
    }
}

/// Opens the file at the absolute `path` for reading, without blocking on a
/// FIFO, following only links whose owner `trusted` accepts.
pub fn open_file(path: &Path, trusted: impl Fn(u32) -> bool) -> Result<File, WalkError> {
    let io_error = |at: &Path, error| WalkError::Io {
        at: at.to_owned(),
        error,
    };
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if path.is_absolute() => (parent, name),
        _ => {
            let error = io::Error::new(io::ErrorKind::InvalidInput, "not an absolute file path");
            return Err(io_error(path, error));
        }
    };
    let folder = open_folder(parent, &trusted)?;
    open_file_in(folder.as_fd(), name).map_err(|error| match error.raw_os_error() {
        Some(libc::ELOOP) => WalkError::FileIsLink,
        _ => io_error(path, error),
    })
}

/// Opens the file `name` in the folder behind `folder` for reading, never
/// through a link (`ELOOP`) and without blocking on a FIFO.
pub fn open_file_in(folder: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let name = c_name(name)?;
    // SAFETY: a valid directory descriptor and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            folder.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    owned(fd).map(File::from)
}

/// An `O_PATH` handle on the folder `path` names, walked as described above,
/// following only links whose owner `trusted` accepts (`|_| false`: none, as
/// the plugin's mount side does).
pub fn open_folder(path: &Path, trusted: &impl Fn(u32) -> bool) -> Result<OwnedFd, WalkError> {
    let root = || open_root(Path::new("/"));
    let mut current = root().map_err(|error| WalkError::Io {
        at: PathBuf::from("/"),
        error,
    })?;
    // What is left to walk, next component last; a link's target is pushed in its place.
    let mut pending: Vec<OsString> = components(path).rev().collect();
    let mut walked = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = pending.pop() {
        let at = walked.join(&name);
        match open_entry(current.as_fd(), &name, &at)? {
            Entry::Folder(handle) => {
                current = handle;
                walked = at;
            }
            Entry::Link { handle, owner } => {
                if !trusted(owner) {
                    return Err(WalkError::UntrustedLink { link: at, owner });
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(WalkError::TooManyLinks { path: at });
                }
                // Read from the handle: the link that was checked, whatever the name holds now.
                let target = PathBuf::from(readlink(&handle).map_err(|error| WalkError::Io {
                    at: at.clone(),
                    error,
                })?);
                pending.extend(components(&target).rev());
                if target.is_absolute() {
                    current = root().map_err(|error| WalkError::Io {
                        at: PathBuf::from("/"),
                        error,
                    })?;
                    walked = PathBuf::from("/");
                }
            }
        }
    }
    Ok(current)
}

/// The folder `name` inside the folder behind `folder` (`shown` in errors),
/// as an `O_PATH` handle; a link there is refused, never followed. One step
/// of [`open_folder`], for a walk that continues from a handle.
pub fn open_child_folder(
    folder: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
) -> Result<OwnedFd, WalkError> {
    match open_entry(folder, name, shown)? {
        Entry::Folder(handle) => Ok(handle),
        Entry::Link { owner, .. } => Err(WalkError::UntrustedLink {
            link: shown.to_owned(),
            owner,
        }),
    }
}

/// What one path component is, told from a handle on it, not by a second look
/// at its name.
enum Entry {
    Folder(OwnedFd),
    Link { handle: OwnedFd, owner: u32 },
}

fn open_entry(folder: BorrowedFd<'_>, name: &OsStr, at: &Path) -> Result<Entry, WalkError> {
    let io_error = |error| WalkError::Io {
        at: at.to_owned(),
        error,
    };
    let handle = openat(
        folder,
        name,
        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
    )
    .map_err(io_error)?;
    let stat = fstat(&handle).map_err(io_error)?;
    match stat.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Ok(Entry::Folder(handle)),
        libc::S_IFLNK => Ok(Entry::Link {
            handle,
            owner: stat.st_uid,
        }),
        _ => Err(io_error(io::Error::from_raw_os_error(libc::ENOTDIR))),
    }
}

/// The names of `path`'s components; `..` is kept and resolved by the kernel
/// against the folder it follows.
fn components(path: &Path) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.components().filter_map(|component| match component {
        Component::Normal(name) => Some(name.to_owned()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name contains NUL"))
}

fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let path = c_name(path.as_os_str())?;
    // SAFETY: a NUL-terminated path that lives across the call.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    owned(fd)
}

fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let name = c_name(name)?;
    // SAFETY: a valid directory descriptor and a NUL-terminated name.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    owned(fd)
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain old data, filled by fstat on a valid descriptor
    // (an O_PATH one included, since Linux 3.6).
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut stat) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stat)
    }
}

/// The target of the link behind an `O_PATH|O_NOFOLLOW` handle.
fn readlink(link: &OwnedFd) -> io::Result<OsString> {
    let mut buffer = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the buffer is writable for its length; an empty path makes
    // readlinkat read the link behind the handle itself (Linux 2.6.39+).
    let length = unsafe {
        libc::readlinkat(
            link.as_raw_fd(),
            c"".as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    if length < 0 {
        return Err(io::Error::last_os_error());
    }
    buffer.truncate(length as usize);
    Ok(OsString::from_vec(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::{chown, symlink, MetadataExt};

    /// A scratch folder holding `real/sub/file.json`, removed when the test ends.
    struct Scratch {
        path: PathBuf,
        _removed_on_drop: tempfile::TempDir,
    }

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let dir = tempfile::Builder::new()
                .prefix(&format!("beamtime-walk-{label}-"))
                .tempdir()
                .unwrap();
            fs::create_dir_all(dir.path().join("real/sub")).unwrap();
            fs::write(dir.path().join("real/sub/file.json"), b"content").unwrap();
            Scratch {
                path: dir.path().to_owned(),
                _removed_on_drop: dir,
            }
        }
    }

    fn me() -> u32 {
        fs::metadata("/proc/self").unwrap().uid()
    }

    fn read(file: File) -> String {
        let mut text = String::new();
        (&file).read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn a_plain_path_opens_the_file() {
        let s = Scratch::new("plain");
        let file = open_file(&s.path.join("real/sub/file.json"), |_| false).unwrap();
        assert_eq!(read(file), "content");
    }

    #[test]
    fn a_link_of_a_trusted_owner_is_followed_absolute_or_relative() {
        let s = Scratch::new("trusted");
        symlink(s.path.join("real"), s.path.join("absolute")).unwrap();
        symlink("real/sub", s.path.join("relative")).unwrap();
        let trusted = |uid| uid == me();
        let file = open_file(&s.path.join("absolute/sub/file.json"), trusted).unwrap();
        assert_eq!(read(file), "content");
        let file = open_file(&s.path.join("relative/file.json"), trusted).unwrap();
        assert_eq!(read(file), "content");
    }

    #[test]
    fn a_link_of_anyone_else_is_refused_naming_it_and_its_owner() {
        let s = Scratch::new("untrusted");
        let link = s.path.join("planted");
        symlink(s.path.join("real"), &link).unwrap();
        match open_file(&link.join("sub/file.json"), |uid| uid != me()) {
            Err(WalkError::UntrustedLink { link: seen, owner }) => {
                assert_eq!((seen, owner), (link, me()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_link_owned_by_another_user_is_told_by_its_own_owner_not_its_targets() {
        let s = Scratch::new("chowned");
        let link = s.path.join("planted");
        symlink(s.path.join("real"), &link).unwrap();
        // lchown: the link's own owner, which is what an attacker controls.
        std::os::unix::fs::lchown(&link, Some(4_000_002), None).unwrap();
        chown(s.path.join("real"), Some(me()), None).unwrap();
        match open_file(&link.join("sub/file.json"), |uid| uid == me()) {
            Err(WalkError::UntrustedLink { owner, .. }) => assert_eq!(owner, 4_000_002),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_file_itself_is_never_a_link_and_loops_end() {
        let s = Scratch::new("file-link");
        symlink(
            s.path.join("real/sub/file.json"),
            s.path.join("real/link.json"),
        )
        .unwrap();
        assert!(matches!(
            open_file(&s.path.join("real/link.json"), |_| true),
            Err(WalkError::FileIsLink)
        ));
        symlink(s.path.join("loop"), s.path.join("loop")).unwrap();
        assert!(matches!(
            open_file(&s.path.join("loop/file.json"), |_| true),
            Err(WalkError::TooManyLinks { .. })
        ));
    }

    #[test]
    fn a_child_folder_opens_and_a_link_or_file_there_is_refused_by_what_it_is() {
        let s = Scratch::new("child");
        symlink(s.path.join("real/sub"), s.path.join("real/link")).unwrap();
        let real = open_folder(&s.path.join("real"), &|_| false).unwrap();
        let child =
            |name: &str| open_child_folder(real.as_fd(), OsStr::new(name), &s.path.join(name));
        assert!(child("sub").is_ok());
        match child("link") {
            Err(WalkError::UntrustedLink { link, owner }) => {
                assert_eq!((link, owner), (s.path.join("link"), me()))
            }
            other => panic!("{other:?}"),
        }
        fs::write(s.path.join("real/file"), b"").unwrap();
        match child("file") {
            Err(WalkError::Io { error, .. }) => {
                assert_eq!(error.raw_os_error(), Some(libc::ENOTDIR))
            }
            other => panic!("{other:?}"),
        }
        assert!(child("gone").unwrap_err().is_not_found());
    }

    #[test]
    fn missing_and_non_folder_components_say_where() {
        let s = Scratch::new("missing");
        let error = open_file(&s.path.join("real/gone/file.json"), |_| true).unwrap_err();
        assert!(error.is_not_found(), "{error:?}");
        match open_file(&s.path.join("real/sub/file.json/x.json"), |_| true) {
            Err(WalkError::Io { at, error }) => {
                assert_eq!(at, s.path.join("real/sub/file.json"));
                assert_eq!(error.raw_os_error(), Some(libc::ENOTDIR));
            }
            other => panic!("{other:?}"),
        }
    }
}
