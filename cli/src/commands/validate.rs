//! `kubeforge validate`: checks the spec and reports every problem at once — a miette report
//! with source snippets in human mode, a JSON list of `{path, line, column, message, help}`
//! with `-o json`. Exit status 0 when valid, 1 otherwise.

use std::process::ExitCode;

use kubeforge_playbooks::model::{Cluster, EtcdTopology, LoadBalancerMode};

use crate::context::{Global, OutputFormat};
use crate::spec_file;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  kubeforge validate -f cluster.yaml\n  kubeforge validate -f cluster.yaml -o json"
)]
pub struct Args {}

pub fn run(global: &Global, _args: Args) -> miette::Result<ExitCode> {
    let result = spec_file::check(&global.file);
    match (global.output, result) {
        (OutputFormat::Json, Ok(_)) => {
            println!("[]");
            Ok(ExitCode::SUCCESS)
        }
        (OutputFormat::Json, Err(e)) => {
            println!("{}", e.diagnostics().to_json());
            Ok(ExitCode::FAILURE)
        }
        (OutputFormat::Human, Ok(cluster)) => {
            println!("{} is valid: {}", global.file.display(), summary(&cluster));
            Ok(ExitCode::SUCCESS)
        }
        (OutputFormat::Human, Err(e)) => {
            eprintln!("{:?}", e.into_report());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// One line saying what the spec describes, so a typo that still validates stands out.
pub fn summary(c: &Cluster) -> String {
    let cps = c.control_planes().count();
    let workers = c.workers().count();
    let etcd = match c.etcd.topology {
        EtcdTopology::Stacked => format!("stacked etcd {}", c.etcd.version),
        EtcdTopology::External => {
            format!("external etcd {} on {} hosts", c.etcd.version, c.etcd_members().count())
        }
    };
    let lb = match c.load_balancer.mode {
        LoadBalancerMode::KeepalivedHaproxy => "keepalived-haproxy",
        LoadBalancerMode::NodeLocal => "node-local",
        LoadBalancerMode::External => "external load balancer",
        LoadBalancerMode::None => "no load balancer",
    };
    let endpoint =
        c.control_plane_endpoint.as_ref().map(|e| format!(", API at {e}")).unwrap_or_default();
    format!(
        "cluster {} — Kubernetes {}, {} hosts ({cps} control plane{}, {workers} worker{}), {etcd}, {lb}{endpoint}",
        c.name,
        c.kubernetes_version,
        c.hosts.len(),
        if cps == 1 { "" } else { "s" },
        if workers == 1 { "" } else { "s" },
    )
}
