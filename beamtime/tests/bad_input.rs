//! One test per class of bad input, each checking what the message tells.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use beamtime::discovery::read_metadata_file;
use beamtime::metadata::{parse_metadata, MetadataProblem, Online, MAX_METADATA_BYTES};
use common::{edited_fixture, fixture_bytes, parse_error, parsed, TempDir};
use serde_json::{json, Value};

/// One change to a fixture document.
type Edit = Box<dyn FnOnce(&mut Value)>;

const NORMAL: &str = "beamtime-metadata-11099001.json";
const ORIGIN: &str = "/gpfs/current/beamtime-metadata-11099001.json";

fn message_for(bytes: &[u8], origin: &str) -> String {
    parse_error(bytes, origin).to_string()
}

fn edited_message(edit: impl FnOnce(&mut Value)) -> String {
    message_for(&edited_fixture(NORMAL, edit), ORIGIN)
}

fn assert_contains(message: &str, expected: &str) {
    assert!(
        message.contains(expected),
        "expected {expected:?} in:\n{message}"
    );
}

#[test]
fn truncated_json_reports_line_and_column() {
    let bytes = fixture_bytes(NORMAL);
    let cut = &bytes[..bytes.len() / 2];
    let message = message_for(cut, ORIGIN);
    let lines = cut.iter().filter(|&&b| b == b'\n').count() + 1;
    assert!(
        message.starts_with(&format!("{ORIGIN}:{lines}:")),
        "{message}"
    );
    assert_contains(&message, "invalid JSON: EOF while parsing");
    assert_contains(&message, "damaged or cut off");
    assert_contains(&message, "report the file to the beamline staff");
}

#[test]
fn syntax_error_in_the_middle_reports_its_position() {
    let message = message_for(b"{\n    \"beamtimeId\": \"1\",,\n}", ORIGIN);
    assert!(
        message.starts_with(&format!("{ORIGIN}:2:23: invalid JSON: ")),
        "{message}"
    );
}

#[test]
fn a_key_given_twice_is_refused_with_its_position() {
    let text = String::from_utf8(fixture_bytes(NORMAL)).unwrap();
    let doubled = text.replacen("{", "{\n    \"beamline\": \"p99\",", 1);
    let message = message_for(doubled.as_bytes(), ORIGIN);
    let line = text
        .lines()
        .position(|line| line.starts_with("    \"beamline\": "))
        .expect("the fixture has a beamline")
        + 2;
    assert_eq!(
        message,
        format!(
            "{ORIGIN}:{line}:14: the key \"beamline\" appears twice in one object; a key may \
             appear once, so which value counts is ambiguous, report the file to the beamline staff"
        )
    );
    assert!(!message.contains("damaged"), "{message}");

    // Nested objects too, and not only known keys.
    let nested = text.replacen(
        "\"onlineAnalysis\": {",
        "\"onlineAnalysis\": {\"x\": 1, \"x\": 2,",
        1,
    );
    assert_ne!(nested, text, "the fixture has an onlineAnalysis block");
    let problem = parse_error(nested.as_bytes(), ORIGIN);
    assert!(
        matches!(problem.problem(), MetadataProblem::RepeatedKey { key, .. } if key == "x"),
        "{problem}"
    );
}

#[test]
fn a_known_key_spelled_in_another_case_is_refused_naming_both_spellings() {
    let moved = |from: &'static str, to: &'static str| -> Edit {
        Box::new(move |d: &mut Value| {
            let (object, name) = match from.split_once('.') {
                Some((block, name)) => (&mut d[block], name),
                None => (&mut *d, from),
            };
            let object = object.as_object_mut().unwrap();
            let value = object.remove(name).unwrap();
            object.insert(to.to_owned(), value);
        })
    };
    let cases: [(Edit, &str); 4] = [
        (
            moved("beamline", "Beamline"),
            "Beamline: expected the key beamline, spelled exactly so",
        ),
        (
            moved("onlineAnalysis", "OnlineAnalysis"),
            "OnlineAnalysis: expected the key onlineAnalysis, spelled exactly so",
        ),
        (
            moved("onlineAnalysis.userAccount", "UserAccount"),
            "onlineAnalysis.UserAccount: expected the key onlineAnalysis.userAccount, spelled \
             exactly so; a key spelled otherwise is ambiguous (one reader takes it, another \
             ignores it), report the file to the beamline staff",
        ),
        (
            moved("corePath", "core_path"),
            "core_path: expected the key corePath, spelled exactly so",
        ),
    ];
    for (edit, expected) in cases {
        let message = edited_message(edit);
        assert_contains(&message, &format!("{ORIGIN}: {expected}"));
    }
}

