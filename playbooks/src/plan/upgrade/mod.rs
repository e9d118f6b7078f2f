//! `upgrade`: the plan that moves a running cluster to the spec's `kubernetesVersion` and
//! `etcd.version`. It owns the order of an upgrade, its preconditions (every host reachable,
//! the skew rules of [`skew`], a healthy etcd) and every step, gate and argv in it. It does no
//! I/O and takes no snapshot: the CLI takes and verifies one before executing (ARCHITECTURE,
//! "Operations"). It never plans a change the skew rules refuse: a refused upgrade is a plan
//! with every offending host blocked and no steps.
//!
//! Versions are what the hosts run, never what an earlier run wrote: etcd's from each member's
//! own `status` (or, when it did not answer, the installed binary's `--version` on a host with
//! etcd data), the static pods' (kube-apiserver, kube-controller-manager, kube-scheduler) from
//! the image tags of their manifests, the kubelet's from `kubelet --version` where the kubelet
//! unit is active, kube-proxy's and CoreDNS's from the cluster: the DaemonSet's and the
//! Deployment's image, read by `kubectl get` on the first control plane as part of its probe
//! ([`extend_request`]); a cluster that does not answer leaves them "not observed", never
//! assumed. A component that is not there is not upgraded (a fresh host is `apply`'s).
//!
//! Order: `preflight`: when kubelets are to be drained, a gate on the first control plane that
//! names every pod on those nodes whose PodDisruptionBudget allows no disruption (the upgrade
//! stops there, before the first change: `Operation::stops_at_first_failure`); `etcd`: first, on every member still on the old version at once, the new binaries
//! and the unit if it changed (the running members keep what they loaded); then members one at
//! a time, followers in spec order and the leader last (a member already on the target version
//! is skipped, so a re-run resumes with the next member), each: restart, gate on every
//! member's health (quorum) and on the member reporting the target version, then record what
//! it loaded (`restart.rs`);
//! `control-plane` one host at a time: kubectl and the control-plane images from the artifact
//! source, the running manifests kept in [`MANIFESTS_BEFORE_UPGRADE`], the static pod
//! manifests rendered for the target version, a guarded gate on the local `/readyz` whose
//! failure puts the kept manifests back (`Step::Guarded`: the node is rolled back and the
//! upgrade stops), then the API endpoint's `/readyz`; `workers`: the kubelets, control planes
//! one at a time first, then the other nodes in batches of `max_unavailable`: cordon and drain
//! the batch with kubectl on the first control plane (a drain that cannot finish within its
//! timeout stops the upgrade naming the pods that would not leave), push and restart each
//! kubelet, gate on the node reporting the target version, uncordon (a node is labelled
//! [`CORDON_LABEL`] while the upgrade holds it cordoned: a re-run after an interruption
//! uncordons the nodes it finds so labelled whose kubelet already runs the target); `addons` last: kube-proxy
//! and CoreDNS as `apply` renders them (`render::configs::addons`), images imported on every
//! kubelet host, then on the first control plane the manifests applied with `kubectl apply
//! --server-side` and the roll-outs awaited, and only then recorded in `/etc/kubernetes/addons`.

pub mod skew;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;

use self::skew::{Change, Component, HostVersions, Semver, SkewReport, Targets};
use super::etcd::{BIN_DIR, BINARIES, GATE_TIMEOUT_MS, PKI_FILES};
use super::files::{Wanted, put_file};
use super::loadbalancer::scratch_file;
use super::restart::Loads;
use super::types::{
    EtcdAction, EtcdClientFiles, FileReason, Gate, Guarded, PhasePlan, Plan, Problem, PushArtifact,
    Run, SequencedStep, Step, UnitAction, UnitStep,
};
use super::{Operation, Phase, PlanInput, addons, control_plane, workers};
use crate::facts::{HostFacts, ProbeRequest};
use crate::model::{Cluster, Endpoint, Host};
use crate::node;
use crate::render::configs::addons as addon_files;
use crate::render::configs::etcd as unit;

/// The phases an upgrade runs, in order.
pub const PHASES: [Phase; 5] =
    [Phase::Preflight, Phase::Etcd, Phase::ControlPlane, Phase::Workers, Phase::Addons];

