//! Runs the built bt-submit binary: the command it plans for every fixture,
//! the argv it hands to sbatch/srun/salloc, and one case per class of bad
//! input with its message and exit status.
//!
//! The sbatch, srun and salloc found on PATH here are shell scripts that print
//! their own argv: they check what bt-submit passes, not Slurm's behaviour.
//! The scontrol there notes each call and answers `show config` from the
//! scratch folder's show-config.txt (see [`Scratch::plugstack`]), or fails
//! as with no controller.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use beamtime::plugin_config::BAD_LINE_FIX;
use serde_json::Value;

const BT_SUBMIT: &str = env!("CARGO_BIN_EXE_bt-submit");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../beamtime/tests/fixtures")
}

fn fixture(name: &str) -> PathBuf {
    let path = fixtures().join(name);
    fs::canonicalize(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A scratch folder with fake Slurm commands, removed when dropped.
struct Scratch {
    /// Removed with the scratch folder.
    _scratch: tempfile::TempDir,
    root: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let scratch = tempfile::Builder::new()
            .prefix("bt-submit-test-")
            .tempdir()
            .unwrap_or_else(|error| panic!("{error}"));
        let root = scratch.path().to_owned();
        let bin = root.join("bin");
        fs::create_dir_all(&bin).unwrap_or_else(|error| panic!("{error}"));
        let scontrol = format!(
            "#!/bin/sh\necho \"$*\" >> '{0}/scontrol.calls'\n\
             if [ -f '{0}/show-config.txt' ]; then cat '{0}/show-config.txt'; exit 0; fi\n\
             echo 'slurm_load_ctl_conf error: Unable to contact slurm controller' >&2\nexit 1\n",
            root.display()
        );
        let argv = "#!/bin/sh\nprintf 'argv:%s\\n' \"$0\" \"$@\"\nexit 3\n";
        for (program, text) in [
            ("sbatch", argv),
            ("srun", argv),
            ("salloc", argv),
            ("scontrol", &scontrol),
        ] {
            let script = bin.join(program);
            fs::write(&script, text).unwrap_or_else(|error| panic!("{error}"));
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|error| panic!("{error}"));
        }
        Scratch {
            _scratch: scratch,
            root,
        }
    }

    /// A plugstack.conf including plugstack.conf.d/beamtime.conf, whose second
    /// line loads the plugin with `args`, and the scontrol here naming it.
    fn plugstack(&self, args: &str) -> PathBuf {
        let top = self.write(
            "etc/plugstack.conf",
            format!(
                "include {}/*.conf\n",
                self.path("etc/plugstack.conf.d").display()
            )
            .as_bytes(),
        );
        let drop_in = self.write(
            "etc/plugstack.conf.d/beamtime.conf",
            format!("# spank-beamtime\nrequired /usr/lib/spank_beamtime.so {args}\n").as_bytes(),
        );
        self.write(
            "show-config.txt",
            format!("PlugStackConfig         = {}\n", top.display()).as_bytes(),
        );
        drop_in
    }

    /// How often scontrol was run so far.
    fn scontrol_calls(&self) -> usize {
        fs::read_to_string(self.path("scontrol.calls"))
            .map(|calls| calls.lines().count())
            .unwrap_or(0)
    }

    /// [`Scratch::command`] with neither BEAMTIME_METADATA_PATH nor a config
    /// file's patterns: the plugstack's turn.
    fn command_without_search_path<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let config = self.write("bt-submit.conf", b"# no metadata_path\n");
        let mut command = self.command(&self.root, args);
        command
            .env_remove("BEAMTIME_METADATA_PATH")
            .env("BT_SUBMIT_CONFIG", config);
        command
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn copy_fixture(&self, name: &str, to_folder: &str) -> PathBuf {
        let folder = self.path(to_folder);
        fs::create_dir_all(&folder).unwrap_or_else(|error| panic!("{error}"));
        let target = folder.join(name);
        fs::copy(fixture(name), &target).unwrap_or_else(|error| panic!("{error}"));
        target
    }

    fn write(&self, relative: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|error| panic!("{error}"));
        }
        fs::write(&path, contents).unwrap_or_else(|error| panic!("{error}"));
        path
    }

    /// bt-submit run in `cwd` with the fake Slurm commands first on PATH and
    /// a search path inside the scratch folder.
    fn run_in<I, S>(&self, cwd: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(cwd, args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run bt-submit: {error}"))
    }

    /// The command [`Scratch::run_in`] runs, to be given other stdio.
    fn command<I, S>(&self, cwd: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let path = format!("{}:/usr/bin:/bin", self.path("bin").display());
        let search = format!(
            "{}:{}",
            self.path("gpfs/current/beamtime-metadata-{id}.json")
                .display(),
            self.path("asap3/*/gpfs/*/*/data/{id}/beamtime-metadata-{id}.json")
                .display()
        );
        let mut command = Command::new(BT_SUBMIT);
        command
            .args(args)
            .current_dir(cwd)
            .env("PATH", path)
            .env("BEAMTIME_METADATA_PATH", search)
            .env_remove("BT_SUBMIT_CONFIG");
        command
    }

    fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_in(&self.root, args)
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Checks the exit status and the two-line error shape, and returns stderr.
fn failed(output: &Output, status: i32) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(status), "stderr:\n{err}");
    assert!(
        output.stdout.is_empty(),
        "nothing may be printed or submitted: {}",
        stdout(output)
    );
    // Warnings told before the failure (each a warning line and its hint) are not part of it.
    let mut lines: Vec<&str> = Vec::new();
    let mut after_warning = false;
    for line in err.lines() {
        let hint_of_warning = after_warning && line.starts_with("hint: ");
        after_warning = line.starts_with("bt-submit: warning");
        if !after_warning && !hint_of_warning {
            lines.push(line);
        }
    }
    assert_eq!(lines.len(), 2, "one error line and one hint line:\n{err}");
    assert!(lines[0].starts_with("bt-submit: error: "), "{err}");
    assert!(lines[1].starts_with("hint: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn assert_contains(text: &str, expected: &str) {
    assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
}

/// The dry-run line for every fixture; `None` where the beamtime has no
/// online resources. Every fixture must be listed.
const EXPECTED: &[(&str, Option<&str>)] = &[
    ("beamtime-metadata-11099001.json", Some("sbatch --partition=ponline_p11 --reservation=11099001 --beamtime=11099001 job.sh")),
    ("beamtime-metadata-11099002.json", Some("sbatch --partition=ponline_p09 --reservation=11099002 --beamtime=11099002 job.sh")),
    ("beamtime-metadata-11099003.json", None),
    ("beamtime-metadata-11099004.json", None),
    ("beamtime-metadata-11099005.json", Some("sbatch --partition=ponline_p21 --reservation=11099005 --beamtime=11099005 job.sh")),
    ("beamtime-metadata-11099006.json", Some("sbatch --partition=ponline_p06 --reservation=11099006_1 --beamtime=11099006 job.sh")),
    (
        "commissioning-metadata-c20240312_000_GPUTEST.json",
        Some("sbatch --partition=ponline_p11 --reservation=c20240312_000_GPUTEST --beamtime=c20240312_000_GPUTEST job.sh"),
    ),
];

#[test]
fn dry_run_for_every_fixture() {
    let scratch = Scratch::new();
    let mut names: Vec<String> = fs::read_dir(fixtures())
        .unwrap_or_else(|error| panic!("{error}"))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, listed, "every fixture needs an expected command");

    for (name, expected) in EXPECTED {
        let output = scratch.run([
            OsStr::new("--metadata"),
            fixture(name).as_os_str(),
            OsStr::new("--dry-run"),
            OsStr::new("job.sh"),
        ]);
        match expected {
            Some(line) => {
                assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
                assert_eq!(stdout(&output), format!("{line}\n"), "{name}");
            }
            None => {
                let err = failed(&output, 69);
                assert_contains(&err, "has no online analysis resources yet");
                assert_contains(
                    &err,
                    "hint: the facility adds them to the metadata file when the beamtime starts",
                );
            }
        }
    }
}

