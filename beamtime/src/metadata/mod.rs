//! The typed model of a beamtime or commissioning metadata file, and its
//! parser.
//!
//! [`parse_metadata`] does no I/O: the SPANK plugin reads the file itself
//! (with its own trust checks) and hands the bytes over; `bt-submit` uses
//! [`crate::discovery::read_metadata_file`].
//!
//! Reading rules, all from the observed file format:
//! - unknown keys are ignored, because the facility adds keys over time;
//! - `null`, the literal string `"None"` and the empty string mean "absent";
//! - the spellings of early 2020 files (`beamline_alias`, `event-start`,
//!   `event-end`, `core-path`, `users.door-db`, ASAP::O token paths inside
//!   `onlineAnalysis`) are accepted;
//! - a key that is present with the wrong type is an error naming its key
//!   path, e.g. `onlineAnalysis.slurmReservation[1]`;
//! - names that end up on command lines or in the plugin's decisions (id,
//!   beamline, nodes, partition, reservations, account) are checked with
//!   [`crate::id::check_name`].

mod error;
mod fields;
mod model;
mod parse;
mod strict_json;

pub use error::{MetadataError, MetadataProblem, MissingKey};
pub use model::{Asapo, Metadata, MetadataKind, Online, OnlineAnalysis, Person, Timestamp, Users};
pub use parse::parse_metadata;

/// Largest metadata file accepted. Real files are a few KiB; the cap keeps a
/// wrong or hostile path from making the reader allocate without bound.
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;
