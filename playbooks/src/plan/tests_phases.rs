//! Shared by the tests of the pki, loadbalancer, control-plane, workers and addons phases: the
//! examples' real render trees (PKI files with placeholder bytes, so no key generation is
//! needed), Debian machines as their facts, and a host model that applies a plan's effects so
//! that convergence can be checked. Also the ownership rule: every render-tree file of every
//! example belongs to exactly one phase, and no worker is ever planned a signing key.

use std::collections::BTreeMap;

use super::tests::{fresh_facts, present_file, simulate_unit};
use super::*;
use crate::facts::{Binary, FileState, UnitState};
use crate::model::Cluster;
use crate::render::{RenderError, RenderInput};
use crate::secrets::ClusterSecrets;

pub(crate) const EXAMPLES: [(&str, &str); 3] = [
    ("stacked", include_str!("../../../examples/stacked.yaml")),
    ("external", include_str!("../../../examples/external.yaml")),
    ("node-local", include_str!("../../../examples/node-local.yaml")),
];

pub(crate) fn example_text(name: &str) -> &'static str {
    EXAMPLES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).expect("known example")
}

pub(crate) fn load(text: &str) -> Cluster {
    match crate::spec::load_str(text, "test.yaml") {
        Ok(c) => c,
        Err(d) => panic!("test spec does not validate: {d:?}"),
    }
}

/// Secrets from a fixed byte stream, so trees are identical between renders.
fn secrets() -> ClusterSecrets {
    let mut next = 11u8;
    ClusterSecrets::generate(|buf: &mut [u8]| {
        for b in buf {
            *b = next;
            next = next.wrapping_mul(5).wrapping_add(3);
        }
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap()
}

/// The whole render tree of `cluster`: the real configs, and every PKI file the renderer asks
/// for (CA keys included) with placeholder contents naming the store file.
pub(crate) fn render(cluster: &Cluster) -> RenderTree {
    let secrets = secrets();
    let mut store = kubeforge_pki::Store::new();
    for ca_key in ["ca.key", "front-proxy-ca.key", "etcd/ca.key"] {
        store.insert(ca_key.into(), format!("placeholder {ca_key}\n").into_bytes());
    }
    let probe = RenderInput { cluster, pki: &store, secrets: &secrets };
    match crate::render::pki::add_files(probe, &mut RenderTree::default()) {
        Ok(()) => {}
        Err(RenderError::Pki(e)) => {
            for rel in e.missing {
                let bytes = format!("placeholder {rel}\n").into_bytes();
                store.insert(rel, bytes);
            }
        }
        Err(e) => panic!("{e}"),
    }
    let input = RenderInput { cluster, pki: &store, secrets: &secrets };
    crate::render::render(input).unwrap_or_else(|e| panic!("render {}: {e}", cluster.name))
}

/// A Debian 12 lab machine after the os and runtime phases: haproxy and keepalived installed from
/// the distribution (haproxy running its default config, keepalived enabled but not started for
/// want of a config), no kubelet, and none of the tree's files present.
pub(crate) fn debian_facts(hostname: &str) -> HostFacts {
    let mut facts = fresh_facts(hostname);
    facts.swaps.clear();
    let unit =
        |active: &str, enabled: &str| UnitState { active: active.into(), enabled: enabled.into() };
    facts.units.insert("haproxy.service".into(), unit("active", "enabled"));
    facts.units.insert("keepalived.service".into(), unit("inactive", "enabled"));
    facts.files.clear();
    facts.files.insert(
        "/etc/haproxy/haproxy.cfg".into(),
        present_file(b"global\n\tlog /dev/log local0\ndefaults\n\tmode http\n", 0o644),
    );
    facts
}

pub(crate) fn facts_for(cluster: &Cluster) -> BTreeMap<String, HostProbe> {
    cluster.hosts.iter().map(|h| (h.name.clone(), Ok(debian_facts(&h.name)))).collect()
}

/// Plans `phases` only (no preflight), with `artifacts`.
pub(crate) fn plan_phases(
    cluster: &Cluster,
    tree: &RenderTree,
    facts: &BTreeMap<String, HostProbe>,
    artifacts: &ArtifactInventory,
    phases: &[Phase],
) -> Plan {
    try_plan_phases(cluster, tree, facts, artifacts, None, phases).unwrap()
}

/// Plans `phases` only (no preflight), with `artifacts` and the last `applied` record.
pub(crate) fn try_plan_phases(
    cluster: &Cluster,
    tree: &RenderTree,
    facts: &BTreeMap<String, HostProbe>,
    artifacts: &ArtifactInventory,
    applied: Option<&crate::applied::Applied>,
    phases: &[Phase],
) -> Result<Plan, PlanError> {
    let skip: Vec<Phase> = Phase::ALL.into_iter().filter(|p| !phases.contains(p)).collect();
    let selection = PhaseSelection::new(None, &skip);
    let input = PlanInput {
        cluster,
        tree,
        facts,
        artifacts,
        selection: &selection,
        observed: &Observed::default(),
        applied,
    };
    plan(&Operation::Apply, input)
}

/// One phase's steps on one host as their labels (empty when the host has none).
pub(crate) fn labels(plan: &Plan, phase: Phase, host: &str) -> Vec<String> {
    let phase = plan.phases.iter().find(|p| p.phase == phase).expect("phase selected");
    phase.hosts.get(host).map(|s| s.iter().map(Step::label).collect()).unwrap_or_default()
}

pub(crate) fn steps<'a>(plan: &'a Plan, phase: Phase, host: &str) -> &'a [Step] {
    let phase = plan.phases.iter().find(|p| p.phase == phase).expect("phase selected");
    phase.hosts.get(host).map(Vec::as_slice).unwrap_or_default()
}

