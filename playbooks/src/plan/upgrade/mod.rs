//! `upgrade`: the plan that moves a running cluster to the spec's `kubernetesVersion` and
//! `etcd.version`. It owns the order of an upgrade, its preconditions (every host reachable,
//! the skew rules of [`skew`], a healthy etcd) and every step, gate and argv in it. It does no
//! I/O and takes no snapshot: the CLI takes and verifies one before executing (ARCHITECTURE,
//! "Operations"). It never plans a change the skew rules refuse: a refused upgrade is a plan
//! with every offending host blocked and no steps.
//!
//! Versions are what the hosts run, never what an earlier run wrote: etcd's from each member's
//! own `status` (or, when it did not answer, the installed binary's `--version` on a host with
//! etcd data), kube-apiserver's from the image tag of its static pod manifest, the kubelet's from
//! `kubelet --version` where the kubelet unit is active. A component that is not there is not
//! upgraded (a fresh host is `apply`'s).
//!
//! Order: `etcd`: first, on every member still on the old version at once, the new binaries
//! and the unit if it changed (the running members keep what they loaded); then members one at
//! a time, followers in spec order and the leader last (a member already on the target version
//! is skipped, so a re-run resumes with the next member), each: restart, gate on every
//! member's health (quorum) and on the member reporting the target version, then record what
//! it loaded (`restart.rs`);
//! `control-plane` one host at a time: the static pod manifests rendered for the target
//! version (the old ones kept beside the manifests dir), gated on the local `/readyz`, then on
//! the API endpoint; `workers` (every kubelet, control planes first) in batches of
//! `max_unavailable`: cordon and drain the batch with kubectl on the first control plane, push
//! and restart each kubelet, gate on the node reporting the target version, uncordon.

pub mod skew;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;

use self::skew::{Change, Component, HostVersions, Semver, SkewReport, Targets};
use super::etcd::{BIN_DIR, BINARIES, CLIENT_PORT, GATE_TIMEOUT_MS, PKI_FILES};
use super::files::{Wanted, put_file};
use super::restart::Loads;
use super::types::{
    EtcdAction, EtcdClientFiles, EtcdOp, EtcdTiming, Gate, PhasePlan, Plan, Problem, PushArtifact,
    Run, SequencedStep, Step, UnitAction, UnitStep,
};
use super::{Operation, Phase, PlanInput};
use crate::facts::HostFacts;
use crate::model::{Cluster, Endpoint, Host};
use crate::node;
use crate::render::configs::etcd as unit;

/// The phases an upgrade runs, in order.
pub const PHASES: [Phase; 4] = [Phase::Preflight, Phase::Etcd, Phase::ControlPlane, Phase::Workers];

const ETCD_UNIT: &str = node::unit::ETCD;
const KUBELET_UNIT: &str = node::unit::KUBELET;
const KUBECTL: &str = "/usr/local/bin/kubectl";
const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
/// Where a control plane's manifests are kept before the new ones replace them.
pub const MANIFESTS_BEFORE_UPGRADE: &str = "/etc/kubernetes/manifests-before-upgrade";
/// The control-plane static pods an upgrade rewrites, in kubeadm's order.
const STATIC_PODS: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];
/// How long one member may take to report the target version after its restart.
const VERSION_GATE_MS: u64 = 60_000;

/// What the hosts run, what the spec wants, and what the rules say: shown by `upgrade plan`
/// beside the steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradeReport {
    pub versions: Vec<HostVersions>,
    pub targets: Targets,
    pub changes: Vec<Change>,
    pub skew: SkewReport,
}

fn manifest(pod: &str) -> String {
    format!("{}/{pod}.yaml", node::MANIFESTS_DIR)
}

/// The tag of `image: …/kube-apiserver:TAG` in a static pod manifest.
pub fn apiserver_image_version(manifest: &str) -> Option<Semver> {
    manifest.lines().find_map(|line| {
        let image = line.trim().strip_prefix("image:")?.trim().trim_matches('"');
        let (repo, tag) = image.rsplit_once(':')?;
        repo.ends_with("kube-apiserver").then(|| Semver::parse(tag)).flatten()
    })
}

