//! The hostile-input matrix of issue #4 on the real cluster: metadata content
//! that must never reach a decision, races between the plugin's checks and its
//! use of files and folders, a hide root reached through a symlink, and a
//! metadata file replaced between two steps of one job.
//!
//! Every case checks the message (which file, key or position, what was
//! wrong), the exit status (77 for a task refused on the node, non-zero with
//! `spank-beamtime:` for a refused client), that nothing was mounted on the
//! host or written, and that the node still takes jobs. Where a client-side
//! check exists, both sides are tried: the client as the user runs it, and the
//! node with the client bypassed (a slurm.conf without the plugin and the
//! option forged into the environment, as any user can do).
//!
//! Accounts bttest70–bttest99; every beamtime, the one the attacks aim at (`other`, account
//! bttest90) included, has a fresh id and beamline (`BeamtimeSpec::fresh`).

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use scenarios::{
    assert_host_untouched, assert_refused_by_client, cluster, host_mounts_below, wait, Beamtime,
    BeamtimeSpec, Cluster, Output, UnixUser, NODE, REFUSED,
};

/// beamtime::metadata::MAX_METADATA_BYTES (this crate does not depend on the library).
const MAX_METADATA_BYTES: usize = 1024 * 1024;

/// What every refusal of a metadata file ends with: the facility writes these files.
const REPORT: &str = "report the file to the beamline staff";

/// How many beamtime steps a race runs through.
const RACE_STEPS: usize = 24;

// ------------------------------------------------------------------------------------------
// Turns: one test changes the cluster's plugstack.conf for a moment, which every other
// beamtime step of this binary would see. It takes the turn alone; the others share it.

static TURN: RwLock<()> = RwLock::new(());

fn shared_turn() -> RwLockReadGuard<'static, ()> {
    TURN.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn exclusive_turn() -> RwLockWriteGuard<'static, ()> {
    TURN.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ------------------------------------------------------------------------------------------
// Beamtimes

fn beamtime(account: &str) -> Beamtime {
    let bt = cluster().start_beamtime(&BeamtimeSpec::fresh(account));
    put_detector_file(&bt);
    bt
}

/// Another beamtime whose data, metadata, beamline and account the attacks aim at.
fn other() -> &'static Beamtime {
    static OTHER: OnceLock<Beamtime> = OnceLock::new();
    OTHER.get_or_init(|| {
        let bt = cluster().start_beamtime(&BeamtimeSpec::fresh("bttest90").no_online());
        put_detector_file(&bt);
        bt
    })
}

fn put_detector_file(bt: &Beamtime) {
    let raw = bt.current_dir.join("raw/detector.txt");
    fs::write(&raw, format!("frame data of {}\n", bt.id)).unwrap();
    fs::set_permissions(&raw, fs::Permissions::from_mode(0o644)).unwrap();
}

/// Writes a metadata file as the facility's start script would (root, 0644, renamed into
/// place), whatever its bytes: only the content is hostile.
fn write_metadata(path: &Path, bytes: &[u8]) {
    let staging = path.with_extension("new");
    fs::write(&staging, bytes).unwrap();
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o644)).unwrap();
    fs::rename(&staging, path).unwrap();
}

fn pretty(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_string_pretty(value).unwrap().into_bytes()
}

/// The file's bytes with `line` (no newline) put in as its second line, right after `{`.
fn with_second_line(original: &[u8], line: &[u8]) -> Vec<u8> {
    assert!(
        original.starts_with(b"{\n"),
        "metadata does not start with a lone {{"
    );
    let mut bytes = b"{\n".to_vec();
    bytes.extend_from_slice(line);
    bytes.push(b'\n');
    bytes.extend_from_slice(&original[2..]);
    bytes
}

// ------------------------------------------------------------------------------------------
// Both sides of a refusal

/// A client without the plugin: what a user gets with their own slurm.conf.
fn bypass_conf(user: &str) -> PathBuf {
    cluster().slurm_conf_without_plugins(user)
}

/// The option as srun/sbatch would hand it to the node, set by hand.
const FORGED_OPTION: &str = "_SLURM_SPANK_OPTION_beamtime_beamtime";

/// The payload of every attempt that must be refused: it says so and writes into the
/// beamline's writable folder and into the work folder (as [`trace`]), so a run that
/// slipped through leaves traces.
fn payload(wd: &Path, tag: &str) -> Vec<String> {
    let script = format!(
        "echo payload-ran; touch \"$BEAMTIME_BEAMLINE_PATH/processed/{name}\"; touch {}/{name}",
        wd.display(),
        name = trace(wd, tag)
    );
    vec!["bash".into(), "-c".into(), script]
}

/// The file name the payload writes: unique to the work folder, so an earlier run's
/// traces never count.
fn trace(wd: &Path, tag: &str) -> String {
    format!(
        "payload-{}-{tag}",
        wd.file_name().unwrap().to_string_lossy()
    )
}

fn bypassed_srun(bt: &Beamtime, wd: &Path, command: &[String]) -> Output {
    cluster()
        .as_user(&bt.account, "srun")
        .cwd(wd)
        .env("SLURM_CONF", bypass_conf(&bt.account))
        .env(FORGED_OPTION, &bt.id)
        .args([
            "--partition=all",
            &format!("--reservation={}", bt.reservations[0]),
        ])
        .args(command)
        .run()
}

/// Every file and folder below `dir` with its size and modification time: what
/// "nothing was written" compares.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, i64, i64)> {
    let mut seen = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(folder) = todo.pop() {
        for entry in fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display())) {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                todo.push(path.clone());
            }
            seen.push((path, meta.len(), meta.mtime(), meta.mtime_nsec()));
        }
    }
    seen.sort();
    seen
}

/// The same submission, refused on both sides with `expected` in the message, running
/// nothing and writing nothing.
#[track_caller]
fn assert_refused_everywhere(bt: &Beamtime, tag: &str, expected: &[&str]) -> Output {
    assert_refused_on_both_sides(bt, tag, expected, expected)
}

