//! What bt-submit prints: the dry-run command and the beamtime summary, as
//! text for people and as JSON for scripts.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use beamtime::metadata::{Metadata, Timestamp};
use beamtime::plugin_config::TargetTemplate;
use beamtime::shell::{quote, quote_bytes};
use serde_json::{json, Value};

use crate::failure::{Failure, Status};
use crate::plan::Invocation;
use crate::site::clock;
use crate::site::phase::Standing;

/// The command as one shell line that runs exactly it, newline-terminated.
pub fn command_line(invocation: &Invocation) -> Vec<u8> {
    let mut line = invocation.program.name().as_bytes().to_vec();
    for arg in &invocation.args {
        line.push(b' ');
        line.extend_from_slice(&quote_bytes(arg.as_bytes()));
    }
    line.push(b'\n');
    line
}

/// `target`: where the plugin shows the beamline in jobs (settings.rs);
/// `standing`: the beamtime's phase (phase.rs).
pub fn dry_run_json(
    invocation: &Invocation,
    metadata: &Metadata,
    target: &TargetTemplate,
    standing: &Standing,
) -> Result<Value, Failure> {
    let args = strings_json(&invocation.args)?;
    Ok(json!({
        "program": invocation.program.name(),
        "args": args,
        "reservation": invocation.reservation,
        "beamtime": beamtime_json(metadata, target, standing),
    }))
}

/// Arguments as JSON strings, which carry only valid UTF-8 exactly.
pub fn strings_json(args: &[OsString]) -> Result<Vec<String>, Failure> {
    args.iter()
        .enumerate()
        .map(|(index, arg)| {
            arg.to_str().map(str::to_owned).ok_or_else(|| {
                Failure::new(
                    Status::Usage,
                    format!(
                        "argument {} of the command is not valid UTF-8, which JSON cannot carry \
                         exactly",
                        index + 1
                    ),
                    "use --format text to see the command",
                )
            })
        })
        .collect()
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn time_text(time: &Option<Timestamp>) -> Option<String> {
    time.as_ref().map(Timestamp::to_string)
}

pub fn beamtime_json(metadata: &Metadata, target: &TargetTemplate, standing: &Standing) -> Value {
    let online = metadata.online.ready().map(|online| {
        json!({
            "reservedNodes": online.reserved_nodes,
            "partition": online.partition,
            "reservations": online.reservations,
            "userAccount": online.user_account,
            "sshPrivateKeyPath": online.ssh_private_key.as_deref().map(path_text),
            "sshPublicKeyPath": online.ssh_public_key.as_deref().map(path_text),
            "sshCommand": online.ssh_command(),
        })
    });
    let mut value = json!({
        "id": metadata.id.as_str(),
        "kind": metadata.kind.to_string(),
        "title": metadata.title,
        "tag": metadata.tag,
        "beamline": metadata.beamline.as_str(),
        "beamlineAlias": metadata.beamline_alias,
        "facility": metadata.facility,
        "eventStart": time_text(&metadata.event_start),
        "eventEnd": time_text(&metadata.event_end),
        "generated": time_text(&metadata.generated),
        "proposalId": metadata.proposal_id,
        "proposalType": metadata.proposal_type,
        "metadataPath": path_text(&metadata.path),
        "corePath": metadata.core_path.as_deref().map(path_text),
        "beamlinePath": path_text(&target.expand(&metadata.id, &metadata.beamline)),
        "online": online,
    });
    if let (Value::Object(fields), Value::Object(phase)) = (&mut value, standing.json()) {
        fields.extend(phase);
    }
    value
}

/// Free text from the file, with control characters escaped so a title
/// cannot move the cursor or forge lines on the user's terminal.
fn printable(text: &str) -> String {
    if text.chars().any(char::is_control) {
        text.escape_debug().to_string()
    } else {
        text.to_owned()
    }
}

/// The beamtime's window with the zone its times are read in and where now
/// stands to it: `2024-03-05 09:00:00 to 2024-03-08 09:00:00 CET (ended 3
/// days ago)`.
fn window_text(metadata: &Metadata) -> Option<String> {
    let start = metadata.event_start.as_ref();
    let end = metadata.event_end.as_ref();
    let mut window = match (start, end) {
        (Some(start), Some(end)) => format!("{start} to {end}"),
        (Some(start), None) => format!("from {start}"),
        (None, Some(end)) => format!("until {end}"),
        (None, None) => return None,
    };
    let start = start.and_then(clock::local);
    let end = end.and_then(clock::local);
    if let Some((_, zone)) = end.as_ref().or(start.as_ref()) {
        window.push_str(&format!(" {zone}"));
    }
    let at = |time: Option<(i64, String)>| time.map(|(seconds, _)| seconds);
    if let Some(standing) = clock::standing(at(start), at(end), clock::now()) {
        window.push_str(&format!(" ({standing})"));
    }
    Some(window)
}

/// The human-readable summary of `bt-submit show`; `target` and `standing` as
/// for [`dry_run_json`].
pub fn summary(metadata: &Metadata, target: &TargetTemplate, standing: &Standing) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    rows.push((
        match metadata.kind {
            beamtime::metadata::MetadataKind::Beamtime => "beamtime",
            beamtime::metadata::MetadataKind::Commissioning => "commissioning",
        },
        metadata.id.to_string(),
    ));
    if let Some(title) = &metadata.title {
        rows.push(("title", printable(title)));
    }
    if let Some(tag) = &metadata.tag {
        rows.push(("tag", printable(tag)));
    }
    let beamline = match &metadata.beamline_alias {
        Some(alias) => format!("{} ({})", metadata.beamline, printable(alias)),
        None => metadata.beamline.to_string(),
    };
    rows.push(("beamline", beamline));
    if let Some(facility) = &metadata.facility {
        rows.push(("facility", printable(facility)));
    }
    if let Some(window) = window_text(metadata) {
        rows.push(("window", window));
    }
    rows.push((
        "metadata file",
        quote(&path_text(&metadata.path)).into_owned(),
    ));
    if let Some(core) = &metadata.core_path {
        rows.push(("core path", quote(&path_text(core)).into_owned()));
    }
    rows.push((
        "beamline path",
        path_text(&target.expand(&metadata.id, &metadata.beamline)),
    ));
    rows.push(("phase", standing.note.clone()));
    match metadata.online.ready() {
        Some(online) => {
            rows.push(("nodes", online.reserved_nodes.join(", ")));
            rows.push(("partition", online.partition.clone()));
            rows.push(("reservations", online.reservations.join(", ")));
            rows.push(("account", online.user_account.clone()));
            rows.push(("log in with", online.ssh_command()));
        }
        None => rows.push((
            "online",
            "no resources yet (they appear in the metadata file when the beamtime starts)"
                .to_owned(),
        )),
    }
    let width = rows
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or_default();
    rows.iter()
        .map(|(label, value)| format!("{label:<width$}  {value}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::options::Program;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn command_line_quotes_what_needs_it() {
        let invocation = Invocation {
            program: Program::Sbatch,
            args: vec![
                OsString::from("--partition=p"),
                OsString::from("--job-name=my job"),
                OsString::from("it's.sh"),
                OsString::from_vec(b"\xff".to_vec()),
            ],
            reservation: "r".to_owned(),
            warnings: Vec::new(),
        };
        assert_eq!(
            command_line(&invocation),
            b"sbatch --partition=p '--job-name=my job' 'it'\\''s.sh' '\xff'\n"
        );
    }

    #[test]
    fn free_text_cannot_reach_the_terminal_raw() {
        assert_eq!(printable("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(printable("Größe"), "Größe");
    }
}
