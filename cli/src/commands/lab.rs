//! `kubeforge lab`: not built yet (see the open issues).

use std::process::ExitCode;

use crate::context::Global;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create and boot the lab machines.
    Up,
}

pub fn run(_global: &Global, _cmd: Command) -> miette::Result<ExitCode> {
    Err(miette::miette!("`kubeforge lab` is not built yet"))
}
