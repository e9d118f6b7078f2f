//! The Plan: complete data for one run. Every file's bytes, every command's argv, every unit
//! action and health gate, per phase and host, in execution order. The executor maps each step
//! to one transport call and decides nothing; anything it would need to decide is a field here.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Operation, Phase};

/// Everything an operation would do, and why nothing is done on some hosts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub cluster: String,
    /// The operation planned (`apply`, …): it names the command that resumes an interrupted
    /// run in every remedy the executor prints.
    pub operation: Operation,
    /// The selected phases, in order.
    pub phases: Vec<PhasePlan>,
    /// Hosts excluded from every phase: unreachable, or failing a preflight check.
    pub blocked: BTreeMap<String, Vec<Problem>>,
    /// Hosts the last applied generation (`<state>/applied.json`) had that the spec no longer
    /// has, with what still runs there and what this run does about each. Omitted from JSON
    /// when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub departed: Vec<crate::applied::DepartedHost>,
    /// Changes the spec asks for that this run leaves for a later one, each with why and what
    /// finishes it (an old load-balancer mode still in use). A plan with any is not converged.
    /// Omitted from JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<String>,
}

impl Plan {
    /// No host has anything to do.
    pub fn has_no_steps(&self) -> bool {
        self.phases.iter().all(|p| p.hosts.values().all(Vec::is_empty) && p.sequence.is_empty())
    }

    /// Nothing to do, nothing blocked and nothing left for later: the hosts match the spec
    /// ("No changes.").
    pub fn is_converged(&self) -> bool {
        self.has_no_steps() && self.blocked.is_empty() && self.deferred.is_empty()
    }

