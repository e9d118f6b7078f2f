//! `reset`: the plan that returns hosts to the state before kubeforge, for the whole cluster
//! or some hosts. It owns the order of a reset and every argv in it, decided from the hosts'
//! facts so that a second reset plans nothing ("No changes."); it does no I/O and does not
//! touch the state dir (the CLI forgets host keys or moves the state dir aside when asked).
//!
//! Order:
//! 1. `etcd` (only when some etcd members stay): each reset member is removed from etcd
//!    through a healthy member that stays, with a health gate after each removal, planned by
//!    the same rules as `apply`'s removals (`crate::etcd_membership`): refused when it would
//!    break quorum (e.g. 2 of 3 members at once). A member that is reset with every other
//!    member needs no removal: the whole cluster goes.
//! 2. `os` (reset undoes the phases down to the first one, so its teardown is shown under
//!    it), on every reset host at once: every running kubeforge-managed unit stopped (the
//!    backup timer first, then kubelet and its pods, keepalived, haproxy, etcd, and containerd
//!    only when kubeforge installed it: its own unit file is on the host), every enabled one
//!    disabled; every managed file removed (the render tree's files for the host, the restart
//!    records under `/var/lib/kubeforge/loaded/`, the etcd bootstrap environment and haproxy's
//!    check copy); systemd reloaded when unit files went; a packaged containerd restarted when
//!    kubeforge's config for it went; etcd's data dir moved to `/var/lib/etcd.reset-<stamp>`,
//!    never deleted.
//!
//! Left on the hosts, on purpose: binaries under /usr/local/bin (the next apply reuses them;
//! containerd's go with kubeforge's containerd unit, which the next apply installs only with
//! binaries it pushes),
//! distribution packages (haproxy, keepalived, a packaged containerd), the etcd system user,
//! the kubeforge block in /etc/hosts and swap's commented fstab line, kernel settings already
//! applied (until reboot), and /var/lib/kubelet. A reset host that is unreachable is blocked:
//! nothing is done on it, not even its removal from etcd.

use std::collections::BTreeMap;

use super::etcd::GATE_TIMEOUT_MS;
use super::files::sha256_hex;
use super::types::{
    EtcdAction, EtcdClientFiles, PhasePlan, Plan, Problem, Run, SequencedStep, Step, UnitAction,
    UnitStep,
};
use super::{EtcdPlanError, Operation, Phase, PlanError, PlanInput};
use crate::etcd_membership::{DesiredMember, Step as Membership, plan_membership};
use crate::facts::{HostFacts, ProbeRequest};
use crate::model::Cluster;
use crate::node::unit;
use crate::render::configs::etcd as etcd_unit;

/// The backup timer and the service it starts (`kubeforge backup run`).
pub(crate) const BACKUP_TIMER: &str = "kubeforge-backup.timer";
pub(crate) const BACKUP_SERVICE: &str = "kubeforge-backup.service";

/// Where a reset host's etcd data dir is kept (never deleted by kubeforge).
pub fn reset_data_dir(stamp: &str) -> String {
    format!("{}.reset-{stamp}", etcd_unit::DATA_DIR)
}

/// Files kubeforge writes outside the render tree.
fn extra_files() -> Vec<String> {
    let mut files: Vec<String> = super::restart::probe_paths().collect();
    files.push(etcd_unit::BOOTSTRAP_ENV.to_string());
    files.push(super::loadbalancer::HAPROXY_CHECK_COPY.to_string());
    files.push(super::restart::record_path(BACKUP_TIMER));
    files
}

/// Facts a reset needs beyond `apply`'s: the extra files, the data dir, the backup units and
/// containerd's unit file (to tell kubeforge's from a package's).
pub(crate) fn extend_request(request: &mut ProbeRequest) {
    for path in extra_files() {
        request.hash_files.insert(path);
    }
    request.hash_files.insert(super::runtime::UNIT_FILE.to_string());
    request.paths_exist.insert(etcd_unit::DATA_DIR.to_string());
    request.units.insert(BACKUP_TIMER.to_string());
    request.units.insert(BACKUP_SERVICE.to_string());
}