#[test]
fn a_key_that_only_looks_like_a_known_one_is_refused_like_a_case_variant() {
    let moved = |to: &'static str| -> Edit {
        Box::new(move |d: &mut Value| {
            let object = d.as_object_mut().unwrap();
            let value = object.remove("beamline").unwrap();
            object.insert(to.to_owned(), value);
        })
    };
    for (look_alike, shown) in [
        ("beamline ", r#""beamline ""#),
        ("beam\u{200B}line", r#""beam\u{200b}line""#),
        (
            "\u{FF42}\u{FF45}\u{FF41}\u{FF4D}line",
            "\"\u{FF42}\u{FF45}\u{FF41}\u{FF4D}line\"",
        ),
    ] {
        assert_contains(
            &edited_message(moved(look_alike)),
            &format!("{ORIGIN}: {shown}: expected the key beamline, spelled exactly so"),
        );
    }
}

#[test]
fn two_spellings_of_one_key_are_refused_naming_both() {
    let cases: [(Edit, &str); 3] = [
        (
            Box::new(|d| d["core-path"] = json!("/asap3/petra3/gpfs/p99/2024/data/11099001")),
            "core-path and corePath are two spellings of one key; a file may name each key once, \
             so which value counts is ambiguous, report the file to the beamline staff",
        ),
        (
            Box::new(|d| d["Beamline"] = json!("p99")),
            "Beamline and beamline are two spellings of one key",
        ),
        (
            Box::new(|d| d["onlineAnalysis"]["useraccount"] = json!("bttest99")),
            "onlineAnalysis.userAccount and onlineAnalysis.useraccount are two spellings",
        ),
    ];
    for (edit, expected) in cases {
        assert_contains(&edited_message(edit), &format!("{ORIGIN}: {expected}"));
    }
    // Even when one of them holds an absent value: which one counts is still a guess.
    let message = edited_message(|d| d["core-path"] = json!("None"));
    assert_contains(
        &message,
        "core-path and corePath are two spellings of one key",
    );
}

#[test]
fn a_long_key_spelling_is_shown_cut() {
    // Underscores do not count in a spelling: this is a spelling of beamline.
    let key = format!("Beam{}line", "_".repeat(200));
    let message = edited_message(|d| {
        let object = d.as_object_mut().unwrap();
        let value = object.remove("beamline").unwrap();
        object.insert(key, value);
    });
    assert_contains(&message, &format!("{ORIGIN}: \"Beam___"));
    assert_contains(&message, "… (208 characters): expected the key beamline");
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("{{\"beamtimeId\": {}}}", "[".repeat(100_000));
    let message = message_for(deep.as_bytes(), ORIGIN);
    assert_contains(&message, &format!("{ORIGIN}:1:"));
    assert_contains(&message, "recursion limit exceeded");
}

#[test]
fn top_level_must_be_an_object() {
    let message = message_for(b"[1, 2]", ORIGIN);
    assert_contains(
        &message,
        "expected a JSON object at the top level, found a list",
    );
}

#[test]
fn wrong_types_name_the_key_path() {
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|d| d["onlineAnalysis"]["slurmReservation"] = json!(["11099001", 7])),
            "onlineAnalysis.slurmReservation[1]: expected a string, found a number",
        ),
        (
            Box::new(|d| d["onlineAnalysis"]["reservedNodes"] = json!({"a": 1})),
            "onlineAnalysis.reservedNodes: expected a string or a list of strings, found an object",
        ),
        (
            Box::new(|d| d["onlineAnalysis"]["slurmPartition"] = json!(true)),
            "onlineAnalysis.slurmPartition: expected a string, found a boolean",
        ),
        (
            Box::new(|d| d["onlineAnalysis"] = json!("ponline_p11")),
            "onlineAnalysis: expected an object, found a string",
        ),
        (
            Box::new(|d| d["users"]["doorDb"][1] = json!(null)),
            "users.doorDb[1]: expected a string, found null",
        ),
        (
            Box::new(|d| d["leader"]["email"] = json!(["x"])),
            "leader.email: expected a string, found a list",
        ),
        (
            Box::new(|d| d["beamtimeId"] = json!(11099001)),
            "beamtimeId: expected a string, found a number",
        ),
        (
            Box::new(|d| d["asapo"]["beamtimeTokenPath"] = json!(1.5)),
            "asapo.beamtimeTokenPath: expected a string, found a number",
        ),
    ];
    for (edit, expected) in cases {
        let message = edited_message(edit);
        assert!(message.starts_with(ORIGIN), "{message}");
        assert_contains(&message, expected);
        assert_contains(&message, "report the file to the beamline staff");
    }
}

