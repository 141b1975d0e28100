use super::*;
use std::os::unix::fs::PermissionsExt;

fn online(nodes: &[&str]) -> OnlineAnalysis {
    OnlineAnalysis {
        reserved_nodes: nodes.iter().map(|n| n.to_string()).collect(),
        partition: "ponline_p21".to_owned(),
        reservations: vec!["11099005".to_owned()],
        user_account: "bttest05".to_owned(),
        ssh_private_key: Some(PathBuf::from("/gpfs/p21/shared/id_rsa")),
        ssh_public_key: None,
    }
}

#[test]
fn the_ssh_command_logs_in_as_the_account_with_the_key_and_checks_host_keys() {
    let remote = match Remote::new(&online(&["n1", "n2"]), None) {
        Ok(remote) => remote,
        Err(failure) => panic!("{failure}"),
    };
    let line = shell_line(&remote.command("n1", "sbatch", &["job.sh".into()]));
    assert_eq!(
        String::from_utf8_lossy(&line),
        "ssh -i /gpfs/p21/shared/id_rsa -l bttest05 -o BatchMode=yes -o IdentitiesOnly=yes \
         -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o LogLevel=ERROR n1 \
         'echo >&2; echo bt-submit-remote-command-starts >&2; exec sbatch job.sh'\n"
    );
}

#[test]
fn shared_connections_have_their_socket_in_a_private_folder_removed_at_the_end() {
    use std::os::unix::fs::PermissionsExt;
    let mut remote = Remote::new(&online(&["n1"]), None).unwrap();
    remote.share_connections().unwrap();
    let folder = remote.shared.as_ref().unwrap().folder.clone();
    let mode = fs::metadata(&folder).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let line =
        String::from_utf8_lossy(&shell_line(&remote.command("n1", "squeue", &[]))).into_owned();
    let path = format!("ControlPath={}/%C", folder.display());
    for option in ["ControlMaster=auto", &path, "ControlPersist=60"] {
        assert!(
            line.contains(&format!("-o {option} ")),
            "{option} in {line}"
        );
    }
    assert!(line.contains("StrictHostKeyChecking=yes"), "{line}");
    drop(remote);
    assert!(!folder.exists());
}

#[test]
fn the_node_that_answered_last_is_tried_first_and_the_others_after_it() {
    let remote = Remote::new(&online(&["n1", "n2", "n3"]), None).unwrap();
    assert_eq!(remote.candidates(), ["n1", "n2", "n3"]);
    *remote.answered.borrow_mut() = Some("n2".to_owned());
    assert_eq!(remote.candidates(), ["n2", "n1", "n3"]);
    assert_eq!(remote.first_node(), "n2");
}

#[test]
fn a_node_outside_the_reservation_is_refused() {
    let failure = Remote::new(&online(&["n1"]), Some("elsewhere")).err();
    assert_eq!(failure.map(|f| f.status), Some(Status::Usage));
    let remote = Remote::new(&online(&["n1", "n2"]), Some("n2"));
    assert_eq!(remote.map(|r| r.nodes), Ok(vec!["n2".to_owned()]));
}

#[test]
fn the_remote_command_rebuilds_the_argument_vector_in_a_real_shell() {
    let tricky: Vec<OsString> = [
        "a b",
        "it's",
        "\"q\"",
        "x;touch /tmp/no",
        "$(id)",
        "`id`",
        "*",
        "?[a]",
        "a\nb",
        "",
        "~",
        "#c",
        "-n",
        "é",
    ]
    .iter()
    .map(OsString::from)
    .chain([OsString::from_vec(b"\xff\x01".to_vec())])
    .collect();
    let mut args = vec![OsString::from("%s\\0")];
    args.extend(tricky.iter().cloned());
    let command = remote_command("printf", &args);
    let output = Command::new("sh").arg("-c").arg(&command).output();
    let expected: Vec<u8> = tricky
        .iter()
        .flat_map(|arg| [arg.as_bytes(), b"\0"].concat())
        .collect();
    assert_eq!(output.map(|o| o.stdout).ok(), Some(expected));
}

