//! `kubeforge reset [--hosts a,b]`: return hosts to the state before kubeforge, with a plan
//! first. In order: take the state dir's lock; gather facts (and, for some hosts only, etcd's
//! member list, so reset members are removed from etcd first); plan `Operation::Reset` (the
//! planner, `kubeforge_playbooks::plan` `reset`, decides every step and refuses what would
//! break quorum); print the plan and a warning; ask unless `--yes`; execute with the same
//! executor as `apply`. Only after a run that succeeded everywhere does it touch the state
//! dir: the applied-state record drops the reset hosts; `--forget-host-keys` removes their
//! known_hosts entries (the file's old version is kept as `known_hosts.old`);
//! `--purge-state` (whole cluster only) moves the state dir aside, never deleting it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::plan::{self, Operation, Phase};
use miette::{IntoDiagnostic as _, WrapErr as _, miette};

use super::outcome::print_outcome;
use super::plan::{prepare_for, print_plan};
use crate::context::{Global, OutputFormat};
use crate::exec::events::{EventSink, JsonLines};
use crate::exec::lock::ApplyLock;
use crate::exec::progress::ProgressBars;
use crate::exec::{AuditLog, ExecOptions, execute};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these hosts (comma-separated spec names) [default: every host in the spec].
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Also remove the reset hosts' entries from the state dir's known_hosts (kept otherwise,
    /// so the same machines are recognised when applied again).
    #[arg(long)]
    pub forget_host_keys: bool,
    /// Whole cluster only: afterwards, move the state dir (PKI, secrets, backups, logs) aside
    /// to `<state>.reset-<stamp>`; it is never deleted.
    #[arg(long, conflicts_with = "hosts")]
    pub purge_state: bool,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

pub fn run(global: &Global, args: Args) -> miette::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(reset(global, args))
}

/// The phases whose facts and artifacts a reset gathers: etcd's alone when some members may
/// stay (its member list is read), none beyond the fixed facts otherwise.
fn plan_args(args: &Args) -> super::plan::Args {
    let (until, skip_phases) = if args.hosts.is_empty() {
        (Some(Phase::Preflight), Vec::new())
    } else {
        (Some(Phase::Etcd), vec![Phase::Preflight, Phase::Os, Phase::Runtime, Phase::Pki])
    };
    super::plan::Args {
        until,
        skip_phases,
        concurrency: args.concurrency,
        allow_unverified_artifacts: true,
    }
}