#[test]
fn missing_keys_are_named() {
    let message = edited_message(|d| {
        d.as_object_mut().map(|o| o.remove("beamtimeId"));
    });
    assert_contains(&message, "beamtimeId: missing, expected the beamtime id");
    let message = edited_message(|d| d["beamline"] = json!("None"));
    assert_contains(&message, "beamline: missing, expected the beamline");
    let message = message_for(b"{}", "/x/commissioning-metadata-c1.json");
    assert_contains(&message, "/x/commissioning-metadata-c1.json: id: missing");
}

#[test]
fn bad_values_name_the_key_and_the_expected_form() {
    let message = edited_message(|d| d["eventStart"] = json!("5 March 2024"));
    assert_contains(
        &message,
        "eventStart: expected a time like \"2024-03-05 09:00:00\", found \"5 March 2024\"",
    );
    let message =
        edited_message(|d| d["onlineAnalysis"]["sshPrivateKeyPath"] = json!("shared/id\u{0}rsa"));
    assert_contains(
        &message,
        "onlineAnalysis.sshPrivateKeyPath: expected a path without control characters",
    );
}

#[test]
fn old_spelling_is_named_as_written() {
    let bytes = edited_fixture("beamtime-metadata-11099002.json", |d| {
        d["event-end"] = json!("soon")
    });
    let message = message_for(&bytes, "/x/beamtime-metadata-11099002.json");
    assert_contains(&message, "event-end: expected a time");
}

#[test]
fn huge_input_is_refused_before_parsing() {
    let mut bytes = fixture_bytes(NORMAL);
    bytes.resize(MAX_METADATA_BYTES + 1, b' ');
    let message = message_for(&bytes, ORIGIN);
    assert_contains(
        &message,
        &format!(
            "the file has {} bytes, more than the {MAX_METADATA_BYTES}",
            MAX_METADATA_BYTES + 1
        ),
    );
    assert_contains(&message, "check the path");

    let dir = TempDir::new("huge");
    let path = dir.write(
        "beamtime-metadata-11099001.json",
        &vec![b' '; 4 * MAX_METADATA_BYTES],
    );
    let error = read_metadata_file(&path)
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert!(
        matches!(error.problem(), MetadataProblem::TooLarge { size } if *size == 4 * MAX_METADATA_BYTES as u64)
    );

    let mut exactly_at_cap = fixture_bytes(NORMAL);
    exactly_at_cap.resize(MAX_METADATA_BYTES, b'\n');
    parsed(&exactly_at_cap, ORIGIN);
}

#[test]
fn non_utf8_reports_where() {
    let message = message_for(b"{\n  \"title\": \"caf\xe9\"\n}", ORIGIN);
    assert!(
        message.starts_with(&format!("{ORIGIN}:2:16: expected UTF-8 text")),
        "{message}"
    );
}

#[test]
fn hostile_ids_are_rejected_with_the_reason() {
    let long = "1".repeat(65);
    let cases = [
        (
            "..",
            "invalid beamtime id \"..\": it must not start with '.'",
        ),
        ("../../etc", "'/' at position 3 is not allowed"),
        ("1109/9001", "'/' at position 5 is not allowed"),
        ("1109\u{0}9001", "'\\0' at position 5 is not allowed"),
        ("1109\n9001", "'\\n' at position 5 is not allowed"),
        (long.as_str(), "it is 65 characters long"),
        ("11099001ä", "'ä' at position 9 is not allowed"),
        ("-1", "must not start with '-'"),
    ];
    for (hostile, expected) in cases {
        let bytes = edited_fixture(NORMAL, |d| d["beamtimeId"] = json!(hostile));
        // A neutral file name, so the id check itself is what answers.
        let message = message_for(&bytes, "/x/metadata.json");
        assert_contains(
            &message,
            "/x/metadata.json: beamtimeId: invalid beamtime id",
        );
        assert_contains(&message, expected);
        assert!(
            !message.contains('\n') && !message.contains('\0'),
            "{message:?}"
        );
    }
}

#[test]
fn hostile_beamlines_are_rejected() {
    for (hostile, expected) in [
        ("p11/../p12", "'/' at position 4"),
        ("..", "must not start with '.'"),
        ("p1\u{0}", "'\\0' at position 3"),
        ("p11\n", "'\\n' at position 4"),
        ("ü", "'ü' at position 1"),
    ] {
        let message = edited_message(|d| d["beamline"] = json!(hostile));
        assert_contains(&message, "beamline: invalid beamline");
        assert_contains(&message, expected);
    }
}

