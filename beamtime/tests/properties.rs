//! The parser returns, never panics, whatever bytes or JSON it is given.

mod common;

use std::path::Path;

use beamtime::metadata::parse_metadata;
use proptest::prelude::*;
use serde_json::{Map, Value};

const ORIGIN: &str = "/gpfs/current/beamtime-metadata-11099001.json";

/// Strings that hit the parser's special cases more often than random text.
fn interesting_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("None".to_owned()),
        Just("11099001".to_owned()),
        Just("11099001_1".to_owned()),
        Just("..".to_owned()),
        Just("2024-03-05 09:00:00".to_owned()),
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        interesting_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((interesting_string(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const KEYS: [&str; 12] = [
    "beamtimeId",
    "beamline",
    "onlineAnalysis",
    "users",
    "asapo",
    "leader",
    "eventStart",
    "corePath",
    "beamline_alias",
    "event-end",
    "title",
    "id",
];
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

proptest! {
    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_metadata(&bytes, Path::new(ORIGIN));
    }

    #[test]
    fn arbitrary_json(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let _ = parse_metadata(&bytes, Path::new(ORIGIN));
    }

    #[test]
    fn fixture_with_one_key_replaced(key in 0..KEYS.len(), online_key in 0..ONLINE_KEYS.len(), value in json_value(), nested in any::<bool>()) {
        let bytes = common::edited_fixture("beamtime-metadata-11099001.json", |document| {
            if nested {
                document["onlineAnalysis"][ONLINE_KEYS[online_key]] = value;
            } else {
                document[KEYS[key]] = value;
            }
        });
        if let Ok(metadata) = parse_metadata(&bytes, Path::new(ORIGIN)) {
            if let Some(online) = metadata.online.ready() {
                prop_assert!(!online.reservations.is_empty());
                prop_assert!(!online.reserved_nodes.is_empty());
            }
        }
    }

    #[test]
    fn truncated_fixture(cut in 0usize..1809) {
        let bytes = common::fixture_bytes("beamtime-metadata-11099001.json");
        let cut = cut.min(bytes.len());
        let result = parse_metadata(&bytes[..cut], Path::new(ORIGIN));
        // Cutting off only the trailing newline leaves the document whole.
        let whole = bytes[cut..].iter().all(u8::is_ascii_whitespace);
        prop_assert!(result.is_err() || whole);
    }
}