/// Like [`assert_refused_everywhere`], where the node tells the user less than the
/// client (which runs as a member and may read the metadata) does.
#[track_caller]
fn assert_refused_on_both_sides(
    bt: &Beamtime,
    tag: &str,
    by_client: &[&str],
    by_node: &[&str],
) -> Output {
    let c = cluster();
    let wd = c.workdir(&bt.account, &format!("refused-{tag}"));
    let before = snapshot(&bt.current_dir);

    let node = bypassed_srun(bt, &wd, &payload(&wd, tag));
    cluster().assert_refused_by_node(&node, by_node);

    let out = c.sbatch_beamtime_job(bt, &wd, &[], "#!/bin/bash\necho payload-ran\n");
    assert_refused_by_client(&out, "sbatch", by_client);

    assert!(
        !wd.join(trace(&wd, tag)).exists(),
        "the payload of {tag} ran"
    );
    assert_eq!(
        snapshot(&bt.current_dir),
        before,
        "{tag}: the beamline folder changed"
    );
    assert_host_untouched();
    c.assert_node_not_drained();
    node
}

/// The untouched beamtime runs the payload: the refusals that follow are the
/// content's doing, and the payload's traces are where the checks look for them.
#[track_caller]
fn assert_payload_runs(bt: &Beamtime) {
    let wd = cluster().workdir(&bt.account, "accepted");
    let out = bypassed_srun(bt, &wd, &payload(&wd, "control"));
    out.assert_success().assert_stdout_contains("payload-ran");
    assert!(wd.join(trace(&wd, "control")).exists(), "{out}");
    assert!(
        bt.current_dir
            .join("processed")
            .join(trace(&wd, "control"))
            .exists(),
        "{out}"
    );
}

// ------------------------------------------------------------------------------------------
// 1. Metadata content

#[test]
fn a_beamline_that_is_a_path_or_holds_control_long_or_non_ascii_text_is_refused_on_both_sides() {
    let _turn = shared_turn();
    let bt = beamtime("bttest70");
    assert_payload_runs(&bt);
    let original = bt.metadata();
    let path = bt.metadata_path.display().to_string();
    let long = format!("p{}", "a".repeat(299));
    let cases: [(&str, &str, String, String); 6] = [
        (
            "dotdot",
            "../etc",
            r#""../etc""#.into(),
            "'/' at position 3 is not allowed".into(),
        ),
        (
            "slash",
            "a/b",
            r#""a/b""#.into(),
            "'/' at position 2 is not allowed".into(),
        ),
        (
            "nul",
            "p5\u{0}x",
            r#""p5\0x""#.into(),
            r"'\0' at position 3 is not allowed".into(),
        ),
        (
            "newline",
            "p5\nx",
            r#""p5\nx""#.into(),
            r"'\n' at position 3 is not allowed".into(),
        ),
        // Messages quote at most 80 characters of a value.
        (
            "long",
            &long,
            format!("\"p{}\"… (300 characters)", "a".repeat(79)),
            "it is too long".into(),
        ),
        (
            "non-ascii",
            "pé1",
            r#""pé1""#.into(),
            "'é' at position 2 is not allowed".into(),
        ),
    ];
    for (tag, value, shown, why) in &cases {
        let mut hostile = original.clone();
        hostile["beamline"] = serde_json::json!(value);
        write_metadata(&bt.metadata_path, &pretty(&hostile));
        let message = format!(
            "{path}: beamline: invalid beamline {shown}: {why}; a beamline is 1 to 64 characters \
             from A-Z a-z 0-9 . _ - and does not start with '.' or '-'; {REPORT}"
        );
        let out = assert_refused_everywhere(&bt, tag, &[&message]);
        // What is echoed comes escaped and cut: no raw control character, no flood.
        assert!(
            !out.stderr.contains('\0') && !out.stderr.contains("p5\nx"),
            "a raw control character reached the message:\n{out}"
        );
        assert!(
            !out.stderr.contains(&long),
            "the whole 300-character value reached the message:\n{out}"
        );
    }
}

#[test]
fn a_user_account_that_is_root_a_system_account_or_unknown_is_refused_on_both_sides() {
    let _turn = shared_turn();
    let bt = beamtime("bttest71");
    assert_payload_runs(&bt);
    let original = bt.metadata();
    let nobody = "bthostilenobody";
    assert!(
        UnixUser::lookup(nobody).is_none(),
        "{nobody} exists on this machine"
    );
    let daemon = UnixUser::get("daemon").uid;
    assert!(daemon < 1000, "daemon has uid {daemon}");
    let file = bt.metadata_path.display();
    let cases = [
        (
            "root",
            "root".to_owned(),
            format!("the beamtime's account 'root' ({file}: onlineAnalysis.userAccount) is a system account (uid 0 < 1000)"),
        ),
        (
            "daemon",
            "daemon".to_owned(),
            format!(
                "the beamtime's account 'daemon' ({file}: onlineAnalysis.userAccount) is a system account (uid {daemon} < 1000)"
            ),
        ),
        (
            "unknown",
            nobody.to_owned(),
            format!("the beamtime's account '{nobody}' ({file}: onlineAnalysis.userAccount) does not exist on this node"),
        ),
    ];
    for (tag, account, message) in &cases {
        let mut hostile = original.clone();
        hostile["onlineAnalysis"]["userAccount"] = serde_json::json!(account);
        write_metadata(&bt.metadata_path, &pretty(&hostile));
        let fix = if *tag == "unknown" {
            "Ask the facility to check that the beamtime was started on this node"
        } else {
            "Refusing to run a beamtime as a system account; ask the facility to fix the metadata"
        };
        // The node names neither the account nor the file to whoever names the id.
        let node = assert_refused_on_both_sides(
            &bt,
            tag,
            &[message, fix],
            &[&format!(
                "beamtime {}'s metadata names an account that this node does not run jobs as",
                bt.id
            )],
        );
        assert!(!node.stderr.contains(account.as_str()), "{node}");
        assert!(!node.stderr.contains(&file.to_string()), "{node}");
    }
}

