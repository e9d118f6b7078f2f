//! The planner: from the validated model, each host's facts, the render tree and the local
//! artifacts, decide everything a run does, as data (`Plan`). One module per phase; this module
//! only assembles them, says which facts the phases need (`probe_request`), and excludes blocked
//! hosts. It does no I/O: `cli` gathers facts and executes the plan; `plan` and `apply` print the
//! same `Plan`.

mod addons;
pub mod backup;
mod control_plane;
mod departed;
mod etcd;
mod files;
mod loadbalancer;
mod observed;
mod operation;
mod os;
mod phase;
mod pki;
mod preflight;
mod reset;
mod restart;
mod restore;
mod runtime;
mod text;
mod topology;
mod types;
pub mod upgrade;
mod workers;

use std::collections::BTreeMap;

use crate::facts::{HostFacts, ProbeRequest};
use crate::model::{Cluster, Host};
use crate::render::RenderTree;

pub use departed::{
    address_reused as departed_address_reused, probe_request as departed_probe_request,
};
pub use etcd::EtcdPlanError;
pub use observed::{EtcdObserved, MemberReport, Observed};
pub use operation::{Operation, RestoreSnapshot};
pub use phase::{Phase, PhaseSelection, UnknownPhase};
pub use reset::reset_data_dir;
pub use restore::{
    MANIFESTS_ASIDE_DIR, cluster_token, old_data_dir, restore_tool, restored_dir, staged_snapshot,
};
pub use runtime::ARTIFACT_BINARIES;
pub use text::render_text;
pub use topology::may_hold_member as may_hold_etcd_member;
pub use types::{
    DiffText, EtcdAction, EtcdClientFiles, EtcdOp, EtcdTiming, FileReason, Gate, GateAcross,
    Guarded, PhasePlan, Plan, Problem, PushArtifact, PutFile, Run, SequencedStep, Step, UnitAction,
    UnitStep,
};

/// A binary available from the artifact source on the operator's machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalArtifact {
    pub path: String,
    pub sha256: String,
    /// Neither the catalog nor the source's `SHA256SUMS` vouches for it (taken only with
    /// `--allow-unverified-artifacts`); every push of it says so.
    pub unverified: bool,
}

/// Artifact name (`containerd`, `runc`) → the local file. Empty for `upstream` until the
/// artifact catalog exists.
pub type ArtifactInventory = BTreeMap<String, LocalArtifact>;

/// What one host's probe gave: its facts, or why there are none (unreachable, probe failed).
pub type HostProbe = Result<HostFacts, String>;

/// Everything the planner reads.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub cluster: &'a Cluster,
    pub tree: &'a RenderTree,
    /// Every spec host → its probe result. A host missing here counts as unreachable.
    pub facts: &'a BTreeMap<String, HostProbe>,
    pub artifacts: &'a ArtifactInventory,
    pub selection: &'a PhaseSelection,
    /// Cluster-wide observations (etcd's member list) made by `cli` before planning.
    pub observed: &'a Observed,
    /// What the last successful run applied (`<state>/applied.json`); `None` before the first
    /// one, or where it does not matter (tests).
    pub applied: Option<&'a crate::applied::Applied>,
}

/// Why no plan could be made at all (host-level problems block hosts instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the render tree has a file for `{host}`, which is not a host in the spec")]
    UnknownHostInTree { host: String },
    #[error(transparent)]
    Etcd(#[from] EtcdPlanError),
    #[error("`{host}` is not a host in the spec; reset only hosts the spec names")]
    UnknownResetHost { host: String },
    #[error(
        "a reset only removes etcd members, but the member list asks for \"{step}\" first; run \
         `kubeforge apply` until etcd matches the spec, then reset again"
    )]
    ResetMembership { step: String },
    #[error(
        "the hosts run other versions than the spec: {}. apply does not change versions: run \
         `kubeforge upgrade plan -f <spec>` (skew rules, a verified etcd snapshot first, one \
         member at a time), or set the spec back to the running versions",
        changes.join("; ")
    )]
    VersionChange { changes: Vec<String> },
    #[error(
        "etcd topology change refused ({from} → {to}: {evidence}): {reason}. Nothing was \
         planned. Set `spec.etcd.topology` back to `{from}` to apply other changes meanwhile"
    )]
    EtcdTopologyChange { from: String, to: String, evidence: String, reason: String },
}

