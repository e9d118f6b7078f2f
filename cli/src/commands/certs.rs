//! `kubeforge certs`: not built yet (see the open issues).

use std::process::ExitCode;

use crate::context::Global;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create missing certificates and keys in the state dir.
    Generate,
}

pub fn run(_global: &Global, _cmd: Command) -> miette::Result<ExitCode> {
    Err(miette::miette!("`kubeforge certs` is not built yet"))
}