fn running(facts: &HostFacts, unit: &str) -> bool {
    facts.units.get(unit).is_some_and(|u| {
        matches!(u.active.as_str(), "active" | "activating" | "reloading" | "deactivating")
    })
}

/// Enabled in a way `systemctl disable` undoes (a static unit cannot be disabled).
fn enabled(facts: &HostFacts, unit: &str) -> bool {
    facts
        .units
        .get(unit)
        .is_some_and(|u| matches!(u.enabled.as_str(), "enabled" | "enabled-runtime"))
}

fn present(facts: &HostFacts, path: &str) -> bool {
    facts.files.get(path).and_then(|f| f.sha256()).is_some()
}

/// containerd runs from the unit kubeforge installs with pushed binaries (not a package's).
fn kubeforge_containerd(facts: &HostFacts) -> bool {
    facts.files.get(super::runtime::UNIT_FILE).and_then(|f| f.sha256())
        == Some(sha256_hex(super::runtime::UPSTREAM_UNIT.as_bytes()).as_str())
}

fn unit_step(unit: &str, action: UnitAction, why: &str) -> Step {
    Step::Unit(UnitStep { unit: unit.into(), action, why: why.into() })
}

fn run(argv: Vec<String>, unless: Option<Vec<String>>, why: String) -> Step {
    Step::Run(Run { argv, unless, why })
}

/// One reset host's teardown, from its facts; empty when nothing of kubeforge is left.
fn teardown(input: PlanInput<'_>, host: &str, facts: &HostFacts, stamp: &str) -> Vec<Step> {
    let files: Vec<String> =
        input.tree.hosts.get(host).map(|t| t.keys().cloned().collect()).unwrap_or_default();
    let aside = reset_data_dir(stamp);
    let aside_step = run(
        ["mv", "-T", etcd_unit::DATA_DIR, aside.as_str()].map(String::from).to_vec(),
        Some(["test", "!", "-e", etcd_unit::DATA_DIR].map(String::from).to_vec()),
        format!("etcd's data is kept in {aside}, never deleted"),
    );
    teardown_of(files, facts, false, aside_step)
}