#[test]
fn submission_hands_sbatch_the_planned_argv_and_its_status_is_ours() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099005.json");
    let output = scratch.run([
        OsStr::new("--metadata"),
        metadata.as_os_str(),
        OsStr::new("--reservation=11099005_1"),
        OsStr::new("-N"),
        OsStr::new("2"),
        OsStr::new("--job-name=two words"),
        OsStr::new("job.sh"),
        OsStr::new("-p"),
        OsStr::new("script's own -p"),
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let expected = [
        format!("argv:{}", scratch.path("bin/sbatch").display()),
        "argv:--partition=ponline_p21".to_owned(),
        "argv:--reservation=11099005_1".to_owned(),
        "argv:--beamtime=11099005".to_owned(),
        "argv:-N".to_owned(),
        "argv:2".to_owned(),
        "argv:--job-name=two words".to_owned(),
        "argv:job.sh".to_owned(),
        "argv:-p".to_owned(),
        "argv:script's own -p".to_owned(),
    ];
    assert_eq!(stdout(&output).lines().collect::<Vec<_>>(), expected);
}

#[test]
fn srun_and_salloc_modes() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099001.json");
    let output = scratch.run([
        OsStr::new("srun"),
        OsStr::new("--metadata"),
        metadata.as_os_str(),
        OsStr::new("-N1"),
        OsStr::new("--pty"),
        OsStr::new("bash"),
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).lines().skip(1).collect::<Vec<_>>(),
        [
            "argv:--partition=ponline_p11",
            "argv:--reservation=11099001",
            "argv:--beamtime=11099001",
            "argv:-N1",
            "argv:--pty",
            "argv:bash"
        ]
    );
    let output = scratch.run([
        OsStr::new("salloc"),
        OsStr::new("--dry-run"),
        OsStr::new("--metadata"),
        metadata.as_os_str(),
        OsStr::new("-t"),
        OsStr::new("1:00:00"),
    ]);
    assert_eq!(
        stdout(&output),
        "salloc --partition=ponline_p11 --reservation=11099001 --beamtime=11099001 -t 1:00:00\n"
    );
    let output = scratch.run([
        OsStr::new("sbatch"),
        OsStr::new("--dry-run"),
        OsStr::new("--metadata"),
        metadata.as_os_str(),
        OsStr::new("show"),
    ]);
    assert_eq!(
        stdout(&output),
        "sbatch --partition=ponline_p11 --reservation=11099001 --beamtime=11099001 show\n"
    );
}

#[test]
fn dry_run_quotes_for_the_shell() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099001.json");
    let output = scratch.run([
        OsStr::new("--metadata"),
        metadata.as_os_str(),
        OsStr::new("--dry-run"),
        OsStr::new("--wrap=echo \"$HOME\" it's"),
    ]);
    let line = stdout(&output);
    assert_eq!(line, "sbatch --partition=ponline_p11 --reservation=11099001 --beamtime=11099001 '--wrap=echo \"$HOME\" it'\\''s'\n");
    let echoed = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s\\n' {}",
            line.trim_end().trim_start_matches("sbatch ")
        ))
        .output()
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        stdout(&echoed).lines().last(),
        Some("--wrap=echo \"$HOME\" it's")
    );
}

