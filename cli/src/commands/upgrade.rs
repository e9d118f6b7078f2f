//! `kubeforge upgrade plan|apply`: move a running cluster to the spec's versions. `plan` is
//! read-only: it reads every host's versions (facts and etcd's own `status`), applies the skew
//! rules (`plan::upgrade::skew`) and prints the versions, the warnings and the exact steps of
//! `Operation::Upgrade`. `apply` takes the state dir's lock, plans the same way, refuses what
//! the rules refuse (nothing changed), asks unless `--yes`, then — before any host is touched —
//! takes an etcd snapshot from a healthy member into the state dir's `backups/` and verifies it
//! (checksum, etcd's hash, a restore into a throwaway etcd), names it, and executes the plan
//! with the same executor as `apply`. The planner decides every step; this module only does the
//! snapshot, the printing and the confirmation. The versions shown per host are etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and CoreDNS
//! (the last two as the cluster reports them, "not observed" when it did not answer).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;
use kubeforge_playbooks::plan::upgrade::UpgradeReport;
use kubeforge_playbooks::plan::upgrade::skew::Component;
use kubeforge_playbooks::plan::{EtcdClientFiles, Operation, Phase, Plan};
use miette::{IntoDiagnostic as _, miette};

use super::outcome::print_outcome;
use super::plan::{Prepared, prepare_for, print_plan};
use crate::backup::source::{self, Origin};
use crate::backup::verify::{self, EtcdTools};
use crate::backup::{self};
use crate::context::{Global, OutputFormat};
use crate::etcd::{Endpoint, EtcdTls, Timeouts};
use crate::exec::events::{EventSink, JsonLines};
use crate::exec::lock::ApplyLock;
use crate::exec::progress::ProgressBars;
use crate::exec::{AuditLog, AuditRecord, ExecOptions, execute};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the versions every host runs, the skew rules' verdict and the exact steps.
    Plan(Args),
    /// Upgrade: a verified etcd snapshot first, then etcd members one at a time, control
    /// planes one at a time, kubelets in batches.
    Apply(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kubelet hosts drained and upgraded at once.
    #[arg(long, default_value_t = 1)]
    pub max_unavailable: usize,
    /// Hosts worked on at once (probing).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Take artifact files that neither the catalog nor SHA256SUMS vouches for.
    #[arg(long)]
    pub allow_unverified_artifacts: bool,
}

pub fn run(global: &Global, cmd: Command) -> miette::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    match cmd {
        Command::Plan(args) => runtime.block_on(plan_cmd(global, args)),
        Command::Apply(args) => runtime.block_on(apply_cmd(global, args)),
    }
}

/// The phases an upgrade does not need the artifacts of (etcd, the control planes', the
/// kubelets' and the add-ons' images are all needed).
fn skips() -> Vec<Phase> {
    vec![Phase::Os, Phase::Runtime, Phase::Pki, Phase::LoadBalancer]
}

async fn prepare(global: &Global, args: &Args) -> miette::Result<Prepared> {
    if args.max_unavailable == 0 {
        return Err(miette!("--max-unavailable must be at least 1"));
    }
    let plan_args = super::plan::Args {
        until: None,
        skip_phases: skips(),
        concurrency: args.concurrency,
        allow_unverified_artifacts: args.allow_unverified_artifacts,
    };
    let op = Operation::Upgrade {
        spec_file: global.file.display().to_string(),
        max_unavailable: args.max_unavailable,
    };
    prepare_for(global, &plan_args, op).await
}

/// The versions table, warnings and what changes, for people.
fn print_versions(report: &UpgradeReport) {
    print!("{}", versions_text(report));
}

