//! The plugstack line, read in every process that loads the plugin. A line
//! that cannot be used becomes the refusal of every `--beamtime` job and of
//! nothing else (see `dispatch.rs`).

use beamtime::plugin_config::{PluginConfig, BAD_LINE_FIX};
use beamtime::refusal::{Refusal, Rule};
use slurm_spank::spank_log_error;

use crate::PLUGIN;

pub fn parse<E: std::fmt::Display>(
    arguments: Result<Vec<&str>, E>,
) -> Result<PluginConfig, Refusal> {
    let arguments = arguments.map_err(|error| {
        Refusal::new(
            Rule::SiteConfiguration,
            format!("the plugstack.conf arguments cannot be read: {error}"),
            BAD_LINE_FIX,
        )
    })?;
    PluginConfig::parse(arguments)
        .map_err(|error| Refusal::new(Rule::SiteConfiguration, error.to_string(), BAD_LINE_FIX))
}

/// A line that parses but cannot grant anything: said when the plugin loads,
/// as a bad line is, and not only to the first user who asks for a beamtime.
pub fn warn_if_incomplete(config: &PluginConfig) {
    if config.source.is_none() {
        spank_log_error!(
            "{PLUGIN}: plugstack.conf has no source= for spank-beamtime: every --beamtime job is \
             refused until it says where beamline data lives on the nodes"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Result<Vec<&str>, String> {
        Ok(line.split_whitespace().collect())
    }

    #[test]
    fn a_bad_argument_is_a_site_refusal_that_names_it() {
        let refusal = parse(words("source=/srv/{beamline} no_such_argument=1")).unwrap_err();
        assert_eq!(refusal.rule, Rule::SiteConfiguration);
        let text = refusal.to_string();
        assert!(text.contains("'no_such_argument=1'"), "{text}");
        assert!(
            text.contains("Ask the cluster's administrators: "),
            "{text}"
        );
        assert!(
            text.contains("jobs without --beamtime are not affected"),
            "{text}"
        );
    }

    #[test]
    fn arguments_that_cannot_be_read_are_refused_too() {
        let unreadable: Result<Vec<&str>, &str> = Err("not valid UTF-8");
        let refusal = parse(unreadable).unwrap_err();
        assert!(
            refusal
                .problem
                .what
                .contains("cannot be read: not valid UTF-8"),
            "{refusal}"
        );
    }

    #[test]
    fn a_good_line_parses() {
        let config = parse(words("source=/srv/{beamline}/current writable=processed")).unwrap();
        assert_eq!(config.writable, ["processed"]);
    }
}
