//! The executor: runs a `Plan` over connected transports. Phases run in order; within a phase,
//! hosts run in parallel (at most `concurrency` at once), each host's steps in plan order; then
//! the phase's sequence runs one step at a time (skipped when a host failed in the phase), its
//! etcd operations through SSH tunnels (`etcd_ops`). Every
//! step maps to transport calls mechanically: the executor decides nothing about the cluster.
//! A host that fails stops (its later steps and phases are skipped) while the others go on;
//! cancellation (Ctrl-C) stops every host at its next step boundary. Re-running after a
//! failure resumes: a fresh plan contains only what is still missing.

pub mod audit;
mod etcd_ops;
pub mod events;
pub mod interrupt;
pub mod lock;
pub mod progress;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubeforge_playbooks::plan::{Plan, SequencedStep, Step};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::transport::{
    FileContents, PutFile, PutOutcome, RemoteCommand, Transport, TransportError,
};
pub use audit::{AuditLog, AuditRecord};
pub use events::{Event, EventSink, StepOutcome};
pub use report::{HostFailure, RunReport};

/// How a run is carried out (not what it does: that is the plan).
#[derive(Clone)]
pub struct ExecOptions {
    /// Hosts worked on at once.
    pub concurrency: usize,
    /// Cancelled by Ctrl-C: stop at the next step boundary.
    pub cancel: CancellationToken,
    /// Start no later phase after a failure, whatever the operation (a CA rotation's stage:
    /// no kubelet restarted after a control plane that did not come back). Upgrades always do
    /// ([`Operation::stops_at_first_failure`]).
    pub stop_at_first_failure: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            concurrency: 16,
            cancel: CancellationToken::new(),
            stop_at_first_failure: false,
        }
    }
}