/// One block per host: every component it runs, `running → target` where they differ; the
/// add-ons as the cluster reports them ("not observed" when it did not answer), then the
/// rules' warnings and refusals.
fn versions_text(report: &UpgradeReport) -> String {
    use std::fmt::Write as _;
    let t = &report.targets;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Versions (running → spec: etcd {}, Kubernetes {}, CoreDNS {}):",
        t.etcd,
        t.kubernetes,
        t.coredns.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
    );
    let unobserved: Vec<Component> =
        report.addons.iter().filter(|a| a.version.is_none()).map(|a| a.component).collect();
    for h in &report.versions {
        let _ = writeln!(out, "  {}", h.host);
        let before = out.len();
        for c in Component::ALL {
            let cell = match (h.get(c), t.get(c)) {
                (None, _) if c.is_addon() && h.kubelet.is_some() && unobserved.contains(&c) => {
                    "not observed".into()
                }
                (None, _) => continue,
                (Some(r), Some(target)) if r != target => format!("{r} → {target}"),
                (Some(r), _) => format!("{r}"),
            };
            let _ = writeln!(out, "    {:<24} {cell}", c.name());
        }
        if out.len() == before {
            let _ = writeln!(out, "    (none of them runs here yet)");
        }
    }
    for a in &report.addons {
        let _ = writeln!(out, "  {}: {}", a.component.name(), a.source);
    }
    for w in &report.skew.warnings {
        let _ = writeln!(out, "warning: {}", w.message);
    }
    for r in &report.skew.refusals {
        let _ = writeln!(out, "refused: {}", r.message);
    }
    let _ = writeln!(out);
    out
}

fn print_all(global: &Global, prepared: &Prepared) -> miette::Result<()> {
    match global.output {
        OutputFormat::Json => {
            let json = serde_json::json!({ "upgrade": prepared.versions, "plan": prepared.plan });
            println!("{}", serde_json::to_string_pretty(&json).into_diagnostic()?);
        }
        OutputFormat::Human => {
            if let Some(report) = &prepared.versions {
                print_versions(report);
            }
            print_plan(global.output, &prepared.plan)?;
            if prepared.plan.is_converged() {
                println!("Nothing to upgrade: every host runs the spec's versions.");
            }
        }
    }
    Ok(())
}

fn refused(plan: &Plan) -> bool {
    !plan.blocked.is_empty()
}

