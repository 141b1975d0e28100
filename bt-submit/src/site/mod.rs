//! What bt-submit knows about the site: where metadata is searched
//! (settings, with the user's own setting in user_config), which metadata file a command means (metadata_file), the
//! plugin's plugstack line (plugstack), and where a beamtime stands on its
//! beamline as the node would see it (phase), and the metadata's times on
//! this host's clock (clock).

pub mod clock;
pub mod metadata_file;
pub mod phase;
pub mod plugstack;
pub mod settings;
pub mod user_config;
