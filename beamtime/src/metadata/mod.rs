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

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::id::{check_name, shown, Beamline, BeamtimeId, IdError, NameKind};

/// Largest metadata file accepted. Real files are a few KiB; the cap keeps a
/// wrong or hostile path from making the reader allocate without bound.
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;

/// Whether the file describes a user beamtime or a commissioning run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetadataKind {
    Beamtime,
    Commissioning,
}

impl MetadataKind {
    pub fn file_prefix(self) -> &'static str {
        match self {
            MetadataKind::Beamtime => "beamtime-metadata-",
            MetadataKind::Commissioning => "commissioning-metadata-",
        }
    }

    /// The name the facility gives the file, e.g. `beamtime-metadata-11099001.json`.
    pub fn file_name(self, id: &BeamtimeId) -> String {
        format!("{}{id}.json", self.file_prefix())
    }

    /// Splits a file name of the form `<prefix><id>.json` into kind and id
    /// text; the id text is not validated.
    pub fn from_file_name(name: &str) -> Option<(MetadataKind, &str)> {
        [MetadataKind::Beamtime, MetadataKind::Commissioning]
            .into_iter()
            .find_map(|kind| {
                let id = name
                    .strip_prefix(kind.file_prefix())?
                    .strip_suffix(".json")?;
                (!id.is_empty()).then_some((kind, id))
            })
    }

    fn id_key(self) -> &'static str {
        match self {
            MetadataKind::Beamtime => "beamtimeId",
            MetadataKind::Commissioning => "id",
        }
    }
}

impl fmt::Display for MetadataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetadataKind::Beamtime => "beamtime",
            MetadataKind::Commissioning => "commissioning",
        })
    }
}

/// A facility timestamp, `YYYY-MM-DD HH:MM:SS` in local time with no zone.
/// Fields are ordered so that the derived ordering is chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl Timestamp {
    /// Parses `YYYY-MM-DD HH:MM:SS`; a `T` between date and time is accepted too.
    pub fn parse(text: &str) -> Option<Timestamp> {
        let bytes = text.as_bytes();
        if bytes.len() != 19
            || bytes[4] != b'-'
            || bytes[7] != b'-'
            || !matches!(bytes[10], b' ' | b'T')
            || bytes[13] != b':'
            || bytes[16] != b':'
        {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<u16> {
            let digits = &bytes[range];
            digits.iter().all(u8::is_ascii_digit).then(|| {
                digits
                    .iter()
                    .fold(0u16, |value, digit| value * 10 + u16::from(digit - b'0'))
            })
        };
        let small = |range| number(range).and_then(|value| u8::try_from(value).ok());
        let timestamp = Timestamp {
            year: number(0..4)?,
            month: small(5..7)?,
            day: small(8..10)?,
            hour: small(11..13)?,
            minute: small(14..16)?,
            second: small(17..19)?,
        };
        let plausible = (1..=12).contains(&timestamp.month)
            && (1..=31).contains(&timestamp.day)
            && timestamp.hour < 24
            && timestamp.minute < 60
            && timestamp.second < 60;
        plausible.then_some(timestamp)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// `applicant`, `leader` or `pi`; any field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    pub email: Option<String>,
    pub institute: Option<String>,
    pub lastname: Option<String>,
    pub user_id: Option<String>,
    pub username: Option<String>,
}

/// Account names of the beamtime's participants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    pub door_db: Vec<String>,
    pub special: Vec<String>,
    pub unknown: Vec<String>,
}

/// ASAP::O settings; token paths are resolved against the metadata file's folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asapo {
    pub endpoint: Option<String>,
    pub beamtime_token_path: Option<PathBuf>,
    pub beamtime_clbt_token_path: Option<PathBuf>,
}

/// The online analysis resources of a running beamtime.
///
/// As parsed, `reserved_nodes` and `reservations` are non-empty, and every
/// name in them passed [`check_name`]. Reservations keep the file's order
/// (the first is the default) without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineAnalysis {
    pub reserved_nodes: Vec<String>,
    pub partition: String,
    pub reservations: Vec<String>,
    pub user_account: String,
    pub ssh_private_key: Option<PathBuf>,
    pub ssh_public_key: Option<PathBuf>,
}

