//! `kubeforge plan`: load the spec, render every host's files, gather facts from all hosts in
//! parallel, and print the Plan (text with diffs, or JSON). `apply` builds its plan with exactly
//! this code (`prepare`), so what `plan` shows is what `apply` does.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use kubeforge_pki::Store;
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::pki_inputs::pki_request;
use kubeforge_playbooks::plan::{self, Phase, PhaseSelection, Plan, PlanInput};
use kubeforge_playbooks::render::{RenderInput, render};
use miette::{IntoDiagnostic as _, WrapErr as _, miette};

use crate::context::{Global, OutputFormat};
use crate::gather::{GatherTarget, gather};
use crate::secrets_store::Secrets;
use crate::state::StateDir;
use crate::transport::ssh::SshConnector;
use crate::transport::{ConnectOptions, Transport};

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
    /// Take artifact files that neither the built-in catalog nor the artifact directory's
    /// SHA256SUMS vouches for (the plan marks each push of them as unverified).
    #[arg(long)]
    pub allow_unverified_artifacts: bool,
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
    /// What the plan's files were rendered from and `apply` saves to the state dir before it
    /// changes any host; `plan` only shows it.
    pub pending: PendingState,
    /// etcd as observed while planning (members and their health), for operations that check
    /// it before they start (`certs rotate-ca`).
    pub observed: plan::Observed,
    /// The files the plan was made from, per host: what a successful run records in
    /// `<state>/applied.json` (`crate::applied_store`).
    pub tree: kubeforge_playbooks::render::RenderTree,
    /// The versions the hosts run against the spec's, and the skew rules' verdict.
    pub versions: Option<plan::upgrade::UpgradeReport>,
}

/// State-dir changes a plan depends on: certificates issued or reissued for the spec, and
/// cluster secrets that do not exist yet. Computed in memory; written only by [`Self::save`].
pub struct PendingState {
    old_pki: Store,
    new_pki: Store,
    pki_report: kubeforge_pki::Report,
    secrets: Secrets,
}

impl PendingState {
    /// Whether applying the plan writes anything to the state dir.
    pub fn is_empty(&self) -> bool {
        self.pki_report.is_unchanged() && matches!(self.secrets, Secrets::Stored(_))
    }

    /// What would be written, for the plan's output.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        if !self.pki_report.is_unchanged() {
            text.push_str(&self.pki_report.to_string());
        }
        if matches!(self.secrets, Secrets::New(_)) {
            text.push_str("create    secrets.json: the cluster's encryption keys and tokens\n");
        }
        text
    }

    /// Writes the certificates and secrets the plan was rendered from. Replaced files are kept
    /// under `pki-replaced/`; a file changed on disk since the plan is refused, not replaced.
    pub fn save(&self, state: &StateDir) -> miette::Result<()> {
        state.save_pki(&self.old_pki, &self.new_pki, &self.pki_report.replaced_files())?;
        if let Secrets::New(secrets) = &self.secrets {
            let saved = crate::secrets_store::save_new(state.root(), secrets)?;
            if &saved != secrets {
                return Err(miette!(
                    help = "run the command again: it plans with the secrets now in the state dir",
                    "another kubeforge created {} while this one was planning; nothing was changed \
                     on any host",
                    state.root().join(crate::secrets_store::SECRETS_FILE).display()
                ));
            }
        }
        Ok(())
    }
}

/// Spec → render tree → facts → Plan. Shared by `plan` and `apply`. Read-only: certificates
/// and secrets the plan needs are made in memory ([`PendingState`]); only host keys seen for
/// the first time are recorded (`accept-new`). A refused host key is the error, before any
/// cluster observation, so a spec pointing at the wrong machines is never planned against.
pub async fn prepare(global: &Global, args: &Args) -> miette::Result<Prepared> {
    prepare_for(global, args, plan::Operation::Apply).await
}

