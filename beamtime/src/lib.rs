//! Beamtime metadata files of DESY's ASAP3 storage: one typed model for
//! beamtime (`beamtime-metadata-<id>.json`) and commissioning
//! (`commissioning-metadata-<id>.json`) files, strict validation of
//! everything that reaches command lines or access decisions, and discovery
//! of the file for a beamtime.
//!
//! - [`id`]: validated names ([`id::BeamtimeId`], [`id::Beamline`], and the
//!   rules for accounts, partitions, reservations and nodes).
//! - [`metadata`]: the model and [`metadata::parse_metadata`], which does no
//!   I/O, so a privileged caller can read the file under its own rules and
//!   hand over the bytes.
//! - [`discovery`]: search patterns, lookup by id or from a working
//!   directory, and [`discovery::read_metadata_file`] for user-side tools.
//! - [`shell`]: POSIX shell quoting for commands shown to people.
//! - [`untrusted`]: how a value from a user or a file is shown in messages
//!   and log lines (escaped and bounded).
//!
//! # Search path configuration
//!
//! A beamtime id is looked up through an ordered list of patterns: absolute
//! paths containing `{id}`, where `*` matches within one path component (no
//! `**`, no `..` components). The first pattern that matches anything wins;
//! two different files from that pattern are an error. The defaults are
//! [`discovery::DEFAULT_PATTERNS`].
//!
//! User-side tools take the list from, in this order:
//! 1. `BEAMTIME_METADATA_PATH`: colon-separated patterns;
//! 2. the config file `$BT_SUBMIT_CONFIG` (which must then exist), or
//!    `/etc/beamtime/bt-submit.conf` (optional);
//! 3. the defaults.
//!
//! The config file holds one pattern per `metadata_path` line, in search
//! order; blank lines and lines starting with `#` are ignored, any other key
//! is an error. A file without `metadata_path` lines keeps the defaults.
//!
//! ```text
//! # /etc/beamtime/bt-submit.conf
//! metadata_path = /beamline/*/current/beamtime-metadata-{id}.json
//! metadata_path = /asap3/*/gpfs/*/*/data/{id}/beamtime-metadata-{id}.json
//! ```

// Public for bt-submit, which reads its own config file the same way.
pub mod capped;
pub mod discovery;
pub mod id;
pub mod job_cache;
pub mod metadata;
pub mod pattern;
pub mod plugin_config;
pub mod policy;
pub mod problem;
pub mod requested;
pub mod shell;
pub mod trust;
pub mod untrusted;
pub mod users;
pub mod walk;