#[test]
fn remote_dry_run_prints_the_whole_ssh_command() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099005.json");
    let key = fs::canonicalize(fixtures())
        .unwrap_or_else(|error| panic!("{error}"))
        .join("shared/id_rsa");
    let output = scratch.run([
        OsStr::new("--metadata"),
        metadata.as_os_str(),
        OsStr::new("--remote"),
        OsStr::new("--dry-run"),
        OsStr::new("/gpfs/p21/scan 1.sh"),
        OsStr::new("a;b"),
    ]);
    let expected = format!(
        "ssh -i {} -l bttest05 -o BatchMode=yes -o IdentitiesOnly=yes -o \
         StrictHostKeyChecking=yes -o ConnectTimeout=10 -o LogLevel=ERROR max-p3a931 {}\n",
        key.display(),
        r#"'echo >&2; echo bt-submit-remote-command-starts >&2; exec sbatch --parsable --partition=ponline_p21 --reservation=11099005 --beamtime=11099005 '\''/gpfs/p21/scan 1.sh'\'' '\''a;b'\'''"#
    );
    assert_eq!(stdout(&output), expected, "{}", stderr(&output));
    let json = scratch.run([
        OsStr::new("--metadata"),
        metadata.as_os_str(),
        OsStr::new("--remote"),
        OsStr::new("--node"),
        OsStr::new("max-p3ag934"),
        OsStr::new("--dry-run"),
        OsStr::new("--format"),
        OsStr::new("json"),
        OsStr::new("job.sh"),
    ]);
    let value: Value = serde_json::from_str(&stdout(&json))
        .unwrap_or_else(|error| panic!("{error}: {}", stderr(&json)));
    assert_eq!(value["node"], "max-p3ag934");
    assert_eq!(value["command"][0], "ssh");
    assert_eq!(value["command"][15], "max-p3ag934");
}

#[test]
fn a_remote_key_ssh_would_refuse_is_reported_before_connecting() {
    let scratch = Scratch::new();
    let metadata = scratch.copy_fixture("beamtime-metadata-11099005.json", "bl");
    let remote = |scratch: &Scratch| {
        scratch.run([
            OsStr::new("--metadata"),
            metadata.as_os_str(),
            OsStr::new("--remote"),
            OsStr::new("job.sh"),
        ])
    };
    let err = failed(&remote(&scratch), 66);
    assert_contains(&err, "bl/shared/id_rsa (sshPrivateKeyPath) does not exist");
    let key = scratch.write("bl/shared/id_rsa", b"not a key\n");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|error| panic!("{error}"));
    let err = failed(&remote(&scratch), 77);
    assert_contains(&err, "is yours and open to others (mode 0644)");
    assert_contains(
        &err,
        &format!("hint: make it private: chmod 600 {}", key.display()),
    );
}

