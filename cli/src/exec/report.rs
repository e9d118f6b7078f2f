//! The end-of-run report: what changed, whether the run was interrupted, and for every failing
//! host the phase, step, command, exit status, stderr tail and what to do.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use kubeforge_playbooks::plan::Problem;
use serde::Serialize;

/// Why one host did not finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFailure {
    pub host: String,
    pub phase: String,
    pub step: String,
    pub command: String,
    /// `None` when the command never finished (connection lost, not reachable, blocked).
    pub exit_status: Option<i32>,
    pub stderr_tail: String,
    pub remedy: String,
}

impl HostFailure {
    pub(crate) fn blocked(host: &str, problem: &Problem) -> Self {
        HostFailure {
            host: host.into(),
            phase: problem.phase.to_string(),
            step: format!("check {}", problem.check),
            command: String::new(),
            exit_status: None,
            stderr_tail: problem.message.clone(),
            remedy: problem.remedy.clone(),
        }
    }

    pub(crate) fn unreachable(host: &str, phase: &str, rerun: &str) -> Self {
        HostFailure {
            host: host.into(),
            phase: phase.into(),
            step: "connect".into(),
            command: String::new(),
            exit_status: None,
            stderr_tail: "no connection to this host".into(),
            remedy: format!(
                "check that the machine is up and reachable over SSH, then run `{rerun}` again"
            ),
        }
    }

    /// A phase's ordered steps run through a host that already failed (or was left untouched)
    /// earlier in the run: they are not run, and the earlier failure is the one to fix.
    pub(crate) fn failed_earlier(host: &str, phase: &str, rerun: &str) -> Self {
        HostFailure {
            host: host.into(),
            phase: phase.into(),
            step: "ordered steps".into(),
            command: String::new(),
            exit_status: None,
            stderr_tail: format!(
                "{host} failed or was left untouched earlier in this run, so the {phase} phase's \
                 ordered steps, which run through it, were not run"
            ),
            remedy: format!("fix the failure reported for {host} above, then run `{rerun}` again"),
        }
    }

    /// One line for events.
    pub fn summary(&self) -> String {
        match self.exit_status {
            Some(s) => format!("`{}` exited with status {s}", self.command),
            None => self.stderr_tail.lines().next().unwrap_or("failed").to_string(),
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    pub changed: usize,
    pub unchanged: usize,
    pub interrupted: bool,
    pub failures: Vec<HostFailure>,
    /// Hosts a batched phase did not reach after a failure → that phase: they got nothing
    /// from it or any later phase.
    pub not_reached: BTreeMap<String, String>,
    /// Phases an interruption stopped before they started, in order.
    pub not_started: Vec<String>,
    /// The command that resumes the run.
    pub rerun: String,
}

impl RunReport {
    pub fn failed_hosts(&self) -> BTreeSet<&str> {
        self.failures.iter().map(|f| f.host.as_str()).collect()
    }

    pub fn succeeded(&self) -> bool {
        self.failures.is_empty() && !self.interrupted && self.not_reached.is_empty()
    }

    /// The human report printed at the end of `apply`.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} step(s) changed something, {} found nothing to do.",
            self.changed, self.unchanged
        );
        if self.interrupted {
            let _ = writeln!(
                out,
                "Interrupted: stopped at a step boundary. Run `{}` again to continue.",
                self.rerun
            );
            if !self.not_started.is_empty() {
                let _ = writeln!(out, "Left undone: the phases {}.", self.not_started.join(", "));
            }
        }
        if !self.not_reached.is_empty() {
            out.push_str("Left untouched after a failure (nothing from these phases on):\n");
            for (host, phase) in &self.not_reached {
                let _ = writeln!(out, "  {host}: from {phase}");
            }
        }
        if !self.failures.is_empty() {
            let _ = writeln!(out, "{} host(s) failed:", self.failed_hosts().len());
            for f in &self.failures {
                let _ = writeln!(
                    out,
                    "\n  host:    {}\n  phase:   {}\n  step:    {}",
                    f.host, f.phase, f.step
                );
                if !f.command.is_empty() {
                    let _ = writeln!(out, "  command: {}", f.command);
                }
                if let Some(status) = f.exit_status {
                    let _ = writeln!(out, "  exit:    {status}");
                }
                if !f.stderr_tail.is_empty() {
                    out.push_str("  output:\n");
                    for line in f.stderr_tail.lines() {
                        let _ = writeln!(out, "    | {line}");
                    }
                }
                let _ = writeln!(out, "  what to do: {}", f.remedy);
            }
        }
        out
    }
}