#[test]
fn a_metadata_file_over_the_size_cap_is_refused_on_both_sides() {
    let _turn = shared_turn();
    let bt = beamtime("bttest72");
    assert_payload_runs(&bt);
    // Valid JSON, right in every key: only the size is wrong.
    let mut hostile = bt.metadata();
    hostile["padding"] = serde_json::json!("x".repeat(MAX_METADATA_BYTES));
    let bytes = pretty(&hostile);
    assert!(bytes.len() > MAX_METADATA_BYTES);
    write_metadata(&bt.metadata_path, &bytes);
    let message = format!(
        "metadata file {} is not trusted: it is {} bytes, more than the {MAX_METADATA_BYTES}-byte limit",
        bt.metadata_path.display(),
        bytes.len()
    );
    assert_refused_everywhere(&bt, "huge", &[&message]);
}

#[test]
fn deeply_nested_json_is_refused_with_its_position_on_both_sides() {
    let _turn = shared_turn();
    let bt = beamtime("bttest73");
    assert_payload_runs(&bt);
    // Balanced, so only the depth is wrong (and 200 KB, well under the size cap).
    let prefix = "    \"nested\": ";
    let line = format!("{prefix}{}{},", "[".repeat(100_000), "]".repeat(100_000));
    write_metadata(
        &bt.metadata_path,
        &with_second_line(&fs::read(&bt.metadata_path).unwrap(), line.as_bytes()),
    );
    // serde_json stops at 128 levels, the top-level object being the first: the 127th
    // bracket is where the parser gives up.
    let column = prefix.len() + 127;
    let message = format!(
        "{}:2:{column}: invalid JSON: recursion limit exceeded; the file is damaged or cut off, {REPORT}",
        bt.metadata_path.display()
    );
    assert_refused_everywhere(&bt, "nested", &[&message]);
}

#[test]
fn a_duplicate_beamline_key_is_refused_instead_of_one_value_silently_winning() {
    let _turn = shared_turn();
    let bt = beamtime("bttest74");
    assert_payload_runs(&bt);
    // Two beamlines in one file: which one a reader takes is up to the reader, so a
    // strict parser must refuse the file rather than pick one.
    let original = fs::read(&bt.metadata_path).unwrap();
    let key = "    \"beamline\"";
    let hostile = with_second_line(&original, format!("{key}: \"p9\",").as_bytes());
    let repeated = String::from_utf8_lossy(&hostile)
        .lines()
        .enumerate()
        .filter(|(_, line)| line.starts_with(&format!("{key}: ")))
        .map(|(index, line)| (index + 1, line.to_owned()))
        .nth(1);
    let Some((line, text)) = repeated else {
        panic!("the start script's file has no beamline key");
    };
    assert_eq!(text, format!("{key}: \"{}\",", bt.beamline));
    write_metadata(&bt.metadata_path, &hostile);
    // The parser stops at the end of the repeated key.
    let message = format!(
        "{}:{line}:{}: the key \"beamline\" appears twice in one object; a key may appear \
         once, so which value counts is ambiguous",
        bt.metadata_path.display(),
        key.len()
    );
    assert_refused_everywhere(&bt, "duplicate", &[&message, REPORT]);
}

#[test]
fn non_utf8_metadata_is_refused_with_its_position_on_both_sides() {
    let _turn = shared_turn();
    let bt = beamtime("bttest75");
    assert_payload_runs(&bt);
    // "café" in Latin-1: 0xE9 is not UTF-8.
    let prefix = "    \"comment\": \"caf";
    let mut line = prefix.as_bytes().to_vec();
    line.extend_from_slice(b"\xe9\",");
    write_metadata(
        &bt.metadata_path,
        &with_second_line(&fs::read(&bt.metadata_path).unwrap(), &line),
    );
    let message = format!(
        "{}:2:{}: expected UTF-8 text, found an invalid byte; {REPORT}",
        bt.metadata_path.display(),
        prefix.chars().count() + 1
    );
    assert_refused_everywhere(&bt, "latin1", &[&message]);
}

// ------------------------------------------------------------------------------------------
// 2. Races between check and use

/// What the swapper child and the test share: a page mapped into both.
#[repr(C)]
struct SwapState {
    stop: AtomicBool,
    swaps: AtomicU64,
    errno: AtomicI32,
}

/// A process running as a beamtime's account that exchanges two names in a tight loop
/// (renameat2 RENAME_EXCHANGE: both names exist at every moment, only what they name
/// flips). Bounded by `limit`; stopped by pid when dropped, also when the test fails.
struct Swapper {
    pid: libc::pid_t,
    state: *mut SwapState,
    stopped: bool,
}

