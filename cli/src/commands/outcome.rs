//! The end of a command that executed a plan (apply, reset, restore, upgrade): the executor's
//! report, the command's own summary, and where the audit log is, as one JSON line
//! (`{"event": "report", "report": …, <command>: {…}}`) or as text. It owns this output format
//! only: what the summary says, and the exit status, stay with each command.

use serde_json::Value;

use crate::context::OutputFormat;
use crate::exec::{AuditLog, RunReport};

/// Prints the end of a run. `details` is the command's own JSON object under its name
/// (`"restore": {…}`); `summary` its text lines after the report.
pub fn print_outcome(
    output: OutputFormat,
    report: &RunReport,
    details: Option<(&str, Value)>,
    summary: &[String],
    audit: &AuditLog,
) {
    match output {
        OutputFormat::Json => {
            let mut line = serde_json::json!({ "event": "report", "report": report });
            if let (Some((name, value)), Some(object)) = (details, line.as_object_mut()) {
                object.insert(name.to_string(), value);
            }
            println!("{line}");
        }
        OutputFormat::Human => {
            print!("{}", report.render_text());
            for line in summary {
                println!("{line}");
            }
            if let Some(path) = audit.path() {
                println!("Audit log: {}", path.display());
            }
        }
    }
}
