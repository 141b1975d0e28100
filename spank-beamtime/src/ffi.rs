//! Every `unsafe` call the plugin makes of its own (the SPANK API itself goes
//! through the slurm-spank crate). Each function here is a safe wrapper whose
//! errors are values; nothing here decides anything.

use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use beamtime::facts::ControllerJob;

#[allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]
// NO_VAL is bound for every release and needed only by 26.05's step id.
#[cfg_attr(not(slurm_load_job_by_step_id), allow(dead_code))]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/slurm_job_query.rs"));
}

// slurm-spank's bindings (plugin_version) and these must come from the same
// headers: a build folder reused for another release's headers would otherwise
// give a plugin that names one release and calls another's API.
const _: () = assert!(
    sys::SLURM_VERSION_NUMBER == slurm_spank::SLURM_VERSION_NUMBER,
    "slurm-spank was built against another Slurm release: use one CARGO_TARGET_DIR per release"
);

/// The flag clang evaluated for build.rs (`SLURM_BIT(4)` from 24.11 on).
const SHOW_LOCAL: u16 = sys::BT_SHOW_LOCAL as u16;

/// `ESPANK_JOB_FAILURE` (25.05 on): what lib.rs declares a failing `init` to be.
#[cfg(slurm_init_failure_mode)]
pub const ESPANK_JOB_FAILURE: std::os::raw::c_int =
    sys::BT_ESPANK_JOB_FAILURE as std::os::raw::c_int;

/// What slurm_load_job takes to name the job: the job id until 25.11, a step
/// id from 26.05 on, where a job is named by its id with the other fields
/// unset (`SLURM_STEP_ID_INITIALIZER`: sluid 0, the rest NO_VAL).
#[cfg(not(slurm_load_job_by_step_id))]
fn job_query(job_id: u32) -> u32 {
    job_id
}

#[cfg(slurm_load_job_by_step_id)]
fn job_query(job_id: u32) -> sys::slurm_step_id_t {
    sys::slurm_step_id_t {
        sluid: 0,
        job_id,
        step_het_comp: sys::NO_VAL,
        step_id: sys::NO_VAL,
    }
}

/// `S_JOB_STEPID` of the extern step, which holds no user task to guard.
pub const EXTERN_STEP_ID: u32 = sys::SLURM_EXTERN_CONT;
/// `S_JOB_STEPID` of a batch script and of salloc's interactive step, named in logs.
pub const BATCH_STEP_ID: u32 = sys::SLURM_BATCH_SCRIPT;
pub const INTERACTIVE_STEP_ID: u32 = sys::SLURM_INTERACTIVE_STEP;

/// Asks slurmctld for the job's reservation and account.
///
/// Runs inside slurmstepd (root, libslurm loaded, munge credentials at hand);
/// the answer is what the controller scheduled, whatever the user put in the
/// step's environment.
pub fn controller_job(job_id: u32) -> Result<ControllerJob, ControllerError> {
    let mut response: *mut sys::job_info_msg_t = ptr::null_mut();
    // SHOW_LOCAL: the step runs on this cluster, so its controller's answer is
    // authoritative; without it libslurm first asks about the federation, a
    // second RPC per step and node (measured with sdiag on the 4-host cluster).
    // SAFETY: slurm_load_job writes a pointer it allocated into `response`;
    // the guard below frees it exactly once.
    let rc = unsafe { sys::slurm_load_job(&mut response, job_query(job_id), SHOW_LOCAL) };
    if rc != 0 || response.is_null() {
        // libslurm reports its error codes in errno (slurm_get_errno() returned
        // just that until 24.11 removed it).
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // SAFETY: slurm_strerror returns a static string or null.
        let why = unsafe { cstr_to_string(sys::slurm_strerror(errno)) }
            .unwrap_or_else(|| format!("error {errno}"));
        return Err(ControllerError::NoAnswer { job: job_id, why });
    }
    struct Freed(*mut sys::job_info_msg_t);
    impl Drop for Freed {
        fn drop(&mut self) {
            // SAFETY: the pointer came from slurm_load_job and is freed only here.
            unsafe { sys::slurm_free_job_info_msg(self.0) }
        }
    }
    let response = Freed(response);
    // SAFETY: a successful slurm_load_job returns a message whose job_array
    // holds record_count initialised records.
    let jobs = unsafe {
        let message = &*response.0;
        if message.job_array.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(message.job_array, message.record_count as usize)
        }
    };
    let job = jobs
        .iter()
        .find(|job| job.job_id == job_id)
        .ok_or(ControllerError::UnknownJob(job_id))?;
    // SAFETY: the strings belong to `response`, which outlives these copies.
    let (reservation, account) =
        unsafe { (cstr_to_string(job.resv_name), cstr_to_string(job.account)) };
    Ok(ControllerJob {
        reservation: reservation.filter(|r| !r.is_empty()),
        account: account.filter(|a| !a.is_empty()),
        batch: job.batch_flag != 0,
    })
}

