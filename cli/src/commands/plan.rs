//! `kubeforge plan`: load the spec, render every host's files, gather facts from all hosts in
//! parallel, and print the Plan (text with diffs, or JSON). `apply` builds its plan with exactly
//! this code (`prepare`), so what `plan` shows is what `apply` does.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::plan::{self, Phase, PhaseSelection, Plan, PlanInput};
use kubeforge_playbooks::render::{RenderInput, render};
use miette::{IntoDiagnostic as _, WrapErr as _, miette};

use crate::context::{Global, OutputFormat};
use crate::gather::{GatherTarget, gather};
use crate::state::StateDir;
use crate::transport::ssh::SshConnector;
use crate::transport::{ConnectOptions, SshTarget, Transport};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Stop after this phase (preflight, os, runtime, pki, etcd, loadbalancer, control-plane,
    /// workers, addons).
    #[arg(long, value_parser = parse_phase)]
    pub until: Option<Phase>,
    /// Leave out these phases (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = parse_phase)]
    pub skip_phases: Vec<Phase>,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

fn parse_phase(s: &str) -> Result<Phase, String> {
    s.parse().map_err(|e: plan::UnknownPhase| e.to_string())
}

/// A plan and what is needed to carry it out.
pub struct Prepared {
    pub cluster: Cluster,
    pub state: StateDir,
    pub plan: Plan,
    pub transports: BTreeMap<String, Arc<dyn Transport>>,
    /// Hosts whose host key was refused, with the reason (see `Gathered::host_key_refused`).
    pub host_key_refused: BTreeMap<String, String>,
}

/// Spec → render tree → facts → Plan. Shared by `plan` and `apply`.
pub async fn prepare(global: &Global, args: &Args) -> miette::Result<Prepared> {
    let cluster = crate::spec_file::load(&global.file)?;
    let state = StateDir::open(&global.state_dir(&cluster.name))?;
    let (store, report, _) = super::certs::generate_and_save(&cluster, &state)?;
    if !report.is_unchanged() {
        eprint!("{report}");
    }
    let secrets = crate::secrets_store::load_or_create(state.root())?;
    let tree = render(RenderInput { cluster: &cluster, pki: &store, secrets: &secrets })
        .map_err(|e| miette!("{e}"))
        .wrap_err("rendering the hosts' files")?;
    let spec_dir = global.file.parent().unwrap_or(Path::new("."));
    let selection = PhaseSelection::new(args.until, &args.skip_phases);
    let mut artifacts = crate::artifacts::inventory(&cluster, spec_dir, &selection)?;
    crate::backup::install::add_self(&cluster, &selection, &mut artifacts)?;
    let known_hosts = state.root().join("known_hosts");
    let targets = cluster
        .hosts
        .iter()
        .map(|h| GatherTarget {
            target: SshTarget::from_host(h, &known_hosts),
            request: plan::probe_request(&cluster, &tree, &h.name),
        })
        .collect();
    let connector = Arc::new(SshConnector::new(ConnectOptions::default()));
    let gathered = gather(connector, targets, args.concurrency).await;
    let observed = crate::observe::observe(&cluster, &state, &selection, &gathered).await?;
    let input = PlanInput {
        cluster: &cluster,
        tree: &tree,
        facts: &gathered.facts,
        artifacts: &artifacts,
        selection: &selection,
        observed: &observed,
    };
    let plan = plan::plan(input).map_err(|e| miette!("{e}"))?;
    Ok(Prepared {
        cluster,
        state,
        plan,
        transports: gathered.transports,
        host_key_refused: gathered.host_key_refused,
    })
}

pub fn run(global: &Global, args: Args) -> miette::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    let prepared = runtime.block_on(prepare(global, &args))?;
    print_plan(global.output, &prepared.plan)?;
    Ok(if prepared.plan.blocked.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints the plan as text (stdout) or as one JSON document.
pub fn print_plan(output: OutputFormat, plan: &Plan) -> miette::Result<()> {
    match output {
        OutputFormat::Human => print!("{}", plan::render_text(plan)),
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(plan).into_diagnostic()?);
        }
    }
    Ok(())
}