/// The probe commands (on the first control plane) that read the add-ons' images from the
/// cluster: the kube-proxy DaemonSet's and the CoreDNS Deployment's.
pub const KUBE_PROXY_PROBE: &str = "kube-proxy-image";
pub const COREDNS_PROBE: &str = "coredns-image";
/// The probe command (on the first control plane) listing the nodes an upgrade cordoned.
pub const CORDONED_PROBE: &str = "nodes-cordoned-by-upgrade";
/// The label an upgrade puts on a node it cordons and removes when it uncordons it, so that
/// a re-run after an interruption uncordons what the interrupted run left cordoned (and
/// never a node the operator cordoned).
pub const CORDON_LABEL: &str = "kubeforge.dev/upgrade";
/// How long a drain may take before the upgrade stops, naming the pods that would not leave.
pub const DRAIN_TIMEOUT_S: u32 = 300;

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
    /// kube-proxy and CoreDNS as read from the cluster, or why they were not.
    pub addons: Vec<AddonObservation>,
    pub changes: Vec<Change>,
    pub skew: SkewReport,
}

/// One add-on's version as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddonObservation {
    pub component: Component,
    /// `None`: not observed (see `source`); nothing is assumed.
    pub version: Option<Semver>,
    /// Where it was read (`DaemonSet kube-system/kube-proxy on cp1`), or why it was not.
    pub source: String,
}

fn manifest(pod: &str) -> String {
    format!("{}/{pod}.yaml", node::MANIFESTS_DIR)
}

/// The tag of an image reference (`registry.k8s.io/kube-proxy:v1.33.1`, digest ignored).
pub fn image_tag_version(image: &str) -> Option<Semver> {
    let image = image.trim().trim_matches('"');
    let image = image.split_once('@').map_or(image, |(i, _)| i);
    let (repo, tag) = image.rsplit_once(':')?;
    (!tag.contains('/') && !repo.is_empty()).then(|| Semver::parse(tag)).flatten()
}

/// The tag of `image: …/<component>:TAG` in a static pod manifest.
pub fn manifest_image_version(manifest: &str, component: &str) -> Option<Semver> {
    manifest.lines().find_map(|line| {
        let image = line.trim().strip_prefix("image:")?.trim().trim_matches('"');
        let (repo, _) = image.rsplit_once(':')?;
        repo.ends_with(component).then(|| image_tag_version(image)).flatten()
    })
}

/// The tag of `image: …/kube-apiserver:TAG` in a static pod manifest.
pub fn apiserver_image_version(manifest: &str) -> Option<Semver> {
    manifest_image_version(manifest, "kube-apiserver")
}

fn kubectl_words(args: &[&str]) -> Vec<String> {
    [KUBECTL, "--kubeconfig", ADMIN_CONF].iter().chain(args).map(|s| s.to_string()).collect()
}

