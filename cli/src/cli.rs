//! The `kubeforge` command line: parses arguments, sets up logging and hands each command to
//! its module under `commands/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::context::{self, Global, GlobalArgs};

/// Stand up and run highly-available Kubernetes on machines you already have, over SSH.
#[derive(Debug, Parser)]
#[command(
    name = "kubeforge",
    version,
    about,
    after_help = "Examples:\n  kubeforge init --out cluster.yaml\n  kubeforge validate -f cluster.yaml\n  kubeforge certs generate -f cluster.yaml\n  kubeforge render -f cluster.yaml --out rendered/\n  kubeforge lab up && kubeforge plan -f lab.cluster.yaml"
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a cluster spec and report every problem at once.
    Validate(commands::validate::Args),
    /// Write a commented example spec that validates.
    Init(commands::init::Args),
    /// Print the JSON Schema of the cluster spec.
    Schema(commands::schema::Args),
    /// Print shell completions.
    Completions(commands::completions::Args),
    /// Generate, inspect and renew the cluster PKI in the state dir.
    #[command(subcommand)]
    Certs(commands::certs::Command),
    /// Write every file each host receives to a local directory.
    Render(commands::render::Args),
    /// Local test machines (systemd-nspawn) to try kubeforge on.
    #[command(subcommand)]
    Lab(commands::lab::Command),
    /// Show, per phase and host, exactly what apply would change.
    Plan(commands::plan::Args),
    /// Converge the hosts to the spec.
    Apply(commands::apply::Args),
    /// etcd backups: create, list, verify, prune, and the unattended run on nodes.
    #[command(subcommand)]
    Backup(commands::backup::Command),
    /// Replace etcd's data on every member with a verified backup (disruptive: plans first).
    Restore(commands::restore::Args),
    /// Return hosts (or the whole cluster) to the state before kubeforge (plans first).
    Reset(commands::reset::Args),
    /// Move the cluster to the spec's versions: skew rules, a verified snapshot first, one
    /// etcd member and control plane at a time, kubelets in batches.
    #[command(subcommand)]
    Upgrade(commands::upgrade::Command),
}

/// Runs the command line; the binary's `main` is just this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = Global::from_args(cli.global);
    context::init_logging(global.verbose);
    let result = match cli.command {
        Command::Validate(args) => commands::validate::run(&global, args),
        Command::Init(args) => commands::init::run(&global, args),
        Command::Schema(args) => commands::schema::run(&global, args),
        Command::Completions(args) => commands::completions::run::<Cli>(args),
        Command::Certs(cmd) => commands::certs::run(&global, cmd),
        Command::Render(args) => commands::render::run(&global, args),
        Command::Lab(cmd) => commands::lab::run(&global, cmd),
        Command::Plan(args) => commands::plan::run(&global, args),
        Command::Apply(args) => commands::apply::run(&global, args),
        Command::Backup(cmd) => commands::backup::run(&global, cmd),
        Command::Restore(args) => commands::restore::run(&global, args),
        Command::Reset(args) => commands::reset::run(&global, args),
        Command::Upgrade(cmd) => commands::upgrade::run(&global, cmd),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::FAILURE
        }
    }
}