#[test]
fn hostile_online_names_are_rejected() {
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|d| d["onlineAnalysis"]["userAccount"] = json!("root;rm")),
            "onlineAnalysis.userAccount: invalid user account \"root;rm\": ';' at position 5",
        ),
        (
            Box::new(|d| d["onlineAnalysis"]["userAccount"] = json!("Bttest01")),
            "invalid user account \"Bttest01\": 'B' at position 1",
        ),
        (
            Box::new(|d| d["onlineAnalysis"]["slurmPartition"] = json!("--partition=all")),
            "onlineAnalysis.slurmPartition: invalid partition name",
        ),
        (
            Box::new(|d| d["onlineAnalysis"]["slurmReservation"] = json!(["11099001", "x y"])),
            "onlineAnalysis.slurmReservation[1]: invalid reservation name \"x y\": ' ' at position 2",
        ),
        (
            Box::new(|d| d["onlineAnalysis"]["reservedNodes"] = json!(["../node"])),
            "onlineAnalysis.reservedNodes[0]: invalid node name",
        ),
    ];
    for (edit, expected) in cases {
        assert_contains(&edited_message(edit), expected);
    }
}

#[test]
fn file_name_and_id_inside_must_agree() {
    let message = message_for(
        &fixture_bytes(NORMAL),
        "/gpfs/current/beamtime-metadata-11099002.json",
    );
    assert_contains(
        &message,
        "the file name says \"11099002\" but beamtimeId is \"11099001\"; the file was renamed or copied",
    );
    let commissioning = fixture_bytes("commissioning-metadata-c20240312_000_GPUTEST.json");
    let message = message_for(&commissioning, "/x/commissioning-metadata-c1.json");
    assert_contains(&message, "but id is \"c20240312_000_GPUTEST\"");
    // Other file names are not checked.
    parsed(&fixture_bytes(NORMAL), "/tmp/copy.json");
}

#[test]
fn unreadable_files_say_why() {
    let dir = TempDir::new("unreadable");
    let folder = dir.mkdir("beamtime-metadata-11099001.json");
    let message = read_metadata_file(&folder)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_contains(
        &message,
        "expected a metadata file, found a directory; give the path of the JSON file itself",
    );

    let dangling = dir.path().join("beamtime-metadata-11099009.json");
    if let Err(error) = symlink(dir.path().join("gone"), &dangling) {
        panic!("{error}");
    }
    let error = read_metadata_file(&dangling)
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert!(error.is_unreadable());
    let message = error.to_string();
    assert!(
        message.starts_with(&dangling.display().to_string()),
        "{message}"
    );
    assert_contains(
        &message,
        "cannot read the metadata file: No such file or directory (os error 2)",
    );

    let fifo = dir.path().join("pipe.json");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|status| status.success()) {
        let message = read_metadata_file(&fifo)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_contains(&message, "found a named pipe");
    }
}

#[test]
fn pre_start_blocks_are_not_yet_ready() {
    let variants: Vec<Edit> = vec![
        Box::new(|d| {
            d.as_object_mut().map(|o| o.remove("onlineAnalysis"));
        }),
        Box::new(|d| d["onlineAnalysis"] = json!(null)),
        Box::new(|d| d["onlineAnalysis"] = json!("None")),
        Box::new(|d| d["onlineAnalysis"] = json!({})),
        Box::new(|d| {
            d["onlineAnalysis"] = json!({
                "reservedNodes": [], "slurmPartition": null, "slurmReservation": [],
                "sshPrivateKeyPath": null, "sshPublicKeyPath": null, "userAccount": null
            })
        }),
        Box::new(|d| {
            d["onlineAnalysis"] = json!({
                "reservedNodes": null, "slurmPartition": "None", "slurmReservation": "None",
                "userAccount": "None"
            })
        }),
        // The facility's pre-start form: the partition is known before the rest.
        Box::new(|d| {
            d["onlineAnalysis"] = json!({
                "reservedNodes": [], "slurmPartition": "ponline_p11", "slurmReservation": null,
                "userAccount": null, "sshPrivateKeyPath": "shared/id_rsa"
            })
        }),
    ];
    for (index, edit) in variants.into_iter().enumerate() {
        let metadata = parsed(&edited_fixture(NORMAL, edit), ORIGIN);
        assert_eq!(metadata.online, Online::NotYet, "variant {index}");
    }
}

