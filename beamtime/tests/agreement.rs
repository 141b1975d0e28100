//! bt-submit (`find_by_id`, any file) and the plugin (`load_trusted_metadata`,
//! trusted files only) name the same file for the same tree of trusted files:
//! both go through `select_by_id`, and this holds them to it on the trees
//! where two implementations of "the first pattern wins" used to differ
//! (symlinked folders, hard links, several patterns, several matches).

mod common;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use beamtime::discovery::{find_by_id, DiscoveryError, SearchPath, SearchPattern};
use beamtime::refusal::Rule;
use beamtime::trust::{load_trusted_metadata, TrustPolicy};
use common::{fixture_bytes, id, TempDir};

const NAME: &str = "beamtime-metadata-11099001.json";

/// A tree of metadata files, all owned by whoever runs the test and not
/// writable by others, so the plugin's trust policy takes every one of them.
struct Tree {
    dir: TempDir,
}

impl Tree {
    fn new(label: &str) -> Tree {
        Tree {
            dir: TempDir::new(label),
        }
    }

    fn file(&self, relative: &str) -> PathBuf {
        let path = self.dir.write(relative, &fixture_bytes(NAME));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    fn link(&self, target: &str, relative: &str) {
        let link = self.dir.path().join(relative);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink(self.dir.path().join(target), link).unwrap();
    }

    fn search(&self, patterns: &[&str]) -> SearchPath {
        SearchPath::new(
            patterns
                .iter()
                .map(|p| {
                    SearchPattern::parse(&format!("{}{p}", self.dir.path().display())).unwrap()
                })
                .collect(),
        )
    }

    fn trust(&self) -> TrustPolicy {
        TrustPolicy {
            owners: vec![fs::metadata(self.dir.path()).unwrap().uid()],
        }
    }

    /// What each side chose: the path, or that the choice was ambiguous.
    fn both(
        &self,
        patterns: &[&str],
    ) -> (Result<PathBuf, &'static str>, Result<PathBuf, &'static str>) {
        let search = self.search(patterns);
        let user_side = match find_by_id(&search, &id("11099001")) {
            Ok(path) => Ok(path),
            Err(DiscoveryError::Ambiguous { .. }) => Err("ambiguous"),
            Err(other) => panic!("bt-submit: {other}"),
        };
        let node_side = match load_trusted_metadata(&id("11099001"), &search, &self.trust()) {
            Ok(metadata) => Ok(metadata.path),
            Err(refusal) if refusal.rule == Rule::MetadataAmbiguous => Err("ambiguous"),
            Err(refusal) => panic!("plugin: {refusal}"),
        };
        (user_side, node_side)
    }
}

#[test]
fn the_first_pattern_with_a_file_wins_on_both_sides() {
    let tree = Tree::new("agree-order");
    tree.file(&format!("core/p11/11099001/{NAME}"));
    let current = tree.file(&format!("beamline/p11/current/{NAME}"));
    let (user, node) = tree.both(&[
        "/beamline/*/current/{id}-x",
        "/beamline/*/current/beamtime-metadata-{id}.json",
        "/core/*/{id}/beamtime-metadata-{id}.json",
    ]);
    assert_eq!(user, Ok(current.clone()));
    assert_eq!(node, Ok(current));
}

#[test]
fn one_file_reached_through_a_symlinked_folder_counts_once_on_both_sides() {
    let tree = Tree::new("agree-symlinked-folder");
    let real = tree.file(&format!("beamline/p11/current/{NAME}"));
    // The beamline's folder under a second name: the pattern reaches one file twice.
    tree.link("beamline/p11", "beamline/p11-alias");
    let (user, node) = tree.both(&["/beamline/*/current/beamtime-metadata-{id}.json"]);
    assert_eq!(user, node);
    assert_eq!(user, Ok(real));
}

#[test]
fn a_hard_link_is_one_file_on_both_sides() {
    let tree = Tree::new("agree-hard-link");
    let real = tree.file(&format!("beamline/p11/current/{NAME}"));
    fs::create_dir_all(tree.dir.path().join("beamline/p21/current")).unwrap();
    fs::hard_link(
        &real,
        tree.dir.path().join(format!("beamline/p21/current/{NAME}")),
    )
    .unwrap();
    let (user, node) = tree.both(&["/beamline/*/current/beamtime-metadata-{id}.json"]);
    assert_eq!(user, node);
    assert_eq!(user, Ok(real));
}

#[test]
fn two_different_files_from_one_pattern_are_ambiguous_on_both_sides() {
    let tree = Tree::new("agree-ambiguous");
    tree.file(&format!("beamline/p11/current/{NAME}"));
    tree.file(&format!("beamline/p21/current/{NAME}"));
    // A later pattern with a single file does not resolve the first one's ambiguity.
    tree.file(&format!("core/p11/11099001/{NAME}"));
    let (user, node) = tree.both(&[
        "/beamline/*/current/beamtime-metadata-{id}.json",
        "/core/*/{id}/beamtime-metadata-{id}.json",
    ]);
    assert_eq!(user, Err("ambiguous"));
    assert_eq!(node, Err("ambiguous"));
}