#[test]
fn dry_run_json_parses_back() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099005.json");
    let output = scratch.run([
        OsStr::new("--dry-run"),
        OsStr::new("--format"),
        OsStr::new("json"),
        OsStr::new("--metadata"),
        metadata.as_os_str(),
        OsStr::new("--reservation"),
        OsStr::new("11099005_1"),
        OsStr::new("job.sh"),
        OsStr::new("a b"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", stdout(&output)));
    assert_eq!(value["program"], "sbatch");
    assert_eq!(
        value["args"],
        serde_json::json!([
            "--partition=ponline_p21",
            "--reservation=11099005_1",
            "--beamtime=11099005",
            "job.sh",
            "a b"
        ])
    );
    assert_eq!(value["reservation"], "11099005_1");
    let beamtime = &value["beamtime"];
    assert_eq!(beamtime["id"], "11099005");
    assert_eq!(beamtime["kind"], "beamtime");
    assert_eq!(beamtime["beamline"], "p21");
    assert_eq!(beamtime["beamlineAlias"], "P21.1");
    assert_eq!(beamtime["eventStart"], "2024-09-02 09:00:00");
    assert_eq!(beamtime["beamlinePath"], "/beamline/p21/current");
    assert_eq!(
        beamtime["online"]["reservations"],
        serde_json::json!(["11099005", "11099005_1"])
    );
    assert_eq!(beamtime["online"]["userAccount"], "bttest05");
    let key = metadata
        .parent()
        .map(|folder| folder.join("shared/id_rsa"))
        .unwrap_or_default();
    assert_eq!(
        beamtime["online"]["sshPrivateKeyPath"],
        key.to_string_lossy().as_ref()
    );
}

#[test]
fn show_summarises_the_beamtime() {
    let scratch = Scratch::new();
    let copied = scratch.copy_fixture("beamtime-metadata-11099001.json", "gpfs/current");
    // The login hint names the key only when it is there.
    let key = scratch.write("gpfs/current/shared/id_rsa", b"key\n");
    let output = scratch
        .command(&scratch.root, ["show", "--beamtime", "11099001"])
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|error| panic!("cannot run bt-submit: {error}"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "beamtime       11099001\n".to_owned(),
        "title          Ligand soaking series on a model protein\n".to_owned(),
        "beamline       p11 (P11)\n".to_owned(),
        format!("metadata file  {}\n", copied.display()),
        "core path      /asap3/petra3/gpfs/p11/2024/data/11099001\n".to_owned(),
        "beamline path  /beamline/p11/current\n".to_owned(),
        "nodes          max-p3a901\n".to_owned(),
        "partition      ponline_p11\n".to_owned(),
        "reservations   11099001\n".to_owned(),
        "account        bttest01\n".to_owned(),
        format!(
            "log in with    ssh -i {} -l bttest01 max-p3a901\n",
            key.display()
        ),
    ] {
        assert_contains(&text, &expected);
    }

    // The window in this host's zone (the facility writes local time without
    // one), and where now stands to it: long over for the fixture.
    let window = text
        .lines()
        .find(|line| line.starts_with("window "))
        .unwrap_or_else(|| panic!("no window in:\n{text}"));
    assert!(
        window.starts_with("window         2024-03-05 09:00:00 to 2024-03-08 09:00:00 UTC (ended "),
        "{window}"
    );
    assert!(window.ends_with(" ago)"), "{window}");

    // Without a plugstack to read, the plugin's default target, and no word about it.
    assert!(output.stderr.is_empty(), "{}", stderr(&output));

    let output = scratch.run(["show", "--beamtime", "11099001", "--format", "json"]);
    let value: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        value["online"]["sshCommand"],
        format!("ssh -i {} -l bttest01 max-p3a901", key.display())
    );
    assert_eq!(value["metadataPath"], copied.to_string_lossy().as_ref());
    assert_eq!(value["beamlinePath"], "/beamline/p11/current");
}

#[test]
fn show_prints_the_beamline_path_the_plugins_target_gives() {
    let scratch = Scratch::new();
    let metadata = scratch.copy_fixture("beamtime-metadata-11099001.json", "gpfs/current");
    scratch.plugstack("source=/gpfs/beamline/{beamline}/current target=/beamline/{beamline}/data");
    let output = scratch.run(["show", "--beamtime", "11099001"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_contains(&stdout(&output), "beamline path  /beamline/p11/data\n");
    let output = scratch.run(["show", "--beamtime", "11099001", "--format", "json"]);
    let value: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(value["beamlinePath"], "/beamline/p11/data");
    let output = scratch.run([
        OsStr::new("--dry-run"),
        OsStr::new("--format=json"),
        OsStr::new("--metadata"),
        metadata.as_os_str(),
        OsStr::new("job.sh"),
    ]);
    let value: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(value["beamtime"]["beamlinePath"], "/beamline/p11/data");
    assert_eq!(scratch.scontrol_calls(), 3, "one scontrol per run");
}

#[test]
fn with_no_search_path_set_the_plugins_metadata_patterns_are_searched() {
    let scratch = Scratch::new();
    let copied = scratch.copy_fixture("beamtime-metadata-11099001.json", "plugin/p11/current");
    scratch.plugstack(&format!(
        "metadata={} source=/gpfs/beamline/{{beamline}}/current",
        scratch
            .path("plugin/*/current/beamtime-metadata-{id}.json")
            .display()
    ));
    let output = scratch
        .command_without_search_path(["--beamtime", "11099001", "--dry-run", "job.sh"])
        .output()
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "sbatch --partition=ponline_p11 --reservation=11099001 --beamtime=11099001 job.sh\n"
    );
    let output = scratch
        .command_without_search_path(["show", "--beamtime", "11099001"])
        .output()
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_contains(
        &stdout(&output),
        &format!("metadata file  {}\n", copied.display()),
    );
    assert_eq!(scratch.scontrol_calls(), 2, "one scontrol per run");

    // A search path of the user's own is used without asking scontrol.
    let output = scratch.run(["--beamtime", "11099001", "--dry-run", "job.sh"]);
    assert_eq!(output.status.code(), Some(66), "{}", stderr(&output));
    assert_contains(
        &stderr(&output),
        "hint: the search path is BEAMTIME_METADATA_PATH; name the file with --metadata FILE",
    );
    assert_eq!(scratch.scontrol_calls(), 2);
}

#[test]
fn a_plugstack_line_the_plugin_cannot_use_is_78_with_the_argument_and_the_line() {
    let scratch = Scratch::new();
    scratch.copy_fixture("beamtime-metadata-11099001.json", "gpfs/current");
    let drop_in = scratch.plugstack("source=/gpfs/beamline/{beamline}/current colour=blue");
    let expected = format!(
        "bt-submit: error: {}:2: plugstack.conf argument 'colour=blue': unknown key 'colour'",
        drop_in.display()
    );
    let hint = format!("hint: {BAD_LINE_FIX}");
    for args in [
        &["--beamtime", "11099001", "job.sh"][..],
        &["srun", "--beamtime", "11099001", "hostname"],
    ] {
        let output = scratch
            .command_without_search_path(args)
            .output()
            .unwrap_or_else(|error| panic!("{error}"));
        let err = failed(&output, 78);
        assert_contains(&err, &expected);
        assert_contains(&err, &hint);
    }
    // show reads the line for the beamline path, whatever found the file.
    let err = failed(&scratch.run(["show", "--beamtime", "11099001"]), 78);
    assert_contains(&err, &expected);
}

/// The write end of a pipe whose read end is closed: `true` held it and has exited.
fn pipe_without_reader() -> Stdio {
    let mut reader = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run true: {error}"));
    let writer = reader.stdin.take().expect("a piped stdin");
    reader
        .wait()
        .unwrap_or_else(|error| panic!("true did not end: {error}"));
    Stdio::from(writer)
}

#[test]
fn a_reader_that_has_gone_ends_the_output_quietly() {
    let scratch = Scratch::new();
    scratch.copy_fixture("beamtime-metadata-11099001.json", "gpfs/current");
    // Rust ignores SIGPIPE, so each of these writes gets EPIPE, as under `| head -0`.
    for args in [
        &["show", "--beamtime", "11099001"][..],
        &["show", "--beamtime", "11099001", "--format", "json"],
        &["--help"],
    ] {
        let output = scratch
            .command(&scratch.root, args)
            .stdout(pipe_without_reader())
            .output()
            .unwrap_or_else(|error| panic!("cannot run bt-submit: {error}"));
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(output.stderr.is_empty(), "{args:?}: {}", stderr(&output));
    }

    // Any other failure to write is still one.
    let full = fs::File::create("/dev/full").unwrap_or_else(|error| panic!("{error}"));
    let output = scratch
        .command(&scratch.root, ["show", "--beamtime", "11099001"])
        .stdout(full)
        .output()
        .unwrap_or_else(|error| panic!("cannot run bt-submit: {error}"));
    assert_eq!(output.status.code(), Some(74), "{}", stderr(&output));
    assert_contains(
        &stderr(&output),
        "bt-submit: error: cannot write the output: ",
    );
}

/// `show`'s phase row and its JSON fields, the whole JSON value of the latter.
fn shown_phase(scratch: &Scratch) -> (String, Value) {
    let output = scratch.run(["show", "--beamtime", "11099001"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let row = stdout(&output)
        .lines()
        .find_map(|line| line.strip_prefix("phase          "))
        .unwrap_or_else(|| panic!("no phase row:\n{}", stdout(&output)))
        .to_owned();
    let output = scratch.run(["show", "--beamtime", "11099001", "--format", "json"]);
    let value: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(value["phaseNote"], row.as_str());
    (row, value)
}

#[test]
fn show_tells_the_phase_from_the_beamline_folder_as_the_node_would() {
    let scratch = Scratch::new();
    let metadata = scratch.copy_fixture("beamtime-metadata-11099001.json", "gpfs/current");
    let me = fs::metadata(&metadata).map(|m| m.uid()).unwrap();
    let source = scratch.path("src");
    let line = format!(
        "source={}/{{beamline}}/current trusted_owners={me}",
        source.display()
    );
    scratch.plugstack(&line);
    let current = source.join("p11/current");

    // Before the start: the beamline's file system, no current folder in it yet.
    fs::create_dir_all(source.join("p11")).unwrap();
    let (row, value) = shown_phase(&scratch);
    assert_eq!(
        row,
        format!(
            "pre-start: {} does not exist yet: beamtime 11099001 has not started on beamline \
             p11 yet (or the beamline has moved on); jobs run without /beamline/p11/current \
             until the beamtime starts (BEAMTIME_PHASE=pre-start); its data is on the core \
             filesystem at /asap3/petra3/gpfs/p11/2024/data/11099001 (BEAMTIME_CORE_PATH)",
            current.display()
        )
    );
    assert_eq!(
        (&value["phase"], &value["jobs"]),
        (&"pre-start".into(), &"run".into())
    );

    // Started: the folder holds the beamtime's own trusted copy.
    fs::create_dir_all(&current).unwrap();
    fs::copy(&metadata, current.join("beamtime-metadata-11099001.json")).unwrap();
    let (row, value) = shown_phase(&scratch);
    assert!(row.starts_with("online: "), "{row}");
    assert_eq!(
        (&value["phase"], &value["jobs"]),
        (&"online".into(), &"run".into())
    );

    // The beamline moved on to the next beamtime, at a site that refuses such jobs.
    fs::remove_file(current.join("beamtime-metadata-11099001.json")).unwrap();
    fs::copy(&metadata, current.join("beamtime-metadata-11099002.json")).unwrap();
    scratch.plugstack(&format!("{line} prestart=refuse"));
    let (row, value) = shown_phase(&scratch);
    assert!(
        row.ends_with(
            "this site refuses its --beamtime jobs until the beamtime starts (prestart=refuse)"
        ),
        "{row}"
    );
    assert_eq!(
        (&value["phase"], &value["jobs"]),
        (&"pre-start".into(), &"refused".into())
    );

    // No folder of any beamtime: the node refuses the jobs (its mount fails).
    fs::remove_file(current.join("beamtime-metadata-11099002.json")).unwrap();
    let (row, value) = shown_phase(&scratch);
    assert!(row.contains("holds no beamtime's metadata file"), "{row}");
    assert_eq!(
        (&value["phase"], &value["jobs"]),
        (&Value::Null, &"refused".into())
    );
}

#[test]
fn without_the_plugins_line_show_leaves_the_phase_to_the_node() {
    let scratch = Scratch::new();
    scratch.copy_fixture("beamtime-metadata-11099001.json", "gpfs/current");
    let (row, value) = shown_phase(&scratch);
    assert!(
        row.starts_with(
            "the plugin's line could not be read here ('scontrol show config' failed (exit status: 1): "
        ) && row.ends_with(
            "so the phase is decided on the node: jobs see /beamline/p11/current once the \
             beamline folder there holds the beamtime's beamtime-metadata-11099001.json"
        ),
        "{row}"
    );
    assert_eq!(
        (&value["phase"], &value["jobs"]),
        (&Value::Null, &Value::Null)
    );
}

#[test]
fn show_works_before_start() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099004.json");
    let output = scratch.run([
        OsStr::new("show"),
        OsStr::new("--metadata"),
        metadata.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert_contains(&stdout(&output), "online         no resources yet");
    let output = scratch.run([
        OsStr::new("show"),
        OsStr::new("--format=json"),
        OsStr::new("--metadata"),
        metadata.as_os_str(),
    ]);
    let value: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(value["online"], Value::Null);
    assert_eq!(
        (&value["phase"], &value["jobs"]),
        (&"no-online-resources".into(), &"refused".into())
    );
}

#[test]
fn discovery_from_the_working_directory() {
    let scratch = Scratch::new();
    scratch.copy_fixture(
        "beamtime-metadata-11099001.json",
        "asap3/petra3/gpfs/p11/2024/data/11099001",
    );
    let deep = scratch.path("asap3/petra3/gpfs/p11/2024/data/11099001/processed/run1");
    fs::create_dir_all(&deep).unwrap_or_else(|error| panic!("{error}"));
    let output = scratch.run_in(&deep, ["--dry-run", "job.sh"]);
    assert_eq!(
        stdout(&output),
        "sbatch --partition=ponline_p11 --reservation=11099001 --beamtime=11099001 job.sh\n"
    );
    let output = scratch.run(["--dry-run", "--beamtime", "11099001", "job.sh"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn another_user_gets_a_warning_but_the_command_runs() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099001.json");
    let output = scratch.run([
        OsStr::new("--dry-run"),
        OsStr::new("--metadata"),
        metadata.as_os_str(),
        OsStr::new("job.sh"),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let err = stderr(&output);
    // The tests run as some user other than the beamtime account.
    assert_contains(&err, "bt-submit: warning: you are ");
    assert_contains(
        &err,
        "but jobs of beamtime 11099001 must be submitted as bttest01; Slurm will refuse this one",
    );
    // The fixture's key is not there, so the hint leaves it out.
    assert_contains(
        &err,
        "hint: log in as the beamtime account first: ssh -l bttest01 max-p3a901",
    );
}

#[test]
fn missing_sbatch_is_127() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099001.json");
    let output = Command::new(BT_SUBMIT)
        .arg("--metadata")
        .arg(&metadata)
        .arg("job.sh")
        .env("PATH", scratch.path("empty"))
        .output()
        .unwrap_or_else(|error| panic!("{error}"));
    let err = failed(&output, 127);
    assert_contains(
        &err,
        "bt-submit: error: sbatch not found on PATH; nothing was submitted",
    );
}

#[test]
fn contradicting_options_stop_everything() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099005.json");
    let cases: [(&[&str], &str); 6] = [
        (&["-p", "all", "job.sh"], "your option asks for partition all but beamtime 11099005 uses partition ponline_p21"),
        (&["-pall", "job.sh"], "asks for partition all"),
        (&["--partition", "all", "job.sh"], "asks for partition all"),
        (&["--partition=all", "job.sh"], "asks for partition all"),
        (&["-N", "1", "--beamtime=11099001", "job.sh"], "asks for beamtime 11099001 but beamtime 11099005 uses beamtime 11099005"),
        (&["-N", "1", "--reservation=other", "job.sh"], "reservation other is not one of beamtime 11099005's reservations: 11099005, 11099005_1"),
    ];
    for (args, expected) in cases {
        let mut full = vec![OsStr::new("--metadata"), metadata.as_os_str()];
        full.extend(args.iter().map(OsStr::new));
        let err = failed(&scratch.run(full), 65);
        assert_contains(&err, expected);
        assert_contains(&err, "nothing was submitted");
    }
}

#[test]
fn foreign_reservation_lists_the_valid_ones() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099005.json");
    let err = failed(
        &scratch.run([
            OsStr::new("--metadata"),
            metadata.as_os_str(),
            OsStr::new("--reservation"),
            OsStr::new("11099001"),
            OsStr::new("job.sh"),
        ]),
        65,
    );
    assert_contains(
        &err,
        "reservation 11099001 is not one of beamtime 11099005's reservations: 11099005, 11099005_1",
    );
    assert_contains(
        &err,
        "hint: choose one of them with --reservation NAME, or leave it out to use 11099005",
    );
}

#[test]
fn usage_errors_are_64() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099001.json");
    let metadata = metadata.to_string_lossy();
    let data = scratch.root.to_string_lossy();
    let cases: [(&[&str], &str); 12] = [
        (
            &["--format", "json", "job.sh"],
            "the following required arguments were not provided: <--dry-run|--remote>",
        ),
        (
            &["--node", "max-p3a901", "job.sh"],
            "the following required arguments were not provided: --remote",
        ),
        (
            &["srun", "--remote", "--metadata", &metadata, "hostname"],
            "--remote submits batch jobs only; srun is interactive",
        ),
        (
            &[
                "--remote",
                "--node",
                "elsewhere",
                "--metadata",
                &metadata,
                "job.sh",
            ],
            "--node elsewhere is not one of the beamtime's reserved nodes: max-p3a901",
        ),
        (
            &["--beamtime", "11099001", "--metadata", &metadata, "job.sh"],
            "the argument '--beamtime <ID>' cannot be used with '--metadata <FILE>'",
        ),
        (
            &[
                "--metadata",
                &metadata,
                "--dry-run",
                "--format",
                "yaml",
                "job.sh",
            ],
            "invalid value 'yaml' for '--format <FORMAT>'",
        ),
        (
            &["--metadata", &metadata, "-N", "1"],
            "no batch script given",
        ),
        (
            &["srun", "--metadata", &metadata],
            "no command given for srun",
        ),
        (&["show", "job.sh"], "unexpected argument 'job.sh' found"),
        (
            &[
                "watch",
                "--metadata",
                &metadata,
                "--done-file",
                "scan.done",
                &data,
                "--",
                "job.sh",
            ],
            "--done-file tells when a scan folder is complete; this watch submits each file",
        ),
        (
            &[
                "watch",
                "--each",
                "folder",
                "--done-file",
                "done/scan",
                &data,
                "--",
                "job.sh",
            ],
            "'done/scan' is not a file name",
        ),
        (
            &["watch", "--each", "scan", &data, "--", "job.sh"],
            "invalid value 'scan' for '--each <WHAT>'",
        ),
    ];
    for (args, expected) in cases {
        let err = failed(&scratch.run(args), 64);
        assert_contains(&err, expected);
    }
}

/// Each mistake of order or spelling a user makes at the keyboard: refused
/// with status 64 and the command meant, and the fake sbatch never runs
/// ([`failed`] checks that nothing reached stdout, where it prints its argv).
#[test]
fn no_mistake_of_order_or_spelling_runs_sbatch() {
    let scratch = Scratch::new();
    scratch.write("job.sh", b"#!/bin/sh\n");
    let metadata = fixture("beamtime-metadata-11099001.json");
    let metadata = metadata.to_string_lossy();
    let cases: [(&[&str], &str, &str); 7] = [
        (
            &["--metadata", &metadata, "job.sh", "--dry-run"],
            "--dry-run after the script job.sh would be the script's argument",
            "did you mean: bt-submit --dry-run --metadata",
        ),
        (
            &[
                "sbatch",
                "--metadata",
                &metadata,
                "-N2",
                "job.sh",
                "--remote",
            ],
            "--remote after the script job.sh",
            "did you mean: bt-submit sbatch --remote --metadata",
        ),
        (
            &["--metadata", &metadata, "--beamtme", "11099001", "job.sh"],
            "--beamtme is no option of bt-submit or sbatch (did you mean --beamtime?)",
            "bt-submit --beamtime 11099001 --metadata",
        ),
        (
            &["--metadata", &metadata, "-N2", "--dry-run", "job.sh"],
            "--dry-run is bt-submit's option, but it stands among sbatch's",
            "did you mean: bt-submit --dry-run --metadata",
        ),
        (
            &["shwo", "--metadata", &metadata],
            "shwo is no file here, so it is not a batch script",
            "did you mean: bt-submit show --metadata",
        ),
        (
            &["help"],
            "help is no file here",
            "did you mean: bt-submit --help",
        ),
        (
            &["watch", "--setle", "3"],
            "unexpected argument '--setle' found",
            "a similar argument exists: '--settle'; to pass '--setle' as a value, use '-- \
             --setle'; run 'bt-submit watch --help' for usage",
        ),
    ];
    for (args, what, fix) in cases {
        let err = failed(&scratch.run(args), 64);
        assert_contains(&err, what);
        assert_contains(&err, fix);
    }
}

/// A script whose `#SBATCH` line contradicts the metadata is refused naming
/// the file and line, and sbatch never runs; one that agrees goes through.
#[test]
fn sbatch_lines_of_the_script_count() {
    let scratch = Scratch::new();
    let metadata = fixture("beamtime-metadata-11099005.json");
    let metadata = metadata.to_string_lossy();
    scratch.write(
        "gpu.sh",
        b"#!/bin/sh\n#SBATCH -N1\n#SBATCH --partition=maxgpu\nhostname\n",
    );
    let err = failed(&scratch.run(["--metadata", &metadata, "gpu.sh"]), 65);
    assert_contains(
        &err,
        "gpu.sh:3: the #SBATCH line asks for partition maxgpu but beamtime 11099005 uses \
         partition ponline_p21; nothing was submitted",
    );
    scratch.write(
        "second.sh",
        b"#!/bin/sh\n#SBATCH --reservation=11099005_1\nhostname\n",
    );
    let output = scratch.run(["--metadata", &metadata, "second.sh"]);
    assert_contains(&stdout(&output), "argv:--reservation=11099005_1\n");
}

/// `--version` names the commit and the Slurm release (or that there is none).
#[test]
fn version_names_the_commit_and_the_slurm_release() {
    let scratch = Scratch::new();
    let output = scratch.run(["--version"]);
    assert_eq!(output.status.code(), Some(0));
    let line = stdout(&output);
    let expected = format!("bt-submit {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&expected), "{line}");
    assert!(
        line.contains(", packaged for Slurm ") || line.contains(", not packaged for a Slurm"),
        "{line}"
    );
}

/// A beamtime whose account is a system account passes planning (Slurm
/// itself would take the job), but the node refuses it: said before.
#[test]
fn a_system_account_the_node_refuses_is_warned_of() {
    let scratch = Scratch::new();
    let copied = scratch.copy_fixture("beamtime-metadata-11099001.json", "gpfs/current");
    let text = fs::read_to_string(&copied).unwrap_or_else(|error| panic!("{error}"));
    let mut document: Value = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}"));
    document["onlineAnalysis"]["userAccount"] = Value::from("root");
    fs::write(&copied, document.to_string()).unwrap_or_else(|error| panic!("{error}"));
    let output = scratch.run(["--beamtime", "11099001", "--dry-run", "job.sh"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_contains(
        &stderr(&output),
        &format!(
            "bt-submit: warning: the node will refuse this job: the beamtime's account 'root' \
             ({}: onlineAnalysis.userAccount) is a system account (uid 0 < {})",
            copied.display(),
            beamtime::plugin_config::DEFAULT_MIN_UID
        ),
    );
}

/// sbatch's rule for the script's arguments still holds: what follows the
/// script is the script's, and after sbatch's own `--` even a name of
/// bt-submit's options is.
#[test]
fn the_scripts_own_arguments_still_reach_it() {
    let scratch = Scratch::new();
    scratch.write("job.sh", b"#!/bin/sh\n");
    let metadata = fixture("beamtime-metadata-11099001.json");
    let metadata = metadata.to_string_lossy();
    let output = scratch.run(["--metadata", &metadata, "job.sh", "--input", "-p", "x"]);
    assert_contains(
        &stdout(&output),
        "argv:job.sh\nargv:--input\nargv:-p\nargv:x\n",
    );
    let output = scratch.run(["--metadata", &metadata, "--", "--", "job.sh", "--dry-run"]);
    assert_contains(&stdout(&output), "argv:--\nargv:job.sh\nargv:--dry-run\n");
}

#[test]
fn hostile_beamtime_ids_on_the_command_line_are_64() {
    let scratch = Scratch::new();
    let long = "1".repeat(200);
    for (id, expected) in [
        (
            "..",
            "invalid beamtime id \"..\": it must not start with '.'",
        ),
        ("../../etc/passwd", "'/' at position 3 is not allowed"),
        ("1109\n9001", "'\\n' at position 5 is not allowed"),
        (long.as_str(), "\"… (200 characters): it is too long"),
        ("110990ü1", "'ü' at position 7 is not allowed"),
    ] {
        let err = failed(&scratch.run(["--beamtime", id, "job.sh"]), 64);
        assert_contains(&err, expected);
    }
}

#[test]
fn bad_metadata_is_65_with_the_place() {
    let scratch = Scratch::new();
    let bytes = fs::read(fixture("beamtime-metadata-11099001.json"))
        .unwrap_or_else(|error| panic!("{error}"));
    let truncated = scratch.write(
        "gpfs/current/beamtime-metadata-11099001.json",
        &bytes[..300],
    );
    let err = failed(&scratch.run(["--beamtime", "11099001", "job.sh"]), 65);
    assert_contains(
        &err,
        &format!("bt-submit: error: {}:11:13: ", truncated.display()),
    );
    assert_contains(&err, "invalid JSON: EOF while parsing");

    let wrong_type = String::from_utf8_lossy(&bytes).replace(
        "\"slurmPartition\": \"ponline_p11\"",
        "\"slurmPartition\": 11",
    );
    let path = scratch.write("bad/beamtime-metadata-11099001.json", wrong_type.as_bytes());
    let err = failed(
        &scratch.run([
            OsStr::new("--metadata"),
            path.as_os_str(),
            OsStr::new("job.sh"),
        ]),
        65,
    );
    assert_contains(
        &err,
        "onlineAnalysis.slurmPartition: expected a string, found a number",
    );

    let mismatch = scratch.write("other/beamtime-metadata-11099007.json", &bytes);
    let err = failed(
        &scratch.run([
            OsStr::new("--metadata"),
            mismatch.as_os_str(),
            OsStr::new("job.sh"),
        ]),
        65,
    );
    assert_contains(
        &err,
        "the file name says \"11099007\" but beamtimeId is \"11099001\"",
    );

    let huge = scratch.write("huge/beamtime-metadata-11099001.json", &vec![b' '; 2 << 20]);
    let err = failed(
        &scratch.run([
            OsStr::new("--metadata"),
            huge.as_os_str(),
            OsStr::new("job.sh"),
        ]),
        65,
    );
    assert_contains(&err, "the file has 2097152 bytes, more than the 1048576");

    let latin1 = scratch.write(
        "latin1/beamtime-metadata-11099001.json",
        b"{\"title\": \"caf\xe9\"}",
    );
    let err = failed(
        &scratch.run([
            OsStr::new("--metadata"),
            latin1.as_os_str(),
            OsStr::new("job.sh"),
        ]),
        65,
    );
    assert_contains(&err, "1:15: expected UTF-8 text");
}

#[test]
fn missing_or_unreadable_metadata_is_66() {
    let scratch = Scratch::new();
    let err = failed(&scratch.run(["--beamtime", "11099009", "job.sh"]), 66);
    assert_contains(&err, "no metadata file for beamtime 11099009; searched ");
    assert_contains(
        &err,
        "hint: the search path is BEAMTIME_METADATA_PATH; name the file with --metadata FILE",
    );

    let folder = scratch.path("folder.json");
    fs::create_dir_all(&folder).unwrap_or_else(|error| panic!("{error}"));
    let err = failed(
        &scratch.run([
            OsStr::new("--metadata"),
            folder.as_os_str(),
            OsStr::new("job.sh"),
        ]),
        66,
    );
    assert_contains(&err, "expected a metadata file, found a directory");

    let err = failed(
        &scratch.run(["--metadata", "does-not-exist.json", "job.sh"]),
        66,
    );
    assert_contains(
        &err,
        &format!(
            "{}: cannot read the metadata file: No such file or directory",
            scratch.path("does-not-exist.json").display()
        ),
    );

    let err = failed(&scratch.run(["--dry-run", "job.sh"]), 66);
    assert_contains(
        &err,
        "no beamtime-metadata-*.json or commissioning-metadata-*.json in ",
    );
    assert_contains(&err, "hint: run bt-submit inside the beamtime folder");
}

#[test]
fn two_files_for_one_beamtime_are_65_listing_both() {
    let scratch = Scratch::new();
    let first = scratch.copy_fixture(
        "beamtime-metadata-11099001.json",
        "asap3/petra3/gpfs/p11/2023/data/11099001",
    );
    let second = scratch.copy_fixture(
        "beamtime-metadata-11099001.json",
        "asap3/petra3/gpfs/p11/2024/data/11099001",
    );
    let err = failed(&scratch.run(["--beamtime", "11099001", "job.sh"]), 65);
    assert_contains(
        &err,
        &format!(
            "beamtime 11099001 has 2 metadata files: {}, {}",
            first.display(),
            second.display()
        ),
    );
}

#[test]
fn invalid_search_path_is_78() {
    let scratch = Scratch::new();
    let output = Command::new(BT_SUBMIT)
        .args(["--beamtime", "11099001", "job.sh"])
        .env(
            "BEAMTIME_METADATA_PATH",
            "gpfs/current/beamtime-metadata-{id}.json",
        )
        .output()
        .unwrap_or_else(|error| panic!("{error}"));
    let err = failed(&output, 78);
    assert_contains(&err, "BEAMTIME_METADATA_PATH: invalid metadata search pattern \"gpfs/current/beamtime-metadata-{id}.json\": it is not an absolute path");

    let config = scratch.write("bt-submit.conf", b"metadata_path = /x/{id}/../y\n");
    let output = Command::new(BT_SUBMIT)
        .args(["--beamtime", "11099001", "job.sh"])
        .env_remove("BEAMTIME_METADATA_PATH")
        .env("BT_SUBMIT_CONFIG", &config)
        .output()
        .unwrap_or_else(|error| panic!("{error}"));
    let err = failed(&output, 78);
    assert_contains(
        &err,
        &format!("{}:1: invalid metadata search pattern", config.display()),
    );
}

#[test]
fn no_arguments_at_all_shows_the_help_as_a_usage_error() {
    let output = Scratch::new().run(Vec::<&str>::new());
    assert_eq!(output.status.code(), Some(64));
    assert!(output.stdout.is_empty());
    assert_contains(&stderr(&output), "Usage: bt-submit [OPTIONS] [ARGS]...");
}

#[test]
fn help_documents_modes_and_exit_statuses() {
    let scratch = Scratch::new();
    let output = scratch.run(["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    for expected in [
        "bt-submit srun",
        "bt-submit salloc",
        "bt-submit show",
        "--dry-run",
        "1. --metadata FILE",
        "BEAMTIME_METADATA_PATH",
        "/etc/beamtime/bt-submit.conf",
        "(PlugStackConfig from 'scontrol show config'",
        "target= of that",
        "64   wrong command line",
        "69   the beamtime has no online analysis resources yet",
        "--remote",
        "68   --remote: none of the reserved nodes answered over ssh",
        "77   --remote: the node's host key is not in known_hosts",
        "127  sbatch/srun/salloc (or ssh, or sbatch on the node) is not on PATH",
    ] {
        assert_contains(&help, expected);
    }
}