/// What the host model records of commands that change cluster state (kubectl apply, image
/// imports), per host, in order.
pub(crate) type Commands = BTreeMap<String, Vec<String>>;

/// Applies a plan's effects to facts the way a Debian host would: files written or removed,
/// binaries pushed (reporting `version` for the kubelet), units enabled and started; records
/// the commands that act on the cluster. Panics on a command it does not know, so a new kind
/// of step cannot slip through the convergence tests unmodelled.
pub(crate) fn simulate(
    plan: &Plan,
    facts: &mut BTreeMap<String, HostProbe>,
    kube_version: &str,
) -> Commands {
    let mut commands = Commands::new();
    for phase in &plan.phases {
        for (host, steps) in &phase.hosts {
            let Some(Ok(f)) = facts.get_mut(host) else { continue };
            for step in steps {
                apply_step(host, step, f, kube_version, &mut commands);
            }
        }
    }
    commands
}

#[allow(unreachable_patterns)] // other phases' step kinds, if any, never reach these phases
fn apply_step(
    host: &str,
    step: &Step,
    f: &mut HostFacts,
    kube_version: &str,
    commands: &mut Commands,
) {
    match step {
        Step::PutFile(p) => {
            f.files.insert(p.path.clone(), present_file(&p.contents, p.mode));
        }
        Step::PushArtifact(a) => {
            let version = (a.name == "kubelet").then(|| kube_version.to_string());
            f.binaries.insert(a.name.clone(), Binary { path: Some(a.dest.clone()), version });
            let sha256 = a.sha256.clone();
            let state = FileState::Present {
                sha256,
                mode: Some(a.mode),
                owner: Some("root".into()),
                group: Some("root".into()),
                contents: None,
            };
            f.files.insert(a.dest.clone(), state);
        }
        Step::Run(r) => {
            let argv: Vec<&str> = r.argv.iter().map(String::as_str).collect();
            match argv.as_slice() {
                ["haproxy", "-c", ..]
                | ["systemctl", "reload", _]
                | ["systemctl", "reset-failed", _] => {}
                ["rm", "-f", "--", path] => {
                    f.files.remove(*path);
                }
                ["rm", "-rf", "--", dir] => {
                    let prefix = format!("{dir}/");
                    f.files.retain(|p, _| !p.starts_with(&prefix));
                }
                [kubectl, ..] if kubectl.ends_with("/kubectl") => {
                    commands.entry(host.to_string()).or_default().push(r.argv.join(" "))
                }
                ["ctr", ..] | ["sh", "-c", _] => {
                    commands.entry(host.to_string()).or_default().push(r.argv.join(" "))
                }
                other => panic!("the host model does not know {other:?}"),
            }
        }
        Step::Unit(u) => simulate_unit(&mut f.units, u),
        Step::Gate(_) => {}
        other => panic!("unexpected step {other:?}"),
    }
}

