//! A made-up compute node for the metadata micro-benchmarks (`benches/metadata.rs`):
//! the folders a facility's start script leaves, with as many beamtimes and
//! search patterns as a measurement asks for.
//!
//! Layout under a scratch folder:
//! - `beamline/bl<i>/current/beamtime-metadata-<id>.json`, one current beamtime
//!   per beamline; the measured one, [`MEASURED_ID`], on the last beamline.
//! - `miss<k>/bl<i>/` (ten beamline folders each, no metadata file): what a
//!   search pattern that does not match walks through before the one that does.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use beamtime::discovery::SearchPath;
use beamtime::id::BeamtimeId;
use beamtime::trust::TrustPolicy;

/// A realistic metadata file (1.8 kB, every section the facility writes).
pub const FIXTURE: &[u8] =
    include_bytes!("../../beamtime/tests/fixtures/beamtime-metadata-11099001.json");
pub const MEASURED_ID: &str = "11099001";
/// Beamline folders in each pattern that does not match.
pub const FOLDERS_PER_MISS: usize = 10;

pub fn measured_id() -> BeamtimeId {
    BeamtimeId::parse(MEASURED_ID).expect("a valid id")
}

/// The scratch folder, removed when dropped.
pub struct Node {
    root: PathBuf,
    search: SearchPath,
    policy: TrustPolicy,
}

impl Node {
    /// `beamtimes` beamlines with a current beamtime each, and `patterns` search
    /// patterns of which only the last matches.
    pub fn build(beamtimes: usize, patterns: usize) -> Node {
        assert!(beamtimes >= 1 && patterns >= 1);
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "beamtime-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let text = std::str::from_utf8(FIXTURE).expect("the fixture is UTF-8");
        for i in 0..beamtimes {
            let id = if i + 1 == beamtimes {
                MEASURED_ID.to_owned()
            } else {
                (12_000_000 + i).to_string()
            };
            let folder = root.join(format!("beamline/bl{i:05}/current"));
            write_file(
                &folder,
                &format!("beamtime-metadata-{id}.json"),
                &text.replace(MEASURED_ID, &id),
            );
        }
        let mut list = Vec::new();
        for k in 1..patterns {
            for i in 0..FOLDERS_PER_MISS {
                fs::create_dir_all(root.join(format!("miss{k}/bl{i:02}"))).expect("scratch folder");
            }
            list.push(format!(
                "{}/miss{k}/*/beamtime-metadata-{{id}}.json",
                root.display()
            ));
        }
        list.push(format!(
            "{}/beamline/*/current/beamtime-metadata-{{id}}.json",
            root.display()
        ));
        let search = SearchPath::parse_list(&list.join(":")).expect("valid patterns");
        let owner = fs::metadata(&root).expect("scratch folder").uid();
        Node {
            root,
            search,
            policy: TrustPolicy {
                owners: vec![owner],
            },
        }
    }

    pub fn search(&self) -> &SearchPath {
        &self.search
    }

    pub fn policy(&self) -> &TrustPolicy {
        &self.policy
    }

    /// The measured beamtime's file.
    pub fn metadata_file(&self) -> PathBuf {
        let last = fs::read_dir(self.root.join("beamline"))
            .expect("beamline folder")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .max()
            .expect("at least one beamline");
        last.join(format!("current/beamtime-metadata-{MEASURED_ID}.json"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Written as the start script writes it: owned by the caller, mode 0644.
fn write_file(folder: &Path, name: &str, text: &str) {
    fs::create_dir_all(folder).expect("scratch folder");
    let path = folder.join(name);
    fs::write(&path, text).expect("scratch file");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("file mode");
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamtime::trust::load_trusted_metadata;

    /// The benchmarks must time the path that succeeds, through every pattern.
    #[test]
    fn the_measured_beamtime_is_found_behind_every_missing_pattern() {
        let node = Node::build(7, 4);
        assert_eq!(node.search().patterns().len(), 4);
        let metadata = load_trusted_metadata(&measured_id(), node.search(), node.policy()).unwrap();
        assert_eq!(metadata.path, node.metadata_file());
        assert_eq!(metadata.id.as_str(), MEASURED_ID);
    }
}