/// [`prepare`] for any operation: the same spec, render, artifacts and facts; etcd is observed
/// only when the operation plans from it (`Operation::observes_etcd`).
pub async fn prepare_for(
    global: &Global,
    args: &Args,
    operation: plan::Operation,
) -> miette::Result<Prepared> {
    let cluster = crate::spec_file::load(&global.file)?;
    let state = StateDir::open(&global.state_dir(&cluster.name))?;
    // Gathering records new host keys (accept-new) in the state dir: a writer, so it holds the
    // lock (re-entrant: `apply` already holds it).
    let _lock = state.lock()?;
    let old_pki = state.load_pki()?;
    let mut serials = super::certs::OsSerials::default();
    let outcome = kubeforge_pki::generate(
        &pki_request(&cluster),
        &old_pki,
        time::OffsetDateTime::now_utc(),
        &mut serials,
    )
    .map_err(|e| miette!("{e}"))
    .wrap_err_with(|| format!("certificates for the spec: state dir {}", state.root().display()))?;
    if serials.failed() {
        return Err(miette!("the operating system's random generator failed; nothing was saved"));
    }
    let secrets = crate::secrets_store::load_or_generate(state.root())?;
    let tree =
        render(RenderInput { cluster: &cluster, pki: &outcome.store, secrets: secrets.get() })
            .map_err(|e| miette!("{e}"))
            .wrap_err("rendering the hosts' files")?;
    let pending =
        PendingState { old_pki, new_pki: outcome.store, pki_report: outcome.report, secrets };
    let spec_dir = global.file.parent().unwrap_or(Path::new("."));
    let selection = PhaseSelection::new(args.until, &args.skip_phases);
    let mut artifacts = crate::artifacts::inventory(
        &cluster,
        spec_dir,
        &selection,
        args.allow_unverified_artifacts,
    )?;
    crate::backup::install::add_self(&cluster, &selection, &mut artifacts)?;
    let known_hosts = state.root().join("known_hosts");
    let applied = crate::applied_store::load(state.root())?;
    let spec_targets = crate::transport::ssh_targets(&cluster, &known_hosts)?;
    let departed = match (&operation, &applied) {
        (plan::Operation::Apply, Some(applied)) => {
            departed_targets(&cluster, applied, &spec_targets)
        }
        _ => Vec::new(),
    };
    let departed_names: Vec<String> = departed.iter().map(|t| t.target.host.clone()).collect();
    let mut targets: Vec<GatherTarget> = spec_targets
        .into_iter()
        .zip(&cluster.hosts)
        .map(|(target, h)| GatherTarget {
            target,
            request: plan::probe_request_for(&operation, &cluster, &tree, &h.name),
        })
        .collect();
    targets.extend(departed);
    let connector = Arc::new(SshConnector::new(ConnectOptions::default()));
    let mut gathered = gather(connector, targets, args.concurrency).await;
    // A host that left the spec and answers with another key is another machine now: it is
    // named as not reached (nothing is done on it), and the spec's hosts are still planned.
    for name in &departed_names {
        if let Some(reason) = gathered.host_key_refused.remove(name) {
            gathered.transports.remove(name);
            gathered.facts.insert(name.clone(), Err(format!("host key refused: {reason}")));
        }
    }
    if !gathered.host_key_refused.is_empty() {
        return Err(host_keys_refused(&gathered.host_key_refused));
    }
    let observed = if operation.observes_etcd() {
        crate::observe::observe(&cluster, &state, &selection, &gathered).await?
    } else {
        plan::Observed {
            local_pki_dir: state.pki_dir().display().to_string(),
            ..plan::Observed::default()
        }
    };
    let input = PlanInput {
        cluster: &cluster,
        tree: &tree,
        facts: &gathered.facts,
        artifacts: &artifacts,
        selection: &selection,
        observed: &observed,
        applied: applied.as_ref(),
    };
    let plan = plan::plan(&operation, input).map_err(|e| miette!("{e}"))?;
    let versions = plan::upgrade::report(input);
    Ok(Prepared {
        cluster,
        state,
        plan,
        transports: gathered.transports,
        pending,
        observed,
        tree,
        versions,
    })
}

/// Where to reach each host the last applied generation had and the spec no longer has: its
/// last applied address, port and user, with the spec's first host's SSH settings (key,
/// bastion, known_hosts file) and a strict host-key check (its key is known from the apply
/// that set it up; a new machine at that address is not cleaned).
fn departed_targets(
    cluster: &Cluster,
    applied: &kubeforge_playbooks::applied::Applied,
    spec_targets: &[crate::transport::SshTarget],
) -> Vec<GatherTarget> {
    let Some(template) = spec_targets.first() else { return Vec::new() };
    applied
        .hosts_and_departed()
        .filter(|(name, host)| {
            cluster.host(name).is_none() && !plan::departed_address_reused(cluster, host)
        })
        .map(|(name, host)| {
            let mut target = template.clone();
            target.host = name.to_string();
            target.address = host.address.clone();
            target.port = host.ssh_port;
            target.user = host.ssh_user.clone();
            target.host_key_policy = crate::transport::HostKeyPolicy::Strict;
            GatherTarget { target, request: plan::departed_probe_request(host) }
        })
        .collect()
}

/// The error for refused host keys: it names every host and why, and comes before anything
/// else is looked at (etcd's health through a wrong machine would give misleading advice).
fn host_keys_refused(refused: &BTreeMap<String, String>) -> miette::Report {
    let reasons: Vec<String> = refused.iter().map(|(h, r)| format!("  {h}: {r}")).collect();
    let hosts: Vec<&str> = refused.keys().map(String::as_str).collect();
    miette!(
        help = "check that each host's address in the spec is right and that the machines were \
                not replaced; if a machine was reinstalled on purpose, remove its old line from \
                the known_hosts file named above and run again",
        "host key verification failed for {}; nothing was changed on any host or in the state \
         dir\n{}",
        hosts.join(", "),
        reasons.join("\n")
    )
}

pub fn run(global: &Global, args: Args) -> miette::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    let prepared = runtime.block_on(prepare(global, &args))?;
    print_pending(global.output, &prepared.pending);
    print_plan(global.output, &prepared.plan)?;
    Ok(if prepared.plan.blocked.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Says what `apply` would write to the state dir (certificates issued or reissued and why),
/// on stderr so that stdout stays the plan alone.
pub fn print_pending(output: OutputFormat, pending: &PendingState) {
    if output == OutputFormat::Human && !pending.is_empty() {
        eprint!("State dir changes (made by apply, before any host):\n{}", pending.describe());
    }
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