impl Swapper {
    fn start(user: &UnixUser, a: &Path, b: &Path, limit: Duration) -> Swapper {
        let a = CString::new(a.as_os_str().as_bytes()).unwrap();
        let b = CString::new(b.as_os_str().as_bytes()).unwrap();
        let (uid, gid, groups) = (user.uid, user.gid, user.groups.clone());
        // SAFETY: a fresh anonymous shared mapping; zeroed memory is a valid SwapState.
        let state = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<SwapState>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(
            state,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let state = state.cast::<SwapState>();
        // SAFETY: getpid cannot fail.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the child of this multi-threaded process makes raw system calls only
        // (no allocation, no locks) on data prepared before the fork, and ends in _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            unsafe {
                // Other tests' command pipes would stay open in here and keep their
                // readers waiting until this process ends.
                libc::close_range(3, u32::MAX, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(0);
                }
                let shared = &*state;
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    shared
                        .errno
                        .store(*libc::__errno_location(), Ordering::SeqCst);
                    libc::_exit(1);
                }
                let mut now: libc::timespec = std::mem::zeroed();
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
                let deadline = now.tv_sec + limit.as_secs() as libc::time_t;
                while !shared.stop.load(Ordering::SeqCst) && now.tv_sec < deadline {
                    if libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    ) != 0
                    {
                        shared
                            .errno
                            .store(*libc::__errno_location(), Ordering::SeqCst);
                        libc::_exit(2);
                    }
                    shared.swaps.fetch_add(1, Ordering::SeqCst);
                    libc::sched_yield();
                    libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
                }
                libc::_exit(0);
            }
        }
        Swapper {
            pid,
            state,
            stopped: false,
        }
    }

    fn shared(&self) -> &SwapState {
        // SAFETY: mapped in `start`, unmapped only in drop.
        unsafe { &*self.state }
    }

    /// Stops the child (asking first, then SIGKILL by pid) and returns how many
    /// exchanges it made; a failed exchange fails the test.
    #[track_caller]
    fn stop(&mut self) -> u64 {
        self.shared().stop.store(true, Ordering::SeqCst);
        let mut status = 0;
        let ended = wait::poll(Duration::from_secs(10), || {
            // SAFETY: waiting for our own child, without blocking.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if rc == self.pid {
                Ok(())
            } else {
                Err(())
            }
        });
        if ended.is_err() {
            // SAFETY: our own child, by pid.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, &mut status, 0);
            }
        }
        self.stopped = true;
        let errno = self.shared().errno.load(Ordering::SeqCst);
        assert_eq!(
            errno,
            0,
            "the swapper failed: {} (exit status {status:#x})",
            std::io::Error::from_raw_os_error(errno)
        );
        self.shared().swaps.load(Ordering::SeqCst)
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        if !self.stopped {
            // SAFETY: our own child, by pid; no panicking here (this runs while a failed
            // test unwinds).
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
        // SAFETY: the mapping made in `start`; nothing refers to it any more.
        unsafe { libc::munmap(self.state.cast(), std::mem::size_of::<SwapState>()) };
    }
}

#[track_caller]
fn wait_for_file(path: &Path, job: u32) {
    wait::for_path(path, Duration::from_secs(120), &format!("job {job}"));
}

/// A folder the beamtime's account may rename things in: the site layout where
/// participants can write the top of their beamline folder.
fn let_account_write_the_top(bt: &Beamtime) {
    std::os::unix::fs::chown(&bt.current_dir, Some(UnixUser::get(&bt.account).uid), None).unwrap();
}

/// After a race (or a run of this test that died in one), `name` names the real
/// thing again and `swapped` the link.
fn put_back(name: &Path, swapped: &Path) {
    if fs::symlink_metadata(name).is_ok_and(|m| m.file_type().is_symlink()) {
        let aside = name.with_extension("put-back");
        fs::rename(name, &aside).unwrap();
        fs::rename(swapped, name).unwrap();
        fs::rename(&aside, swapped).unwrap();
    }
}

/// One step of a race job: how it ended, what it printed.
#[derive(Debug)]
struct StepRun {
    n: usize,
    rc: i32,
    out: String,
    err: String,
}

/// A batch job that signals `started`, waits for `go`, then runs [`RACE_STEPS`] steps of
/// `step` (a bash command; `$STEP` is the step's number), every other one with the client
/// bypassed, each step's stdout, stderr and status kept in the work folder.
fn race_job(bt: &Beamtime, wd: &Path, step: &str) -> u32 {
    let c = cluster();
    let script = r#"#!/bin/bash
echo "batch bl=$BEAMTIME_BEAMLINE sees=$(ls -A /beamline | paste -sd,)"
touch @WD@/started
while [ ! -e @WD@/go ]; do sleep 0.1; done
for i in $(seq @STEPS@); do
    if [ $((i % 2)) = 0 ]; then conf=@BYPASS@; else conf=$SLURM_CONF; fi
    STEP=$i SLURM_CONF=$conf srun -n1 bash -c '@STEP@' >@WD@/step-$i.out 2>@WD@/step-$i.err
    echo $? >@WD@/step-$i.rc
done
"#
    .replace("@WD@", &wd.display().to_string())
    .replace("@STEPS@", &RACE_STEPS.to_string())
    .replace("@BYPASS@", &bypass_conf(&bt.account).display().to_string())
    .replace("@STEP@", step);
    c.submit_beamtime_job(bt, wd, &[], &script).id
}

#[track_caller]
fn race_steps(wd: &Path) -> Vec<StepRun> {
    (1..=RACE_STEPS)
        .map(|n| {
            let read = |ext: &str| {
                fs::read_to_string(wd.join(format!("step-{n}.{ext}"))).unwrap_or_default()
            };
            let rc = read("rc")
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("step {n} left no status in {}", wd.display()));
            StepRun {
                n,
                rc,
                out: read("out"),
                err: read("err"),
            }
        })
        .collect()
}

/// Refused: by the node (77, its message) or by srun's own check (non-zero, its message).
fn refused(step: &StepRun) -> bool {
    let by_node = step.rc == REFUSED
        && step.err.contains("spank-beamtime: error: job ")
        && step.err.contains(&format!(" refused on {NODE}: "));
    let by_client = step.rc != 0 && step.err.contains("srun: error: spank-beamtime: ");
    by_node || by_client
}