/// Why [`controller_job`] has no answer about a job.
#[derive(Debug)]
pub enum ControllerError {
    /// `slurm_load_job` failed; `why` is libslurm's text for its error code.
    NoAnswer { job: u32, why: String },
    /// The controller answered without the job.
    UnknownJob(u32),
}

impl fmt::Display for ControllerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControllerError::NoAnswer { job, why } => {
                write!(f, "the controller did not answer for job {job}: {why}")
            }
            ControllerError::UnknownJob(job) => {
                write!(f, "the controller does not know job {job}")
            }
        }
    }
}

/// # Safety
/// `text` is null or points to a NUL-terminated string that stays valid for the call.
unsafe fn cstr_to_string(text: *const libc::c_char) -> Option<String> {
    (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
}

/// `SLURMD_NODENAME` as slurmstepd set it in its own environment from
/// slurmd's configuration (the job's environment is a different, user-built one).
pub fn slurmd_node_name() -> Option<String> {
    std::env::var("SLURMD_NODENAME")
        .ok()
        .filter(|n| !n.is_empty())
}

fn path_to_cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives the calling process its own mount namespace, receiving the host's
/// mount events but never sending any back.
///
/// Called in a task's freshly forked child, which is single-threaded, so the
/// new namespace is the whole process's.
pub fn enter_private_mount_namespace() -> io::Result<()> {
    // SAFETY: plain syscalls with constant arguments.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            ptr::null(),
            c"/".as_ptr(),
            ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            ptr::null(),
        ))
    }
}

/// Moves the calling process into the mount namespace `namespace` refers to
/// (an open `/proc/<pid>/ns/mnt`). The kernel sets root and working folder to
/// that namespace's root.
///
/// Called in a task's freshly forked child: it shares no file-system
/// attributes with another process, which setns requires.
pub fn join_mount_namespace(namespace: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a plain syscall on a valid descriptor.
    check(unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNS) })
}

/// A connected pair of sequenced-packet sockets, both closed on exec: a
/// process slurmstepd forks inherits both ends, the program a task execs none.
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the array it is given,
    // which are then owned here and nowhere else.
    unsafe {
        check(libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        ))?;
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// A receive on `socket` that waits longer than `timeout` fails with
/// `WouldBlock` instead of waiting for ever.
pub fn set_receive_timeout(socket: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<()> {
    let value = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt reads a timeval of the size given.
    check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&value as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })
}

/// Room for one descriptor's control message.
const ONE_FD_SPACE: usize = 64;

/// A message header for one data buffer and a control buffer. Both must
/// outlive every use of the header, which points at them.
fn message_header(iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: msghdr is plain old data, for which all zeroes is a valid value.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = control.len();
    message
}

