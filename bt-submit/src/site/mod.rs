//! What bt-submit knows about the site: where metadata is searched
//! (settings), the plugin's plugstack line (plugstack), and where a beamtime
//! stands on its beamline as the node would see it (phase).

pub mod phase;
pub mod plugstack;
pub mod settings;
