//! Who is running bt-submit.

use std::ffi::CStr;

/// The login name of the real user, or `None` when the user database has no
/// entry (then nobody can be warned about being the wrong user).
pub fn current_user_name() -> Option<String> {
    // getpwuid_r reports ERANGE until the buffer fits the entry; entries
    // from network directories can be large, but not without bound.
    const LARGEST_BUFFER: usize = 1 << 20;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let mut buffer: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: an all-zero passwd is a valid value of this plain C struct
        // (null pointers and zero ids); getpwuid_r overwrites it.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to live, writable memory of the stated
        // size for the duration of the call.
        let status = unsafe {
            libc::getpwuid_r(
                uid,
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut result,
            )
        };
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
        return name.to_str().ok().map(str::to_owned);
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
}