/// The probe of the first control plane reads the add-ons' images from the cluster (read-only
/// `kubectl get`, five seconds at most; a cluster that does not answer leaves them not
/// observed).
pub fn extend_request(cluster: &Cluster, host: &str, request: &mut ProbeRequest) {
    if cluster.control_planes().next().is_none_or(|h| h.name != host) {
        return;
    }
    let read = |kind: &str, name: &str| {
        kubectl_words(&[
            "--request-timeout=5s",
            "-n",
            "kube-system",
            "get",
            kind,
            name,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
    };
    request.commands.insert(KUBE_PROXY_PROBE.into(), read("daemonset", "kube-proxy"));
    request.commands.insert(COREDNS_PROBE.into(), read("deployment", "coredns"));
    let label = format!("{CORDON_LABEL}=cordoned");
    request.commands.insert(
        CORDONED_PROBE.into(),
        kubectl_words(&["--request-timeout=5s", "get", "nodes", "-l", &label, "-o", "name"]),
    );
}

/// The nodes the first control plane's probe found labelled as cordoned by an upgrade.
fn cordoned_by_upgrade(input: PlanInput<'_>) -> Vec<String> {
    let first = input.cluster.control_planes().next();
    let facts = first.and_then(|h| input.facts.get(&h.name)).and_then(|f| f.as_ref().ok());
    let Some(out) = facts.and_then(|f| f.commands.get(CORDONED_PROBE)).and_then(|o| o.ok()) else {
        return Vec::new();
    };
    out.lines().filter_map(|l| l.trim().strip_prefix("node/")).map(str::to_string).collect()
}

/// kube-proxy's and CoreDNS's versions as the first control plane's probe read them.
pub fn addon_versions(input: PlanInput<'_>) -> Vec<AddonObservation> {
    let first = input.cluster.control_planes().next();
    let facts = first.and_then(|h| input.facts.get(&h.name)).and_then(|f| f.as_ref().ok());
    [
        (Component::KubeProxy, KUBE_PROXY_PROBE, "DaemonSet kube-system/kube-proxy"),
        (Component::Coredns, COREDNS_PROBE, "Deployment kube-system/coredns"),
    ]
    .into_iter()
    .map(|(component, probe, what)| {
        let answer = facts.and_then(|f| f.commands.get(probe));
        let (version, source) = match (first, answer) {
            (None, _) => (None, "not observed: the spec has no control plane".to_string()),
            (Some(cp), None) => (None, format!("not observed: {} was not probed for it", cp.name)),
            (Some(cp), Some(out)) => match out.ok().and_then(image_tag_version) {
                Some(v) => (Some(v), format!("{what} on {}", cp.name)),
                None => (
                    None,
                    format!(
                        "not observed: {} could not read the {what} (kubectl exit {})",
                        cp.name, out.exit_status
                    ),
                ),
            },
        };
        AddonObservation { component, version, source }
    })
    .collect()
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
    let static_pod = |pod: &str| {
        facts
            .files
            .get(&manifest(pod))
            .and_then(|f| f.contents())
            .and_then(|c| manifest_image_version(&String::from_utf8_lossy(c), pod))
    };
    let kubelet = facts
        .units
        .get(KUBELET_UNIT)
        .is_some_and(|u| u.is_active())
        .then(|| binary("kubelet"))
        .flatten();
    let addons = addon_versions(input);
    let addon = |c: Component| {
        host.runs_kubelet()
            .then(|| addons.iter().find(|a| a.component == c).and_then(|a| a.version))
            .flatten()
    };
    HostVersions {
        host: host.name.clone(),
        etcd,
        kube_apiserver: static_pod("kube-apiserver"),
        kube_controller_manager: static_pod("kube-controller-manager"),
        kube_scheduler: static_pod("kube-scheduler"),
        kubelet,
        kube_proxy: addon(Component::KubeProxy),
        coredns: addon(Component::Coredns),
    }
}

/// The spec's versions (and the etcd kubeadm pairs with its Kubernetes minor).
pub fn targets(cluster: &Cluster) -> Option<Targets> {
    let k = cluster.kubernetes_version;
    Some(Targets {
        kubernetes: Semver::new(k.major, k.minor, k.patch),
        etcd: Semver::parse(&cluster.etcd.version)?,
        kubeadm_etcd: crate::versions::release(k).and_then(|r| Semver::parse(r.etcd)),
        coredns: crate::versions::release(k).and_then(|r| Semver::parse(r.coredns)),
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
    Some(UpgradeReport { versions, targets, addons: addon_versions(input), changes, skew })
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
    kubectl_words(args)
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
        deferred: Vec::new(),
    };
    let facts_of = super::reachable_or_blocked(
        input,
        &cluster.hosts,
        "an upgrade reads every host's versions first: bring the machine back (or take it out \
         of the spec), then plan the upgrade again",
        &mut plan.blocked,
    );
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
            let op = |action: EtcdAction, why: &str| Step::etcd(action, &tls, why);
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
        .filter(|h| {
            h.is_control_plane()
                && Component::ALL.iter().any(|c| c.is_static_pod() && changed(&h.name, *c))
        })
        .collect();
    if !control_planes.is_empty() {
        let mut hosts = BTreeMap::new();
        for host in &control_planes {
            let facts = facts_of[host.name.as_str()];
            let mut steps = Vec::new();
            // kubectl and the control-plane images (where the nodes cannot pull them) first:
            // the kubelet starts the new pods the moment their manifests change.
            workers::push_artifacts(
                input,
                facts,
                &["kubectl"],
                false,
                &control_plane::IMAGES,
                &mut steps,
            );
            steps.push(run(
                &["sh", "-c", &keep_manifests()],
                None,
                "keep the running manifests: put back to roll this node back",
            ));
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
            let readyz = kubectl(&["--server", &own, "get", "--raw", "/readyz"]);
            let was = report
                .versions
                .iter()
                .find(|v| v.host == host.name)
                .and_then(|v| v.kube_apiserver)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "the kept version".into());
            steps.push(Step::Guarded(Guarded {
                gate: Gate {
                    what: format!(
                        "kube-apiserver {} on {} answers /readyz",
                        target.kubernetes, host.name
                    ),
                    argv: readyz.clone(),
                    across: None,
                    attempts: 60,
                    interval_ms: 5000,
                },
                on_failure: vec![
                    run(
                        &["sh", "-c", &restore_manifests()],
                        None,
                        "roll back: the kubelet starts the kept static pods again",
                    ),
                    gate(
                        format!("kube-apiserver {was} on {} answers /readyz again", host.name),
                        readyz,
                        60,
                        5000,
                    ),
                ],
                why: format!("roll {} back to its kept manifests ({was})", host.name),
            }));
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

    // Kubelets: control planes one at a time, then the others in batches of
    // `max_unavailable`, each batch drained first and uncordoned after its version gate.
    let kubelets: Vec<&Host> = cluster
        .hosts
        .iter()
        .filter(|h| h.runs_kubelet() && changed(&h.name, Component::Kubelet))
        .collect();
    let applier = cluster.hosts.iter().find(|h| h.is_control_plane());
    // Nodes an interrupted upgrade left cordoned (its label says so) whose kubelet already
    // runs the target: they get their version gate and uncordon first.
    let left_cordoned: Vec<&Host> = cordoned_by_upgrade(input)
        .iter()
        .filter_map(|n| cluster.host(n))
        .filter(|h| h.runs_kubelet() && !kubelets.iter().any(|k| k.name == h.name))
        .collect();
    if let (false, Some(applier)) = (kubelets.is_empty() && left_cordoned.is_empty(), applier) {
        let mut seq = Vec::new();
        let at = |host: &str, step: Step| SequencedStep { host: host.to_string(), step };
        let k = |args: &[&str], why: &str| {
            run(&kubectl(args).iter().map(String::as_str).collect::<Vec<_>>(), None, why)
        };
        let version_gate = |h: &Host| {
            let want = format!("v{}", target.kubernetes);
            let jsonpath = "jsonpath={.status.nodeInfo.kubeletVersion}";
            let check = format!(
                "test \"$({} get node {} -o '{jsonpath}')\" = {want}",
                kubectl(&[]).join(" "),
                h.name
            );
            gate(
                format!("node {} reports kubelet {want}", h.name),
                vec!["sh".into(), "-c".into(), check],
                60,
                2000,
            )
        };
        let uncordon = |h: &Host| {
            [
                k(&["uncordon", &h.name], "the node takes pods again"),
                k(
                    &["label", "node", &h.name, &format!("{CORDON_LABEL}-")],
                    "the upgrade is done with this node",
                ),
            ]
        };
        for h in &left_cordoned {
            seq.push(at(&applier.name, version_gate(h)));
            seq.extend(uncordon(h).map(|s| at(&applier.name, s)));
        }
        if !kubelets.is_empty() {
            let drained: Vec<&str> = kubelets.iter().map(|h| h.name.as_str()).collect();
            plan.phases[0]
                .sequence
                .push(SequencedStep { host: applier.name.clone(), step: pdb_gate(&drained) });
        }
        let (cps, others): (Vec<&Host>, Vec<&Host>) =
            kubelets.iter().copied().partition(|h| h.is_control_plane());
        let batches = cps.chunks(1).chain(others.chunks(max_unavailable.max(1)));
        for batch in batches {
            for h in batch {
                seq.push(at(
                    &applier.name,
                    k(
                        &[
                            "label",
                            "--overwrite",
                            "node",
                            &h.name,
                            &format!("{CORDON_LABEL}=cordoned"),
                        ],
                        "marks the node cordoned by the upgrade, so a re-run uncordons it",
                    ),
                ));
                seq.push(at(
                    &applier.name,
                    k(
                        &["cordon", &h.name],
                        &format!("no new pods on {} while its kubelet is replaced", h.name),
                    ),
                ));
                seq.push(at(
                    &applier.name,
                    run(
                        &["sh", "-c", &drain_script(&h.name)],
                        None,
                        "evict its pods, honouring PodDisruptionBudgets; a drain that cannot \
                         finish stops the upgrade naming the pods that would not leave",
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
                seq.push(at(&applier.name, version_gate(h)));
            }
            for h in batch {
                seq.extend(uncordon(h).map(|s| at(&applier.name, s)));
            }
        }
        plan.phases.push(PhasePlan {
            phase: Phase::Workers,
            hosts: BTreeMap::new(),
            sequence: seq,
            batch: None,
        });
    }

    if let Some(phase) = addons_phase(input, &report, &facts_of) {
        plan.phases.push(phase);
    }
    plan
}

/// Copies the running manifests aside (kept: a later run's copy replaces them only when the
/// node was planned again, that is, still runs other versions than the target).
fn keep_manifests() -> String {
    format!(
        "mkdir -p -m 0700 {MANIFESTS_BEFORE_UPGRADE} && cp -a {}/. {MANIFESTS_BEFORE_UPGRADE}/",
        node::MANIFESTS_DIR
    )
}

/// Puts the kept static pod manifests back (only the three an upgrade rewrites).
fn restore_manifests() -> String {
    let files: Vec<String> =
        STATIC_PODS.iter().map(|p| format!("{MANIFESTS_BEFORE_UPGRADE}/{p}.yaml")).collect();
    format!("cp -a {} {}/", files.join(" "), node::MANIFESTS_DIR)
}

/// A gate (on the first control plane, before anything changes) that fails naming every pod
/// on `nodes` covered by a PodDisruptionBudget with `disruptionsAllowed` 0: their drain would
/// hang. A budget selecting by `matchExpressions` only is taken to cover its whole namespace
/// (named rather than missed).
fn pdb_gate(nodes: &[&str]) -> Step {
    let k = kubectl(&[]).join(" ");
    let list = nodes.join(" ");
    let script = format!(
        r#"k="{k}"; nodes=" {list} "; budgets=$($k get pdb -A -o go-template='{{{{range .items}}}}{{{{if eq (printf "%v" .status.disruptionsAllowed) "0"}}}}{{{{.metadata.namespace}}}} {{{{.metadata.name}}}} {{{{range $k, $v := .spec.selector.matchLabels}}}}{{{{$k}}}}={{{{$v}}}},{{{{end}}}}{{{{"\n"}}}}{{{{end}}}}{{{{end}}}}') || exit 2; found=$(printf '%s\n' "$budgets" | while read -r ns pdb sel; do [ -n "$ns" ] || continue; $k get pods -n "$ns" ${{sel:+-l "${{sel%,}}"}} -o go-template='{{{{range .items}}}}{{{{.metadata.name}}}} {{{{.spec.nodeName}}}}{{{{"\n"}}}}{{{{end}}}}' | while read -r pod node; do case "$nodes" in *" $node "*) echo "pod $ns/$pod on $node: PodDisruptionBudget $ns/$pdb allows no disruption";; esac; done; done); [ -z "$found" ] || {{ printf '%s\n' "$found" >&2; exit 1; }}"#
    );
    Step::Gate(Gate {
        what: format!(
            "no PodDisruptionBudget blocks draining {} (else the pods are named)",
            nodes.join(", ")
        ),
        argv: vec!["sh".into(), "-c".into(), script],
        across: None,
        attempts: 1,
        interval_ms: 0,
    })
}

/// `kubectl drain` with a timeout; when it cannot finish, the pods it could not evict are
/// named on stderr (the executor reports its tail).
fn drain_script(node: &str) -> String {
    let k = kubectl(&[]).join(" ");
    format!(
        r#"out=$({k} drain {node} --ignore-daemonsets --delete-emptydir-data --timeout={DRAIN_TIMEOUT_S}s 2>&1) && exit 0; printf '%s\n' "$out" | grep -o 'evicting pods/"[^"]*" -n "[^"]*"' | sort -u | sed 's|evicting pods/"\([^"]*\)" -n "\([^"]*\)"|pod \2/\1 would not leave {node}|' >&2; printf '%s\n' "$out" | tail -n 2 >&2; echo "the drain of {node} did not finish within {DRAIN_TIMEOUT_S} s" >&2; exit 1"#
    )
}

/// kube-proxy and CoreDNS moved to the target, last: their images imported on every kubelet
/// host where the artifact source has them, then, on the first control plane, the manifests
/// `apply` renders applied from a staging directory, the roll-outs awaited, and only then
/// recorded in `/etc/kubernetes/addons` on every control plane (a failed roll-out is planned
/// again on the next run). Planned when the first control plane's record of an applied
/// manifest differs from the render, or the cluster runs another version than the target;
/// never where the add-ons were not applied and the cluster reports none (that is `apply`'s).
fn addons_phase(
    input: PlanInput<'_>,
    report: &UpgradeReport,
    facts_of: &BTreeMap<&str, &HostFacts>,
) -> Option<PhasePlan> {
    let cluster = input.cluster;
    let applier = addons::applier(input)?;
    let observed_differs = report.addons.iter().any(|a| {
        a.version.zip(report.targets.get(a.component)).is_some_and(|(have, want)| have != want)
    });
    let files = [addon_files::KUBE_PROXY, addon_files::COREDNS];
    let mut records = Vec::new();
    let mut record_differs = false;
    for host in cluster.control_planes() {
        let Some(facts) = facts_of.get(host.name.as_str()) else { continue };
        for path in files {
            let Some(file) = input.tree.hosts.get(&host.name).and_then(|t| t.get(path)) else {
                continue;
            };
            let wanted =
                Wanted { path, contents: &file.contents, mode: file.mode, secret: file.secret };
            if let Some(put) = put_file(&host.name, facts, wanted) {
                // Add-ons never applied (a cluster `apply` has not finished, an etcd-only
                // lab) are `apply`'s, not an upgrade's.
                record_differs |=
                    host.name == applier.name && matches!(put.reason, FileReason::Change { .. });
                records.push(SequencedStep { host: host.name.clone(), step: Step::PutFile(put) });
            }
        }
    }
    if !observed_differs && !record_differs {
        return None;
    }
    let mut hosts = BTreeMap::new();
    for host in cluster.hosts.iter().filter(|h| h.runs_kubelet()) {
        let Some(facts) = facts_of.get(host.name.as_str()) else { continue };
        let mut steps = Vec::new();
        workers::push_artifacts(input, facts, &[], false, &["kube-proxy", "coredns"], &mut steps);
        if !steps.is_empty() {
            hosts.insert(host.name.clone(), steps);
        }
    }
    let at = |step: Step| SequencedStep { host: applier.name.clone(), step };
    let mut seq = Vec::new();
    let tree = input.tree.hosts.get(&applier.name);
    for path in files {
        let Some(file) = tree.and_then(|t| t.get(path)) else { continue };
        let name = path.rsplit('/').next().unwrap_or(path);
        let staged = format!("{}/{name}", addons::STAGING_DIR);
        seq.push(at(Step::PutFile(scratch_file(&staged, &file.contents, file.secret))));
    }
    seq.push(at(run(
        &kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=kubeforge",
            "--force-conflicts",
            "-f",
            addons::STAGING_DIR,
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        None,
        &format!("kube-proxy and CoreDNS for Kubernetes {}", report.targets.kubernetes),
    )));
    for (kind, name) in [("daemonset", "kube-proxy"), ("deployment", "coredns")] {
        let what = format!("{kind}/{name}");
        seq.push(at(gate(
            format!("{what} has rolled out"),
            kubectl(&["-n", "kube-system", "rollout", "status", &what, "--timeout=10s"]),
            30,
            2000,
        )));
    }
    seq.extend(records);
    seq.push(at(run(
        &["rm", "-rf", "--", addons::STAGING_DIR],
        None,
        "the applied manifests are recorded in /etc/kubernetes/addons",
    )));
    Some(PhasePlan { phase: Phase::Addons, hosts, sequence: seq, batch: None })
}
