//! Figures the tests measure, for docs/reliability.md: when `BT_FIGURES` names a file,
//! [`record`] appends one JSON line to it (`{"figure": name, ...values}`);
//! scripts/reliability_report.py reads them back. Without `BT_FIGURES` nothing is written:
//! a figure is a report, never what a test asserts.

use std::io::Write;

pub fn record(name: &str, values: serde_json::Value) {
    let Some(path) = std::env::var_os("BT_FIGURES") else {
        return;
    };
    let mut line = serde_json::json!({ "figure": name });
    if let (Some(line), serde_json::Value::Object(values)) = (line.as_object_mut(), values) {
        line.extend(values);
    }
    // One write of a whole line with O_APPEND: tests running in parallel do not interleave.
    let text = format!("{line}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(e) = written {
        panic!("BT_FIGURES={}: {e}", path.to_string_lossy());
    }
}