/// The etcd phase's files. etcd.rs belongs to the etcd phase's author; this mirrors what the
/// render tree gives etcd members (unit, system user) so the rule below covers every file. The
/// systemd backup runner is installed by `backup.rs`, which the etcd phase calls.
fn etcd_owns(path: &str) -> bool {
    path == "/etc/systemd/system/etcd.service"
        || path.starts_with("/etc/systemd/system/etcd.service.d/")
        || path == "/etc/sysusers.d/kubeforge-etcd.conf"
}

/// The phases that claim `path` on `host`.
fn owners(host: &crate::model::Host, path: &str) -> Vec<Phase> {
    let claims = [
        (Phase::Os, os::owns(path)),
        (Phase::Runtime, runtime::owns(path)),
        (Phase::Pki, pki::owns(path)),
        (Phase::Etcd, etcd_owns(path) || backup::owns(path)),
        (Phase::LoadBalancer, loadbalancer::owns(path)),
        (Phase::ControlPlane, control_plane::owns(host, path)),
        (Phase::Workers, workers::owns(host, path)),
        (Phase::Addons, addons::owns(path)),
    ];
    claims.into_iter().filter(|(_, claimed)| *claimed).map(|(p, _)| p).collect()
}

#[test]
fn every_tree_file_of_every_example_belongs_to_exactly_one_phase() {
    let mut seen_phases = std::collections::BTreeSet::new();
    for (name, text) in EXAMPLES {
        let cluster = load(text);
        let tree = render(&cluster);
        let mut problems = Vec::new();
        for (host_name, files) in &tree.hosts {
            let host = cluster.host(host_name).unwrap();
            for path in files.keys() {
                let owners = owners(host, path);
                if owners.len() == 1 {
                    seen_phases.insert(owners[0]);
                } else {
                    problems.push(format!("{name}: {host_name} {path} is claimed by {owners:?}"));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
    // The rule is not vacuous: every file-putting phase owns something in the examples.
    let expected = [
        Phase::Os,
        Phase::Runtime,
        Phase::Pki,
        Phase::Etcd,
        Phase::LoadBalancer,
        Phase::ControlPlane,
        Phase::Workers,
        Phase::Addons,
    ];
    assert_eq!(seen_phases.into_iter().collect::<Vec<_>>(), expected);
}

#[test]
fn workers_and_etcd_hosts_are_never_planned_a_signing_key() {
    for (name, text) in EXAMPLES {
        let cluster = load(text);
        let tree = render(&cluster);
        let facts = facts_for(&cluster);
        let mine =
            [Phase::Pki, Phase::LoadBalancer, Phase::ControlPlane, Phase::Workers, Phase::Addons];
        let plan = plan_phases(&cluster, &tree, &facts, &ArtifactInventory::new(), &mine);
        let mut control_plane_keys = 0;
        for phase in &plan.phases {
            for (host, steps) in &phase.hosts {
                let is_cp = cluster.host(host).unwrap().is_control_plane();
                for step in steps {
                    let Step::PutFile(put) = step else { continue };
                    if pki::is_signing_key(&put.path) {
                        assert!(is_cp, "{name}: {host} is planned {}", put.path);
                        control_plane_keys += 1;
                    }
                }
            }
        }
        assert!(control_plane_keys > 0, "{name}: control planes get their CA keys");
    }
}