    /// Every host with at least one step, in name order.
    pub fn hosts_with_steps(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = self
            .phases
            .iter()
            .flat_map(|p| {
                let parallel =
                    p.hosts.iter().filter(|(_, s)| !s.is_empty()).map(|(h, _)| h.as_str());
                parallel.chain(p.sequence.iter().map(|s| s.host.as_str()))
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// One phase: per host, its steps in order. Hosts run in parallel within a phase; then the
/// phase's `sequence` runs, one step at a time; a phase starts when the previous one has
/// finished on every host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhasePlan {
    pub phase: Phase,
    /// Only hosts with steps appear.
    pub hosts: BTreeMap<String, Vec<Step>>,
    /// Cluster-level steps that must run one at a time and in this order (etcd membership
    /// changes and the starts and health gates between them), after every host has finished
    /// its `hosts` steps. Not run at all when a host failed in this phase. Omitted from JSON
    /// when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sequence: Vec<SequencedStep>,
    /// How many `hosts` run at once, in name order, a batch starting when the previous one
    /// finished, the first failure stopping the rest (they are reported as not reached and get
    /// nothing from later phases). `Some(1)` where a change restarts what serves the cluster on
    /// every control plane (the apiserver, haproxy and keepalived with the VIP), so the others
    /// keep serving while one restarts and a bad change stops at the first host; worker batches
    /// of an upgrade use more. `None`: all hosts at once (bounded only by the connection limit).
    /// Omitted from JSON when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
}

impl PhasePlan {
    /// One host at a time.
    pub fn is_rolling(&self) -> bool {
        self.batch == Some(1)
    }
}

/// One step of a phase's sequence and the host it runs on (for an etcd operation: the host
/// whose loopback the operator's client is tunneled to).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequencedStep {
    pub host: String,
    pub step: Step,
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
    /// An etcd client operation from the operator's machine (only in a phase's sequence).
    Etcd(EtcdOp),
    /// A gate with a way back: when it fails, `on_failure` runs, and the step fails either way.
    Guarded(Guarded),
}

impl Step {
    /// An etcd operation through the member's client port with the default timing.
    pub fn etcd(action: EtcdAction, tls: &EtcdClientFiles, why: impl Into<String>) -> Step {
        Step::Etcd(EtcdOp {
            action,
            client_port: crate::node::ETCD_CLIENT_PORT,
            tls: tls.clone(),
            timing: EtcdTiming::default(),
            why: why.into(),
        })
    }

    /// A one-line label for progress bars, events and error reports.
    pub fn label(&self) -> String {
        match self {
            Step::PutFile(f) => format!("{} {}", f.reason.verb(), f.path),
            Step::PushArtifact(a) if a.unverified => {
                format!("push {} to {} (unverified)", a.name, a.dest)
            }
            Step::PushArtifact(a) => format!("push {} to {}", a.name, a.dest),
            Step::Run(r) => r.argv.join(" "),
            Step::Unit(u) => u.argv().join(" "),
            Step::Gate(g) => format!("wait: {}", g.what),
            Step::Etcd(op) => format!("etcd: {}", op.action),
            Step::Guarded(g) => format!("wait: {}, else {}", g.gate.what, g.why),
        }
    }
}

/// A gate whose failure is answered by the plan itself (an upgraded control plane whose
/// components do not come up gets its kept manifests back). The executor runs `gate`; when
/// it fails, it runs `on_failure` in order on the same host (the first of those that fails
/// stops them) and the step fails, its report saying whether the way back worked. The
/// executor decides nothing: what to undo is here.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Guarded {
    pub gate: Gate,
    /// Plain steps (no nested `Guarded`), run only after the gate failed.
    pub on_failure: Vec<Step>,
    /// What `on_failure` achieves (`roll cp1 back to its kept manifests`).
    pub why: String,
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
    /// The local file was not verified against the catalog or `SHA256SUMS` (the operator
    /// allowed it). Omitted from JSON when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
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
    Disable,
    Start,
    Stop,
    Restart,
    /// The unit's own reload (`ExecReload`): haproxy keeps established connections.
    Reload,
}

impl UnitStep {
    pub fn argv(&self) -> Vec<String> {
        let words: &[&str] = match self.action {
            UnitAction::DaemonReload => return vec!["systemctl".into(), "daemon-reload".into()],
            UnitAction::Enable => &["systemctl", "enable"],
            UnitAction::Disable => &["systemctl", "disable"],
            UnitAction::Start => &["systemctl", "start"],
            UnitAction::Stop => &["systemctl", "stop"],
            UnitAction::Restart => &["systemctl", "restart"],
            UnitAction::Reload => &["systemctl", "reload"],
        };
        words.iter().map(|w| w.to_string()).chain([self.unit.clone()]).collect()
    }
}

/// A health gate: `argv` must exit 0 within `attempts` tries, `interval_ms` apart — on the
/// step's host, or, with `across`, on several hosts at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    pub what: String,
    pub argv: Vec<String>,
    /// Run `argv` on each of these hosts per try; the gate passes when exactly `exactly` of
    /// them exit 0 (one VIP holder among the control planes). Omitted from JSON when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub across: Option<GateAcross>,
    pub attempts: u32,
    pub interval_ms: u64,
}

/// The hosts a cluster-level gate asks, and how many must say yes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateAcross {
    pub hosts: Vec<String>,
    pub exactly: usize,
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

/// An etcd operation run with etcd-client from the operator's machine over mutual TLS,
/// through an SSH tunnel to a member host's loopback client port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdOp {
    pub action: EtcdAction,
    /// The member port tunneled to on each host's `127.0.0.1` (2379).
    pub client_port: u16,
    /// The client credentials, as files on the operator's machine (the state dir's PKI).
    pub tls: EtcdClientFiles,
    pub timing: EtcdTiming,
    pub why: String,
}

/// The limits and retry pace of one etcd operation, decided by the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdTiming {
    /// TCP + TLS connection setup, per attempt.
    pub connect_ms: u64,
    /// Each request.
    pub request_ms: u64,
    /// How long a membership change keeps retrying while etcd answers that it cannot
    /// reconfigure yet (a just-started member, a learner catching up).
    pub reconfigure_ms: u64,
    /// Pause between attempts to open a tunnel to a member that is still starting.
    pub retry_ms: u64,
}

impl Default for EtcdTiming {
    fn default() -> Self {
        EtcdTiming { connect_ms: 5_000, request_ms: 5_000, reconfigure_ms: 60_000, retry_ms: 500 }
    }
}

/// PEM files on the operator's machine: the etcd CA and a client certificate it signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdClientFiles {
    pub ca: String,
    pub cert: String,
    /// The private key's path (the key itself is never in the plan).
    pub key: String,
}