#[test]
fn the_start_mark_is_found_on_a_line_of_its_own_and_taken_out() {
    let mark = START_MARK;
    assert_eq!(
        without_start_mark(format!("\n{mark}\nsbatch: error: x\n").as_bytes()),
        Some(b"sbatch: error: x\n".to_vec())
    );
    assert_eq!(
        without_start_mark(format!("profile says hi\n\n{mark}\n").as_bytes()),
        Some(b"profile says hi\n".to_vec())
    );
    // A login message without its final newline does not hide the mark.
    assert_eq!(
        without_start_mark(format!("quota: 91% used\n{mark}\n").as_bytes()),
        Some(b"quota: 91% used".to_vec())
    );
    assert_eq!(
        without_start_mark(b"ssh: connect to host n1 port 22: refused\n"),
        None
    );
    assert_eq!(without_start_mark(format!("x{mark}\n").as_bytes()), None);
}

#[test]
fn ssh_failures_are_told_apart() {
    let cases = [
        ("ssh: connect to host 127.0.0.1 port 1: Connection refused", SshFailure::NoAnswer),
        ("ssh: connect to host n1 port 22: Connection timed out", SshFailure::NoAnswer),
        ("ssh: Could not resolve hostname n9: Name or service not known", SshFailure::NoAnswer),
        ("No ED25519 host key is known for n1 and you have requested strict checking.\nHost key verification failed.", SshFailure::Refused(Refusal::UnknownHostKey)),
        ("@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.", SshFailure::Refused(Refusal::ChangedHostKey)),
        ("bttest05@n1: Permission denied (publickey).", SshFailure::Refused(Refusal::Denied)),
        ("kex_exchange_identification: read: Connection reset by peer", SshFailure::NoAnswer),
        ("Connection timed out during banner exchange\nConnection to UNKNOWN port 65535 timed out", SshFailure::NoAnswer),
        ("Received disconnect from 127.0.0.1 port 22:2: Too many authentication failures", SshFailure::Unclear),
    ];
    for (stderr, expected) in cases {
        assert_eq!(SshFailure::of(stderr), expected, "{stderr}");
    }
}

#[test]
fn a_silent_255_after_the_start_is_the_connection_lost_not_the_programs_answer() {
    assert!(connection_lost_after_start(Some(255), b""));
    assert!(connection_lost_after_start(Some(255), b"\n"));
    let refused = b"sbatch: error: Batch job submission failed: Invalid partition name specified\n";
    assert!(!connection_lost_after_start(Some(255), refused));
    assert!(!connection_lost_after_start(Some(1), b""));
    assert!(!connection_lost_after_start(Some(0), b""));
}

#[test]
fn a_key_is_checked_as_ssh_will_take_it() {
    let dir = tempfile::Builder::new()
        .prefix("bt-submit-key-")
        .tempdir()
        .unwrap_or_else(|e| panic!("{e}"));
    let key = dir.path().join("id_rsa");
    fs::write(&key, "key").unwrap_or_else(|e| panic!("{e}"));
    let me = beamtime::users::current_uid();
    let set_mode = |mode| {
        fs::set_permissions(&key, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    set_mode(0o600);
    assert_eq!(check_key(&key, me), Ok(()));
    set_mode(0o640);
    let failure = check_key(&key, me).err();
    assert_eq!(
        failure.as_ref().map(|f| f.status),
        Some(Status::NoPermission)
    );
    assert!(failure.is_some_and(|f| f.problem.fix.contains("chmod 600")));
    // Someone else's key, readable through a group: ssh takes it.
    assert_eq!(check_key(&key, me.wrapping_add(1)), Ok(()));
    let missing = check_key(&dir.path().join("nothing"), me).err();
    assert_eq!(missing.map(|f| f.status), Some(Status::NoInput));
}