async fn plan_cmd(global: &Global, args: Args) -> miette::Result<ExitCode> {
    let prepared = prepare(global, &args).await?;
    print_all(global, &prepared)?;
    if refused(&prepared.plan) {
        eprintln!("upgrade refused (see the blocked hosts above); nothing was changed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn record(step: &str, target: Vec<String>, started: Instant, result: String) -> AuditRecord {
    AuditRecord {
        at: crate::exec::audit::now_secs(),
        host: "local".into(),
        phase: "upgrade".into(),
        step: step.into(),
        op: "upgrade",
        target,
        exit_status: None,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        result,
    }
}

/// The target etcd release's binaries from the artifact source, to verify the snapshot with
/// (a 3.5 etcdutl restores a 3.4 snapshot; the reverse is not needed).
fn verify_tools(global: &Global, prepared: &Prepared) -> miette::Result<EtcdTools> {
    let spec_dir = global.file.parent().unwrap_or(Path::new("."));
    crate::artifacts::etcd_tools(&prepared.cluster, spec_dir)
        .map_err(|e| e.wrap_err("verifying the pre-upgrade snapshot"))
}

fn read_tls(files: &EtcdClientFiles) -> miette::Result<EtcdTls> {
    let read = |p: &str| {
        std::fs::read(p).map_err(|e| miette!("cannot read the etcd client file {p}: {e}"))
    };
    Ok(EtcdTls {
        ca_pem: read(&files.ca)?,
        cert_pem: read(&files.cert)?,
        key_pem: read(&files.key)?,
        server_name: None,
    })
}

/// A snapshot from a healthy member (followers first) into `dir`, verified. Returns its path
/// and a one-line summary.
async fn snapshot_first(
    global: &Global,
    prepared: &Prepared,
    dir: &Path,
) -> miette::Result<(PathBuf, String)> {
    let cluster = &prepared.cluster;
    let Some(first) = cluster.etcd_members().next() else {
        return Err(miette!("the spec has no etcd members"));
    };
    let pki_dir = prepared.state.pki_dir().display().to_string();
    let tls = read_tls(&EtcdClientFiles::for_member(&pki_dir, &first.name))?;
    let mut forwards = Vec::new();
    let mut endpoints = Vec::new();
    for m in cluster.etcd_members() {
        let Some(t) = prepared.transports.get(&m.name) else { continue };
        if let Ok(f) = t.forward_local(kubeforge_playbooks::node::ETCD_CLIENT_PORT).await {
            let url = format!("https://127.0.0.1:{}", f.local_addr().port());
            endpoints.push(Endpoint::new(m.name.clone(), url));
            forwards.push(f);
        }
    }
    let chosen = source::pick_member(&endpoints, Some(&tls), Timeouts::default())
        .await
        .map_err(|e| miette!("no member to take the pre-upgrade snapshot from: {e}"))?;
    let prefix = format!("{}-pre-upgrade", cluster.name);
    let origin = Origin {
        cluster: Some(&cluster.name),
        spec_sha256: source::file_sha256(&global.file),
        created_by: "kubeforge upgrade apply",
        prefix: &prefix,
    };
    let taken = source::take(&chosen, dir, origin, |_, _| {})
        .await
        .map_err(|e| miette!("the pre-upgrade snapshot failed: {e}"))?;
    drop(forwards);
    let path = taken.snapshot.path.clone();
    let tools = verify_tools(global, prepared)?;
    let verified = verify::verify(&path, &tools)
        .await
        .map_err(|e| miette!("the pre-upgrade snapshot {} did not verify: {e}", path.display()))?;
    let (_, at) = backup::stamps(time::OffsetDateTime::now_utc());
    let _ = verify::record(&path, &verified, &at);
    let summary = format!(
        "snapshot {} from {} (etcd {}): revision {}, {} keys, verified",
        path.display(),
        chosen.client.endpoint().name,
        chosen.status.version,
        verified.revision,
        verified.key_count
    );
    Ok((path, summary))
}

async fn apply_cmd(global: &Global, args: Args) -> miette::Result<ExitCode> {
    let started = Instant::now();
    let cluster = crate::spec_file::load(&global.file)?;
    let state_root = global.state_dir(&cluster.name);
    let lock = ApplyLock::acquire(&state_root).map_err(|e| miette!("{e}"))?;
    let prepared = prepare(global, &args).await?;
    let (stamp, _) = backup::stamps(time::OffsetDateTime::now_utc());
    let audit =
        AuditLog::create(prepared.state.root(), &format!("{stamp}-{}-upgrade", std::process::id()))
            .into_diagnostic()?;
    print_all(global, &prepared)?;
    let plan = &prepared.plan;
    if refused(plan) {
        audit.record(&record("plan", vec![], started, "refused: hosts blocked".into()));
        return Err(miette!(
            help =
                "fix what each blocked host lists above, then run `kubeforge upgrade plan` again",
            "upgrade refused; nothing was changed on any host"
        ));
    }
    if plan.has_no_steps() {
        return Ok(ExitCode::SUCCESS);
    }
    if !prepared.pending.is_empty() {
        return Err(miette!(
            help = format!(
                "run `kubeforge apply -f {}` at the running versions first, then upgrade",
                global.file.display()
            ),
            "upgrade refused: the state dir lacks certificates or secrets the spec needs:\n{}\
             nothing was changed on any host",
            prepared.pending.describe()
        ));
    }
    if !global.yes
        && !super::confirm::ask(
            "upgrade",
            "Type `upgrade` to upgrade the cluster as planned:",
            &["upgrade"],
        )?
    {
        eprintln!("Nothing was changed.");
        return Ok(ExitCode::FAILURE);
    }

    // 1. A verified snapshot, before any host is touched.
    let snap_started = Instant::now();
    let touches_etcd = plan.phases.iter().any(|p| p.phase == Phase::Etcd && !p.sequence.is_empty());
    let snapshot = if touches_etcd || plan.phases.iter().any(|p| p.phase == Phase::ControlPlane) {
        let dir = prepared.state.root().join("backups");
        match snapshot_first(global, &prepared, &dir).await {
            Ok((path, summary)) => {
                audit.record(&record(
                    "snapshot",
                    vec![path.display().to_string()],
                    snap_started,
                    summary.clone(),
                ));
                if global.output == OutputFormat::Human {
                    println!("Before the upgrade: {summary} (kept)");
                }
                Some(path)
            }
            Err(e) => {
                audit.record(&record("snapshot", vec![], snap_started, format!("refused: {e}")));
                return Err(miette!(
                    help = "fix what the error names (`kubeforge backup create` shows the same), \
                            then run upgrade apply again",
                    "upgrade refused: {e}; nothing was changed on any host"
                ));
            }
        }
    } else {
        None
    };
    let snapshot_secs = snap_started.elapsed().as_secs_f64();

    // 2. Execute.
    let options = ExecOptions { concurrency: args.concurrency, ..ExecOptions::default() };
    let cancel = options.cancel.clone();
    let rerun = plan.operation.rerun();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nCtrl-C: stopping at the next step boundary; run `{rerun}` again to continue \
                 (members already upgraded are skipped). Ctrl-C again to exit now."
            );
            cancel.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    let sink: Box<dyn EventSink> = match global.output {
        OutputFormat::Json => Box::new(JsonLines),
        OutputFormat::Human => {
            Box::new(ProgressBars::new(prepared.cluster.hosts.iter().map(|h| h.name.as_str())))
        }
    };
    let report = execute(plan, &prepared.transports, &options, sink.as_ref(), &audit).await;
    drop(lock);
    let ok = report.succeeded();
    let seconds = started.elapsed().as_secs_f64();
    let kept = snapshot.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let summary = if ok {
        format!(
            "Upgraded in {seconds:.1} s (snapshot {snapshot_secs:.1} s). The pre-upgrade snapshot \
             is kept: {kept}"
        )
    } else {
        format!(
            "The upgrade did not finish (see above); it stopped at the first failure and started \
             nothing after it (a control plane whose components did not come up was given its \
             kept manifests back). Run `{}` again to continue: members and hosts already on the \
             target version are skipped, and nodes it left cordoned are uncordoned. To go back \
             instead: `kubeforge restore --from {kept}` (etcd refuses older binaries once every \
             member runs the new one).",
            plan.operation.rerun()
        )
    };
    audit.record(&record("upgrade", vec![kept.clone()], started, summary.clone()));
    let details = serde_json::json!({
        "succeeded": ok,
        "seconds": seconds,
        "snapshotSeconds": snapshot_secs,
        "snapshot": kept,
    });
    print_outcome(global.output, &report, Some(("upgrade", details)), &[summary], &audit);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use kubeforge_playbooks::plan::upgrade::skew::{HostVersions, Semver, SkewReport, Targets};
    use kubeforge_playbooks::plan::upgrade::{AddonObservation, UpgradeReport};

    use super::*;

    fn v(s: &str) -> Option<Semver> {
        Semver::parse(s)
    }

    fn report(proxy: Option<Semver>, dns: Option<Semver>) -> UpgradeReport {
        let cp1 = HostVersions {
            host: "cp1".into(),
            etcd: v("3.5.21"),
            kube_apiserver: v("1.33.1"),
            kube_controller_manager: v("1.33.1"),
            kube_scheduler: v("1.34.1"),
            kubelet: v("1.33.1"),
            kube_proxy: proxy,
            coredns: dns,
        };
        let e1 = HostVersions { host: "etcd1".into(), etcd: v("3.5.21"), ..Default::default() };
        let fresh = HostVersions { host: "new1".into(), ..Default::default() };
        let seen = |c, version: Option<Semver>, source: &str| AddonObservation {
            component: c,
            version,
            source: source.into(),
        };
        UpgradeReport {
            versions: vec![cp1, e1, fresh],
            targets: Targets {
                kubernetes: Semver::new(1, 34, 1),
                etcd: Semver::new(3, 6, 4),
                kubeadm_etcd: v("3.6.4"),
                coredns: v("1.12.1"),
            },
            addons: vec![
                seen(Component::KubeProxy, proxy, "DaemonSet kube-system/kube-proxy on cp1"),
                seen(
                    Component::Coredns,
                    dns,
                    "not observed: cp1 could not read it (kubectl exit 1)",
                ),
            ],
            changes: Vec::new(),
            skew: SkewReport::default(),
        }
    }

    #[test]
    fn every_component_of_every_host_is_shown_and_an_unobserved_addon_says_so() {
        let text = versions_text(&report(v("1.33.1"), None));
        assert_eq!(
            text,
            "Versions (running → spec: etcd 3.6.4, Kubernetes 1.34.1, CoreDNS 1.12.1):
  cp1
    etcd                     3.5.21 → 3.6.4
    kube-apiserver           1.33.1 → 1.34.1
    kube-controller-manager  1.33.1 → 1.34.1
    kube-scheduler           1.34.1
    kubelet                  1.33.1 → 1.34.1
    kube-proxy               1.33.1 → 1.34.1
    coredns                  not observed
  etcd1
    etcd                     3.5.21 → 3.6.4
  new1
    (none of them runs here yet)
  kube-proxy: DaemonSet kube-system/kube-proxy on cp1
  coredns: not observed: cp1 could not read it (kubectl exit 1)

"
        );
    }
}
