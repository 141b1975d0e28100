//! The decisions of spank-beamtime, as plain values and without Slurm: what a
//! beamtime's metadata says, where its file is and whether it may be trusted,
//! what the plugin's plugstack line means, and whether a job may run as a
//! beamtime on a node. The SPANK plugin gathers facts on the node and asks
//! here; bt-submit asks the same functions before it submits.
//!
//! From the bottom up (each module uses only those above it in this list):
//! - [`untrusted`]: how a value from a user or a file is shown in messages
//!   and log lines (escaped and bounded); [`shell`]: POSIX shell quoting for
//!   commands shown to people; [`spelling`]: how near a typo is to a word.
//! - [`problem`]: one shape for "what is wrong and what to do", and the one
//!   wording of [`problem::ASK_THE_ADMINS`].
//! - [`id`]: validated names ([`id::BeamtimeId`], [`id::Beamline`], and the
//!   rules for accounts, partitions, reservations and nodes).
//! - [`users`]: the user database (NSS), answered or not.
//! - [`metadata`]: the model and [`metadata::parse_metadata`], which does no
//!   I/O, so a privileged caller can read the file under its own rules and
//!   hand over the bytes.
//! - [`pattern`] and [`discovery`]: search patterns, lookup by id or from a
//!   working directory, and [`discovery::read_metadata_file`] for user-side
//!   tools.
//! - [`walk`]: opening a path from `/` without following links not trusted;
//!   [`capped`]: reading a file of bounded size (the plugin's metadata, and
//!   bt-submit's config file).
//! - [`plugin_config`]: the plugin's plugstack line, parsed.
//! - [`refusal`]: the node's [`refusal::Rule`]s and the [`refusal::Refusal`]
//!   (a rule and a [`problem::Problem`]); [`facts`]: the facts the node's
//!   decision is made from, and the trait through which it asks for them.
//! - [`trust`]: reading a metadata file the way a root process must, and
//!   finding the trusted one for an id; [`beamline`]: what a beamline's folder
//!   on the node holds.
//! - [`requested`]: the reservation a job asked for; [`job_cache`]: the
//!   node's cache of controller answers.
//! - [`policy`]: the node's decision ([`policy::decide`]) and the checks on
//!   who submits ([`policy::check_submitter`]), from the facts above.
//!
//! # Search path configuration
//!
//! A beamtime id is looked up through an ordered list of patterns: absolute
//! paths containing `{id}`, where `*` matches within one path component (no
//! `**`, no `..` components). The first pattern that matches anything wins;
//! two different files from that pattern are an error. The defaults are
//! [`discovery::DEFAULT_PATTERNS`].
//!
//! Where a user-side tool takes the list from is the tool's own business:
//! bt-submit reads `BEAMTIME_METADATA_PATH` or its config file
//! (bt-submit/src/site/user_config.rs, `bt-submit(1)`); the plugin takes its
//! patterns from its plugstack line ([`plugin_config`]).

pub mod beamline;
// Public for bt-submit, which reads its own config file the same way.
pub mod capped;
pub mod discovery;
pub mod facts;
pub mod id;
pub mod job_cache;
pub mod metadata;
pub mod pattern;
pub mod plugin_config;
pub mod policy;
pub mod problem;
pub mod refusal;
pub mod requested;
pub mod shell;
pub mod spelling;
pub mod trust;
pub mod untrusted;
pub mod users;
pub mod walk;
