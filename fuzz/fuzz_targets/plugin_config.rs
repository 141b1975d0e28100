//! plugstack.conf arguments: never a panic, and an accepted configuration
//! expands its templates to paths under the folders the admin wrote.
#![no_main]

use std::path::{Component, Path};

use beamtime::id::{Beamline, BeamtimeId};
use beamtime::plugin_config::PluginConfig;
use libfuzzer_sys::fuzz_target;

fn assert_confined(path: &Path) {
    assert!(path.is_absolute(), "{path:?}");
    assert!(
        !path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir)),
        "{path:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = PluginConfig::parse(text.split_whitespace()) else {
        return;
    };
    let id = BeamtimeId::parse("11099001").unwrap();
    let beamline = Beamline::parse("p11").unwrap();
    if let Some(source) = &config.source {
        assert_confined(&source.expand(&id, &beamline));
    }
    let target = config.target.expand(&id, &beamline);
    assert_confined(&target);
    let hide_root = config.target.hide_root();
    assert!(
        hide_root != Path::new("/") && target.starts_with(hide_root),
        "{target:?} {hide_root:?}"
    );
    for name in &config.writable {
        assert!(
            !name.contains('/') && name != ".." && name != ".",
            "{name:?}"
        );
    }
});
