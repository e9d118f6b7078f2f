//! One module per command. Each exposes its clap `Args` (or subcommand enum) and a `run`
//! function returning the process exit code or a miette report.

pub mod apply;
pub mod backup;
pub mod certs;
pub mod certs_remote;
pub mod completions;
pub mod confirm;
pub mod init;
pub mod lab;
pub mod outcome;
pub mod plan;
pub mod render;
pub mod reset;
pub mod restore;
pub mod rotate;
pub mod schema;
pub mod upgrade;
pub mod validate;
