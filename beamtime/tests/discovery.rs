//! Finding metadata files by id and from a working directory (bt-submit's own
//! search-path settings are tested in bt-submit, site/user_config.rs).

mod common;

use std::os::unix::fs::symlink;

use beamtime::discovery::{find_by_id, find_from_dir, DiscoveryError, SearchPath, SearchPattern};
use common::{fixture_bytes, id, TempDir};

const NORMAL: &str = "beamtime-metadata-11099001.json";

fn search(dir: &TempDir, patterns: &[&str]) -> SearchPath {
    SearchPath::new(
        patterns
            .iter()
            .map(|p| {
                let full = format!("{}{p}", dir.path().display());
                SearchPattern::parse(&full).unwrap_or_else(|error| panic!("{error}"))
            })
            .collect(),
    )
}

#[test]
fn finds_the_file_through_wildcards() {
    let dir = TempDir::new("by-id");
    let file = dir.write(
        &format!("asap3/petra3/gpfs/p11/2024/data/11099001/{NORMAL}"),
        &fixture_bytes(NORMAL),
    );
    dir.mkdir("asap3/petra3/gpfs/p11/2023/data");
    let search = search(
        &dir,
        &[
            "/gpfs/current/beamtime-metadata-{id}.json",
            "/asap3/*/gpfs/*/*/data/{id}/beamtime-metadata-{id}.json",
        ],
    );
    assert_eq!(find_by_id(&search, &id("11099001")).ok(), Some(file));
}

#[test]
fn earlier_patterns_take_precedence() {
    let dir = TempDir::new("order");
    let beamline = dir.write(&format!("gpfs/current/{NORMAL}"), &fixture_bytes(NORMAL));
    dir.write(
        &format!("asap3/petra3/gpfs/p11/2024/data/11099001/{NORMAL}"),
        &fixture_bytes(NORMAL),
    );
    let search = search(
        &dir,
        &[
            "/gpfs/current/beamtime-metadata-{id}.json",
            "/asap3/*/gpfs/*/*/data/{id}/beamtime-metadata-{id}.json",
        ],
    );
    assert_eq!(find_by_id(&search, &id("11099001")).ok(), Some(beamline));
}

#[test]
fn two_matches_are_an_error_listing_both() {
    let dir = TempDir::new("ambiguous");
    let first = dir.write(
        &format!("asap3/petra3/gpfs/p11/2023/data/11099001/{NORMAL}"),
        &fixture_bytes(NORMAL),
    );
    let second = dir.write(
        &format!("asap3/petra3/gpfs/p11/2024/data/11099001/{NORMAL}"),
        &fixture_bytes(NORMAL),
    );
    let search = search(
        &dir,
        &["/asap3/*/gpfs/*/*/data/{id}/beamtime-metadata-{id}.json"],
    );
    let error = find_by_id(&search, &id("11099001"))
        .err()
        .unwrap_or_else(|| panic!("should be ambiguous"));
    assert!(matches!(error, DiscoveryError::Ambiguous { .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "beamtime 11099001 has 2 metadata files: {}, {}; there must be only one, ask the \
             beamline staff which one is current and name it explicitly",
            first.display(),
            second.display()
        )
    );
}

#[test]
fn the_same_file_through_a_symlink_counts_once() {
    let dir = TempDir::new("symlinked");
    let data = dir.mkdir("asap3/petra3/gpfs/p11/2024/data/11099001");
    dir.write(
        &format!("asap3/petra3/gpfs/p11/2024/data/11099001/{NORMAL}"),
        &fixture_bytes(NORMAL),
    );
    dir.mkdir("beamline/p11");
    dir.mkdir("beamline/P11");
    for alias in ["beamline/p11/current", "beamline/P11/current"] {
        symlink(&data, dir.path().join(alias)).unwrap_or_else(|error| panic!("{error}"));
    }
    let search = search(&dir, &["/beamline/*/current/beamtime-metadata-{id}.json"]);
    let found = find_by_id(&search, &id("11099001")).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        found,
        dir.path().join(format!("beamline/P11/current/{NORMAL}"))
    );
}

#[test]
fn not_found_lists_what_was_searched() {
    let dir = TempDir::new("missing");
    let search = search(
        &dir,
        &[
            "/gpfs/current/beamtime-metadata-{id}.json",
            "/asap3/*/data/{id}/beamtime-metadata-{id}.json",
        ],
    );
    let message = find_by_id(&search, &id("11099009"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let root = dir.path().display();
    assert_eq!(
        message,
        format!(
            "no metadata file for beamtime 11099009; searched {root}/gpfs/current/beamtime-metadata-11099009.json, \
             {root}/asap3/*/data/11099009/beamtime-metadata-11099009.json; check the id (the file appears \
             when the beamtime starts and leaves the beamline filesystem when it stops)"
        )
    );
}

#[test]
fn working_directory_walks_up_to_the_beamtime_folder() {
    let dir = TempDir::new("walk");
    let file = dir.write(&format!("data/11099001/{NORMAL}"), &fixture_bytes(NORMAL));
    let deep = dir.mkdir("data/11099001/processed/run1/frames");
    assert_eq!(find_from_dir(&deep).ok(), Some(file));

    let commissioning = dir.write(
        "commissioning/c1/commissioning-metadata-c20240312_000_GPUTEST.json",
        &fixture_bytes("commissioning-metadata-c20240312_000_GPUTEST.json"),
    );
    let raw = dir.mkdir("commissioning/c1/raw");
    assert_eq!(find_from_dir(&raw).ok(), Some(commissioning));
}

#[test]
fn working_directory_outside_any_beamtime_is_an_error() {
    let dir = TempDir::new("outside");
    let folder = dir.mkdir("home/user");
    dir.write("home/user/beamtime-metadata-.json", b"{}");
    dir.write("home/user/beamtime-metadata-1.json.bak", b"{}");
    // The walk continues above the temporary folder; the machine running the
    // tests has no metadata file at its root.
    let message = find_from_dir(&folder)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "no beamtime-metadata-*.json or commissioning-metadata-*.json in {} or any folder above \
             it; work inside a beamtime folder or name the beamtime",
            folder.display()
        )
    );
}

#[test]
fn two_metadata_files_in_one_folder_are_an_error() {
    let dir = TempDir::new("two-in-folder");
    let first = dir.write("bt/beamtime-metadata-11099001.json", b"{}");
    let second = dir.write("bt/commissioning-metadata-c1.json", b"{}");
    let start = dir.mkdir("bt/raw");
    let message = find_from_dir(&start)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "{} holds 2 metadata files: {}, {};",
            dir.path().join("bt").display(),
            first.display(),
            second.display()
        )),
        "{message}"
    );
}
