//! The user database (NSS: `/etc/passwd`, LDAP, SSSD …), asked the one way
//! every part of the project asks it: the plugin for a beamtime's account and
//! for `trusted_owners`, bt-submit for who is running it, the tests for the
//! accounts they run commands as.
//!
//! "There is no such user" and "the database could not be asked" are kept
//! apart: an LDAP server that times out must not read as an unknown account,
//! which the plugin would refuse with the wrong reason and bt-submit would
//! report as a typo.
//!
//! The `unsafe` here is the `getpw*_r` and `getgrouplist` calls, each behind a
//! safe function whose results are owned values.

use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// One entry of the password database, copied out of libc's buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    pub home: PathBuf,
    pub shell: String,
}

/// The user database could not answer (as opposed to answering "no such user").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError {
    /// What was asked: `user NAME` or `uid N`.
    pub asked: String,
    pub problem: String,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "looking up {} in the user database failed: {}",
            self.asked, self.problem
        )
    }
}

impl std::error::Error for LookupError {}

/// The account called `name`; `Ok(None)` when the database has no such user.
pub fn by_name(name: &str) -> Result<Option<Account>, LookupError> {
    let asked = || format!("user {}", name.escape_default());
    // A name with NUL cannot be in the database.
    let Ok(c_name) = CString::new(name) else {
        return Ok(None);
    };
    lookup(asked, |entry, buffer, found| {
        // SAFETY: c_name is NUL-terminated; entry, buffer (of the length
        // passed) and found are live and writable for the call.
        unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                found,
            )
        }
    })
}

/// The account with `uid`; `Ok(None)` when the database has none.
pub fn by_uid(uid: u32) -> Result<Option<Account>, LookupError> {
    lookup(
        || format!("uid {uid}"),
        |entry, buffer, found| {
            // SAFETY: entry, buffer (of the length passed) and found are live
            // and writable for the call.
            unsafe { libc::getpwuid_r(uid, entry, buffer.as_mut_ptr(), buffer.len(), found) }
        },
    )
}

/// The uid of the user called `name`, `Ok(None)` when there is no such user.
pub fn uid_of(name: &str) -> Result<Option<u32>, LookupError> {
    Ok(by_name(name)?.map(|account| account.uid))
}

/// The real user of this process.
pub fn current() -> Result<Option<Account>, LookupError> {
    by_uid(current_uid())
}

/// The real uid of this process: who runs it, as ssh (its key-permission check) and the
/// user database see it.
pub fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Every group `account` is in, its primary group included, as `initgroups`
/// would set them for a login.
pub fn groups_of(account: &Account) -> Result<Vec<u32>, LookupError> {
    let c_name = CString::new(account.name.as_str()).map_err(|_| LookupError {
        asked: format!("the groups of {}", account.name.escape_default()),
        problem: "the name contains NUL".to_owned(),
    })?;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: groups has room for `count` entries; getgrouplist writes at
        // most that many and sets `count` to the number it has.
        let rc = unsafe {
            libc::getgrouplist(
                c_name.as_ptr(),
                account.gid,
                groups.as_mut_ptr(),
                &mut count,
            )
        };
        if rc >= 0 {
            groups.truncate(count as usize);
            return Ok(groups);
        }
        // -1: too small; `count` now says how many there are.
        groups.resize((count as usize).max(groups.len() * 2), 0);
    }
}

/// Entries from network directories can be large, but not without bound.
const LARGEST_BUFFER: usize = 1 << 20;

/// Calls a `getpw*_r` function with a growing buffer and copies the entry out.
fn lookup(
    asked: impl Fn() -> String,
    mut call: impl FnMut(
        &mut libc::passwd,
        &mut Vec<libc::c_char>,
        &mut *mut libc::passwd,
    ) -> libc::c_int,
) -> Result<Option<Account>, LookupError> {
    let mut buffer: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: an all-zero passwd (null pointers, zero ids) is a valid
        // value of this plain C struct; the call overwrites it.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        match call(&mut entry, &mut buffer, &mut found) {
            0 if found.is_null() => return Ok(None),
            // SAFETY: on success the entry's strings point into `buffer`,
            // which is alive and unchanged here.
            0 => return Ok(Some(unsafe { copy_entry(&entry) })),
            libc::ERANGE if buffer.len() < LARGEST_BUFFER => buffer.resize(buffer.len() * 4, 0),
            // POSIX lets these mean "not found" (glibc returns 0 and no entry).
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            errno => {
                return Err(LookupError {
                    asked: asked(),
                    problem: io::Error::from_raw_os_error(errno).to_string(),
                })
            }
        }
    }
}

/// # Safety
/// `entry` was filled by a successful `getpw*_r` whose buffer is still alive.
unsafe fn copy_entry(entry: &libc::passwd) -> Account {
    let text = |pointer: *const libc::c_char| {
        if pointer.is_null() {
            &[][..]
        } else {
            CStr::from_ptr(pointer).to_bytes()
        }
    };
    Account {
        name: String::from_utf8_lossy(text(entry.pw_name)).into_owned(),
        uid: entry.pw_uid,
        gid: entry.pw_gid,
        home: PathBuf::from(OsStr::from_bytes(text(entry.pw_dir))),
        shell: String::from_utf8_lossy(text(entry.pw_shell)).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_by_name_and_by_uid() {
        let root = by_name("root").unwrap().expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(by_uid(0).unwrap().map(|a| a.name), Some("root".to_owned()));
        assert_eq!(uid_of("root"), Ok(Some(0)));
        assert!(groups_of(&root).unwrap().contains(&0));
    }

    #[test]
    fn an_unknown_or_impossible_name_is_no_user_not_an_error() {
        assert_eq!(by_name("no-such-user-beamtime-test"), Ok(None));
        assert_eq!(by_name("nul\0inside"), Ok(None));
        assert_eq!(by_uid(4_123_456_789), Ok(None));
    }

    #[test]
    fn the_current_user_is_who_id_says() {
        let expected = std::process::Command::new("id")
            .arg("-un")
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap();
        assert_eq!(current().unwrap().map(|a| a.name), Some(expected));
    }

    #[test]
    fn a_lookup_error_says_what_was_asked() {
        let error = LookupError {
            asked: "user beamline".to_owned(),
            problem: "Connection timed out".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "looking up user beamline in the user database failed: Connection timed out"
        );
    }
}