impl OnlineAnalysis {
    /// How to log in as the beamtime account, as an argument list starting
    /// with `ssh`; the key option is left out when the file names no key.
    pub fn ssh_login_args(&self) -> Vec<String> {
        let mut args = vec!["ssh".to_owned()];
        if let Some(key) = &self.ssh_private_key {
            args.push("-i".to_owned());
            args.push(key.to_string_lossy().into_owned());
        }
        args.push("-l".to_owned());
        args.push(self.user_account.clone());
        args.extend(self.reserved_nodes.first().cloned());
        args
    }

    /// [`OnlineAnalysis::ssh_login_args`] as one shell command line.
    pub fn ssh_command(&self) -> String {
        crate::shell::join(self.ssh_login_args().iter().map(String::as_str))
    }
}

/// Whether the beamtime's online resources exist yet.
///
/// Before a beamtime starts the `onlineAnalysis` block may be missing, or hold
/// nulls and empty lists; until it names nodes, a partition, a reservation
/// and an account, the resources are [`Online::NotYet`], never half-filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Online {
    NotYet,
    Ready(OnlineAnalysis),
}

impl Online {
    pub fn ready(&self) -> Option<&OnlineAnalysis> {
        match self {
            Online::NotYet => None,
            Online::Ready(online) => Some(online),
        }
    }
}

/// One parsed metadata file of either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: MetadataKind,
    /// The file this was parsed from, as given to the parser.
    pub path: PathBuf,
    pub id: BeamtimeId,
    pub beamline: Beamline,
    /// `beamlineAlias` (e.g. `P21.1`); when the file has none, the original
    /// spelling of `beamline` if that was not already lower-case (`P11`).
    pub beamline_alias: Option<String>,
    pub beamline_setup: Option<String>,
    pub title: Option<String>,
    /// Commissioning runs only.
    pub tag: Option<String>,
    pub contact: Option<String>,
    pub core_path: Option<PathBuf>,
    pub event_start: Option<Timestamp>,
    pub event_end: Option<Timestamp>,
    pub facility: Option<String>,
    pub generated: Option<Timestamp>,
    pub applicant: Option<Person>,
    pub leader: Option<Person>,
    pub pi: Option<Person>,
    pub proposal_id: Option<String>,
    pub proposal_type: Option<String>,
    pub retention_period: Option<String>,
    pub unix_id: Option<String>,
    pub users: Users,
    pub asapo: Option<Asapo>,
    pub online: Online,
}

impl Metadata {
    /// Where reserved compute nodes see the beamline filesystem of this
    /// beamtime: `/beamline/<beamline>/current`.
    pub fn beamline_current_path(&self) -> PathBuf {
        Path::new("/beamline")
            .join(self.beamline.as_str())
            .join("current")
    }
}

/// What is wrong with a metadata file. Key paths look like
/// `onlineAnalysis.slurmReservation[1]`.
#[derive(Debug)]
#[non_exhaustive]
pub enum MetadataProblem {
    Unreadable(io::Error),
    NotAFile {
        found: &'static str,
    },
    TooLarge {
        size: u64,
    },
    NotUtf8 {
        line: usize,
        column: usize,
    },
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    NotAnObject {
        found: &'static str,
    },
    Missing {
        key: String,
        expected: &'static str,
    },
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    InvalidName {
        key: String,
        error: IdError,
    },
    InvalidValue {
        key: String,
        expected: &'static str,
        value: String,
    },
    IdMismatch {
        file_id: String,
        key: &'static str,
        content_id: String,
    },
}

/// A metadata file that could not be read or understood, with the file's path.
#[derive(Debug)]
pub struct MetadataError {
    path: PathBuf,
    problem: MetadataProblem,
}

impl MetadataError {
    pub fn new(path: &Path, problem: MetadataProblem) -> MetadataError {
        MetadataError {
            path: path.to_owned(),
            problem,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn problem(&self) -> &MetadataProblem {
        &self.problem
    }

    /// True when the file could not be read at all, as opposed to read and
    /// found wrong.
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self.problem,
            MetadataProblem::Unreadable(_) | MetadataProblem::NotAFile { .. }
        )
    }
}

