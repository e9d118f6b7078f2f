//! `apply`'s switch of etcd from stacked (a member on each control plane) to external
//! (dedicated etcd hosts), planned as a safe sequence instead of refused:
//!
//! 1. `etcd`: the members on the control planes ("retiring") stay wanted while the new hosts
//!    join as learners one at a time, each gated and promoted (`super::etcd`, told which
//!    members retire): the cluster grows, quorum is never at stake.
//! 2. `control-plane`: each kube-apiserver's `--etcd-servers` now names the external members,
//!    a manifest change rolled out one control plane at a time behind `/readyz` (existing
//!    machinery; the apiserver's etcd client certificate is signed by the same etcd CA).
//! 3. End of the run ([`retire`]): each retiring member, one at a time, has leadership moved
//!    to a member that stays, is removed (never below quorum, simulated step by step), the
//!    remaining members gated; then on its control plane etcd is stopped and disabled, its data
//!    dir moved aside (never deleted) and etcd's files and restart records removed.
//!
//! Step 3 is deferred (the old members stay, and etcd keeps them) while a control plane's
//! kube-apiserver may still use them: when Kubernetes is installed on a control plane and the
//! run does not cover the control-plane phase, or a control plane is not in the run; the run
//! then ends with a health gate over every member whose reason says so (a plan with a switch
//! unfinished is never "No changes."). The next
//! apply that covers it finishes the switch: a switch in progress is recognised from etcd's
//! member list (a control plane that is not a member in the spec is listed), not from the
//! record; a control plane etcd no longer lists that still runs etcd or holds its data (a run
//! interrupted between a removal and the cleanup) is cleaned. External → stacked stays
//! refused (no such sequence yet). Pure: decides from the facts, the observed member list and
//! the applied record; does no I/O.

use std::collections::BTreeMap;

use super::etcd::{GATE_TIMEOUT_MS, PKI_FILES, move_data_aside};
use super::restart::record_path;
use super::types::{EtcdAction, EtcdClientFiles, Run, SequencedStep, Step};
use super::{Phase, PlanError, PlanInput, preflight};
use crate::etcd_membership::{MembershipError, SimMember, vote_counts};
use crate::facts::{HostFacts, ProbeRequest};
use crate::model::{Cluster, EtcdTopology, Host};
use crate::node::unit;
use crate::render::configs::etcd as etcd_unit;

const BACKUP_TIMER: &str = "kubeforge-backup.timer";
const BACKUP_SERVICE: &str = "kubeforge-backup.service";
const APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";

/// Whether `host` may hold an etcd member: a member in the spec, or (external topology) a
/// control plane, whose stacked member a switch to external retires. `cli` observes etcd
/// through these hosts, so a switch in progress is never mistaken for a new cluster.
pub fn may_hold_member(cluster: &Cluster, host: &Host) -> bool {
    cluster.etcd_members().any(|m| m.name == host.name)
        || (cluster.etcd.topology == EtcdTopology::External && host.is_control_plane())
}

/// The facts a control plane needs when etcd is external: whether a stacked member's data,
/// its backup timer and its bootstrap file are still there.
pub(crate) fn extend_request(cluster: &Cluster, host: &str, request: &mut ProbeRequest) {
    let Some(h) = cluster.host(host) else { return };
    if cluster.etcd.topology != EtcdTopology::External
        || !h.is_control_plane()
        || h.roles.contains(&crate::model::Role::Etcd)
    {
        return;
    }
    request.paths_exist.insert(etcd_unit::MEMBER_DIR.to_string());
    request.paths_exist.insert(etcd_unit::DATA_DIR.to_string());
    request.units.insert(BACKUP_TIMER.to_string());
    request.units.insert(BACKUP_SERVICE.to_string());
}

