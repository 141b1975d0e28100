//! The model of a metadata file: its kind, its fields and the online
//! resources it may name. Values here are built by
//! [`parse_metadata`](super::parse_metadata).

use std::fmt;
use std::path::PathBuf;

use crate::id::{Beamline, BeamtimeId};

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

    pub(super) fn id_key(self) -> &'static str {
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
/// name in them passed [`check_name`](crate::id::check_name). Reservations
/// keep the file's order (the first is the default) without duplicates.
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
    /// How to log in as the beamtime account, as one shell command line: the
    /// one hint every part prints (the node's refusal, doctor, plan, show).
    /// The metadata's key is named only if it is there to use: a hint to a
    /// missing file sends users after the wrong problem (a look at the file
    /// system for a hint only, never for a decision).
    pub fn ssh_command(&self) -> String {
        let mut args = vec!["ssh".to_owned()];
        if let Some(key) = self.ssh_private_key.as_ref().filter(|key| key.is_file()) {
            args.push("-i".to_owned());
            args.push(key.to_string_lossy().into_owned());
        }
        args.push("-l".to_owned());
        args.push(self.user_account.clone());
        args.extend(self.reserved_nodes.first().cloned());
        crate::shell::join(args.iter().map(String::as_str))
    }
}

/// Whether the beamtime's online resources exist yet.
///
/// Before a beamtime starts the `onlineAnalysis` block may be missing, or hold
/// nulls and empty lists (and perhaps the partition): the resources are
/// [`Online::NotYet`], never half-filled. A block that names nodes, a
/// reservation or an account but not all four keys a job needs is no "not
/// yet" but a damaged file (`MetadataProblem::IncompleteOnline`).
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