#[test]
fn a_metadata_file_swapped_with_a_link_to_another_beamtimes_never_shows_the_other_beamline() {
    let _turn = shared_turn();
    let c = cluster();
    let other = other();
    let bt = beamtime("bttest80");
    let_account_write_the_top(&bt);
    // writable= is refused in a folder the account can write (#17 finding 4); this race
    // is about the metadata file, so the beamtime keeps no writable subfolder.
    // (beamtime-start.sh makes them again for the next run.)
    for name in ["processed", "shared"] {
        let folder = bt.current_dir.join(name);
        if folder.exists() {
            fs::remove_dir_all(&folder).unwrap();
        }
    }
    let link = bt.current_dir.join("metadata-swap");
    put_back(&bt.metadata_path, &link);
    let wd = c.workdir(&bt.account, "race-metadata");
    c.run_as(
        &bt.account,
        &wd,
        &[
            "ln",
            "-sfn",
            &other.metadata_path.display().to_string(),
            &link.display().to_string(),
        ],
    )
    .assert_success();

    let job = race_job(
        &bt,
        &wd,
        r#"echo "bl=$BEAMTIME_BEAMLINE sees=$(ls -A /beamline | paste -sd,)"; cat "$BEAMTIME_BEAMLINE_PATH/raw/detector.txt""#,
    );
    wait_for_file(&wd.join("started"), job);
    let mut swapper = Swapper::start(
        &UnixUser::get(&bt.account),
        &bt.metadata_path,
        &link,
        Duration::from_secs(300),
    );
    fs::write(wd.join("go"), "").unwrap();
    let end = c.wait_job(job, Duration::from_secs(600));
    let swaps = swapper.stop();
    put_back(&bt.metadata_path, &link);
    assert!(swaps > 0, "the swapper never swapped");

    assert_eq!(end.state, "COMPLETED", "{end:#?}");
    let batch = fs::read_to_string(wd.join(format!("slurm-{job}.out"))).unwrap();
    let sees = format!("bl={0} sees={0}\n", bt.beamline);
    assert!(batch.contains(&format!("batch {sees}")), "{batch}");
    let steps = race_steps(&wd);
    let (mut ran, mut refusals) = (0, 0);
    let saw_the_other: Vec<_> = steps
        .iter()
        .filter(|step| {
            [
                other.beamline.clone(),
                format!("frame data of {}", other.id),
            ]
            .iter()
            .any(|leak| step.out.contains(leak) || step.err.contains(leak))
        })
        .collect();
    assert!(
        saw_the_other.is_empty(),
        "steps saw the other beamtime: {saw_the_other:#?}"
    );
    for step in &steps {
        if step.rc == 0 {
            assert!(
                step.out.contains(&format!("{sees}frame data of {}", bt.id)),
                "step {} ran with another view: {step:#?}",
                step.n
            );
            ran += 1;
        } else {
            assert!(
                refused(step),
                "step {} failed without a refusal: {step:#?}",
                step.n
            );
            // The node reads the file without following links; srun, as the account,
            // cannot even look behind the link into the other beamtime's folder.
            let clear = (step.err.contains(&bt.metadata_path.display().to_string())
                && step.err.contains("symbolic link"))
                || step.err.contains(&format!(
                    "srun: error: spank-beamtime: no metadata file for beamtime {}",
                    bt.id
                ));
            assert!(
                clear,
                "step {} was refused without saying why: {step:#?}",
                step.n
            );
            refusals += 1;
        }
    }
    eprintln!("metadata race: {swaps} swaps, {ran} steps ran, {refusals} refused");
    scenarios::figures::record(
        "race",
        serde_json::json!({
            "cluster": cluster_configuration(),
            "what": "metadata file / link to another beamtime's",
            "swaps": swaps,
            "steps_ran": ran,
            "steps_refused": refusals,
            "saw_the_other": saw_the_other.len(),
        }),
    );
    assert_host_untouched();
    c.assert_node_not_drained();
}

#[test]
fn a_writable_subfolder_swapped_with_a_link_to_another_beamtimes_folder_never_takes_a_write() {
    let _turn = shared_turn();
    let c = cluster();
    let bt = beamtime("bttest81");
    let victim = c.start_beamtime(&BeamtimeSpec::fresh("bttest91").no_online());
    // Open to everybody inside, closed above (current/ is the victim's members' only):
    // a marker can land here only through a mount the plugin made of it.
    let target = victim.current_dir.join("processed");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o777)).unwrap();
    let wd = c.workdir(&bt.account, "race-processed");
    let probe = c.run_as(
        &bt.account,
        &wd,
        &["touch", &target.join("by-path").display().to_string()],
    );
    assert!(
        !probe.success(),
        "{} is reachable by path for {}:\n{probe}",
        target.display(),
        bt.account
    );

    let_account_write_the_top(&bt);
    let processed = bt.current_dir.join("processed");
    let link = bt.current_dir.join("processed-swap");
    put_back(&processed, &link);
    let real = fs::metadata(&processed).unwrap();
    c.run_as(
        &bt.account,
        &wd,
        &[
            "ln",
            "-sfn",
            &target.display().to_string(),
            &link.display().to_string(),
        ],
    )
    .assert_success();

    // Since #17 (finding 4) the plugin honours writable= only in a beamline folder that
    // nobody but root or a trusted owner can change: with the top the account's, every
    // step is refused whatever the name names at the moment, the batch step first.
    let mut swapper = Swapper::start(
        &UnixUser::get(&bt.account),
        &processed,
        &link,
        Duration::from_secs(300),
    );
    let job = c.submit_beamtime_job(&bt, &wd, &[], &format!(
            "#!/bin/bash\ntouch /beamline/{}/current/processed/marker-$SLURM_JOB_ID && echo wrote\n",
            bt.beamline
        ),
    );
    let end = c.wait_job(job.id, Duration::from_secs(300));
    let swaps = swapper.stop();
    put_back(&processed, &link);
    assert_eq!(
        fs::metadata(&processed).unwrap().ino(),
        real.ino(),
        "the real folder is gone"
    );
    assert!(swaps > 0, "the swapper never swapped");
    assert_eq!(
        (end.state.as_str(), end.exit_code),
        ("FAILED", REFUSED),
        "{end:#?}"
    );
    let stderr = job.stderr();
    assert!(
        stderr.contains("the beamline folder could not be set up: ")
            && (stderr.contains("cannot be made writable")
                || stderr.contains("processed is a symbolic link")),
        "refused without saying why: {stderr}"
    );
    assert!(!job.stdout().contains("wrote"), "{}", job.stdout());
    let landed: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        landed.is_empty(),
        "writes landed in the other beamtime's folder: {landed:?}"
    );
    assert!(
        !processed.join(format!("marker-{}", job.id)).exists(),
        "the refused job wrote"
    );
    assert_host_untouched();
    c.assert_node_not_drained();
}