/// The spec hosts whose stacked member etcd still lists while the spec makes them no member
/// (a stacked → external switch in progress), in spec order; or the refusal when the switch
/// cannot be planned safely. Empty when no switch is under way.
pub(crate) fn retiring<'a>(
    input: PlanInput<'a>,
    reachable: &BTreeMap<&str, &HostFacts>,
    ready: &BTreeMap<&str, &HostFacts>,
) -> Result<Vec<&'a Host>, PlanError> {
    let cluster = input.cluster;
    let change = preflight::etcd_topology_change(input, reachable);
    let refuse = |(from, to, evidence): (String, String, String), reason: String| {
        PlanError::EtcdTopologyChange { from, to, evidence, reason }
    };
    if let Some(change) = &change
        && cluster.etcd.topology == EtcdTopology::Stacked
    {
        return Err(refuse(
            change.clone(),
            "kubeforge plans only stacked → external (the new members join, the apiservers \
             move to them, then the members on the control planes go); it has no sequence back \
             onto the control planes. To change it, take a snapshot (`kubeforge backup`), \
             `kubeforge reset` the cluster, apply the new topology and restore the snapshot"
                .into(),
        ));
    }
    // Only control planes retire (a former member given another role is an ordinary removal,
    // planned by the etcd phase).
    let retiring: Vec<&Host> = match &input.observed.etcd {
        Some(observed) if cluster.etcd.topology == EtcdTopology::External => cluster
            .hosts
            .iter()
            .filter(|h| may_hold_member(cluster, h))
            .filter(|h| !cluster.etcd_members().any(|m| m.name == h.name))
            .filter(|h| {
                let url = etcd_unit::peer_url(h.address);
                observed.members.iter().any(|m| m.peer_urls.contains(&url))
            })
            .collect(),
        _ => Vec::new(),
    };
    let Some(change) = change else { return Ok(retiring) };
    if !input.selection.contains(Phase::Etcd) {
        return Err(refuse(
            change,
            "the switch to external starts in the etcd phase (the new members join while the \
             old ones stay), which this run does not cover: apply with the etcd phase"
                .into(),
        ));
    }
    if input.observed.etcd.is_none() {
        return Err(refuse(
            change,
            "no etcd member list was read, so the members on the control planes cannot be kept \
             while the new ones join: start etcd on the control planes and plan again (or take \
             a snapshot with `kubeforge backup`, `kubeforge reset` the cluster, apply the new \
             topology and restore the snapshot)"
                .into(),
        ));
    }
    if retiring.is_empty() {
        return Ok(retiring);
    }
    let missing: Vec<String> = cluster
        .etcd_members()
        .filter(|h| !ready.contains_key(h.name.as_str()))
        .map(|h| h.name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(refuse(
            change,
            format!(
                "the new etcd host(s) {} are unreachable or blocked (see the problems listed): \
                 every new member joins before any kube-apiserver moves to them; fix them, then \
                 apply again",
                missing.join(", ")
            ),
        ));
    }
    Ok(retiring)
}

