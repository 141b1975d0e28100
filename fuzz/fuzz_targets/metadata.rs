//! Any bytes given to the metadata parser: never a panic, and anything it
//! accepts holds only names that are safe in paths and command lines.
#![no_main]

use std::path::Path;

use beamtime::metadata::{parse_metadata, Online};
use libfuzzer_sys::fuzz_target;

fn assert_plain(name: &str) {
    assert!(
        !name.is_empty() && !name.contains('/') && name != "." && name != "..",
        "{name:?}"
    );
    assert!(!name.chars().any(char::is_control), "{name:?}");
}

fuzz_target!(|data: &[u8]| {
    let origin = Path::new("/beamline/p11/current/beamtime-metadata-11099001.json");
    if let Ok(metadata) = parse_metadata(data, origin) {
        assert_plain(metadata.id.as_str());
        assert_plain(metadata.beamline.as_str());
        if let Online::Ready(online) = &metadata.online {
            assert!(!online.reservations.is_empty() && !online.reserved_nodes.is_empty());
            for name in online.reservations.iter().chain(&online.reserved_nodes) {
                assert_plain(name);
            }
            assert_plain(&online.user_account);
            assert_plain(&online.partition);
        }
    }
});
