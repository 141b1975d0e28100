//! Every fixture file parses into the model it describes.

mod common;

use std::fs;
use std::path::PathBuf;

use beamtime::discovery::read_metadata_file;
use beamtime::metadata::{Metadata, MetadataKind, Online, OnlineAnalysis, Timestamp};
use common::{fixture, fixtures};

fn read(name: &str) -> Metadata {
    read_metadata_file(&fixture(name)).unwrap_or_else(|error| panic!("{error}"))
}

fn ready(metadata: &Metadata) -> &OnlineAnalysis {
    match &metadata.online {
        Online::Ready(online) => online,
        Online::NotYet => panic!("{} should have online resources", metadata.id),
    }
}

fn time(text: &str) -> Option<Timestamp> {
    Timestamp::parse(text)
}

#[test]
fn every_fixture_parses_and_names_its_own_id() {
    let mut count = 0;
    for entry in fs::read_dir(fixtures()).unwrap_or_else(|error| panic!("{error}")) {
        let path = entry.unwrap_or_else(|error| panic!("{error}")).path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let Some((kind, id)) = MetadataKind::from_file_name(name) else {
            continue;
        };
        let metadata = read_metadata_file(&path).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(metadata.kind, kind, "{name}");
        assert_eq!(metadata.id.as_str(), id, "{name}");
        assert_eq!(metadata.path, path);
        count += 1;
    }
    assert!(count >= 7, "only {count} fixtures found");
}

#[test]
fn normal_beamtime() {
    let metadata = read("beamtime-metadata-11099001.json");
    assert_eq!(metadata.kind, MetadataKind::Beamtime);
    assert_eq!(metadata.beamline.as_str(), "p11");
    assert_eq!(metadata.beamline_alias.as_deref(), Some("P11"));
    assert_eq!(
        metadata.title.as_deref(),
        Some("Ligand soaking series on a model protein")
    );
    assert_eq!(metadata.facility.as_deref(), Some("PETRA III"));
    assert_eq!(metadata.event_start, time("2024-03-05 09:00:00"));
    assert_eq!(metadata.event_end, time("2024-03-08 09:00:00"));
    assert_eq!(metadata.generated, time("2024-03-05 08:41:17"));
    assert_eq!(
        metadata.core_path,
        Some(PathBuf::from("/asap3/petra3/gpfs/p11/2024/data/11099001"))
    );
    assert_eq!(metadata.proposal_id.as_deref(), Some("20239001"));
    assert_eq!(metadata.proposal_type.as_deref(), Some("I"));
    assert_eq!(metadata.retention_period.as_deref(), Some("default"));
    assert_eq!(metadata.contact.as_deref(), Some("Jan Probe"));
    assert_eq!(metadata.unix_id, None, "\"None\" means absent");
    assert_eq!(metadata.users.door_db, ["beispiee", "musterma", "probej"]);
    assert!(metadata.users.special.is_empty() && metadata.users.unknown.is_empty());
    let leader = metadata.leader.as_ref().unwrap_or_else(|| panic!("leader"));
    assert_eq!(leader.username.as_deref(), Some("musterma"));
    assert_eq!(leader.user_id.as_deref(), Some("90002"));
    assert_eq!(
        metadata.pi.as_ref().and_then(|pi| pi.lastname.as_deref()),
        Some("Beispiel")
    );

    let asapo = metadata.asapo.as_ref().unwrap_or_else(|| panic!("asapo"));
    assert_eq!(asapo.endpoint.as_deref(), Some("asapo-ps-0.desy.de:8400"));
    assert_eq!(
        asapo.beamtime_token_path,
        Some(fixture("shared/asapo-token.txt"))
    );
    assert_eq!(
        asapo.beamtime_clbt_token_path,
        Some(fixture("shared/asapo-token-clbt.txt"))
    );

    let online = ready(&metadata);
    assert_eq!(online.reserved_nodes, ["max-p3a901"]);
    assert_eq!(online.partition, "ponline_p11");
    assert_eq!(online.reservations, ["11099001"]);
    assert_eq!(online.user_account, "bttest01");
    assert_eq!(online.ssh_private_key, Some(fixture("shared/id_rsa")));
    assert_eq!(online.ssh_public_key, Some(fixture("shared/id_rsa.pub")));
    // The fixture names a key that is not there, so the hint leaves it out.
    assert!(!fixture("shared/id_rsa").exists());
    assert_eq!(online.ssh_command(), "ssh -l bttest01 max-p3a901");
}

#[test]
fn industrial_beamtime_without_online_block_is_not_yet_ready() {
    let metadata = read("beamtime-metadata-11099003.json");
    assert_eq!(metadata.online, Online::NotYet);
    assert_eq!(metadata.proposal_type.as_deref(), Some("P"));
    assert_eq!(metadata.contact, None);
    assert_eq!(metadata.asapo, None);
}

