//! From the bytes of a metadata file to a [`Metadata`]: size and encoding
//! checks, the kind and id, and the blocks whose keys changed over the years.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::{MetadataError, MetadataProblem, MissingKey};
use super::fields::{type_name, Fields};
use super::model::{Asapo, Metadata, MetadataKind, Online, OnlineAnalysis, Users};
use super::strict_json::{self, StrictError};
use super::MAX_METADATA_BYTES;
use crate::id::{Beamline, BeamtimeId, NameKind};

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
    let document = strict_json::from_str(text).map_err(|error| match error {
        StrictError::Json(error) => {
            let full = error.to_string();
            let location = format!(" at line {} column {}", error.line(), error.column());
            MetadataProblem::Syntax {
                line: error.line(),
                column: error.column(),
                message: full.strip_suffix(&location).unwrap_or(&full).to_owned(),
            }
        }
        StrictError::RepeatedKey { key, line, column } => {
            MetadataProblem::RepeatedKey { key, line, column }
        }
    })?;
    let Value::Object(top) = &document else {
        return Err(MetadataProblem::NotAnObject {
            found: type_name(&document),
        });
    };
    let top = Fields::top(top);
    let folder = origin.parent().unwrap_or(Path::new(""));

    let name_says = origin
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(MetadataKind::from_file_name);
    let kind = match name_says {
        Some((kind, _)) => kind,
        None if top.lookup(&["beamtimeId"])?.is_none() && top.lookup(&["id"])?.is_some() => {
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

/// The keys the format has in an `onlineAnalysis` block.
const ONLINE_KEYS: [&str; 8] = [
    "reservedNodes",
    "slurmPartition",
    "slurmReservation",
    "userAccount",
    "sshPrivateKeyPath",
    "sshPublicKeyPath",
    "asapoBeamtimeTokenPath",
    "asapoBeamtimeClbtTokenPath",
];

fn online_analysis(block: &Fields<'_>, folder: &Path) -> Result<Online, MetadataProblem> {
    // Every present value is checked even before start, so a damaged block is
    // reported as damaged rather than mistaken for "not yet".
    let reserved_nodes = block.names(&["reservedNodes"], NameKind::Node)?;
    let partition = block.name(&["slurmPartition"], NameKind::Partition)?;
    let reservations = block.names(&["slurmReservation"], NameKind::Reservation)?;
    let user_account = block.name(&["userAccount"], NameKind::UserAccount)?;
    let ssh_private_key = block.path(&["sshPrivateKeyPath"], folder)?;
    let ssh_public_key = block.path(&["sshPublicKeyPath"], folder)?;
    let needed = [
        ("reservedNodes", !reserved_nodes.is_empty()),
        ("slurmPartition", partition.is_some()),
        ("slurmReservation", !reservations.is_empty()),
        ("userAccount", user_account.is_some()),
    ];
    let missing = missing_keys(block, &needed);
    // Before start the facility leaves the nodes, the reservation and the
    // account empty together (the partition may be there already); once any
    // of them is set, the resources exist and a missing one is a mistake in
    // the file, not "not yet" — and so is a missing key whose misspelling
    // holds a value.
    let set_up = !reserved_nodes.is_empty() || !reservations.is_empty() || user_account.is_some();
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
            if set_up || missing.iter().any(|key| key.look_alike.is_some()) {
                return Err(MetadataProblem::IncompleteOnline { missing });
            }
            log::debug!("onlineAnalysis is incomplete: online resources are not ready yet");
            Ok(Online::NotYet)
        }
    }
}

/// Each needed key without a value, with the block's key (not one of the
/// format's) that looks like a misspelling of it.
fn missing_keys(block: &Fields<'_>, needed: &[(&str, bool)]) -> Vec<MissingKey> {
    let strangers: Vec<&str> = block
        .present_keys()
        .into_iter()
        .filter(|key| !ONLINE_KEYS.contains(key))
        .collect();
    needed
        .iter()
        .filter(|(_, present)| !present)
        .map(|(key, _)| MissingKey {
            key: block.key(key),
            look_alike: strangers
                .iter()
                .find(|stranger| crate::spelling::edit_distance(stranger, key) <= 2)
                .map(|stranger| block.key(stranger)),
        })
        .collect()
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
