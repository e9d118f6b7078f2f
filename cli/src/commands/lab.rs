//! `kubeforge lab`: local systemd-nspawn machines to try kubeforge on (see `crate::lab`). This
//! module only maps arguments to lab operations and prints their results.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::context::{Global, OutputFormat};
use crate::lab::layout::Request;
use crate::lab::power::Change;
use crate::lab::state::Paths;
use crate::lab::{down, power, ssh, status, up};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create and boot the lab machines and write a spec for them.
    #[command(
        after_help = "Example:\n  sudo kubeforge lab up && kubeforge plan -f lab.cluster.yaml"
    )]
    Up(UpArgs),
    /// Show the lab's machines, addresses and states.
    Status(NameArgs),
    /// Stop every machine and remove the lab (idempotent; the written spec stays).
    Down(NameArgs),
    /// Power one machine off (for failure tests); its files are kept.
    Stop(NodeArgs),
    /// Power a stopped machine on again and wait until it answers SSH.
    Start(NodeArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Lab name (a short DNS label); several labs can run at once.
    #[arg(long, default_value = "lab")]
    pub name: String,
    /// Control-plane machines (cp1, cp2, …).
    #[arg(long, default_value_t = 3)]
    pub control_planes: u32,
    /// Worker machines (w1, w2, …).
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    /// Separate etcd machines (etcd1, …); makes the spec's etcd topology external.
    #[arg(long, default_value_t = 0)]
    pub etcd: u32,
    /// Where to write the cluster spec [default: ./<name>.cluster.yaml].
    #[arg(long)]
    pub spec_out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// Lab name.
    #[arg(long, default_value = "lab")]
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Machine name as in the spec (cp1, w1, etcd1, …).
    pub node: String,
    /// Lab name.
    #[arg(long, default_value = "lab")]
    pub name: String,
}

pub fn run(global: &Global, cmd: Command) -> miette::Result<ExitCode> {
    let paths = Paths::from_env();
    match cmd {
        Command::Up(args) => {
            let started = Instant::now();
            let spec_out = args
                .spec_out
                .unwrap_or_else(|| PathBuf::from(format!("{}.cluster.yaml", args.name)));
            let request = Request {
                name: args.name,
                control_planes: args.control_planes,
                workers: args.workers,
                etcd: args.etcd,
            };
            let lab = up::up(&paths, &up::UpOptions { request, spec_out: spec_out.clone() })?;
            let s = status::of(&lab, |_| true);
            match global.output {
                OutputFormat::Json => println!("{}", to_json(&s)),
                OutputFormat::Human => {
                    println!(
                        "Lab {} is up: {} machines ready in {:.1} s.\n",
                        lab.name,
                        lab.machines.len(),
                        started.elapsed().as_secs_f64()
                    );
                    print!("{}", status::render(&s));
                    println!(
                        "\nNext:\n  kubeforge plan -f {0}\n  kubeforge apply -f {0} --until loadbalancer",
                        spec_out.display()
                    );
                    println!("Remove it with: kubeforge lab down --name {}", lab.name);
                }
            }
        }
        Command::Status(args) => {
            let s = status::status(&paths, &args.name)?;
            match global.output {
                OutputFormat::Json => println!("{}", to_json(&s)),
                OutputFormat::Human => print!("{}", status::render(&s)),
            }
        }
        Command::Down(args) => {
            let report = down::down(&paths, &args.name)?;
            if report.nothing_found() {
                println!("Lab {} is not up; nothing to remove.", args.name);
            } else {
                println!(
                    "Lab {} removed ({} machines stopped).",
                    args.name, report.machines_stopped
                );
            }
        }
        Command::Stop(args) => match power::stop(&paths, &args.name, &args.node)? {
            Change::Done => println!("{} powered off.", args.node),
            Change::AlreadyThere => println!("{} was not running.", args.node),
        },
        Command::Start(args) => {
            let (lab, change) = power::start(&paths, &args.name, &args.node)?;
            let m = lab.machine(&args.node)?;
            match change {
                Change::Done => println!("{} is running: {}", args.node, ssh::login_hint(&lab, m)),
                Change::AlreadyThere => println!("{} was already running.", args.node),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn to_json(s: &status::LabStatus) -> String {
    serde_json::to_string_pretty(s).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