/// Units kubeforge manages or whose state preflight judges.
pub const PROBED_UNITS: [&str; 5] = crate::node::unit::ALL;

/// Binaries whose versions are reported (and whose presence preflight judges).
pub const PROBED_BINARIES: [&str; 4] = ["containerd", "etcd", "kubelet", "runc"];

/// The facts the phases need from one host: fixed facts plus every managed file, the files
/// edited in place, module evidence, sysctls, units and binaries.
pub fn probe_request(cluster: &Cluster, tree: &RenderTree, host: &str) -> ProbeRequest {
    let mut request = ProbeRequest::default();
    if let Some(files) = tree.hosts.get(host) {
        for (path, file) in files {
            request.hash_files.insert(path.clone());
            if !file.secret {
                request.read_files.insert(path.clone());
            }
        }
    }
    for path in restart::probe_paths() {
        request.hash_files.insert(path.clone());
        request.read_files.insert(path);
    }
    os::extend_request(tree, host, &mut request);
    etcd::extend_request(cluster, host, &mut request);
    topology::extend_request(cluster, host, &mut request);
    workers::extend_request(cluster, host, &mut request);
    loadbalancer::extend_request(&mut request);
    request.units.extend(PROBED_UNITS.iter().map(|u| u.to_string()));
    request.binaries.extend(PROBED_BINARIES.iter().map(|b| b.to_string()));
    request
}

/// [`probe_request`] plus what `operation` needs beyond `apply` (a restore: whether an
/// interrupted restore left a control plane's manifests aside).
pub fn probe_request_for(
    operation: &Operation,
    cluster: &Cluster,
    tree: &RenderTree,
    host: &str,
) -> ProbeRequest {
    let mut request = probe_request(cluster, tree, host);
    match operation {
        Operation::Restore { .. } => restore::extend_request(cluster, host, &mut request),
        Operation::Reset { .. } => reset::extend_request(&mut request),
        Operation::Upgrade { .. } => upgrade::extend_request(cluster, host, &mut request),
        Operation::Apply => {}
    }
    request
}

/// Plans one operation. Each operation has its own planner; all produce the same `Plan`.
pub fn plan(operation: &Operation, input: PlanInput<'_>) -> Result<Plan, PlanError> {
    match operation {
        Operation::Apply => plan_apply(input),
        Operation::Restore { snapshot } => Ok(restore::plan(input, snapshot)),
        Operation::Reset { hosts, stamp, .. } => reset::plan(input, hosts, stamp, operation),
        Operation::Upgrade { max_unavailable, .. } => {
            Ok(upgrade::plan(input, operation.clone(), *max_unavailable))
        }
    }
}

