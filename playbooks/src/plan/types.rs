//! The Plan: complete data for one run. Every file's bytes, every command's argv, every unit
//! action and health gate, per phase and host, in execution order. The executor maps each step
//! to one transport call and decides nothing; anything it would need to decide is a field here.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Phase;

/// Everything `apply` would do, and why nothing is done on some hosts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub cluster: String,
    /// The selected phases, in order.
    pub phases: Vec<PhasePlan>,
    /// Hosts excluded from every phase: unreachable, or failing a preflight check.
    pub blocked: BTreeMap<String, Vec<Problem>>,
}

impl Plan {
    /// No host has anything to do.
    pub fn has_no_steps(&self) -> bool {
        self.phases.iter().all(|p| p.hosts.values().all(Vec::is_empty))
    }

    /// Nothing to do and nothing blocked: the hosts match the spec ("No changes.").
    pub fn is_converged(&self) -> bool {
        self.has_no_steps() && self.blocked.is_empty()
    }

    /// Selected phases that this version cannot plan yet.
    pub fn unbuilt_phases(&self) -> Vec<Phase> {
        self.phases.iter().filter(|p| !p.built).map(|p| p.phase).collect()
    }

    /// Every host with at least one step, in name order.
    pub fn hosts_with_steps(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = self
            .phases
            .iter()
            .flat_map(|p| p.hosts.iter().filter(|(_, s)| !s.is_empty()).map(|(h, _)| h.as_str()))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// One phase: per host, its steps in order. Hosts run in parallel within a phase; a phase
/// starts when the previous one has finished on every host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhasePlan {
    pub phase: Phase,
    /// False when this version of kubeforge does not plan the phase yet (it is then empty).
    pub built: bool,
    /// Only hosts with steps appear.
    pub hosts: BTreeMap<String, Vec<Step>>,
}

/// One action on one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    PutFile(PutFile),
    PushArtifact(PushArtifact),
    Run(Run),
    Unit(UnitStep),
    Gate(Gate),
}

impl Step {
    /// A one-line label for progress bars, events and error reports.
    pub fn label(&self) -> String {
        match self {
            Step::PutFile(f) => format!("{} {}", f.reason.verb(), f.path),
            Step::PushArtifact(a) => format!("push {} to {}", a.name, a.dest),
            Step::Run(r) => r.argv.join(" "),
            Step::Unit(u) => u.argv().join(" "),
            Step::Gate(g) => format!("wait: {}", g.what),
        }
    }
}

/// Put a file's bytes on a host (atomically; skipped by the transport if already identical).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PutFile {
    pub path: String,
    #[serde(skip)]
    pub contents: Vec<u8>,
    pub sha256: String,
    pub size: usize,
    /// Permission bits, printed in octal.
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// Holds key material or credentials: never printed, diff redacted.
    pub secret: bool,
    pub reason: FileReason,
}

/// Why a file is put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FileReason {
    Create,
    /// The contents differ. `diff` is a unified diff, or a note when it cannot be shown.
    Change {
        diff: DiffText,
    },
    /// Contents match; mode or owner differ.
    Metadata {
        from: String,
    },
}

impl FileReason {
    pub fn verb(&self) -> &'static str {
        match self {
            FileReason::Create => "create",
            FileReason::Change { .. } => "change",
            FileReason::Metadata { .. } => "fix mode/owner of",
        }
    }
}

/// What the plan can show of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "text", rename_all = "kebab-case")]
pub enum DiffText {
    Unified(String),
    /// A secret file: nothing of either version is shown.
    Redacted,
    /// The old contents were not read (too large, or not text).
    Unavailable(String),
}

/// Copy a local artifact (a binary) to a host, verified by sha256; streamed, never in memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushArtifact {
    /// Component name (`containerd`).
    pub name: String,
    /// Where the artifact is on the operator's machine.
    pub local_path: String,
    pub sha256: String,
    pub dest: String,
    pub mode: u32,
}

/// Run a command as root. Skipped when `unless` is set and exits 0 (already done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub argv: Vec<String>,
    pub unless: Option<Vec<String>>,
    pub why: String,
}

/// A systemd action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitStep {
    /// The unit; empty for `daemon-reload`.
    pub unit: String,
    pub action: UnitAction,
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitAction {
    DaemonReload,
    Enable,
    Start,
    Restart,
}

impl UnitStep {
    pub fn argv(&self) -> Vec<String> {
        let words: &[&str] = match self.action {
            UnitAction::DaemonReload => return vec!["systemctl".into(), "daemon-reload".into()],
            UnitAction::Enable => &["systemctl", "enable"],
            UnitAction::Start => &["systemctl", "start"],
            UnitAction::Restart => &["systemctl", "restart"],
        };
        words.iter().map(|w| w.to_string()).chain([self.unit.clone()]).collect()
    }
}

/// A health gate: `argv` must exit 0 within `attempts` tries, `interval_ms` apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    pub what: String,
    pub argv: Vec<String>,
    pub attempts: u32,
    pub interval_ms: u64,
}

/// Why a host is blocked: a failed preflight check or an unreachable host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub phase: Phase,
    /// Short check name (`supported-os`, `swap`, `ports`, `reachable`, ...).
    pub check: String,
    pub message: String,
    pub remedy: String,
}
