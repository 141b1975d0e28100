//! One configuration for the plugin and bt-submit. With the metadata only
//! where the plugstack's `metadata=` patterns say (as the test cluster's
//! plugin_args have it) and no search path of bt-submit's own, submitting,
//! `show` and `doctor` all find the file the plugin finds, and show the
//! beamline path the plugin gives jobs; a `target=` on the line changes what
//! `show` prints exactly as it changes what jobs see; a line the plugin cannot
//! use stops bt-submit with 78 naming it, and doctor reports it first. The
//! order of the sources and every message are unit-tested in bt-submit
//! (src/settings.rs, src/plugstack.rs, src/doctor/tests.rs); here they meet the
//! real scontrol, plugstack and plugin.
//!
//! One test, alone in its file: it rewrites plugstack.conf for the whole
//! cluster and restores it when done, even on failure.

use std::path::Path;

use scenarios::{bt_submit, Beamtime, BeamtimeSpec, Cluster, Output, RestorePlugstack};

/// bt-submit as the beamtime's account, with the environment a login gives:
/// no BEAMTIME_METADATA_PATH, no BT_SUBMIT_CONFIG.
fn run(c: &Cluster, bt: &Beamtime, args: &[&str]) -> Output {
    let wd = c.workdir(&bt.account, "one-configuration");
    c.as_user(&bt.account, bt_submit())
        .cwd(&wd)
        .args(args)
        .run()
}

/// `file:line` of the plugin's line in the cluster's plugstack.conf.
#[track_caller]
fn plugin_line(c: &Cluster) -> String {
    let file = c.state_dir().join("etc/plugstack.conf");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let number = text
        .lines()
        .position(|l| l.contains("spank_beamtime"))
        .unwrap_or_else(|| panic!("no plugin line in {}:\n{text}", file.display()));
    format!("{}:{}", file.display(), number + 1)
}

/// `show`, as text and JSON, prints this metadata file and beamline path.
#[track_caller]
fn assert_show(c: &Cluster, bt: &Beamtime, beamline_path: &str) {
    let out = run(c, bt, &["show", "--beamtime", &bt.id]);
    out.assert_success()
        .assert_stdout_contains(&format!("metadata file  {}\n", bt.metadata_path.display()))
        .assert_stdout_contains(&format!("beamline path  {beamline_path}\n"));
    let out = run(c, bt, &["show", "--beamtime", &bt.id, "--format", "json"]);
    out.assert_success();
    let shown: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        shown["metadataPath"],
        bt.metadata_path.to_str().unwrap(),
        "{out}"
    );
    assert_eq!(shown["beamlinePath"], beamline_path, "{out}");
}

#[test]
fn bt_submit_finds_the_metadata_and_the_target_where_the_plugin_does() {
    let c = Cluster::from_env();
    let (plugin, args) = c.installed_plugin();
    let default_config = Path::new("/etc/beamtime/bt-submit.conf");
    assert!(
        !default_config.exists(),
        "{} gives bt-submit a search path of its own; this scenario needs the plugstack's",
        default_config.display()
    );
    assert!(
        args.contains("metadata=") && !args.contains("target="),
        "the cluster's plugin_args must set metadata= and leave target= to its default: {args}"
    );
    let bt = c.start_beamtime(&BeamtimeSpec::fresh("bttest601"));
    let location = plugin_line(&c);
    let current = format!("/beamline/{}/current", bt.beamline);
    let data = format!("/beamline/{}/data", bt.beamline);

    // 1. The cluster's line: metadata= patterns, the default target.
    let out = run(&c, &bt, &["--beamtime", &bt.id, "--dry-run", "job.sh"]);
    out.assert_success();
    assert_eq!(
        out.stdout,
        format!(
            "sbatch --partition=all --reservation={0} --beamtime={0} job.sh\n",
            bt.id
        ),
        "{out}"
    );
    assert_show(&c, &bt, &current);
    let out = run(&c, &bt, &["doctor", "--beamtime", &bt.id]);
    out.assert_success();
    let metadata = out.doctor_check("metadata");
    assert!(
        metadata.contains(&format!(
            "{} (beamtime {}",
            bt.metadata_path.display(),
            bt.id
        )),
        "{out}"
    );
    assert!(
        metadata.ends_with(&format!(
            "found through the metadata= patterns of the plugin's line {location}"
        )),
        "{out}"
    );
    assert!(
        out.doctor_check("beamline-source")
            .ends_with(&format!("jobs see it as {current}")),
        "{out}"
    );

    // 2. A target= of the site's: show prints it, and jobs see exactly that.
    let _restore = RestorePlugstack::new(&c);
    c.set_plugstack(
        Some(&plugin),
        &format!("{args} target=/beamline/{{beamline}}/data"),
    );
    assert_show(&c, &bt, &data);
    let out = run(&c, &bt, &["doctor", "--beamtime", &bt.id]);
    out.assert_success();
    assert!(
        out.doctor_check("beamline-source")
            .ends_with(&format!("jobs see it as {data}")),
        "{out}"
    );
    let out = run(
        &c,
        &bt,
        &[
            "srun",
            "--beamtime",
            &bt.id,
            "sh",
            "-c",
            &format!(
                "echo $BEAMTIME_BEAMLINE_PATH; ls -A /beamline/{}",
                bt.beamline
            ),
        ],
    );
    out.assert_success()
        .assert_stdout_contains(&format!("{data}\ndata\n"));

    // 3. A line the plugin cannot use: bt-submit stops as the job would be stopped.
    c.set_plugstack(Some(&plugin), &format!("{args} colour=blue"));
    let said = format!("{location}: plugstack.conf argument 'colour=blue': unknown key 'colour'");
    let out = run(&c, &bt, &["--beamtime", &bt.id, "--dry-run", "job.sh"]);
    assert_eq!(out.code(), Some(78), "{out}");
    out.assert_stderr_contains(&format!("bt-submit: error: {said}"))
        .assert_stderr_contains(
            "hint: ask the cluster's administrators: jobs without --beamtime are not affected",
        );
    let out = run(&c, &bt, &["doctor", "--beamtime", &bt.id]);
    assert_eq!(out.code(), Some(1), "{out}");
    // First after the controller, which named the line.
    assert!(out.doctor_check("controller").starts_with("ok   "), "{out}");
    let first = out
        .stdout
        .lines()
        .nth(2)
        .unwrap_or_else(|| panic!("no checks:\n{out}"));
    assert!(first.starts_with("FAIL plugstack-line "), "{out}");
    assert!(first.contains(&said), "{out}");
    // The plugin still loads and offers --beamtime; only its line is wrong.
    assert!(out.doctor_check("plugin").starts_with("ok   "), "{out}");
}
