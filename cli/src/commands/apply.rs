//! `kubeforge apply`: take the state dir's lock, build the same plan `kubeforge plan` shows,
//! print it, ask (unless `--yes`), then execute it with progress bars (or JSON event lines),
//! an audit log in the state dir, Ctrl-C stopping at the next step boundary, and a report of
//! every failing host. Re-running after a failure resumes: the new plan holds only what is left.

use std::process::ExitCode;

use miette::{IntoDiagnostic as _, miette};

use super::outcome::print_outcome;
use super::plan::{prepare, print_pending, print_plan};
use crate::context::{Global, OutputFormat};
use crate::exec::events::{EventSink, JsonLines};
use crate::exec::lock::ApplyLock;
use crate::exec::progress::ProgressBars;
use crate::exec::{AuditLog, ExecOptions, execute};

/// `apply` takes exactly `plan`'s arguments: it is the same plan, then executed.
pub use super::plan::Args;

pub fn run(global: &Global, args: Args) -> miette::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(apply(global, args))
}

async fn apply(global: &Global, args: Args) -> miette::Result<ExitCode> {
    // The lock comes first: two applies must not even plan against each other's changes.
    let cluster_name = crate::spec_file::load(&global.file)?.name;
    let lock = ApplyLock::acquire(&global.state_dir(&cluster_name)).map_err(|e| miette!("{e}"))?;
    let prepared = prepare(global, &args).await?;
    let plan = &prepared.plan;
    print_pending(global.output, &prepared.pending);
    print_plan(global.output, plan)?;
    if plan.has_no_steps() && plan.blocked.is_empty() && prepared.pending.is_empty() {
        // The hosts match the spec: a cluster applied before applied.json existed (or whose
        // record was moved aside) gets its first record now.
        // Hosts that left the spec with nothing of kubeforge left on them leave the record.
        if crate::applied_store::load(prepared.state.root())?.is_none()
            || !plan.departed_cleaned().is_empty()
        {
            crate::applied_store::after_run(
                prepared.state.root(),
                crate::applied_store::RunOutcome {
                    succeeded: true,
                    cluster: &prepared.cluster,
                    tree: &prepared.tree,
                    operation: plan.operation.name(),
                    phases: plan.phases.iter().map(|p| p.phase.name().to_string()).collect(),
                    departed_cleaned: plan.departed_cleaned(),
                },
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !plan.has_no_steps()
        && !global.yes
        && !super::confirm::ask(
            "apply",
            &format!("Apply these changes to {} host(s)? [y/N]", plan.hosts_with_steps().len()),
            super::confirm::YES,
        )?
    {
        eprintln!("Nothing was changed.");
        return Ok(ExitCode::FAILURE);
    }
    // The hosts' new files were rendered from these certificates and secrets: they are saved
    // before any host changes, so the state dir always holds what the hosts may have.
    prepared.pending.save(&prepared.state)?;

    let name = crate::state::run_stamp();
    let audit = AuditLog::create(prepared.state.root(), &name).into_diagnostic()?;
    let options = ExecOptions { concurrency: args.concurrency, ..ExecOptions::default() };
    let cancel = options.cancel.clone();
    let rerun = plan.operation.rerun();
    crate::exec::interrupt::install(cancel, rerun.to_string());
    let sink: Box<dyn EventSink> = match global.output {
        OutputFormat::Json => Box::new(JsonLines),
        OutputFormat::Human => {
            Box::new(ProgressBars::new(prepared.cluster.hosts.iter().map(|h| h.name.as_str())))
        }
    };
    let report = execute(plan, &prepared.transports, &options, sink.as_ref(), &audit).await;
    // What the hosts now hold, recorded only when every step succeeded (see applied_store).
    let recorded = crate::applied_store::after_run(
        prepared.state.root(),
        crate::applied_store::RunOutcome {
            succeeded: report.succeeded(),
            cluster: &prepared.cluster,
            tree: &prepared.tree,
            operation: plan.operation.name(),
            phases: plan.phases.iter().map(|p| p.phase.name().to_string()).collect(),
            departed_cleaned: plan.departed_cleaned(),
        },
    );
    drop(lock);
    let recorded = match recorded {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warning: the run finished but its record was not written: {e:?}");
            None
        }
    };
    let recorded_line = recorded.as_ref().map(|applied| {
        format!(
            "Recorded applied generation {} in {}.",
            applied.generation,
            prepared.state.root().join(crate::applied_store::APPLIED_FILE).display()
        )
    });
    print_outcome(global.output, &report, None, recorded_line.as_slice(), &audit);
    Ok(if report.succeeded() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
