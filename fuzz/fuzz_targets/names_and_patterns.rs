//! Beamtime ids, beamlines and search patterns: an accepted id never adds a
//! path component or a wildcard when it is put into an accepted pattern.
#![no_main]

use beamtime::discovery::SearchPattern;
use beamtime::id::{Beamline, BeamtimeId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (id_text, pattern_text) = text
        .split_once('\n')
        .unwrap_or((text, "/gpfs/*/beamtime-metadata-{id}.json"));
    let _ = Beamline::parse(id_text);
    let Ok(id) = BeamtimeId::parse(id_text) else {
        return;
    };
    assert!(!id.as_str().contains(['/', '*', '\0']) && id.as_str() != ".." && id.as_str() != ".");
    let Ok(pattern) = SearchPattern::parse(pattern_text) else {
        return;
    };
    let concrete = pattern.substitute(&id);
    let components = |s: &str| s.split('/').count();
    let stars = |s: &str| s.matches('*').count();
    let without_id = pattern.as_str().replace("{id}", "x");
    assert_eq!(components(&concrete), components(&without_id), "{concrete}");
    assert_eq!(stars(&concrete), stars(&without_id), "{concrete}");
    assert!(!concrete.split('/').any(|c| c == ".."), "{concrete}");
});
