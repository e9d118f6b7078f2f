//! `kubeforge completions SHELL`: prints a completion script for bash, zsh or fish.

use std::process::ExitCode;

use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run<C: CommandFactory>(args: Args) -> miette::Result<ExitCode> {
    let mut cmd = C::command();
    clap_complete::generate(args.shell, &mut cmd, "kubeforge", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
