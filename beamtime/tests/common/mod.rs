//! Helpers shared by the integration tests.

#![allow(dead_code)] // each test crate uses a different subset

use std::fs;
use std::path::{Path, PathBuf};

use beamtime::id::BeamtimeId;
use beamtime::metadata::{parse_metadata, Metadata, MetadataError};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    fs::read(fixture(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
}

pub fn id(text: &str) -> BeamtimeId {
    BeamtimeId::parse(text).unwrap_or_else(|error| panic!("{error}"))
}

pub fn parsed(bytes: &[u8], origin: &str) -> Metadata {
    parse_metadata(bytes, Path::new(origin)).unwrap_or_else(|error| panic!("{error}"))
}

pub fn parse_error(bytes: &[u8], origin: &str) -> MetadataError {
    match parse_metadata(bytes, Path::new(origin)) {
        Ok(metadata) => panic!("{origin} should not parse, got {metadata:?}"),
        Err(error) => error,
    }
}

/// A fixture's JSON with one edit applied, for bad-input tests.
pub fn edited_fixture(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut document: serde_json::Value =
        serde_json::from_slice(&fixture_bytes(name)).unwrap_or_else(|error| panic!("{error}"));
    edit(&mut document);
    serde_json::to_vec_pretty(&document).unwrap_or_else(|error| panic!("{error}"))
}

/// A fresh directory (named after `label`, for whoever finds one left by a
/// killed test), removed when dropped.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("beamtime-test-{label}-"))
            .tempdir()
            .unwrap_or_else(|error| panic!("{error}"));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes `contents` at `relative`, creating folders on the way.
    pub fn write(&self, relative: &str, contents: &[u8]) -> PathBuf {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|error| panic!("{error}"));
        }
        fs::write(&path, contents).unwrap_or_else(|error| panic!("{error}"));
        path
    }

    pub fn mkdir(&self, relative: &str) -> PathBuf {
        let path = self.path().join(relative);
        fs::create_dir_all(&path).unwrap_or_else(|error| panic!("{error}"));
        path
    }
}