/// Runs the plan. `transports` holds a connection for every host that has steps; a host with
/// steps but no transport is reported as unreachable.
pub async fn execute(
    plan: &Plan,
    transports: &BTreeMap<String, Arc<dyn Transport>>,
    options: &ExecOptions,
    events: &dyn EventSink,
    audit: &AuditLog,
) -> RunReport {
    let rerun_text = plan.operation.rerun();
    let rerun = rerun_text.as_str();
    let mut report = RunReport { rerun: rerun.to_string(), ..RunReport::default() };
    for (host, problems) in &plan.blocked {
        for p in problems {
            events.emit(&Event::HostBlocked { host: host.clone(), reason: p.message.clone() });
            report.failures.push(HostFailure::blocked(host, p));
        }
    }
    // Hosts that get nothing more in this run: blocked, failed, or not reached by a batched
    // phase that stopped at a failure. Later phases skip them.
    let mut failed: BTreeSet<String> = plan.blocked.keys().cloned().collect();
    let semaphore = Arc::new(Semaphore::new(options.concurrency.max(1)));
    for (index, phase) in plan.phases.iter().enumerate() {
        if options.cancel.is_cancelled() {
            report.interrupted = true;
            report.not_started = plan.phases[index..].iter().map(|p| p.phase.to_string()).collect();
            events.emit(&Event::Interrupted { phase: phase.phase.to_string() });
            break;
        }
        let hosts: Vec<(&String, &Vec<Step>)> =
            phase.hosts.iter().filter(|(h, _)| !failed.contains(*h)).collect();
        if hosts.is_empty() && phase.sequence.is_empty() {
            continue;
        }
        let phase_name = phase.phase.to_string();
        events.emit(&Event::PhaseStarted { phase: phase_name.clone(), hosts: hosts.len() });
        let runner = HostRunner { phase: &phase_name, rerun, transports, options, events, audit };
        let run_host = |host: &String, steps: &Vec<Step>| {
            let semaphore = semaphore.clone();
            let runner = &runner;
            let phase_name = &phase_name;
            let host = host.clone();
            let steps = steps.clone();
            async move {
                let Ok(_permit) = semaphore.acquire().await else {
                    return HostRun::default();
                };
                let Some(transport) = transports.get(&host) else {
                    let failure = HostFailure::unreachable(&host, phase_name, rerun);
                    return HostRun { failure: Some(failure), ..HostRun::default() };
                };
                runner.run_host(&host, &steps, transport.as_ref()).await
            }
        };
        // Batches in name order (the whole phase when it has no batch size), each starting
        // when the previous one finished; a failure or Ctrl-C stops the batches after it.
        let batch_size = phase.batch.unwrap_or(usize::MAX).max(1);
        let mut results = Vec::new();
        let mut batches = hosts.chunks(batch_size);
        for batch in batches.by_ref() {
            let runs = futures_join_all(batch.iter().map(|(h, s)| run_host(h, s))).await;
            let stop = runs.iter().any(|r| r.failure.is_some() || r.interrupted);
            results.extend(runs);
            if stop {
                break;
            }
        }
        for (host, _) in batches.flatten() {
            failed.insert((*host).clone());
            report.not_reached.insert((*host).clone(), phase_name.clone());
            events.emit(&Event::HostSkipped {
                host: (*host).clone(),
                phase: phase_name.clone(),
                reason: "an earlier host of this phase failed".into(),
            });
        }
        let mut phase_failed = false;
        for run in results {
            report.changed += run.changed;
            report.unchanged += run.unchanged;
            report.interrupted |= run.interrupted;
            if let Some(failure) = run.failure {
                phase_failed = true;
                failed.insert(failure.host.clone());
                report.failures.push(failure);
            }
        }
        if !phase.sequence.is_empty() && !phase_failed && !report.interrupted {
            let run = runner.run_sequence(&phase.sequence, &failed).await;
            report.changed += run.changed;
            report.unchanged += run.unchanged;
            report.interrupted |= run.interrupted;
            if let Some(failure) = run.failure {
                failed.insert(failure.host.clone());
                report.failures.push(failure);
            }
        }
        events.emit(&Event::PhaseFinished { phase: phase_name.clone() });
        // An operation that must not go on past a failure (an upgrade: no kubelet newer than
        // a control plane that failed or was rolled back) starts no later phase.
        if (plan.operation.stops_at_first_failure() || options.stop_at_first_failure)
            && !report.failures.is_empty()
            && !report.interrupted
        {
            report.not_started =
                plan.phases[index + 1..].iter().map(|p| p.phase.to_string()).collect();
            break;
        }
        if report.interrupted {
            report.not_started =
                plan.phases[index + 1..].iter().map(|p| p.phase.to_string()).collect();
            events.emit(&Event::Interrupted { phase: phase_name });
            break;
        }
    }
    events.emit(&Event::RunFinished {
        changed: report.changed,
        unchanged: report.unchanged,
        failed_hosts: report.failed_hosts().len(),
        interrupted: report.interrupted,
    });
    report
}

/// Awaits every future concurrently (they are bounded by the semaphore), keeping their order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut results: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = set.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => {
                        *result = Some(out);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    results.into_iter().flatten().collect()
}

#[derive(Default)]
struct HostRun {
    changed: usize,
    unchanged: usize,
    interrupted: bool,
    failure: Option<HostFailure>,
}

/// What every host's run in one phase shares.
struct HostRunner<'a> {
    phase: &'a str,
    /// The command that resumes the run, for remedies.
    rerun: &'a str,
    transports: &'a BTreeMap<String, Arc<dyn Transport>>,
    options: &'a ExecOptions,
    events: &'a dyn EventSink,
    audit: &'a AuditLog,
}