// ------------------------------------------------------------------------------------------
// 3. A hide root reached through a symlink

/// plugstack.conf with one more argument; the original comes back when dropped. slurmd
/// need not restart: srun, sbatch and slurmstepd read the file afresh for every step.
struct PlugstackWithArg {
    path: PathBuf,
    original: Vec<u8>,
}

impl PlugstackWithArg {
    fn new(c: &Cluster, arg: &str) -> PlugstackWithArg {
        let path = c.state_dir().join("etc/plugstack.conf");
        let original = fs::read(&path).unwrap();
        let text = String::from_utf8(original.clone()).unwrap();
        assert!(
            text.starts_with("required ") && text.trim_end().lines().count() == 1,
            "unexpected plugstack.conf: {text}"
        );
        let guard = PlugstackWithArg { path, original };
        guard.write(format!("{} {arg}\n", text.trim_end()).as_bytes());
        guard
    }

    fn write(&self, bytes: &[u8]) {
        let staging = self.path.with_extension("hostile");
        fs::write(&staging, bytes).unwrap();
        fs::set_permissions(&staging, fs::Permissions::from_mode(0o644)).unwrap();
        fs::rename(&staging, &self.path).unwrap();
    }
}

impl Drop for PlugstackWithArg {
    fn drop(&mut self) {
        // No panicking here: this also runs while a failed test unwinds.
        let staging = self.path.with_extension("hostile");
        let restored =
            fs::write(&staging, &self.original).and_then(|()| fs::rename(&staging, &self.path));
        if let Err(e) = restored {
            eprintln!("could not restore {}: {e}", self.path.display());
        }
    }
}

/// The host's /beamline is shared by every test cluster on this machine (others run
/// jobs at the same time), so the symlinked hide root is one of this cluster's own:
/// `target=` names it, and the plugin takes its hide root from `target=` exactly as it
/// takes /beamline from the default.
#[test]
fn a_hide_root_reached_through_a_symlink_is_refused_and_nothing_is_mounted_through_it() {
    let _turn = exclusive_turn();
    let c = cluster();
    let bt = beamtime("bttest82");
    let base = c
        .state_dir()
        .join(format!("hostile-hide-{}", std::process::id()));
    let (real_root, real_parent) = (base.join("real-root"), base.join("real-parent"));
    for dir in [&real_root, &real_parent.join("beamline")] {
        fs::create_dir_all(dir).unwrap();
    }
    let _ = fs::remove_file(base.join("root-link"));
    let _ = fs::remove_file(base.join("parent-link"));
    std::os::unix::fs::symlink(&real_root, base.join("root-link")).unwrap();
    std::os::unix::fs::symlink(&real_parent, base.join("parent-link")).unwrap();

    // The hide root itself a link, and a link further up its path.
    let cases = [
        (base.join("root-link"), base.join("root-link")),
        (base.join("parent-link/beamline"), base.join("parent-link")),
    ];
    for (hide_root, link) in &cases {
        let _plugstack = PlugstackWithArg::new(
            c,
            &format!("target={}/{{beamline}}/current", hide_root.display()),
        );
        let log = c.log_cursor("slurmd.log");
        let why = format!(
            "the beamline folder could not be set up: {} is a symbolic link, which the plugin does not follow",
            link.display()
        );
        let wd = c.workdir(&bt.account, "hide-root");

        // srun's own check does not look at mounts: it lets the step through to the node.
        let out = c
            .beamtime_srun(&bt)
            .cwd(&wd)
            .args(payload(&wd, "srun"))
            .run();
        cluster().assert_refused_by_node(&out, &[&why, "Ask the cluster's administrators"]);
        let out = bypassed_srun(&bt, &wd, &payload(&wd, "bypassed"));
        cluster().assert_refused_by_node(&out, &[&why]);

        let job = c.submit_beamtime_job(&bt, &wd, &[], "#!/bin/bash\necho payload-ran\n");
        let end = c.wait_job(job.id, scenarios::DEFAULT_TIMEOUT);
        assert_eq!(
            (end.state.as_str(), end.exit_code),
            ("FAILED", REFUSED),
            "{end:#?}"
        );
        let stderr = job.stderr();
        assert!(
            stderr.contains(&format!(
                "spank-beamtime: error: job {} refused on {NODE}: {why}",
                job.id
            )),
            "{stderr}"
        );
        assert!(
            !job.stdout().contains("payload-ran"),
            "the refused batch script ran"
        );

        let logged = log.read_new();
        let refusal = format!(
            "decision=refused rule=mount-failed reason=\"the beamline folder could not be set \
             up: {} is a symbolic link",
            link.display()
        );
        assert!(
            logged
                .lines()
                .any(|l| l.contains(&format!("beamtime={} ", bt.id)) && l.contains(&refusal)),
            "slurmd.log lacks the mount failure:\n{logged}"
        );
        // The refusal is each step's one decision line: no accepted line before it (#21).
        assert!(
            !logged
                .lines()
                .any(|l| l.contains(&format!("beamtime={} ", bt.id))
                    && l.contains("decision=accepted")),
            "a mount-failed step was logged as accepted:\n{logged}"
        );
        for name in ["srun", "bypassed"] {
            assert!(!wd.join(trace(&wd, name)).exists(), "the payload ran");
        }
        assert_eq!(
            host_mounts_below(&base),
            Vec::<String>::new(),
            "mounted through {}",
            link.display()
        );
        let inside: Vec<_> = fs::read_dir(&real_root)
            .unwrap()
            .chain(fs::read_dir(real_parent.join("beamline")).unwrap())
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            inside.is_empty(),
            "the plugin wrote through {}: {inside:?}",
            link.display()
        );
        c.assert_node_not_drained();
        assert_host_untouched();
    }

    // With the site's own target back, the same submission runs: the refusals were the link's.
    let wd = c.workdir(&bt.account, "hide-root-restored");
    let out = c
        .beamtime_srun(&bt)
        .cwd(&wd)
        .args(["ls", "-A", "/beamline"])
        .run();
    out.assert_success().assert_stdout_contains(&bt.beamline);
    let _ = fs::remove_dir_all(&base);
}

