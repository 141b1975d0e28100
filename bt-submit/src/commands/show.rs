//! `bt-submit show`: the beamtime's online resources and where it stands,
//! as text or JSON (report.rs writes both).

use std::process::ExitCode;

use crate::cli::{Format, ShowArgs};
use crate::commands::report;
use crate::failure::Failure;
use crate::output::{write_json, write_stdout};
use crate::site::metadata_file::load_metadata;
use crate::site::phase;
use crate::site::settings::Settings;

pub fn run(args: &ShowArgs, settings: &Settings) -> Result<ExitCode, Failure> {
    let metadata = load_metadata(&args.source, settings)?;
    let target = settings.target()?;
    let standing = phase::from_settings(&metadata, settings)?;
    match args.format {
        Format::Text => write_stdout(report::summary(&metadata, &target, &standing).as_bytes())?,
        Format::Json => write_json(&report::beamtime_json(&metadata, &target, &standing))?,
    }
    Ok(ExitCode::SUCCESS)
}