impl HostRunner<'_> {
    async fn run_host(&self, host: &str, steps: &[Step], transport: &dyn Transport) -> HostRun {
        let mut run = HostRun::default();
        for step in steps {
            if self.options.cancel.is_cancelled() {
                run.interrupted = true;
                break;
            }
            if !self.run_one(host, step, transport, &mut run).await {
                break;
            }
        }
        run
    }

    /// The phase's sequence, one step at a time; the first failure stops it.
    async fn run_sequence(&self, sequence: &[SequencedStep], failed: &BTreeSet<String>) -> HostRun {
        let mut run = HostRun::default();
        for s in sequence {
            if self.options.cancel.is_cancelled() {
                run.interrupted = true;
                break;
            }
            if failed.contains(&s.host) {
                run.failure = Some(HostFailure::failed_earlier(&s.host, self.phase, self.rerun));
                break;
            }
            let Some(transport) = self.transports.get(&s.host) else {
                run.failure = Some(HostFailure::unreachable(&s.host, self.phase, self.rerun));
                break;
            };
            if !self.run_one(&s.host, &s.step, transport.as_ref(), &mut run).await {
                break;
            }
        }
        run
    }

    /// Runs one step with its events; false when it failed (recorded in `run`).
    async fn run_one(
        &self,
        host: &str,
        step: &Step,
        transport: &dyn Transport,
        run: &mut HostRun,
    ) -> bool {
        let (phase, events) = (self.phase, self.events);
        let label = step.label();
        events.emit(&Event::StepStarted {
            host: host.into(),
            phase: phase.into(),
            step: label.clone(),
        });
        let started = Instant::now();
        let ctx = StepContext {
            host,
            phase,
            rerun: self.rerun,
            cancel: &self.options.cancel,
            label: &label,
            transport,
            transports: self.transports,
            audit: self.audit,
        };
        match ctx.run_step(step).await {
            Ok(outcome) => {
                match outcome {
                    StepOutcome::Changed => run.changed += 1,
                    StepOutcome::Unchanged => run.unchanged += 1,
                }
                events.emit(&Event::StepFinished {
                    host: host.into(),
                    phase: phase.into(),
                    step: label,
                    outcome,
                    duration_ms: started.elapsed().as_millis() as u64,
                });
                true
            }
            Err(StepError::Interrupted) => {
                run.interrupted = true;
                false
            }
            Err(StepError::Failed(failure)) => {
                events.emit(&Event::StepFailed {
                    host: host.into(),
                    phase: phase.into(),
                    step: label,
                    error: failure.summary(),
                });
                run.failure = Some(failure);
                false
            }
        }
    }
}

/// Why a step did not finish: it failed, or Ctrl-C stopped it while it waited (a gate).
pub(crate) enum StepError {
    Failed(HostFailure),
    Interrupted,
}

impl From<HostFailure> for StepError {
    fn from(failure: HostFailure) -> Self {
        StepError::Failed(failure)
    }
}

struct StepContext<'a> {
    host: &'a str,
    phase: &'a str,
    rerun: &'a str,
    /// Ctrl-C: waits (gates, etcd health) end at once, as an interruption.
    cancel: &'a CancellationToken,
    label: &'a str,
    transport: &'a dyn Transport,
    /// Every host's connection (an etcd health gate tunnels to each member).
    transports: &'a BTreeMap<String, Arc<dyn Transport>>,
    audit: &'a AuditLog,
}