fn check_hosts(cluster: &Cluster, hosts: &[String]) -> miette::Result<()> {
    let unknown: Vec<&str> =
        hosts.iter().filter(|h| cluster.host(h).is_none()).map(String::as_str).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(miette!(
        help = format!(
            "the spec's hosts are: {}",
            cluster.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
        "--hosts names {} that the spec does not have; nothing was changed",
        unknown.join(", ")
    ))
}

async fn reset(global: &Global, args: Args) -> miette::Result<ExitCode> {
    let cluster = crate::spec_file::load(&global.file)?;
    check_hosts(&cluster, &args.hosts)?;
    let state_root = global.state_dir(&cluster.name);
    // The lock comes first: no apply may plan or change hosts while a reset runs.
    let lock = ApplyLock::acquire(&state_root).map_err(|e| miette!("{e}"))?;
    let (stamp, _) = crate::backup::stamps(time::OffsetDateTime::now_utc());
    let operation = Operation::Reset {
        hosts: args.hosts.clone(),
        spec_file: global.file.display().to_string(),
        stamp: stamp.clone(),
    };
    let prepared = prepare_for(global, &plan_args(&args), operation).await?;
    let plan = &prepared.plan;
    print_plan(global.output, plan)?;
    let targets: Vec<String> = if args.hosts.is_empty() {
        prepared.cluster.hosts.iter().map(|h| h.name.clone()).collect()
    } else {
        args.hosts.clone()
    };
    let mut ok = plan.blocked.is_empty();
    if !plan.has_no_steps() {
        if global.output == OutputFormat::Human || !global.yes {
            eprintln!(
                "\nWARNING: this is destructive. On {} it STOPS and disables every \
                 kubeforge-managed service and REMOVES every file kubeforge put there; etcd's \
                 data is moved to {} (kept, never deleted).{}",
                targets.join(", "),
                plan::reset_data_dir(&stamp),
                if args.hosts.is_empty() {
                    " The cluster stops existing."
                } else {
                    " Reset etcd members are removed from etcd first."
                }
            );
        }
        if !global.yes
            && !super::confirm::ask(
                "reset",
                "Type `reset` to stop and remove kubeforge's services and files on these hosts:",
                &["reset"],
            )?
        {
            eprintln!("Nothing was changed.");
            return Ok(ExitCode::FAILURE);
        }
        let audit = AuditLog::create(
            prepared.state.root(),
            &format!("{stamp}-{}-reset", std::process::id()),
        )
        .into_diagnostic()?;
        let options = ExecOptions { concurrency: args.concurrency, ..ExecOptions::default() };
        let cancel = options.cancel.clone();
        crate::exec::interrupt::install(cancel, plan.operation.rerun());
        let sink: Box<dyn EventSink> = match global.output {
            OutputFormat::Json => Box::new(JsonLines),
            OutputFormat::Human => {
                Box::new(ProgressBars::new(prepared.cluster.hosts.iter().map(|h| h.name.as_str())))
            }
        };
        let report = execute(plan, &prepared.transports, &options, sink.as_ref(), &audit).await;
        ok &= report.succeeded();
        print_outcome(global.output, &report, None, &[], &audit);
    }
    if !ok {
        eprintln!(
            "The reset did not finish on every host; the state dir was left as it was. Run `{}` \
             again to finish.",
            plan.operation.rerun()
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut notes: Vec<String> =
        crate::applied_store::after_reset(prepared.state.root(), &args.hosts, &stamp)?
            .into_iter()
            .collect();
    if args.forget_host_keys {
        notes.push(forget_host_keys(prepared.state.root(), &prepared.cluster, &targets)?);
    }
    if args.purge_state {
        let aside = purge_state(prepared.state.root(), &stamp)?;
        notes.push(format!("the state dir was moved to {}", aside.display()));
    }
    drop(lock);
    if global.output == OutputFormat::Human {
        for n in notes {
            println!("{n}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes the hosts' entries from the state dir's known_hosts with `ssh-keygen -R` (which
/// understands hashed entries and keeps the old file as `known_hosts.old`).
fn forget_host_keys(
    state_root: &Path,
    cluster: &Cluster,
    hosts: &[String],
) -> miette::Result<String> {
    let file = state_root.join("known_hosts");
    if !file.exists() {
        return Ok("no known_hosts file in the state dir".into());
    }
    let mut forgotten = Vec::new();
    for name in hosts {
        let Some(host) = cluster.host(name) else { continue };
        let entry = crate::transport::known_hosts::known_hosts_name(
            &host.address.to_string(),
            host.ssh.port,
        );
        let out = std::process::Command::new("ssh-keygen")
            .arg("-R")
            .arg(&entry)
            .arg("-f")
            .arg(&file)
            .output()
            .into_diagnostic()
            .wrap_err("running ssh-keygen -R (OpenSSH's client tools are needed)")?;
        if !out.status.success() {
            return Err(miette!(
                "ssh-keygen -R {entry} -f {} failed ({}): {}",
                file.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        forgotten.push(entry);
    }
    Ok(format!(
        "host keys of {} removed from {} (the old file is {}.old)",
        forgotten.join(", "),
        file.display(),
        file.display()
    ))
}

/// Moves the whole state dir aside (never deleted).
fn purge_state(state_root: &Path, stamp: &str) -> miette::Result<PathBuf> {
    let name = state_root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let aside = state_root.with_file_name(format!("{name}.reset-{stamp}"));
    std::fs::rename(state_root, &aside)
        .into_diagnostic()
        .wrap_err_with(|| format!("moving the state dir {} aside", state_root.display()))?;
    Ok(aside)
}