// ------------------------------------------------------------------------------------------
// 4. The metadata file replaced between two steps of one job

/// A job whose step 0 waits (for `go-2`) across the change, after which the batch
/// script looks again and starts two more steps: one through srun's own check, one
/// with the client bypassed. Returns the job's output and the two later steps.
struct Replaced {
    batch: String,
    batch_err: String,
    later: Vec<StepRun>,
}

fn replace_between_steps(bt: &Beamtime, label: &str, replace: impl FnOnce()) -> Replaced {
    let c = cluster();
    let wd = c.workdir(&bt.account, label);
    // Only double quotes: it also goes inside the single quotes of `bash -c '…'`.
    let look = r#"echo "@WHO@ bl=$BEAMTIME_BEAMLINE core=$BEAMTIME_CORE_PATH sees=$(ls -A /beamline | paste -sd,) data=$(cat /beamline/*/current/raw/detector.txt 2>&1)""#;
    let script = r#"#!/bin/bash
@LOOK_BATCH_BEFORE@
srun -n1 bash -c '@LOOK_STEP0_BEFORE@; touch @WD@/go-1; while [ ! -e @WD@/go-2 ]; do sleep 0.1; done; @LOOK_STEP0_AFTER@'
echo "step0-rc=$?"
@LOOK_BATCH_AFTER@
srun -n1 bash -c '@LOOK_STEP1@' >@WD@/step-1.out 2>@WD@/step-1.err; echo $? >@WD@/step-1.rc
SLURM_CONF=@BYPASS@ srun -n1 bash -c '@LOOK_STEP2@' >@WD@/step-2.out 2>@WD@/step-2.err; echo $? >@WD@/step-2.rc
"#
    .replace("@LOOK_BATCH_BEFORE@", &look.replace("@WHO@", "batch-before"))
    .replace("@LOOK_BATCH_AFTER@", &look.replace("@WHO@", "batch-after"))
    .replace("@LOOK_STEP0_BEFORE@", &look.replace("@WHO@", "step0-before"))
    .replace("@LOOK_STEP0_AFTER@", &look.replace("@WHO@", "step0-after"))
    .replace("@LOOK_STEP1@", &look.replace("@WHO@", "step1"))
    .replace("@LOOK_STEP2@", &look.replace("@WHO@", "step2"))
    .replace("@WD@", &wd.display().to_string())
    .replace("@BYPASS@", &bypass_conf(&bt.account).display().to_string());
    let job = c.submit_beamtime_job(bt, &wd, &[], &script);
    wait_for_file(&wd.join("go-1"), job.id);
    replace();
    fs::write(wd.join("go-2"), "").unwrap();
    let end = c.wait_job(job.id, Duration::from_secs(180));
    assert_eq!(end.state, "COMPLETED", "{end:#?}\n{}", job.stderr());
    let later = (1..=2)
        .map(|n| {
            let read = |ext: &str| {
                fs::read_to_string(wd.join(format!("step-{n}.{ext}"))).unwrap_or_default()
            };
            StepRun {
                n,
                rc: read("rc").trim().parse().unwrap_or(-1),
                out: read("out"),
                err: read("err"),
            }
        })
        .collect();
    Replaced {
        batch: job.stdout(),
        batch_err: job.stderr(),
        later,
    }
}

/// The batch step and step 0, both running when the file changed, kept their view.
#[track_caller]
fn assert_running_steps_kept_their_view(bt: &Beamtime, core: &str, r: &Replaced) {
    let view = format!(
        "bl={} core={core} sees={} data=frame data of {}",
        bt.beamline, bt.beamline, bt.id
    );
    for who in ["batch-before", "step0-before", "step0-after", "batch-after"] {
        assert!(
            r.batch.contains(&format!("{who} {view}")),
            "{who} lost its view:\n{}\n{}",
            r.batch,
            r.batch_err
        );
    }
    assert!(r.batch.contains("step0-rc=0"), "{}", r.batch);
}

/// Both later steps refused, step 1 with `client`'s words (srun's own check, or the node
/// when srun has nothing to check), step 2 by the node with `node`'s; neither ran.
#[track_caller]
fn assert_later_steps_refused(r: &Replaced, client: &str, node: &str) {
    let (step1, step2) = (&r.later[0], &r.later[1]);
    assert!(
        refused(step1) && step1.err.contains(client),
        "step 1: {step1:#?}"
    );
    assert!(
        step2.rc == REFUSED && refused(step2) && step2.err.contains(node),
        "step 2: {step2:#?}"
    );
    for step in [step1, step2] {
        assert!(
            !step.out.contains(&format!("step{}", step.n)),
            "refused step {} ran: {step:#?}",
            step.n
        );
    }
}

fn core_path(bt: &Beamtime) -> String {
    bt.metadata()["corePath"].as_str().unwrap().to_owned()
}