/// Sends one message on a sequenced-packet socket: `data`, and `fd` (as
/// SCM_RIGHTS: the receiver gets its own descriptor of the same file) if given.
pub fn send_message(
    socket: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = [0u8; ONE_FD_SPACE];
    let int = std::mem::size_of::<libc::c_int>() as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let used = if fd.is_some() {
        unsafe { libc::CMSG_SPACE(int) as usize }
    } else {
        0
    };
    let message = message_header(&mut iov, &mut control[..used]);
    // SAFETY: the header points at `iov` and `control`, both alive here; with a
    // descriptor, CMSG_FIRSTHDR is the start of `control`, whose `used` bytes
    // hold CMSG_SPACE of one int, so the header and its data stay inside it.
    unsafe {
        if let Some(fd) = fd {
            let header = libc::CMSG_FIRSTHDR(&message);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(int) as usize;
            libc::CMSG_DATA(header)
                .cast::<libc::c_int>()
                .write_unaligned(fd.as_raw_fd());
        }
        if libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one message sent by [`send_message`]: its data (cut at `max`
/// bytes) and the descriptor it carried, if any, closed on exec.
pub fn receive_message(
    socket: BorrowedFd<'_>,
    max: usize,
) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut data = vec![0u8; max];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut control = [0u8; ONE_FD_SPACE];
    let mut message = message_header(&mut iov, &mut control);
    // SAFETY: the header points at `iov` and `control`, both alive here; a
    // descriptor the kernel put into the control message is new and owned by
    // nothing else, so it becomes an OwnedFd exactly once.
    unsafe {
        let received = libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC);
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        data.truncate(received as usize);
        let header = libc::CMSG_FIRSTHDR(&message);
        let carries_fd = !header.is_null()
            && (*header).cmsg_level == libc::SOL_SOCKET
            && (*header).cmsg_type == libc::SCM_RIGHTS;
        let fd = carries_fd.then(|| {
            OwnedFd::from_raw_fd(
                libc::CMSG_DATA(header)
                    .cast::<libc::c_int>()
                    .read_unaligned(),
            )
        });
        Ok((data, fd))
    }
}

/// The real uid of the calling process (the submitting user, in srun/sbatch/salloc).
pub fn current_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// The uid the plugin's files are created as (root, in slurmstepd).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The path through which the kernel reaches exactly the object behind `fd`,
/// whatever happens to the name it was opened by.
pub fn fd_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

pub fn mount_tmpfs(target: &Path, options: &str) -> io::Result<()> {
    let target = path_to_cstring(target)?;
    let options = CString::new(options)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "options contain NUL"))?;
    // SAFETY: all pointers are NUL-terminated strings that live across the call.
    check(unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            options.as_ptr().cast(),
        )
    })
}

/// A detached copy of the mount at the directory behind `source` (that
/// directory only, not the mounts below it), to be attached with [`attach`].
/// Working on handles instead of paths leaves nothing for a user to swap.
pub fn clone_mount(source: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: open_tree reads a NUL-terminated empty path and returns a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            source.as_raw_fd(),
            c"".as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Adds nosuid and nodev (and read-only, noexec when asked) to the mount
/// behind `mount`, keeping every flag it already has (a source mounted
/// noexec stays noexec).
pub fn restrict_mount(mount: BorrowedFd<'_>, read_only: bool, no_exec: bool) -> io::Result<()> {
    let mut set = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
    if read_only {
        set |= libc::MOUNT_ATTR_RDONLY;
    }
    if no_exec {
        set |= libc::MOUNT_ATTR_NOEXEC;
    }
    let attributes = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attributes` (of the size passed) and an empty path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attributes as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Attaches the detached mount `mount` on the directory behind `onto`.
pub fn attach(mount: BorrowedFd<'_>, onto: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: move_mount with two descriptors and empty NUL-terminated paths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            c"".as_ptr(),
            onto.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether two handles name the same file (device and inode).
pub fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<bool> {
    let identity = |fd: BorrowedFd<'_>| -> io::Result<(u64, u64)> {
        // SAFETY: stat is plain old data filled by fstat on a valid descriptor.
        unsafe {
            let mut stat: libc::stat = std::mem::zeroed();
            check(libc::fstat(fd.as_raw_fd(), &mut stat))?;
            Ok((stat.st_dev, stat.st_ino))
        }
    };
    Ok(identity(a)? == identity(b)?)
}

/// Ends a refused task before it can exec the user's program. `_exit` skips
/// the atexit handlers and buffers the forked child shares with slurmstepd.
pub fn exit_task(status: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(status) }
}