/// The facility writes these files, so users can only report problems.
const REPORT_TO_STAFF: &str = "report the file to the beamline staff";

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            MetadataProblem::Unreadable(error) => write!(
                f,
                "{path}: cannot read the metadata file: {error}; check the path and its permissions"
            ),
            MetadataProblem::NotAFile { found } => write!(
                f,
                "{path}: expected a metadata file, found {found}; give the path of the JSON file itself"
            ),
            MetadataProblem::TooLarge { size } => write!(
                f,
                "{path}: the file has {size} bytes, more than the {MAX_METADATA_BYTES} a metadata \
                 file may have; this is not a beamtime metadata file, check the path"
            ),
            MetadataProblem::NotUtf8 { line, column } => write!(
                f,
                "{path}:{line}:{column}: expected UTF-8 text, found an invalid byte; {REPORT_TO_STAFF}"
            ),
            MetadataProblem::Syntax {
                line,
                column,
                message,
            } => write!(
                f,
                "{path}:{line}:{column}: invalid JSON: {message}; the file is damaged or cut off, \
                 {REPORT_TO_STAFF}"
            ),
            MetadataProblem::NotAnObject { found } => write!(
                f,
                "{path}: expected a JSON object at the top level, found {found}; {REPORT_TO_STAFF}"
            ),
            MetadataProblem::Missing { key, expected } => write!(
                f,
                "{path}: {key}: missing, expected {expected}; {REPORT_TO_STAFF}"
            ),
            MetadataProblem::WrongType {
                key,
                expected,
                found,
            } => write!(
                f,
                "{path}: {key}: expected {expected}, found {found}; {REPORT_TO_STAFF}"
            ),
            MetadataProblem::InvalidName { key, error } => {
                write!(f, "{path}: {key}: {error}; {REPORT_TO_STAFF}")
            }
            MetadataProblem::InvalidValue {
                key,
                expected,
                value,
            } => write!(
                f,
                "{path}: {key}: expected {expected}, found {value}; {REPORT_TO_STAFF}"
            ),
            MetadataProblem::IdMismatch {
                file_id,
                key,
                content_id,
            } => write!(
                f,
                "{path}: the file name says {} but {key} is {}; the file was renamed or copied \
                 from another beamtime, use the metadata file of the beamtime itself",
                shown(file_id),
                shown(content_id)
            ),
        }
    }
}

impl std::error::Error for MetadataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            MetadataProblem::Unreadable(error) => Some(error),
            MetadataProblem::InvalidName { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A JSON document read with repeated object keys refused. serde_json keeps the
/// last of two equal keys without a word, and a file with two `beamline` values
/// means one thing to this parser and maybe another to the facility's tools or a
/// person reading it: the start script never writes one, so it is refused.
struct NoDuplicateKeys(Value);

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(StrictValue)
            .map(NoDuplicateKeys)
    }
}