/// A host's teardown (see the module doc's step 2) from its facts, for the managed `files`
/// it was given: shared by `reset` and `apply`'s cleanup of hosts that left the spec
/// (`super::departed`). `etcd_done`: etcd's unit and data dir are left out (the etcd phase
/// already stopped it and moved its data aside). `data_aside` moves etcd's data dir aside when
/// the host has one. Empty when nothing of kubeforge is left.
pub(crate) fn teardown_of(
    files: Vec<String>,
    facts: &HostFacts,
    etcd_done: bool,
    data_aside: Step,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let ours_containerd = kubeforge_containerd(facts);
    let mut units = vec![BACKUP_TIMER, BACKUP_SERVICE, unit::KUBELET, unit::KEEPALIVED];
    units.push(unit::HAPROXY);
    if !etcd_done {
        units.push(unit::ETCD);
    }
    if ours_containerd {
        units.push(unit::CONTAINERD);
    }
    for u in &units {
        if running(facts, u) {
            steps.push(unit_step(
                u,
                UnitAction::Stop,
                "kubeforge started it; this host is being cleaned",
            ));
            if *u == unit::KUBELET {
                // The kubelet's pods keep running in containerd without it.
                let sh = "command -v crictl >/dev/null || exit 0; \
                          test -S /run/containerd/containerd.sock || exit 0; \
                          crictl rmp --force --all";
                steps.push(run(
                    ["sh", "-c", sh].map(String::from).to_vec(),
                    None,
                    "the kubelet's pods (the control plane's static pods too) keep running \
                     without it: remove them"
                        .into(),
                ));
            }
        }
    }
    for u in &units {
        if enabled(facts, u) {
            steps.push(unit_step(
                u,
                UnitAction::Disable,
                "kubeforge enabled it; not started at boot any more",
            ));
        }
    }
    let mut files = files;
    files.extend(extra_files());
    if ours_containerd {
        files.push(super::runtime::UNIT_FILE.to_string());
    }
    files.sort();
    files.dedup();
    let mut gone: Vec<String> = files.into_iter().filter(|p| present(facts, p)).collect();
    // containerd's binaries go with kubeforge's unit for them: the next apply pushes both
    // again (it installs the unit only with binaries it pushes).
    let pushed =
        crate::artifacts::layout::node_path(crate::artifacts::Component::Containerd, "containerd");
    let binary = facts.binaries.get("containerd").and_then(|b| b.path.clone());
    if ours_containerd && pushed.is_some() && binary == pushed {
        for name in ["containerd", "containerd-shim-runc-v2", "ctr"] {
            gone.extend(crate::artifacts::layout::node_path(
                crate::artifacts::Component::Containerd,
                name,
            ));
        }
    }
    if !gone.is_empty() {
        let mut argv = vec!["rm".to_string(), "-f".to_string(), "--".to_string()];
        argv.extend(gone.iter().cloned());
        steps.push(run(argv, None, format!("the {} file(s) kubeforge manages here", gone.len())));
        if gone.iter().any(|p| p.starts_with("/etc/systemd/system/")) {
            steps.push(unit_step("", UnitAction::DaemonReload, "unit files were removed"));
        }
        let config_gone = gone.iter().any(|p| super::runtime::owns(p));
        if !ours_containerd && config_gone && running(facts, unit::CONTAINERD) {
            steps.push(unit_step(
                unit::CONTAINERD,
                UnitAction::Restart,
                "the packaged containerd drops kubeforge's configuration",
            ));
        }
    }
    if !etcd_done && facts.paths_exist.get(etcd_unit::DATA_DIR) == Some(&true) {
        steps.push(data_aside);
    }
    steps
}

/// The membership removals of the reset members when others stay (see the module doc).
fn removals(
    input: PlanInput<'_>,
    targets: &[&str],
    ready: &BTreeMap<&str, &HostFacts>,
) -> Result<Vec<SequencedStep>, PlanError> {
    let Some(observed) = &input.observed.etcd else { return Ok(Vec::new()) };
    let current = &observed.members;
    let resetting = |name: &str| targets.contains(&name);
    if !current.iter().any(|m| resetting(&m.name)) {
        return Ok(Vec::new());
    }
    let desired: Vec<DesiredMember> = current
        .iter()
        .filter(|m| !resetting(&m.name))
        .filter_map(|m| {
            Some(DesiredMember { name: m.name.clone(), peer_url: m.peer_urls.first()?.clone() })
        })
        .collect();
    if desired.is_empty() {
        // Every member is reset: the cluster goes as a whole, nothing to reconfigure.
        return Ok(Vec::new());
    }
    let steps = plan_membership(current, &desired).map_err(EtcdPlanError::from)?;
    // A healthy voter that stays and that kubeforge reaches, to carry the changes.
    let via = current
        .iter()
        .find(|m| {
            m.healthy && !m.is_learner && !resetting(&m.name) && ready.contains_key(m.name.as_str())
        })
        .map(|m| m.name.clone())
        .ok_or_else(|| EtcdPlanError::NoMemberToReach {
            members: current.iter().map(|m| m.name.clone()).collect(),
        })?;
    let tls = EtcdClientFiles::for_member(&input.observed.local_pki_dir, &via);
    let op = |action: EtcdAction, why: String| Step::etcd(action, &tls, why);
    let mut out = Vec::new();
    for step in steps {
        match step {
            Membership::Remove { name, id } => {
                let why = format!("{name} is reset; the members that stay keep quorum");
                out.push(SequencedStep {
                    host: via.clone(),
                    step: op(EtcdAction::Remove { name, id }, why),
                });
            }
            Membership::HealthGate { members } => {
                // Gates go through each member's own host: only spec hosts kubeforge reaches.
                let members: Vec<String> = input
                    .cluster
                    .hosts
                    .iter()
                    .map(|h| h.name.clone())
                    .filter(|n| members.contains(n) && ready.contains_key(n.as_str()))
                    .collect();
                let Some(first) = members.first().cloned() else { continue };
                let action = EtcdAction::HealthGate { members, timeout_ms: GATE_TIMEOUT_MS };
                out.push(SequencedStep {
                    host: first,
                    step: op(action, "the members that stay answer before the next change".into()),
                });
            }
            // The reset host's teardown stops etcd and moves its data aside (the `os` part).
            Membership::Decommission { .. } => {}
            other => {
                return Err(PlanError::ResetMembership { step: other.to_string() });
            }
        }
    }
    Ok(out)
}

