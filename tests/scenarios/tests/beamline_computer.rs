//! The beamline computer as a site sets it up: a Debian 12 host without Slurm, where the
//! `bt-submit` package alone is installed with dpkg (docs/admin.md, "On the beamline
//! computer"); a participant of the beamtime, in its account's group, submits from there
//! with `--remote` through the harness's sshd for the reserved node, and the job runs;
//! `bt-submit doctor --remote` there passes, and names the known_hosts line to add when
//! the node's entry is missing.
//!
//! The host is a Debian root without Slurm (`mmdebstrap --variant=minbase
//! --include=openssh-client bookworm DIR`), entered with chroot in a mount namespace of its
//! own: it shares the machine's network, so the cluster's sshd on loopback is reachable as
//! a reserved node is from a real beamline computer (scripts/in-root.sh gives a root only
//! a loopback of its own, where the cluster is not), and it gets the cluster's state
//! folder (the beamline filesystem) and the users (as a site's directory service would)
//! bound in. Nothing of Slurm is in it: the test checks that first.
//!
//! Needs `BT_NO_SLURM_ROOT` (that root) and `BT_SUBMIT_DEB` (scripts/package.sh's
//! bt-submit .deb); fails when either is missing.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scenarios::{cluster, BeamtimeSpec, Output, UnixUser, NODE};

#[track_caller]
fn required_path(var: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: it must name {what}"));
    assert!(path.exists(), "{var}={} does not exist", path.display());
    path
}

#[test]
#[ignore = "needs a root without Slurm and the bt-submit .deb: the beamline-computer pass (scripts/lib.sh)"]
fn the_bt_submit_package_alone_installs_without_slurm_and_submits_with_remote() {
    let root = required_path(
        "BT_NO_SLURM_ROOT",
        "a Debian root without Slurm (mmdebstrap --variant=minbase \
         --include=openssh-client bookworm DIR)",
    );
    let deb = required_path("BT_SUBMIT_DEB", "the bt-submit .deb of scripts/package.sh");
    let c = cluster();
    for program in ["sbatch", "scontrol", "srun", "slurmd"] {
        assert!(
            !root.join("usr/bin").join(program).exists()
                && !root.join("usr/sbin").join(program).exists(),
            "{} has {program}: it must be a host without Slurm",
            root.display()
        );
    }

    // Installed as a site installs it, with nothing else.
    let inside = Path::new("/tmp").join(deb.file_name().expect("a file name"));
    fs::copy(&deb, root.join(inside.strip_prefix("/").unwrap()))
        .unwrap_or_else(|e| panic!("copy {}: {e}", deb.display()));
    c.cmd("chroot")
        .arg(&root)
        .args(["dpkg", "-i"])
        .arg(&inside)
        .run()
        .assert_success();
    let depends = c
        .cmd("chroot")
        .arg(&root)
        .args(["dpkg-query", "-W", "-f", "${Depends}", "bt-submit"])
        .run();
    depends.assert_success();
    assert!(
        !depends.stdout.to_lowercase().contains("slurm"),
        "bt-submit depends on Slurm: {}",
        depends.stdout
    );

    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest821"));
    let sshd = c.sshd();
    sshd.authorize(&bt.account, &bt.current_dir.join("shared/id_rsa.pub"));
    let participant = "bttest822";
    c.ensure_unix_user(participant, &[&bt.account]);
    sshd.beamline_computer(participant, &[(NODE, sshd.port)], true);
    let dir = c.workdir(&bt.account, "beamline-computer");
    let script = dir.join("job.sh");
    fs::write(&script, "#!/bin/bash\necho from the beamline computer\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();

    let on_the_beamline_computer = |args: &[&OsStr]| beamline_computer(&root, participant, args);
    let metadata = bt.metadata_path.as_os_str();
    let out = on_the_beamline_computer(&[
        "--metadata".as_ref(),
        metadata,
        "--remote".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        script.as_os_str(),
    ]);
    out.assert_success();
    let value: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(value["node"], NODE, "{out}");
    let id = value["jobId"].as_u64().unwrap_or_else(|| panic!("{out}"));
    c.wait_job(id as u32, Duration::from_secs(120))
        .assert_completed_ok();

    // doctor --remote on the same road passes, each check on the way named.
    let doctor = [
        "doctor".as_ref(),
        "--remote".as_ref(),
        "--metadata".as_ref(),
        metadata,
    ];
    let out = on_the_beamline_computer(&doctor);
    out.assert_success();
    for check in ["key", "known-hosts", "reach", "login", "sbatch"] {
        assert!(
            out.doctor_check(check).starts_with("ok   "),
            "{check}:\n{out}"
        );
    }
    assert!(
        out.doctor_check("login").ends_with(&format!(
            "{NODE}: logged in as {} with the beamtime's key (BatchMode)",
            bt.account
        )),
        "{out}"
    );

    // Without the node's known_hosts entry: the exact line to add, and no login tried.
    sshd.beamline_computer(participant, &[(NODE, sshd.port)], false);
    let out = on_the_beamline_computer(&doctor);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.doctor_check("known-hosts").starts_with("FAIL "),
        "{out}"
    );
    out.assert_stdout_contains(&format!(
        "{NODE}: add as the line '{NODE} KEY' (ssh_config gives it HostKeyAlias {NODE}): KEY \
         from ssh-keyscan -p {} 127.0.0.1",
        sshd.port
    ));
    for check in ["login", "sbatch", "node-view"] {
        assert!(
            out.doctor_check(check)
                .ends_with("not checked: needs known-hosts and reach"),
            "{check}:\n{out}"
        );
    }
}

/// `bt-submit ARGS` as `user` on the beamline computer: the root, entered with chroot in
/// a mount namespace of its own, with what it shares with the cluster bound in: the users
/// and their homes (a site's directory service), the beamline filesystem (the cluster's
/// state folder holds it), and /dev and /proc for ssh.
fn beamline_computer(root: &Path, user: &str, args: &[&OsStr]) -> Output {
    let c = cluster();
    let home = UnixUser::get(user).home;
    let shared: [&Path; 6] = [
        Path::new("/dev"),
        Path::new("/proc"),
        Path::new("/etc/passwd"),
        Path::new("/etc/group"),
        &home,
        c.state_dir(),
    ];
    let mut binds = String::new();
    for path in shared {
        let target = root.join(path.strip_prefix("/").unwrap());
        if path.is_dir() {
            fs::create_dir_all(&target).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        }
        binds.push_str(&format!(
            "mount --bind '{}' '{}'\n",
            path.display(),
            target.display()
        ));
    }
    c.cmd("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-euc"])
        .arg(format!(
            "{binds}root=$1 user=$2; shift 2; exec chroot \"$root\" runuser -u \"$user\" -- \
             /usr/bin/bt-submit \"$@\""
        ))
        .arg("bash")
        .arg(root)
        .arg(user)
        .args(args)
        .timeout(Duration::from_secs(120))
        .run()
}
