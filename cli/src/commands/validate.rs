//! `kubeforge validate`: not built yet (see the open issues).

use std::process::ExitCode;

use crate::context::Global;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &Global, _args: Args) -> miette::Result<ExitCode> {
    Err(miette::miette!("`kubeforge validate` is not built yet"))
}