/// Why the retiring members must stay in this run, if they must: a kube-apiserver may still
/// use them.
pub(crate) fn deferred(input: PlanInput<'_>, ready: &BTreeMap<&str, &HostFacts>) -> Option<String> {
    let installed = |facts: &HostFacts| {
        facts.files.get(APISERVER_MANIFEST).and_then(|f| f.sha256()).is_some()
            || facts.units.get(unit::KUBELET).is_some_and(|u| {
                u.is_active() || matches!(u.enabled.as_str(), "enabled" | "enabled-runtime")
            })
    };
    for cp in input.cluster.control_planes() {
        match ready.get(cp.name.as_str()) {
            None => {
                return Some(format!(
                    "control plane {} is not in this run: its kube-apiserver may still use the \
                     members on the control planes",
                    cp.name
                ));
            }
            Some(facts) if installed(facts) && !input.selection.contains(Phase::ControlPlane) => {
                return Some(format!(
                    "Kubernetes runs on {} and this run does not cover the control-plane phase, \
                     which moves its kube-apiserver to the external members",
                    cp.name
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// Files a retiring member leaves on its control plane: etcd's own, the backup timer's and
/// their restart records, and etcd's files the last apply gave the host that the spec no
/// longer does (the etcd CA and the apiserver's etcd client certificate stay: in the tree).
fn retired_files(input: PlanInput<'_>, host: &str) -> Vec<String> {
    let tree = input.tree.hosts.get(host);
    let in_tree = |p: &str| tree.is_some_and(|t| t.contains_key(p));
    let mut files: Vec<String> = [
        etcd_unit::UNIT,
        etcd_unit::BOOTSTRAP_ENV,
        etcd_unit::SYSUSERS,
        crate::render::configs::backup::SERVICE,
        crate::render::configs::backup::TIMER,
    ]
    .iter()
    .map(|p| p.to_string())
    .chain(PKI_FILES.iter().map(|p| p.to_string()))
    .chain([record_path(unit::ETCD), record_path(BACKUP_TIMER)])
    .collect();
    // etcd's files the last apply gave the host beyond these (other components' files are
    // left to their own phases).
    if let Some(applied) = input.applied.and_then(|a| a.hosts.get(host)) {
        files.extend(
            applied
                .files
                .keys()
                .filter(|p| p.contains("etcd") || p.contains("kubeforge-backup"))
                .cloned(),
        );
    }
    files.retain(|p| !in_tree(p));
    files.sort();
    files.dedup();
    files
}

fn run(argv: &[&str], why: &str) -> Step {
    Step::Run(Run {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        unless: None,
        why: why.into(),
    })
}

/// The end of a switch: each retiring member removed, one at a time and quorum-safe, then its
/// control plane cleaned (see the module doc). Empty when nothing retires or it is deferred.
pub(crate) fn retire(
    input: PlanInput<'_>,
    ready: &BTreeMap<&str, &HostFacts>,
    retiring: &[&Host],
) -> Result<Vec<SequencedStep>, PlanError> {
    let Some(observed) = &input.observed.etcd else { return Ok(Vec::new()) };
    if input.cluster.etcd.topology != EtcdTopology::External {
        return Ok(Vec::new());
    }
    let staying: Vec<String> = input.cluster.etcd_members().map(|h| h.name.clone()).collect();
    let Some(via) = staying.first().cloned() else { return Ok(Vec::new()) };
    let tls = EtcdClientFiles::for_member(&input.observed.local_pki_dir, &via);
    let op = |action: EtcdAction, why: String| Step::etcd(action, &tls, why);
    if let Some(why) = deferred(input, ready) {
        // The plan says so (and is not "No changes." while the switch is unfinished): a gate
        // over every member, old and new, that names what is left.
        if retiring.is_empty() {
            return Ok(Vec::new());
        }
        let old: Vec<String> = retiring.iter().map(|h| h.name.clone()).collect();
        let members = staying.iter().chain(&old).cloned().collect();
        let why = format!(
            "the switch to external etcd is unfinished: the members on {} stay, since {why}; an \
             apply that covers the control-plane phase on every control plane removes them",
            old.join(", ")
        );
        let gate = op(EtcdAction::HealthGate { members, timeout_ms: GATE_TIMEOUT_MS }, why);
        return Ok(vec![SequencedStep { host: via, step: gate }]);
    }
    // The membership once the etcd phase has run: the listed members (the retiring ones with
    // their health) and every spec member a healthy voter (the phase gated each one).
    let mut sim: Vec<SimMember> = observed
        .members
        .iter()
        .filter(|m| retiring.iter().any(|h| is(m, h)))
        .map(|m| SimMember {
            name: retiring.iter().find(|h| is(m, h)).map(|h| h.name.clone()).unwrap_or_default(),
            peer_url: m.peer_urls.first().cloned().unwrap_or_default(),
            learner: m.is_learner,
            started: true,
            healthy: m.healthy,
        })
        .collect();
    for h in input.cluster.etcd_members() {
        sim.push(SimMember {
            name: h.name.clone(),
            peer_url: etcd_unit::peer_url(h.address),
            learner: false,
            started: true,
            healthy: true,
        });
    }
    let mut out = Vec::new();
    let mut push = |host: &str, step: Step| {
        out.push(SequencedStep { host: host.to_string(), step });
    };
    for h in retiring {
        let Some(member) = observed.members.iter().find(|m| is(m, h)) else { continue };
        let name = h.name.clone();
        if !member.is_learner {
            let why = format!(
                "should {name} lead, a member that stays takes over first: removing the leader \
                 itself leaves etcd without one until an election"
            );
            push(&via, op(EtcdAction::MoveLeader { name: name.clone(), id: member.id }, why));
        }
        sim.retain(|m| m.name != name);
        let (healthy, voting, needed) = vote_counts(&sim);
        if healthy < needed {
            return Err(PlanError::Etcd(
                MembershipError::StepLosesQuorum {
                    step: format!("remove member {name} ({:x})", member.id),
                    healthy,
                    voting,
                    needed,
                }
                .into(),
            ));
        }
        let why = format!(
            "etcd is external now: {name}'s stacked member goes, one at a time, after every \
             kube-apiserver moved to the external members"
        );
        push(&via, op(EtcdAction::Remove { name: name.clone(), id: member.id }, why));
        let remaining: Vec<String> = sim.iter().map(|m| m.name.clone()).collect();
        push(
            &via,
            op(
                EtcdAction::HealthGate { members: remaining, timeout_ms: GATE_TIMEOUT_MS },
                "the members that stay answer before the next change".into(),
            ),
        );
        for step in host_cleanup(input, ready.get(name.as_str()).copied(), &name) {
            push(&name, step);
        }
    }
    // A control plane left running etcd (or holding its data) that etcd no longer lists: a
    // switch interrupted between a removal and the cleanup. It is no member: only cleaned.
    let leftovers = input.cluster.control_planes().filter(|h| {
        may_hold_member(input.cluster, h)
            && !input.cluster.etcd_members().any(|m| m.name == h.name)
            && !observed.members.iter().any(|m| is(m, h))
    });
    for h in leftovers {
        let Some(facts) = ready.get(h.name.as_str()) else { continue };
        let runs = facts.units.get(unit::ETCD).is_some_and(|u| {
            u.is_active() || matches!(u.enabled.as_str(), "enabled" | "enabled-runtime")
        });
        // Data alone is not enough: with kubeforge's record of the etcd it ran there.
        let ran_here = facts.files.get(&record_path(unit::ETCD)).and_then(|f| f.sha256()).is_some();
        if runs || (ran_here && facts.paths_exist.get(etcd_unit::MEMBER_DIR) == Some(&true)) {
            for step in host_cleanup(input, Some(facts), &h.name) {
                push(&h.name, step);
            }
        }
    }
    Ok(out)
}

/// On a control plane whose stacked member is gone: etcd stopped and disabled (and its backup
/// timer), the data dir moved aside, etcd's files removed.
fn host_cleanup(input: PlanInput<'_>, facts: Option<&HostFacts>, name: &str) -> Vec<Step> {
    let mut steps =
        vec![run(&["systemctl", "disable", "--now", unit::ETCD], "no longer an etcd member")];
    let timer = facts.and_then(|f| f.units.get(BACKUP_TIMER)).is_some_and(|u| {
        u.is_active() || matches!(u.enabled.as_str(), "enabled" | "enabled-runtime")
    });
    if timer {
        steps.push(run(
            &["systemctl", "disable", "--now", BACKUP_TIMER],
            "the backups of the stacked member stop with it (the etcd hosts back up)",
        ));
    }
    steps.push(move_data_aside("the stacked member's data is kept aside, not deleted"));
    let files = retired_files(input, name);
    if !files.is_empty() {
        let mut argv = vec!["rm", "-f", "--"];
        argv.extend(files.iter().map(String::as_str));
        let why =
            format!("etcd's {} file(s) on a control plane that no longer runs it", files.len());
        steps.push(run(&argv, &why));
        steps.push(run(&["systemctl", "daemon-reload"], "etcd's unit file was removed"));
    }
    steps
}

/// Whether the listed member `m` is `h`'s (same peer URL).
fn is(m: &crate::etcd_membership::CurrentMember, h: &Host) -> bool {
    m.peer_urls.contains(&etcd_unit::peer_url(h.address))
}