impl StepContext<'_> {
    async fn run_step(&self, step: &Step) -> Result<StepOutcome, StepError> {
        match step {
            Step::PutFile(f) => {
                let put = PutFile {
                    path: f.path.clone(),
                    contents: FileContents::Bytes(Arc::from(f.contents.as_slice())),
                    mode: f.mode,
                    owner: f.owner.clone(),
                    group: f.group.clone(),
                    secret: f.secret,
                };
                Ok(self.put("put", &put).await?)
            }
            Step::PushArtifact(a) => {
                let put = PutFile {
                    path: a.dest.clone(),
                    contents: FileContents::LocalFile(a.local_path.clone().into()),
                    mode: a.mode,
                    owner: "root".into(),
                    group: "root".into(),
                    secret: false,
                };
                let outcome = self.put("push", &put).await?;
                let remedy = format!(
                    "the copy on the host is corrupt or was changed while uploading; run `{}` \
                     again",
                    self.rerun
                );
                let started = Instant::now();
                let found = self.transport.file_sha256(&a.dest).await;
                self.record("verify", vec![a.dest.clone()], None, started, &format!("{found:?}"));
                match found {
                    Ok(Some(sum)) if sum == a.sha256 => Ok(outcome),
                    Ok(other) => Err(self
                        .failure(
                            format!("verify sha256 of {}", a.dest),
                            None,
                            format!(
                                "expected {}, found {}",
                                a.sha256,
                                other.unwrap_or_else(|| "no file".into())
                            ),
                            &remedy,
                        )
                        .into()),
                    Err(e) => {
                        Err(self.transport_failure(format!("sha256sum {}", a.dest), e).into())
                    }
                }
            }
            Step::Run(r) => {
                if let Some(unless) = &r.unless {
                    let probe = self.command("probe", unless).await?;
                    if probe.0 == 0 {
                        return Ok(StepOutcome::Unchanged);
                    }
                }
                Ok(self.checked("run", &r.argv).await?)
            }
            Step::Unit(u) => Ok(self.checked("run", &u.argv()).await?),
            Step::Etcd(op) => {
                tokio::select! {
                    result = etcd_ops::run(self, op) => Ok(result?),
                    () = self.cancel.cancelled() => Err(StepError::Interrupted),
                }
            }
            Step::Guarded(g) => self.guarded(g).await,
            Step::Gate(g) => {
                let mut last = (0, String::new());
                for attempt in 0..g.attempts.max(1) {
                    if attempt > 0 {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(g.interval_ms)) => {}
                            () = self.cancel.cancelled() => return Err(StepError::Interrupted),
                        }
                    }
                    if let Some(across) = &g.across {
                        let (yes, detail) = self.count_across(&across.hosts, &g.argv).await?;
                        if yes.len() == across.exactly {
                            return Ok(StepOutcome::Unchanged);
                        }
                        last = (1, detail);
                        continue;
                    }
                    last = self.command("probe", &g.argv).await?;
                    if last.0 == 0 {
                        return Ok(StepOutcome::Unchanged);
                    }
                }
                Err(self
                    .failure(
                        g.argv.join(" "),
                        Some(last.0),
                        last.1,
                        &format!(
                            "{} did not happen within {} tries; look at the service's logs on \
                             the host (journalctl -u <unit>), fix the cause, then run `{}` again",
                            g.what, g.attempts, self.rerun
                        ),
                    )
                    .into())
            }
        }
    }

    /// A gate with a way back: when the gate fails, the plan's `on_failure` steps run in
    /// order (the first that fails stops them) and the step fails, saying whether they worked.
    async fn guarded(
        &self,
        g: &kubeforge_playbooks::plan::Guarded,
    ) -> Result<StepOutcome, StepError> {
        let failed = match Box::pin(self.run_step(&Step::Gate(g.gate.clone()))).await {
            Ok(outcome) => return Ok(outcome),
            Err(StepError::Interrupted) => return Err(StepError::Interrupted),
            Err(StepError::Failed(f)) => f,
        };
        let mut undone = Ok(());
        for step in &g.on_failure {
            let label = step.label();
            let ctx = StepContext { label: &label, ..*self };
            match Box::pin(ctx.run_step(step)).await {
                Ok(_) => {}
                Err(StepError::Interrupted) => return Err(StepError::Interrupted),
                Err(StepError::Failed(f)) => {
                    undone = Err(f);
                    break;
                }
            }
        }
        let (stderr_tail, remedy) = match undone {
            Ok(()) => (
                format!(
                    "{}\n{} did not happen; done instead: {}",
                    failed.stderr_tail, g.gate.what, g.why
                ),
                format!(
                    "the change was undone ({}); the upgrade stopped there. Look at the \
                     components' logs on the host (crictl ps -a, crictl logs, journalctl -u \
                     kubelet), fix the cause, then run `{}` again",
                    g.why, self.rerun
                ),
            ),
            Err(f) => (
                format!(
                    "{}\n{} did not happen, and undoing it failed too at `{}`: {}",
                    failed.stderr_tail, g.gate.what, f.step, f.stderr_tail
                ),
                format!(
                    "neither the change nor its undoing ({}) finished: {}; bring the host back \
                     by hand, then run `{}` again",
                    g.why, f.remedy, self.rerun
                ),
            ),
        };
        Err(StepError::Failed(HostFailure { stderr_tail, remedy, ..failed }))
    }

    /// Runs `argv` on each host (a cluster-level gate); returns the hosts where it exited 0
    /// and a line saying which did, for the failure report.
    async fn count_across(
        &self,
        hosts: &[String],
        argv: &[String],
    ) -> Result<(Vec<String>, String), HostFailure> {
        let mut yes = Vec::new();
        for host in hosts {
            let Some(transport) = self.transports.get(host) else {
                return Err(HostFailure::unreachable(host, self.phase, self.rerun));
            };
            let ctx = StepContext { host, transport: transport.as_ref(), ..*self };
            if ctx.command("probe", argv).await?.0 == 0 {
                yes.push(host.clone());
            }
        }
        let detail = format!(
            "{} of {} answered yes: {}",
            yes.len(),
            hosts.len(),
            if yes.is_empty() { "none".to_string() } else { yes.join(", ") }
        );
        Ok((yes, detail))
    }

    async fn put(&self, op: &'static str, put: &PutFile) -> Result<StepOutcome, HostFailure> {
        let started = Instant::now();
        let result = self.transport.put_file(put).await;
        let shown = match &result {
            Ok(PutOutcome::Written) => "written".to_string(),
            Ok(PutOutcome::Unchanged) => "unchanged".to_string(),
            Ok(PutOutcome::MetadataChanged) => "metadata-changed".to_string(),
            Err(e) => e.to_string(),
        };
        self.record(op, vec![put.path.clone()], None, started, &shown);
        match result {
            Ok(PutOutcome::Unchanged) => Ok(StepOutcome::Unchanged),
            Ok(_) => Ok(StepOutcome::Changed),
            Err(e) => Err(self.transport_failure(format!("write {}", put.path), e)),
        }
    }

    /// Runs a command; returns (exit status, stderr tail). Transport errors fail the host.
    async fn command(
        &self,
        op: &'static str,
        argv: &[String],
    ) -> Result<(i32, String), HostFailure> {
        let cmd = RemoteCommand::new(argv.iter().cloned());
        let started = Instant::now();
        match self.transport.run(&cmd).await {
            Ok(out) => {
                self.record(op, argv.to_vec(), Some(out.exit_status), started, "finished");
                Ok((out.exit_status, out.stderr_tail()))
            }
            Err(e) => {
                self.record(op, argv.to_vec(), None, started, &e.to_string());
                Err(self.transport_failure(cmd.shell_line(), e))
            }
        }
    }

    async fn checked(&self, op: &'static str, argv: &[String]) -> Result<StepOutcome, HostFailure> {
        let (status, stderr) = self.command(op, argv).await?;
        if status == 0 {
            Ok(StepOutcome::Changed)
        } else {
            Err(self.failure(
                crate::transport::quote::join(argv),
                Some(status),
                stderr,
                &format!(
                    "fix the cause shown above on the host, then run `{}` again: it resumes, \
                     and steps already done are not repeated",
                    self.rerun
                ),
            ))
        }
    }

    fn record(
        &self,
        op: &'static str,
        target: Vec<String>,
        exit: Option<i32>,
        started: Instant,
        result: &str,
    ) {
        self.audit.record(&AuditRecord {
            at: audit::now_secs(),
            host: self.host.into(),
            phase: self.phase.into(),
            step: self.label.into(),
            op,
            target,
            exit_status: exit,
            duration_ms: started.elapsed().as_millis() as u64,
            result: result.into(),
        });
    }

    fn failure(
        &self,
        command: String,
        exit: Option<i32>,
        stderr_tail: String,
        remedy: &str,
    ) -> HostFailure {
        HostFailure {
            host: self.host.into(),
            phase: self.phase.into(),
            step: self.label.into(),
            command,
            exit_status: exit,
            stderr_tail,
            remedy: remedy.into(),
        }
    }

    fn transport_failure(&self, command: String, e: TransportError) -> HostFailure {
        let remedy = if e.is_unreachable() || matches!(e, TransportError::NoExitStatus { .. }) {
            format!(
                "the connection to the host was lost; check that it is up and reachable, then \
                 run `{}` again",
                self.rerun
            )
        } else {
            format!(
                "fix the cause above, then run `{}` again: it resumes where it stopped",
                self.rerun
            )
        };
        self.failure(command, None, e.to_string(), &remedy)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_guarded;
