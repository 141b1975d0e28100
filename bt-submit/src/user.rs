//! Who is running bt-submit.

use std::ffi::CStr;

/// The login name of the real user, or `None` when the user database has no
/// entry (then nobody can be warned about being the wrong user).
pub fn current_user_name() -> Option<String> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let name = with_passwd(|entry, buffer, result| {
        // SAFETY: the caller's pointers refer to live, writable memory of the stated size.
        unsafe { libc::getpwuid_r(uid, entry, buffer.as_mut_ptr(), buffer.len(), result) }
    })?;
    name.to_str().ok().map(str::to_owned)
}

/// The uid of a user name through NSS, as the plugin resolves trusted_owners.
pub fn uid_of(name: &str) -> Option<u32> {
    let c_name = std::ffi::CString::new(name).ok()?;
    let mut uid = None;
    with_passwd(|entry, buffer, result| {
        // SAFETY: c_name is NUL-terminated; the other pointers are live and writable.
        let status = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                result,
            )
        };
        if status == 0 && !result.is_null() {
            uid = Some(entry.pw_uid);
        }
        status
    })?;
    uid
}

/// Calls a getpw*_r function with a growing buffer and returns the entry's
/// name, or `None` when there is no entry.
fn with_passwd(
    mut lookup: impl FnMut(
        &mut libc::passwd,
        &mut Vec<libc::c_char>,
        &mut *mut libc::passwd,
    ) -> libc::c_int,
) -> Option<std::ffi::CString> {
    // The lookup reports ERANGE until the buffer fits the entry; entries
    // from network directories can be large, but not without bound.
    const LARGEST_BUFFER: usize = 1 << 20;
    let mut buffer: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: an all-zero passwd is a valid value of this plain C struct
        // (null pointers and zero ids); getpwuid_r overwrites it.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let status = lookup(&mut entry, &mut buffer, &mut result);
        if status == libc::ERANGE && buffer.len() < LARGEST_BUFFER {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if status != 0 || result.is_null() || entry.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside
        // `buffer`, which is still alive here.
        let name = unsafe { CStr::from_ptr(entry.pw_name) };
        return Some(name.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_user_running_the_tests() {
        let expected = std::process::Command::new("id")
            .arg("-un")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .map(|name| name.trim().to_owned());
        assert_eq!(current_user_name(), expected);
    }

    #[test]
    fn finds_root_and_not_a_made_up_name() {
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(uid_of("no-such-user-bt-submit"), None);
        assert_eq!(uid_of("nul\0inside"), None);
    }
}