/// The hosts a reset names: every spec host when `hosts` is empty. An unknown name is an
/// error (nothing is planned).
pub(crate) fn targets<'c>(
    cluster: &'c Cluster,
    hosts: &[String],
) -> Result<Vec<&'c str>, PlanError> {
    if hosts.is_empty() {
        return Ok(cluster.hosts.iter().map(|h| h.name.as_str()).collect());
    }
    let mut out = Vec::new();
    for name in hosts {
        match cluster.host(name) {
            Some(h) => out.push(h.name.as_str()),
            None => return Err(PlanError::UnknownResetHost { host: name.clone() }),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Plans a reset; see the module doc.
pub(crate) fn plan(
    input: PlanInput<'_>,
    hosts: &[String],
    stamp: &str,
    operation: &Operation,
) -> Result<Plan, PlanError> {
    let cluster = input.cluster;
    let targets = targets(cluster, hosts)?;
    let mut blocked: BTreeMap<String, Vec<Problem>> = BTreeMap::new();
    let mut ready: BTreeMap<&str, &HostFacts> = BTreeMap::new();
    for host in &cluster.hosts {
        match input.facts.get(&host.name) {
            Some(Ok(facts)) => {
                ready.insert(&host.name, facts);
            }
            other if targets.contains(&host.name.as_str()) => {
                let reason = match other {
                    Some(Err(e)) => e.clone(),
                    _ => "no facts were gathered".into(),
                };
                blocked.entry(host.name.clone()).or_default().push(Problem {
                    phase: Phase::Preflight,
                    check: "reachable".into(),
                    message: format!("no facts: {reason}"),
                    remedy: "nothing is done on this host (not even its removal from etcd): bring \
                             it back and reset it again, or clean it by hand"
                        .into(),
                });
            }
            _ => {}
        }
    }
    let reachable_targets: Vec<&str> =
        targets.iter().copied().filter(|t| !blocked.contains_key(*t)).collect();
    let sequence =
        if hosts.is_empty() { Vec::new() } else { removals(input, &reachable_targets, &ready)? };
    let mut teardowns = BTreeMap::new();
    for name in &reachable_targets {
        let steps = teardown(input, name, ready[name], stamp);
        if !steps.is_empty() {
            teardowns.insert(name.to_string(), steps);
        }
    }
    let phases = vec![
        PhasePlan { phase: Phase::Etcd, hosts: BTreeMap::new(), sequence, batch: None },
        PhasePlan { phase: Phase::Os, hosts: teardowns, sequence: Vec::new(), batch: None },
    ];
    Ok(Plan {
        cluster: cluster.name.clone(),
        operation: operation.clone(),
        phases,
        blocked,
        departed: Vec::new(),
        deferred: Vec::new(),
    })
}

#[cfg(test)]
#[path = "tests_reset.rs"]
mod tests;