/// One host's running versions, from its facts and etcd's own answer.
pub fn host_versions(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> HostVersions {
    let binary = |name: &str| {
        facts.binaries.get(name).and_then(|b| b.version.as_deref()).and_then(Semver::parse)
    };
    let member = input.cluster.etcd_members().any(|m| m.name == host.name);
    let answered = input.observed.etcd.as_ref().and_then(|e| e.status.get(&host.name));
    let etcd_there = facts.units.get(ETCD_UNIT).is_some_and(|u| u.is_active())
        || facts.paths_exist.get(unit::MEMBER_DIR) == Some(&true);
    let etcd = match answered {
        Some(report) => Semver::parse(&report.version),
        None if member && etcd_there => binary("etcd"),
        None => None,
    };
    let kube_apiserver = facts
        .files
        .get(&manifest("kube-apiserver"))
        .and_then(|f| f.contents())
        .and_then(|c| apiserver_image_version(&String::from_utf8_lossy(c)));
    let kubelet = facts
        .units
        .get(KUBELET_UNIT)
        .is_some_and(|u| u.is_active())
        .then(|| binary("kubelet"))
        .flatten();
    HostVersions { host: host.name.clone(), etcd, kube_apiserver, kubelet }
}

/// The spec's versions (and the etcd kubeadm pairs with its Kubernetes minor).
pub fn targets(cluster: &Cluster) -> Option<Targets> {
    let k = cluster.kubernetes_version;
    Some(Targets {
        kubernetes: Semver::new(k.major, k.minor, k.patch),
        etcd: Semver::parse(&cluster.etcd.version)?,
        kubeadm_etcd: crate::versions::release(k).and_then(|r| Semver::parse(r.etcd)),
    })
}

/// Versions of every reachable host, the changes the spec asks for and the rules' verdict.
pub fn report(input: PlanInput<'_>) -> Option<UpgradeReport> {
    let targets = targets(input.cluster)?;
    let versions: Vec<HostVersions> = input
        .cluster
        .hosts
        .iter()
        .filter_map(|h| match input.facts.get(&h.name) {
            Some(Ok(facts)) => Some(host_versions(input, h, facts)),
            _ => None,
        })
        .collect();
    let changes = skew::changes(&versions, &targets);
    let skew = skew::check(&versions, &targets);
    Some(UpgradeReport { versions, targets, changes, skew })
}

fn problem(check: &str, message: String, remedy: &str) -> Problem {
    Problem { phase: Phase::Preflight, check: check.into(), message, remedy: remedy.into() }
}

fn run(argv: &[&str], unless: Option<&[&str]>, why: &str) -> Step {
    let own = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Step::Run(Run { argv: own(argv), unless: unless.map(own), why: why.into() })
}

fn gate(what: String, argv: Vec<String>, attempts: u32, interval_ms: u64) -> Step {
    Step::Gate(Gate { what, argv, across: None, attempts, interval_ms })
}

fn kubectl(args: &[&str]) -> Vec<String> {
    [KUBECTL, "--kubeconfig", ADMIN_CONF].iter().chain(args).map(|s| s.to_string()).collect()
}

/// Plans an upgrade; see the module doc.
pub(crate) fn plan(input: PlanInput<'_>, operation: Operation, max_unavailable: usize) -> Plan {
    let cluster = input.cluster;
    let mut plan = Plan {
        cluster: cluster.name.clone(),
        operation,
        phases: vec![PhasePlan {
            phase: Phase::Preflight,
            hosts: BTreeMap::new(),
            sequence: Vec::new(),
            batch: None,
        }],
        blocked: BTreeMap::new(),
        departed: Vec::new(),
    };
    let mut facts_of: BTreeMap<&str, &HostFacts> = BTreeMap::new();
    for host in &cluster.hosts {
        match input.facts.get(&host.name) {
            Some(Ok(f)) => {
                facts_of.insert(&host.name, f);
            }
            other => {
                let reason = match other {
                    Some(Err(e)) => e.clone(),
                    _ => "no facts were gathered".into(),
                };
                plan.blocked.entry(host.name.clone()).or_default().push(problem(
                    "reachable",
                    format!("no facts: {reason}"),
                    "an upgrade reads every host's versions first: bring the machine back (or \
                     take it out of the spec), then plan the upgrade again",
                ));
            }
        }
    }
    let Some(report) = report(input) else {
        plan.blocked.entry("*".into()).or_default().push(problem(
            "etcd-version",
            format!("spec.etcd.version `{}` is not a version", cluster.etcd.version),
            "write it as vMAJOR.MINOR.PATCH (v3.5.1), then plan the upgrade again",
        ));
        return plan;
    };
    for f in &report.skew.refusals {
        plan.blocked.entry(f.host.clone()).or_default().push(problem(
            f.rule.name(),
            f.message.clone(),
            "change the spec's version; nothing was changed on any host",
        ));
    }
    if !plan.blocked.is_empty() {
        return plan;
    }
    let target = report.targets;
    let changed = |host: &str, c: Component| {
        report.changes.iter().any(|ch| ch.host == host && ch.component == c)
    };

    // etcd, one member at a time, followers first.
    let members: Vec<&Host> = cluster.etcd_members().collect();
    let etcd_loads = |host: &Host, facts: &HostFacts| {
        let mut loads = Loads::new(ETCD_UNIT).file(input, &host.name, facts, unit::UNIT);
        for path in PKI_FILES {
            loads = loads.file(input, &host.name, facts, path);
        }
        loads.binary(input, facts, "etcd", &format!("{BIN_DIR}/etcd"))
    };
    // A member on the target version whose record of what it loaded is stale was interrupted
    // between its restart and the record: it is restarted again (cheap, and never wrong).
    let on_target_but_stale = |m: &Host| {
        report.versions.iter().any(|v| v.host == m.name && v.etcd == Some(target.etcd))
            && facts_of.get(m.name.as_str()).is_some_and(|f| etcd_loads(m, f).stale(f).is_some())
    };
    let upgrading: Vec<&Host> = members
        .iter()
        .copied()
        .filter(|m| changed(&m.name, Component::Etcd) || on_target_but_stale(m))
        .collect();
    let any_change = members.iter().any(|m| changed(&m.name, Component::Etcd));
    if any_change || !upgrading.is_empty() {
        let observed = input.observed.etcd.as_ref();
        let unhealthy: Vec<String> = match observed {
            Some(o) => o
                .members
                .iter()
                .filter(|m| !m.healthy)
                .map(|m| if m.name.is_empty() { format!("{:x}", m.id) } else { m.name.clone() })
                .collect(),
            None => vec!["(no member answered)".into()],
        };
        if !unhealthy.is_empty() {
            plan.blocked.entry("*".into()).or_default().push(problem(
                "etcd-healthy",
                format!("etcd members not healthy before the upgrade: {}", unhealthy.join(", ")),
                "an upgrade restarts one member at a time and needs every other member healthy: \
                 bring them back (`kubeforge plan --until etcd`), then plan the upgrade again",
            ));
        }
        if !input.artifacts.contains_key("etcd") {
            plan.blocked.entry("*".into()).or_default().push(problem(
                "etcd-artifact",
                format!("the artifact source has no etcd {} binary", cluster.etcd.version),
                "provide etcd/<version>/etcd (and etcdctl, etcdutl) in the spec's artifact \
                 source, then plan the upgrade again",
            ));
        }
        if !plan.blocked.is_empty() {
            return plan;
        }
        let is_leader =
            |h: &Host| observed.and_then(|o| o.status.get(&h.name)).is_some_and(|s| s.is_leader);
        let mut order: Vec<&Host> = upgrading.iter().copied().filter(|h| !is_leader(h)).collect();
        order.extend(upgrading.iter().copied().filter(|h| is_leader(h)));
        let names: Vec<String> = members.iter().map(|h| h.name.clone()).collect();
        let tls = EtcdClientFiles::for_member(&input.observed.local_pki_dir, &members[0].name);
        let mut seq = Vec::new();
        let mut hosts: BTreeMap<String, Vec<Step>> = BTreeMap::new();
        for host in order {
            let facts = facts_of[host.name.as_str()];
            // The new files go onto every upgrading member at once, before any restart: the
            // running etcd keeps the binary it loaded, and the pushes (tens of MB each) do not
            // lengthen the one-member-at-a-time part.
            let staged = hosts.entry(host.name.clone()).or_default();
            for bin in BINARIES {
                let dest = format!("{BIN_DIR}/{bin}");
                let on_host = facts.files.get(&dest).and_then(|f| f.sha256());
                if let Some(a) = input.artifacts.get(bin)
                    && on_host != Some(a.sha256.as_str())
                {
                    staged.push(Step::PushArtifact(PushArtifact {
                        name: format!("{bin} {}", cluster.etcd.version),
                        local_path: a.path.clone(),
                        sha256: a.sha256.clone(),
                        dest,
                        mode: 0o755,
                        unverified: a.unverified,
                    }));
                }
            }
            if let Some(file) = input.tree.hosts.get(&host.name).and_then(|t| t.get(unit::UNIT)) {
                let wanted = Wanted {
                    path: unit::UNIT,
                    contents: &file.contents,
                    mode: file.mode,
                    secret: false,
                };
                if let Some(put) = put_file(&host.name, facts, wanted) {
                    staged.push(Step::PutFile(put));
                    staged.push(Step::Unit(UnitStep {
                        unit: String::new(),
                        action: UnitAction::DaemonReload,
                        why: format!("etcd's unit for {} changed", cluster.etcd.version),
                    }));
                }
            }
            if staged.is_empty() {
                hosts.remove(&host.name);
            }
            let mut push = |step: Step| seq.push(SequencedStep { host: host.name.clone(), step });
            let from = report
                .changes
                .iter()
                .find(|c| c.host == host.name && c.component == Component::Etcd)
                .map(|c| c.from.to_string())
                .unwrap_or_default();
            push(Step::Unit(UnitStep {
                unit: ETCD_UNIT.into(),
                action: UnitAction::Restart,
                why: format!(
                    "etcd {from} → {}: same data dir, one member at a time{}",
                    target.etcd,
                    if is_leader(host) {
                        " (the leader, last: it hands leadership over)"
                    } else {
                        ""
                    }
                ),
            }));
            let op = |action: EtcdAction, why: &str| {
                Step::Etcd(EtcdOp {
                    action,
                    client_port: CLIENT_PORT,
                    tls: tls.clone(),
                    timing: EtcdTiming::default(),
                    why: why.into(),
                })
            };
            push(op(
                EtcdAction::HealthGate { members: names.clone(), timeout_ms: GATE_TIMEOUT_MS },
                "every member answers with a quorum before the next one restarts",
            ));
            push(op(
                EtcdAction::VersionGate {
                    member: host.name.clone(),
                    version: target.etcd.to_string(),
                    timeout_ms: VERSION_GATE_MS,
                },
                "the restarted member runs the new release",
            ));
            if let Some(record) = etcd_loads(host, facts).record_step(&host.name, facts) {
                push(record);
            }
        }
        plan.phases.push(PhasePlan { phase: Phase::Etcd, hosts, sequence: seq, batch: None });
    }

    // Control planes, one at a time.
    let control_planes: Vec<&Host> = cluster
        .hosts
        .iter()
        .filter(|h| h.is_control_plane() && changed(&h.name, Component::KubeApiserver))
        .collect();
    if !control_planes.is_empty() {
        let mut hosts = BTreeMap::new();
        for host in &control_planes {
            let facts = facts_of[host.name.as_str()];
            let mut steps = vec![run(
                &[
                    "sh",
                    "-c",
                    &format!(
                        "mkdir -p -m 0700 {MANIFESTS_BEFORE_UPGRADE} && cp -a {}/. \
                         {MANIFESTS_BEFORE_UPGRADE}/",
                        node::MANIFESTS_DIR
                    ),
                ],
                None,
                "keep the running manifests: put them back to roll this node back",
            )];
            let tree = input.tree.hosts.get(&host.name);
            for pod in STATIC_PODS {
                let path = manifest(pod);
                let Some(file) = tree.and_then(|t| t.get(&path)) else { continue };
                let wanted = Wanted {
                    path: &path,
                    contents: &file.contents,
                    mode: file.mode,
                    secret: false,
                };
                if let Some(put) = put_file(&host.name, facts, wanted) {
                    steps.push(Step::PutFile(put));
                }
            }
            let own = format!("https://{}", Endpoint::ip(host.address, node::APISERVER_PORT));
            steps.push(gate(
                format!("kube-apiserver {} on {} answers /readyz", target.kubernetes, host.name),
                kubectl(&["--server", &own, "get", "--raw", "/readyz"]),
                60,
                5000,
            ));
            steps.push(gate(
                format!("the API answers /readyz through {}", cluster.api_server_url()),
                kubectl(&["--server", &cluster.api_server_url(), "get", "--raw", "/readyz"]),
                30,
                2000,
            ));
            hosts.insert(host.name.clone(), steps);
        }
        plan.phases.push(PhasePlan {
            phase: Phase::ControlPlane,
            hosts,
            sequence: Vec::new(),
            batch: Some(1),
        });
    }

    // Kubelets, control planes first, in batches of `max_unavailable`.
    let mut kubelets: Vec<&Host> = cluster
        .hosts
        .iter()
        .filter(|h| h.runs_kubelet() && changed(&h.name, Component::Kubelet))
        .collect();
    kubelets.sort_by_key(|h| (!h.is_control_plane(), h.name.clone()));
    let applier = cluster.hosts.iter().find(|h| h.is_control_plane());
    if let (false, Some(applier)) = (kubelets.is_empty(), applier) {
        let mut seq = Vec::new();
        let at = |host: &str, step: Step| SequencedStep { host: host.to_string(), step };
        for batch in kubelets.chunks(max_unavailable.max(1)) {
            for h in batch {
                seq.push(at(
                    &applier.name,
                    run(
                        &kubectl(&["cordon", &h.name])
                            .iter()
                            .map(String::as_str)
                            .collect::<Vec<_>>(),
                        None,
                        &format!("no new pods on {} while its kubelet is replaced", h.name),
                    ),
                ));
                seq.push(at(
                    &applier.name,
                    run(
                        &kubectl(&[
                            "drain",
                            &h.name,
                            "--ignore-daemonsets",
                            "--delete-emptydir-data",
                            "--timeout=300s",
                        ])
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>(),
                        None,
                        "evict its pods, honouring PodDisruptionBudgets (a drain that cannot \
                         finish stops the upgrade and names the pods)",
                    ),
                ));
            }
            for h in batch {
                let facts = facts_of[h.name.as_str()];
                let dest = format!("{BIN_DIR}/kubelet");
                if let Some(a) = input.artifacts.get("kubelet")
                    && facts.files.get(&dest).and_then(|f| f.sha256()) != Some(a.sha256.as_str())
                {
                    seq.push(at(
                        &h.name,
                        Step::PushArtifact(PushArtifact {
                            name: format!("kubelet {}", cluster.kubernetes_version),
                            local_path: a.path.clone(),
                            sha256: a.sha256.clone(),
                            dest,
                            mode: 0o755,
                            unverified: a.unverified,
                        }),
                    ));
                }
                seq.push(at(
                    &h.name,
                    Step::Unit(UnitStep {
                        unit: KUBELET_UNIT.into(),
                        action: UnitAction::Restart,
                        why: format!("kubelet {}", target.kubernetes),
                    }),
                ));
                let want = format!("v{}", target.kubernetes);
                let jsonpath = "jsonpath={.status.nodeInfo.kubeletVersion}";
                let check = format!(
                    "test \"$({} get node {} -o '{jsonpath}')\" = {want}",
                    kubectl(&[]).join(" "),
                    h.name
                );
                seq.push(at(
                    &applier.name,
                    gate(
                        format!("node {} reports kubelet {want}", h.name),
                        vec!["sh".into(), "-c".into(), check],
                        60,
                        2000,
                    ),
                ));
            }
            for h in batch {
                seq.push(at(
                    &applier.name,
                    run(
                        &kubectl(&["uncordon", &h.name])
                            .iter()
                            .map(String::as_str)
                            .collect::<Vec<_>>(),
                        None,
                        "the node takes pods again",
                    ),
                ));
            }
        }
        plan.phases.push(PhasePlan {
            phase: Phase::Workers,
            hosts: BTreeMap::new(),
            sequence: seq,
            batch: None,
        });
    }
    plan
}
