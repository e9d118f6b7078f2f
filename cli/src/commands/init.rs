//! `kubeforge init`: writes a commented example spec that validates (the examples under
//! `examples/`, embedded). It never replaces an existing file unless `--force` is given.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use miette::{IntoDiagnostic, WrapErr};

use crate::context::Global;

/// The example specs `init` writes; tests check that each validates.
pub const STACKED: &str = include_str!("../../../examples/stacked.yaml");
pub const EXTERNAL: &str = include_str!("../../../examples/external.yaml");
pub const NODE_LOCAL: &str = include_str!("../../../examples/node-local.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Topology {
    /// etcd on the control planes, keepalived + haproxy virtual IP.
    Stacked,
    /// etcd on three hosts of its own, keepalived + haproxy virtual IP.
    External,
    /// etcd on the control planes, a local haproxy on every node instead of a virtual IP.
    NodeLocal,
}

impl Topology {
    pub fn example(self) -> &'static str {
        match self {
            Topology::Stacked => STACKED,
            Topology::External => EXTERNAL,
            Topology::NodeLocal => NODE_LOCAL,
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  kubeforge init\n  kubeforge init --topology external --out prod.yaml\n  kubeforge init --out - | less"
)]
pub struct Args {
    /// Which example to write.
    #[arg(long, value_enum, default_value = "stacked")]
    pub topology: Topology,
    /// Where to write it (`-` for stdout) [default: the -f file, cluster.yaml].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(global: &Global, args: Args) -> miette::Result<ExitCode> {
    let text = args.topology.example();
    let out = args.out.unwrap_or_else(|| global.file.clone());
    if out.as_os_str() == "-" {
        return match std::io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(miette::miette!("cannot write to stdout: {e}"))
            }
            _ => Ok(ExitCode::SUCCESS),
        };
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        // create_new: an existing file is never touched, even if it appears meanwhile.
        options.create_new(true);
    }
    let mut file = match options.open(&out) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(miette::miette!(
                help = "pass --force to replace it, or --out to write somewhere else",
                "{} already exists; not replacing it",
                out.display()
            ));
        }
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot create {}", out.display()));
        }
    };
    file.write_all(text.as_bytes())
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "wrote {}: edit the hosts and addresses, then run `kubeforge validate -f {}`",
        out.display(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