impl EtcdClientFiles {
    /// The client certificate etcd operations use: the etcd CA and the healthcheck client of
    /// `member` (any etcd-CA-signed client certificate would do; this one exists in both
    /// topologies), under the state dir's `pki/` folder (`local_pki_dir`; empty: relative).
    pub fn for_member(local_pki_dir: &str, member: &str) -> Self {
        let path = |rel: &str| {
            if local_pki_dir.is_empty() {
                rel.to_string()
            } else {
                format!("{}/{rel}", local_pki_dir.trim_end_matches('/'))
            }
        };
        let own = |ext: &str| {
            path(&kubeforge_pki::paths::node_file(
                member,
                &format!("etcd/healthcheck-client.{ext}"),
            ))
        };
        EtcdClientFiles { ca: path("etcd/ca.crt"), cert: own("crt"), key: own("key") }
    }
}

/// What an [`EtcdOp`] does. Membership changes go to the sequenced step's host's member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EtcdAction {
    /// `member add --learner` with this peer URL (retried while etcd is reconfiguring).
    AddLearner { name: String, peer_url: String },
    /// `member promote` of the learner with this peer URL (retried while it catches up;
    /// already a voter counts as done).
    Promote { name: String, peer_url: String },
    /// `member remove` of this member id (already gone counts as done).
    Remove { name: String, id: u64 },
    /// Before removing member `name` (`id`): when it leads, hand leadership to the step's
    /// host's member (a voter that stays), by sending MoveLeader to the leader itself (through
    /// the tunnel to `name`'s host: etcd refuses it from a follower), then wait until another
    /// member leads. When `name` does not lead, nothing is done. Removing a leader directly
    /// leaves the cluster without one for an election, and the removal's answer can be lost.
    MoveLeader { name: String, id: u64 },
    /// Every listed member host answers `status` (and, when voting, a linearizable read)
    /// through its own tunnel, within `timeout_ms`.
    HealthGate { members: Vec<String>, timeout_ms: u64 },
    /// After a restore: every listed member host answers through its own tunnel with the
    /// same cluster id, a member list of exactly `members`, and one revision, which is the
    /// snapshot's (`revision`) or, only when every member agrees on it, later by writes made
    /// since the start; retried within `timeout_ms`. A member left on old data (another
    /// cluster id) or restored from other data (another revision) fails it.
    RestoredGate { members: Vec<String>, revision: i64, timeout_ms: u64 },
    /// During an upgrade: `member` (a host) answers `status` through its own tunnel reporting
    /// etcd `version` (`3.5.1`), retried within `timeout_ms`.
    VersionGate { member: String, version: String, timeout_ms: u64 },
}

impl EtcdAction {
    /// A wait that changes nothing (shown with `?` and not counted as an operation).
    pub fn is_gate(&self) -> bool {
        matches!(
            self,
            EtcdAction::HealthGate { .. }
                | EtcdAction::RestoredGate { .. }
                | EtcdAction::VersionGate { .. }
        )
    }
}

impl std::fmt::Display for EtcdAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdAction::AddLearner { name, peer_url } => {
                write!(f, "member add {name} ({peer_url}) as learner")
            }
            EtcdAction::Promote { name, .. } => write!(f, "member promote {name}"),
            EtcdAction::Remove { name, id } => write!(f, "member remove {name} ({id:x})"),
            EtcdAction::MoveLeader { name, id } => {
                write!(f, "move leadership away from {name} ({id:x}) if it leads")
            }
            EtcdAction::HealthGate { members, timeout_ms } => write!(
                f,
                "wait until {} are healthy (up to {} s)",
                members.join(","),
                timeout_ms / 1000
            ),
            EtcdAction::RestoredGate { members, revision, timeout_ms } => write!(
                f,
                "wait until {} serve the restored data as one cluster at revision {revision} \
                 (up to {} s)",
                members.join(","),
                timeout_ms / 1000
            ),
            EtcdAction::VersionGate { member, version, timeout_ms } => {
                write!(f, "wait until {member} runs etcd {version} (up to {} s)", timeout_ms / 1000)
            }
        }
    }
}