#[test]
fn dedicated_beamtime_has_two_reservations_in_file_order() {
    let metadata = read("beamtime-metadata-11099005.json");
    assert_eq!(metadata.beamline.as_str(), "p21");
    assert_eq!(metadata.beamline_alias.as_deref(), Some("P21.1"));
    let online = ready(&metadata);
    assert_eq!(online.reservations, ["11099005", "11099005_1"]);
    assert_eq!(online.reserved_nodes.len(), 4);
    assert!(online
        .reservations
        .iter()
        .all(|r| metadata.id.owns_reservation(r)));
}

#[test]
fn commissioning_run_uses_id_and_upper_case_beamline() {
    let metadata = read("commissioning-metadata-c20240312_000_GPUTEST.json");
    assert_eq!(metadata.kind, MetadataKind::Commissioning);
    assert_eq!(metadata.id.as_str(), "c20240312_000_GPUTEST");
    assert_eq!(metadata.beamline.as_str(), "p11");
    assert_eq!(metadata.beamline_alias.as_deref(), Some("P11"));
    assert_eq!(metadata.tag.as_deref(), Some("GPUTEST"));
    assert_eq!(metadata.title, None);
    assert_eq!(metadata.generated, time("2024-03-12 10:02:44"));
    let online = ready(&metadata);
    assert_eq!(online.reservations, ["c20240312_000_GPUTEST"]);
    assert_eq!(online.user_account, "bttest02");
}

#[test]
fn old_spellings_of_2020_are_understood() {
    let metadata = read("beamtime-metadata-11099002.json");
    assert_eq!(metadata.beamline_alias.as_deref(), Some("P09"));
    assert_eq!(metadata.event_start, time("2020-02-11 09:00:00"));
    assert_eq!(metadata.event_end, time("2020-02-14 09:00:00"));
    assert_eq!(
        metadata.core_path,
        Some(PathBuf::from("/asap3/petra3/gpfs/p09/2020/data/11099002"))
    );
    assert_eq!(metadata.users.door_db, ["beispiee", "musterma"]);
    assert_eq!(metadata.retention_period, None);
    assert_eq!(
        metadata.leader.as_ref().and_then(|l| l.email.clone()),
        None,
        "empty means absent"
    );
    let asapo = metadata
        .asapo
        .as_ref()
        .unwrap_or_else(|| panic!("token paths moved into asapo"));
    assert_eq!(asapo.endpoint, None);
    assert_eq!(
        asapo.beamtime_token_path,
        Some(fixture("shared/asapo-token.txt"))
    );
    assert_eq!(
        asapo.beamtime_clbt_token_path,
        Some(fixture("shared/asapo-token-clbt.txt"))
    );
    let online = ready(&metadata);
    assert_eq!(
        online.reservations,
        ["11099002"],
        "a single string is one reservation"
    );
    assert_eq!(online.reserved_nodes, ["max-p3a011", "max-p3a012"]);
}

#[test]
fn pre_start_block_with_nulls_and_empty_lists_is_not_yet_ready() {
    let metadata = read("beamtime-metadata-11099004.json");
    assert_eq!(metadata.online, Online::NotYet);
}

#[test]
fn only_the_second_reservation_and_unknown_keys() {
    let metadata = read("beamtime-metadata-11099006.json");
    let online = ready(&metadata);
    assert_eq!(online.reservations, ["11099006_1"]);
    assert!(metadata.id.owns_reservation(&online.reservations[0]));
    assert_eq!(metadata.users.special, ["probej"]);
    let asapo = metadata.asapo.as_ref().unwrap_or_else(|| panic!("asapo"));
    assert_eq!(
        asapo.beamtime_token_path,
        Some(PathBuf::from(
            "/asap3/petra3/gpfs/p06/2025/data/11099006/shared/asapo-token.txt"
        )),
        "absolute paths stay as they are"
    );
}

/// The example an admin reads in slurm-conf-examples/ must stay a file the
/// plugin accepts.
#[test]
fn the_example_metadata_for_admins_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../slurm-conf-examples/beamtime-metadata-11099777.json");
    let metadata = beamtime::discovery::read_metadata_file(&path).unwrap();
    let online = ready(&metadata);
    assert_eq!(metadata.id.as_str(), "11099777");
    assert_eq!(online.reservations, ["11099777", "11099777_1"]);
    assert!(online
        .reservations
        .iter()
        .all(|r| metadata.id.owns_reservation(r)));
    assert_eq!(online.user_account, "bt11099777");
}