/// Plans `apply`. Hosts that are unreachable or fail a preflight check are blocked: they get
/// no steps and are listed with what to do, while the other hosts are planned normally.
fn plan_apply(input: PlanInput<'_>) -> Result<Plan, PlanError> {
    let cluster = input.cluster;
    if let Some(host) = input.tree.hosts.keys().find(|h| cluster.host(h).is_none()) {
        return Err(PlanError::UnknownHostInTree { host: host.clone() });
    }
    if let Some(report) = upgrade::report(input)
        && !report.changes.is_empty()
    {
        let changes = report.changes.iter().map(ToString::to_string).collect();
        return Err(PlanError::VersionChange { changes });
    }
    let mut blocked: BTreeMap<String, Vec<Problem>> = BTreeMap::new();
    let reachable = reachable_or_blocked(
        input,
        &cluster.hosts,
        "check that the machine is up and reachable over SSH with the spec's address, port, \
         user and key, then plan again",
        &mut blocked,
    );
    if input.selection.contains(Phase::Preflight) {
        for (host, problems) in preflight::check(input, &reachable) {
            blocked.entry(host).or_default().extend(problems);
        }
    }
    let ready: BTreeMap<&str, &HostFacts> = reachable
        .iter()
        .filter(|(h, _)| !blocked.contains_key(**h))
        .map(|(h, f)| (*h, *f))
        .collect();
    // A stacked → external switch under way: the control planes' members stay until the end
    // of the run (`topology`).
    let retiring = topology::retiring(input, &reachable, &ready)?;

    let mut phases = Vec::new();
    for &phase in input.selection.phases() {
        let per_host = |plan_host: fn(PlanInput<'_>, &Host, &HostFacts) -> Vec<Step>| {
            let mut hosts = BTreeMap::new();
            for (&name, &facts) in &ready {
                let Some(host) = cluster.host(name) else { continue };
                let steps = plan_host(input, host, facts);
                if !steps.is_empty() {
                    hosts.insert(name.to_string(), steps);
                }
            }
            hosts
        };
        let mut sequence = Vec::new();
        let hosts = match phase {
            Phase::Preflight => BTreeMap::new(),
            Phase::Os => per_host(os::plan_host),
            Phase::Runtime => per_host(runtime::plan_host),
            Phase::Pki => per_host(pki::plan_host),
            Phase::Etcd => {
                let etcd = etcd::plan_phase(input, &ready, &retiring)?;
                sequence = etcd.sequence;
                etcd.hosts
            }
            Phase::LoadBalancer => {
                let hosts = per_host(loadbalancer::plan_host);
                sequence = loadbalancer::sequence(input, &hosts, &ready);
                hosts
            }
            Phase::ControlPlane => per_host(control_plane::plan_host),
            Phase::Workers => per_host(workers::plan_host),
            Phase::Addons => per_host(addons::plan_host),
        };
        let batch = rolls_over_control_planes(cluster, phase).then_some(1);
        phases.push(PhasePlan { phase, hosts, sequence, batch });
    }
    // A changed load-balancer mode: the old one goes at the end of the run, once the new path
    // is gated from every host.
    let retirement = loadbalancer::retire(input, &ready);
    if let Some(last) = phases.last_mut() {
        last.sequence.extend(retirement.steps);
    }
    let deferred: Vec<String> = retirement.deferred.into_iter().collect();
    // The stacked members of a switch to external go last, once every kube-apiserver moved.
    let retired = topology::retire(input, &ready, &retiring)?;
    if let Some(last) = phases.last_mut() {
        last.sequence.extend(retired);
    }
    // Hosts that left the spec: cleaned at the end of the run (`departed`).
    let departed = departed::plan(input, &ready, &mut phases);
    Ok(Plan {
        cluster: cluster.name.clone(),
        operation: Operation::Apply,
        phases,
        blocked,
        departed,
        deferred,
    })
}

/// Whether a phase changes control planes one at a time (ARCHITECTURE rule 4): the static pods
/// (an apiserver restart) and, with keepalived-haproxy, haproxy and keepalived holding the VIP.
/// Node-local haproxy on workers serves only its own node and is changed in parallel.
fn rolls_over_control_planes(cluster: &Cluster, phase: Phase) -> bool {
    match phase {
        Phase::ControlPlane => true,
        Phase::LoadBalancer => {
            cluster.load_balancer.mode == crate::model::LoadBalancerMode::KeepalivedHaproxy
        }
        _ => false,
    }
}

/// The facts of each of `hosts` that was probed; every other one is blocked with a `reachable`
/// problem whose remedy is the operation's own (an apply can go on without a host, a restore
/// or an upgrade cannot).
pub(crate) fn reachable_or_blocked<'a>(
    input: PlanInput<'a>,
    hosts: impl IntoIterator<Item = &'a Host>,
    remedy: &str,
    blocked: &mut BTreeMap<String, Vec<Problem>>,
) -> BTreeMap<&'a str, &'a HostFacts> {
    let mut reachable = BTreeMap::new();
    for host in hosts {
        let reason = match input.facts.get(&host.name) {
            Some(Ok(facts)) => {
                reachable.insert(host.name.as_str(), facts);
                continue;
            }
            Some(Err(reason)) => reason.as_str(),
            None => "no facts were gathered",
        };
        blocked.entry(host.name.clone()).or_default().push(Problem {
            phase: Phase::Preflight,
            check: "reachable".into(),
            message: format!("no facts: {reason}"),
            remedy: remedy.into(),
        });
    }
    reachable
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_control_plane;
#[cfg(test)]
mod tests_loadbalancer;
#[cfg(test)]
mod tests_phases;
#[cfg(test)]
mod tests_pki;
#[cfg(test)]
mod tests_topology;
