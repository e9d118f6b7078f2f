//! `kubeforge schema`: prints the JSON Schema of the cluster spec (derived from the serde
//! types), for editors: e.g. `# yaml-language-server: $schema=kubeforge.schema.json`.

use std::io::Write;
use std::process::ExitCode;

use crate::context::Global;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  kubeforge schema > kubeforge.schema.json")]
pub struct Args {}

pub fn run(_global: &Global, _args: Args) -> miette::Result<ExitCode> {
    let schema = kubeforge_playbooks::spec::json_schema();
    let text = serde_json::to_string_pretty(&schema)
        .map_err(|e| miette::miette!("cannot print the JSON Schema: {e}"))?;
    // A closed pipe (`kubeforge schema | head`) is the reader's choice, not a failure.
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(miette::miette!("cannot print the JSON Schema: {e}"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