/// A block that names some of the resources (so they were set up) but not
/// all is a mistake in the file, named key by key, never "not started yet".
#[test]
fn a_partial_online_block_names_each_missing_key() {
    let cases: Vec<(Edit, &[&str])> = vec![
        (
            Box::new(|d| d["onlineAnalysis"]["userAccount"] = json!(null)),
            &["onlineAnalysis.userAccount is missing or null"],
        ),
        (
            Box::new(|d| d["onlineAnalysis"]["slurmReservation"] = json!([])),
            &["onlineAnalysis.slurmReservation is missing or null"],
        ),
        (
            Box::new(|d| d["onlineAnalysis"]["reservedNodes"] = json!([])),
            &["onlineAnalysis.reservedNodes is missing or null"],
        ),
        (
            Box::new(|d| {
                d["onlineAnalysis"]
                    .as_object_mut()
                    .map(|o| o.remove("slurmPartition"));
            }),
            &["onlineAnalysis.slurmPartition is missing or null"],
        ),
        (
            Box::new(|d| {
                let block = d["onlineAnalysis"].as_object_mut().expect("a block");
                let reservation = block.remove("slurmReservation").expect("a reservation");
                block.insert("slurmReservaton".to_owned(), reservation);
                block.insert("userAccount".to_owned(), json!(""));
            }),
            &[
                "onlineAnalysis.slurmReservation is missing (the block has \
                 \"onlineAnalysis.slurmReservaton\": a misspelling of it?)",
                "onlineAnalysis.userAccount is missing or null",
            ],
        ),
        (
            // Even with nothing else set, a misspelled key that holds a value
            // is no pre-start block.
            Box::new(|d| {
                d["onlineAnalysis"] = json!({"reservedNode": ["max-p3a901"]});
            }),
            &["onlineAnalysis.reservedNodes is missing (the block has \
               \"onlineAnalysis.reservedNode\": a misspelling of it?)"],
        ),
    ];
    for (edit, expected) in cases {
        let message = edited_message(edit);
        assert_contains(&message, "the onlineAnalysis block is incomplete: ");
        assert_contains(&message, "report the file to the beamline staff");
        for part in expected {
            assert_contains(&message, part);
        }
        assert!(!message.contains("not started"), "{message}");
    }
    let unknown_keys_pass = parsed(
        &edited_fixture(NORMAL, |d| d["onlineAnalysis"]["gpuCount"] = json!(4)),
        ORIGIN,
    );
    assert!(
        unknown_keys_pass.online.ready().is_some(),
        "a key the format does not know is ignored"
    );
}

#[test]
fn duplicate_reservations_collapse_keeping_order() {
    let bytes = edited_fixture(NORMAL, |d| {
        d["onlineAnalysis"]["slurmReservation"] = json!(["11099001_2", "11099001", "11099001_2"])
    });
    let metadata = parsed(&bytes, ORIGIN);
    let reservations = metadata.online.ready().map(|o| o.reservations.clone());
    assert_eq!(
        reservations,
        Some(vec!["11099001_2".to_owned(), "11099001".to_owned()])
    );
}

#[test]
fn relative_paths_follow_the_origin_folder() {
    let metadata = parsed(
        &fixture_bytes(NORMAL),
        "/asap3/x/beamtime-metadata-11099001.json",
    );
    let online = metadata
        .online
        .ready()
        .cloned()
        .unwrap_or_else(|| panic!("ready"));
    assert_eq!(
        online.ssh_private_key.as_deref(),
        Some(Path::new("/asap3/x/shared/id_rsa"))
    );
    assert_eq!(
        online.ssh_public_key.as_deref(),
        Some(Path::new("/asap3/x/shared/id_rsa.pub"))
    );
}

#[test]
fn errors_never_carry_raw_control_characters() {
    let bytes = edited_fixture(NORMAL, |d| {
        d["onlineAnalysis"]["slurmPartition"] = json!("a\nFAKE: ok\r")
    });
    let message = message_for(&bytes, ORIGIN);
    assert!(
        !message.contains('\n') && !message.contains('\r'),
        "{message:?}"
    );
    assert!(parse_metadata(b"", Path::new(ORIGIN)).is_err());
}

#[test]
fn read_file_stays_within_the_cap_for_real_files() {
    let dir = TempDir::new("read");
    let path = dir.write(NORMAL, &fixture_bytes(NORMAL));
    let metadata = read_metadata_file(&path).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(metadata.path, path);
    let _ = fs::remove_file(&path);
}