struct StrictValue;

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(NoDuplicateKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key \"{}\" (a key may appear once per object)",
                    key.escape_default()
                )));
            }
            let NoDuplicateKeys(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Parses the bytes of a metadata file. `origin` names the file in errors,
/// decides the kind when the file name has the facility's form (and is then
/// checked against the id inside), and is the folder that relative paths in
/// the file are resolved against. No I/O happens here.
pub fn parse_metadata(bytes: &[u8], origin: &Path) -> Result<Metadata, MetadataError> {
    parse_document(bytes, origin).map_err(|problem| MetadataError::new(origin, problem))
}

fn parse_document(bytes: &[u8], origin: &Path) -> Result<Metadata, MetadataProblem> {
    if bytes.len() > MAX_METADATA_BYTES {
        return Err(MetadataProblem::TooLarge {
            size: bytes.len() as u64,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let valid = &bytes[..error.valid_up_to()];
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        MetadataProblem::NotUtf8 {
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
            column: String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count()
                + 1,
        }
    })?;
    let document = serde_json::from_str::<NoDuplicateKeys>(text)
        .map(|d| d.0)
        .map_err(|error| {
            let full = error.to_string();
            let location = format!(" at line {} column {}", error.line(), error.column());
            MetadataProblem::Syntax {
                line: error.line(),
                column: error.column(),
                message: full.strip_suffix(&location).unwrap_or(&full).to_owned(),
            }
        })?;
    let Value::Object(top) = &document else {
        return Err(MetadataProblem::NotAnObject {
            found: type_name(&document),
        });
    };
    let top = Fields {
        map: top,
        at: String::new(),
    };
    let folder = origin.parent().unwrap_or(Path::new(""));

    let name_says = origin
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(MetadataKind::from_file_name);
    let kind = match name_says {
        Some((kind, _)) => kind,
        None if top.lookup(&["beamtimeId"]).is_none() && top.lookup(&["id"]).is_some() => {
            MetadataKind::Commissioning
        }
        None => MetadataKind::Beamtime,
    };
    let id_key = kind.id_key();
    let id_text = top.required_text(&[id_key], "the beamtime id")?;
    if let Some((_, file_id)) = name_says {
        if file_id != id_text {
            return Err(MetadataProblem::IdMismatch {
                file_id: file_id.to_owned(),
                key: id_key,
                content_id: id_text.to_owned(),
            });
        }
    }
    let id = BeamtimeId::parse(id_text).map_err(|error| MetadataProblem::InvalidName {
        key: top.key(id_key),
        error,
    })?;
    let beamline_text = top.required_text(&["beamline"], "the beamline, e.g. \"p11\"")?;
    let beamline =
        Beamline::parse(beamline_text).map_err(|error| MetadataProblem::InvalidName {
            key: top.key("beamline"),
            error,
        })?;
    let beamline_alias = match top.text(&["beamlineAlias", "beamline_alias"])? {
        Some(alias) => Some(alias.to_owned()),
        None => (beamline_text != beamline.as_str()).then(|| beamline_text.to_owned()),
    };

    let online_block = top.object(&["onlineAnalysis"])?;
    let online = match &online_block {
        Some(block) => online_analysis(block, folder)?,
        None => Online::NotYet,
    };
    let asapo = asapo(&top, online_block.as_ref(), folder)?;

    Ok(Metadata {
        kind,
        path: origin.to_owned(),
        id,
        beamline,
        beamline_alias,
        beamline_setup: top.owned_text(&["beamlineSetup"])?,
        title: top.owned_text(&["title"])?,
        tag: top.owned_text(&["tag"])?,
        contact: top.owned_text(&["contact"])?,
        core_path: top.text(&["corePath", "core-path"])?.map(PathBuf::from),
        event_start: top.timestamp(&["eventStart", "event-start"])?,
        event_end: top.timestamp(&["eventEnd", "event-end"])?,
        facility: top.owned_text(&["facility"])?,
        generated: top.timestamp(&["generated"])?,
        applicant: top.person("applicant")?,
        leader: top.person("leader")?,
        pi: top.person("pi")?,
        proposal_id: top.owned_text(&["proposalId"])?,
        proposal_type: top.owned_text(&["proposalType"])?,
        retention_period: top.owned_text(&["retentionPeriod"])?,
        unix_id: top.owned_text(&["unixId"])?,
        users: match top.object(&["users"])? {
            Some(users) => Users {
                door_db: users.text_list(&["doorDb", "door-db"])?,
                special: users.text_list(&["special"])?,
                unknown: users.text_list(&["unknown"])?,
            },
            None => Users::default(),
        },
        asapo,
        online,
    })
}

fn online_analysis(block: &Fields<'_>, folder: &Path) -> Result<Online, MetadataProblem> {
    // Every present value is checked even before start, so a damaged block is
    // reported as damaged rather than mistaken for "not yet".
    let reserved_nodes = block.names(&["reservedNodes"], NameKind::Node)?;
    let partition = block.name(&["slurmPartition"], NameKind::Partition)?;
    let reservations = block.names(&["slurmReservation"], NameKind::Reservation)?;
    let user_account = block.name(&["userAccount"], NameKind::UserAccount)?;
    let ssh_private_key = block.path(&["sshPrivateKeyPath"], folder)?;
    let ssh_public_key = block.path(&["sshPublicKeyPath"], folder)?;
    match (partition, user_account) {
        (Some(partition), Some(user_account))
            if !reserved_nodes.is_empty() && !reservations.is_empty() =>
        {
            Ok(Online::Ready(OnlineAnalysis {
                reserved_nodes,
                partition,
                reservations,
                user_account,
                ssh_private_key,
                ssh_public_key,
            }))
        }
        _ => {
            log::debug!("onlineAnalysis is incomplete: online resources are not ready yet");
            Ok(Online::NotYet)
        }
    }
}

fn asapo(
    top: &Fields<'_>,
    online_block: Option<&Fields<'_>>,
    folder: &Path,
) -> Result<Option<Asapo>, MetadataProblem> {
    let current = match top.object(&["asapo"])? {
        Some(block) => Some(Asapo {
            endpoint: block.owned_text(&["endpoint"])?,
            beamtime_token_path: block.path(&["beamtimeTokenPath"], folder)?,
            beamtime_clbt_token_path: block.path(&["beamtimeClbtTokenPath"], folder)?,
        }),
        None => None,
    };
    // Before 2021-10-27 the token paths sat inside onlineAnalysis.
    let legacy = match online_block {
        Some(block) => Asapo {
            endpoint: None,
            beamtime_token_path: block.path(&["asapoBeamtimeTokenPath"], folder)?,
            beamtime_clbt_token_path: block.path(&["asapoBeamtimeClbtTokenPath"], folder)?,
        },
        None => Asapo::default(),
    };
    Ok(match current {
        Some(current) => Some(Asapo {
            endpoint: current.endpoint,
            beamtime_token_path: current.beamtime_token_path.or(legacy.beamtime_token_path),
            beamtime_clbt_token_path: current
                .beamtime_clbt_token_path
                .or(legacy.beamtime_clbt_token_path),
        }),
        None => (legacy != Asapo::default()).then_some(legacy),
    })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn is_absent(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty() || text == "None",
        _ => false,
    }
}

/// One JSON object of the file together with its key path, so every error
/// can say where it is.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

impl<'a> Fields<'a> {
    fn key(&self, name: &str) -> String {
        if self.at.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.at)
        }
    }

    /// The first of the accepted spellings that holds a present value.
    fn lookup(&self, spellings: &[&str]) -> Option<(String, &'a Value)> {
        spellings.iter().find_map(|spelling| {
            self.map
                .get(*spelling)
                .filter(|value| !is_absent(value))
                .map(|value| (self.key(spelling), value))
        })
    }

    /// A present string value together with the key path it was found at.
    fn text_entry(&self, spellings: &[&str]) -> Result<Option<(String, &'a str)>, MetadataProblem> {
        match self.lookup(spellings) {
            None => Ok(None),
            Some((key, Value::String(text))) => Ok(Some((key, text))),
            Some((key, other)) => Err(MetadataProblem::WrongType {
                key,
                expected: "a string",
                found: type_name(other),
            }),
        }
    }

    fn text(&self, spellings: &[&str]) -> Result<Option<&'a str>, MetadataProblem> {
        Ok(self.text_entry(spellings)?.map(|(_, text)| text))
    }

    fn owned_text(&self, spellings: &[&str]) -> Result<Option<String>, MetadataProblem> {
        Ok(self.text(spellings)?.map(str::to_owned))
    }

    fn required_text(
        &self,
        spellings: &[&str],
        expected: &'static str,
    ) -> Result<&'a str, MetadataProblem> {
        self.text(spellings)?
            .ok_or_else(|| MetadataProblem::Missing {
                key: self.key(spellings[0]),
                expected,
            })
    }

    fn object(&self, spellings: &[&str]) -> Result<Option<Fields<'a>>, MetadataProblem> {
        match self.lookup(spellings) {
            None => Ok(None),
            Some((key, Value::Object(map))) => Ok(Some(Fields { map, at: key })),
            Some((key, other)) => Err(MetadataProblem::WrongType {
                key,
                expected: "an object",
                found: type_name(other),
            }),
        }
    }

    fn name(&self, spellings: &[&str], kind: NameKind) -> Result<Option<String>, MetadataProblem> {
        let Some((key, text)) = self.text_entry(spellings)? else {
            return Ok(None);
        };
        check_name(kind, text).map_err(|error| MetadataProblem::InvalidName { key, error })?;
        Ok(Some(text.to_owned()))
    }

    /// A string or a list of strings, each a valid `kind` name; duplicates
    /// are dropped, the first occurrence keeps its place.
    fn names(&self, spellings: &[&str], kind: NameKind) -> Result<Vec<String>, MetadataProblem> {
        let checked = |key: String, text: &str| {
            check_name(kind, text)
                .map(|()| text.to_owned())
                .map_err(|error| MetadataProblem::InvalidName { key, error })
        };
        let mut names: Vec<String> = Vec::new();
        match self.lookup(spellings) {
            None => {}
            Some((key, Value::String(text))) => names.push(checked(key, text)?),
            Some((key, Value::Array(items))) => {
                for (index, item) in items.iter().enumerate() {
                    let item_key = format!("{key}[{index}]");
                    let Value::String(text) = item else {
                        return Err(MetadataProblem::WrongType {
                            key: item_key,
                            expected: "a string",
                            found: type_name(item),
                        });
                    };
                    let name = checked(item_key, text)?;
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
            Some((key, other)) => {
                return Err(MetadataProblem::WrongType {
                    key,
                    expected: "a string or a list of strings",
                    found: type_name(other),
                })
            }
        }
        Ok(names)
    }

    fn text_list(&self, spellings: &[&str]) -> Result<Vec<String>, MetadataProblem> {
        match self.lookup(spellings) {
            None => Ok(Vec::new()),
            Some((key, Value::Array(items))) => items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(MetadataProblem::WrongType {
                        key: format!("{key}[{index}]"),
                        expected: "a string",
                        found: type_name(other),
                    }),
                })
                .collect(),
            Some((key, other)) => Err(MetadataProblem::WrongType {
                key,
                expected: "a list of strings",
                found: type_name(other),
            }),
        }
    }

    /// A path; relative ones are taken from the metadata file's folder.
    fn path(&self, spellings: &[&str], folder: &Path) -> Result<Option<PathBuf>, MetadataProblem> {
        let Some((key, text)) = self.text_entry(spellings)? else {
            return Ok(None);
        };
        if text.chars().any(char::is_control) {
            return Err(MetadataProblem::InvalidValue {
                key,
                expected: "a path without control characters",
                value: shown(text),
            });
        }
        Ok(Some(folder.join(text)))
    }

    fn timestamp(&self, spellings: &[&str]) -> Result<Option<Timestamp>, MetadataProblem> {
        let Some((key, text)) = self.text_entry(spellings)? else {
            return Ok(None);
        };
        Timestamp::parse(text)
            .map(Some)
            .ok_or_else(|| MetadataProblem::InvalidValue {
                key,
                expected: "a time like \"2024-03-05 09:00:00\"",
                value: shown(text),
            })
    }

    fn person(&self, name: &str) -> Result<Option<Person>, MetadataProblem> {
        let Some(person) = self.object(&[name])? else {
            return Ok(None);
        };
        Ok(Some(Person {
            email: person.owned_text(&["email"])?,
            institute: person.owned_text(&["institute"])?,
            lastname: person.owned_text(&["lastname"])?,
            user_id: person.owned_text(&["userId"])?,
            username: person.owned_text(&["username"])?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_and_print_in_the_facility_format() {
        let parsed = Timestamp::parse("2024-03-05 09:00:00");
        assert_eq!(
            parsed.map(|t| t.to_string()).as_deref(),
            Some("2024-03-05 09:00:00")
        );
        assert_eq!(Timestamp::parse("2024-03-05T09:00:00"), parsed);
        for bad in [
            "2024-13-05 09:00:00",
            "2024-03-05 24:00:00",
            "2024-03-05",
            "2024-03-05 9:00:000",
            "２０２４-03-05 09:00",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
        assert!(Timestamp::parse("2024-03-05 09:00:00") < Timestamp::parse("2024-03-08 08:00:00"));
    }

    #[test]
    fn file_names_tell_kind_and_id() {
        assert_eq!(
            MetadataKind::from_file_name("beamtime-metadata-11099001.json"),
            Some((MetadataKind::Beamtime, "11099001"))
        );
        assert_eq!(
            MetadataKind::from_file_name("commissioning-metadata-c1.json"),
            Some((MetadataKind::Commissioning, "c1"))
        );
        assert_eq!(
            MetadataKind::from_file_name("beamtime-metadata-.json"),
            None
        );
        assert_eq!(
            MetadataKind::from_file_name("beamtime-metadata-1.json~"),
            None
        );
        assert_eq!(MetadataKind::from_file_name("metadata.json"), None);
    }
}