#[test]
fn a_mid_job_switch_to_another_beamline_shows_later_steps_none_of_it_and_running_ones_keep_their_view(
) {
    let _turn = shared_turn();
    let other = other();
    let bt = beamtime("bttest83");
    let core = core_path(&bt);
    let r = replace_between_steps(&bt, "replaced-beamline", || {
        let mut m = bt.metadata();
        m["beamline"] = serde_json::json!(other.beamline);
        write_metadata(&bt.metadata_path, &pretty(&m));
    });
    assert_running_steps_kept_their_view(&bt, &core, &r);
    // The new beamline's folder holds the other beamtime's file, not this one's: later
    // steps run as in pre-start, with nothing of it.
    for step in &r.later {
        assert_eq!(step.rc, 0, "step {}: {step:#?}", step.n);
        assert!(
            step.out.contains(&format!(
                "step{} bl={} core={core} sees= ",
                step.n, other.beamline
            )),
            "step {} saw something under /beamline: {step:#?}",
            step.n
        );
        assert!(
            !step.out.contains("frame data"),
            "step {} saw data: {step:#?}",
            step.n
        );
        assert!(
            step.err.contains(&format!(
                "beamtime {} has not started on beamline {} yet",
                bt.id, other.beamline
            )),
            "step {}: no pre-start note: {step:#?}",
            step.n
        );
    }
    assert_host_untouched();
    cluster().assert_node_not_drained();
}

#[test]
fn a_mid_job_switch_to_another_account_refuses_later_steps_and_running_ones_keep_their_view() {
    let _turn = shared_turn();
    let other = other();
    let bt = beamtime("bttest84");
    let core = core_path(&bt);
    let r = replace_between_steps(&bt, "replaced-account", || {
        let mut m = bt.metadata();
        m["onlineAnalysis"]["userAccount"] = serde_json::json!(other.account);
        write_metadata(&bt.metadata_path, &pretty(&m));
    });
    assert_running_steps_kept_their_view(&bt, &core, &r);
    let other_uid = UnixUser::get(&other.account).uid;
    assert_later_steps_refused(
        &r,
        &format!("srun: error: spank-beamtime: beamtime {} runs as its account '{}' (uid {other_uid})", bt.id, other.account),
        &format!("beamtime {} jobs run only as the beamtime's own account, and this job's user is not it", bt.id),
    );
    assert_host_untouched();
    cluster().assert_node_not_drained();
}

#[test]
fn a_mid_job_swap_for_another_beamtimes_file_refuses_later_steps_running_ones_keep_their_view() {
    let _turn = shared_turn();
    let other = other();
    let bt = beamtime("bttest85");
    let core = core_path(&bt);
    let r = replace_between_steps(&bt, "replaced-file", || {
        write_metadata(&bt.metadata_path, &fs::read(&other.metadata_path).unwrap());
    });
    assert_running_steps_kept_their_view(&bt, &core, &r);
    let why = format!(
        "{}: the file name says \"{}\" but beamtimeId is \"{}\"; the file was renamed or copied from another beamtime",
        bt.metadata_path.display(),
        bt.id,
        other.id
    );
    assert_later_steps_refused(&r, &format!("srun: error: spank-beamtime: {why}"), &why);
    assert_host_untouched();
    cluster().assert_node_not_drained();
}

#[test]
fn a_harmless_mid_job_rewrite_reaches_later_steps_only_never_mixing_old_and_new() {
    let _turn = shared_turn();
    let bt = beamtime("bttest86");
    let core = core_path(&bt);
    let moved = format!("{core}-moved");
    let r = replace_between_steps(&bt, "replaced-harmless", || {
        let mut m = bt.metadata();
        m["corePath"] = serde_json::json!(moved);
        write_metadata(&bt.metadata_path, &pretty(&m));
    });
    assert_running_steps_kept_their_view(&bt, &core, &r);
    for step in &r.later {
        assert_eq!(step.rc, 0, "step {}: {step:#?}", step.n);
        let view = format!(
            "step{} bl={} core={moved} sees={} data=frame data of {}",
            step.n, bt.beamline, bt.beamline, bt.id
        );
        assert!(
            step.out.contains(&view),
            "step {} did not run with the new file alone: {step:#?}",
            step.n
        );
    }
    assert_host_untouched();
    cluster().assert_node_not_drained();
}

/// How the cluster runs, for the figures: the matrix runs with and without job_container/tmpfs.
fn cluster_configuration() -> &'static str {
    if Cluster::from_env().recorded("job_container") == "1" {
        "1 node, job_container/tmpfs"
    } else {
        "1 node"
    }
}

/// Someone who can write in a folder on a metadata pattern plants a link there that
/// points at another root-owned copy of the beamtime's file (a stale one). The lookup
/// follows links only when root or a trusted owner made them, so the stale copy is
/// not taken: the job is refused for the link, on both sides, and nothing runs.
#[test]
fn a_link_planted_in_a_writable_folder_on_a_pattern_is_not_followed_to_a_stale_copy() {
    let _turn = shared_turn();
    let c = cluster();
    let bt = beamtime("bttest79");
    assert_payload_runs(&bt);
    let account = UnixUser::get(&bt.account);
    // The beamline has moved on: the current folder no longer holds this beamtime's file,
    // so the core pattern (`<state>/core/*/{id}/beamtime-metadata-{id}.json`) is searched.
    let file_name = format!("beamtime-metadata-{}.json", bt.id);
    let stale = c.state_dir().join("stale-copies").join(&bt.id);
    fs::create_dir_all(&stale).unwrap();
    fs::rename(&bt.metadata_path, stale.join(&file_name)).unwrap();
    // A core folder the account may write in, with the account's link in it.
    let core = c.state_dir().join("core").join(&bt.beamline);
    fs::create_dir_all(&core).unwrap();
    std::os::unix::fs::chown(&core, Some(account.uid), Some(account.gid)).unwrap();
    let link = core.join(&bt.id);
    c.as_user(&bt.account, "ln")
        .arg("-s")
        .arg(&stale)
        .arg(&link)
        .run()
        .assert_success();
    let expected = format!(
        "{} on its path is a symbolic link owned by uid {}, and only links of root or a \
         trusted owner are followed",
        link.display(),
        account.uid
    );
    assert_refused_everywhere(&bt, "planted-link", &[&expected]);
    fs::remove_dir_all(&core).unwrap();
    fs::rename(stale.join(&file_name), &bt.metadata_path).unwrap();
}
