//! The reset planner on hand-built facts: what it stops, removes and keeps, in which order;
//! etcd removals before any teardown and refused when they would break quorum; and a second
//! reset of a simulated host plans nothing.

use std::collections::BTreeMap;

use super::super::tests::{cluster, fresh_facts, present_file, simulate_unit, tree};
use super::super::*;
use crate::etcd_membership::CurrentMember;
use crate::facts::{FileState, HostFacts, UnitState};
use crate::model::{Cluster, Role};
use crate::render::RenderTree;

const CP: &[Role] = &[Role::ControlPlane];
const WORKER: &[Role] = &[Role::Worker];
const STAMP: &str = "20270101T000000Z";

fn lab() -> (Cluster, RenderTree) {
    let c = cluster(&[
        ("cp1", "10.0.0.11", CP),
        ("cp2", "10.0.0.12", CP),
        ("cp3", "10.0.0.13", CP),
        ("w1", "10.0.0.21", WORKER),
    ]);
    let mut t = tree(&["cp1", "cp2", "cp3", "w1"]);
    for cp in ["cp1", "cp2", "cp3"] {
        let file = |s: &str| crate::render::NodeFile {
            contents: s.as_bytes().to_vec(),
            mode: 0o644,
            secret: false,
        };
        t.insert(cp, "/etc/systemd/system/etcd.service", file("[Unit]\n")).unwrap();
        t.insert(cp, "/etc/haproxy/haproxy.cfg", file("global\n")).unwrap();
    }
    (c, t)
}

/// A host after `apply --until loadbalancer`: every tree file present, its services running
/// and enabled, etcd data on control planes, restart records written.
fn applied_facts(c: &Cluster, t: &RenderTree, host: &str) -> HostFacts {
    let mut f = fresh_facts(host);
    for (path, file) in &t.hosts[host] {
        f.files.insert(path.clone(), present_file(&file.contents, file.mode));
    }
    for path in super::extra_files() {
        f.files.entry(path).or_insert(FileState::Absent);
    }
    let up = || UnitState { active: "active".into(), enabled: "enabled".into() };
    let cp = c.host(host).unwrap().is_control_plane();
    if cp {
        for u in ["etcd.service", "haproxy.service", "keepalived.service"] {
            f.units.insert(u.into(), up());
        }
        f.files.insert(
            "/var/lib/kubeforge/loaded/etcd.service".into(),
            present_file(b"sha256s\n", 0o644),
        );
    }
    f.units.insert(
        super::BACKUP_TIMER.into(),
        UnitState { active: "inactive".into(), enabled: "not-found".into() },
    );
    f.paths_exist.insert(crate::render::configs::etcd::DATA_DIR.into(), cp);
    f
}

fn all_facts(c: &Cluster, t: &RenderTree) -> BTreeMap<String, HostProbe> {
    c.hosts.iter().map(|h| (h.name.clone(), Ok(applied_facts(c, t, &h.name)))).collect()
}

fn members(healthy: &[bool]) -> Observed {
    let current = healthy
        .iter()
        .enumerate()
        .map(|(i, &healthy)| CurrentMember {
            name: format!("cp{}", i + 1),
            id: 0x100 + i as u64,
            peer_urls: vec![format!("https://10.0.0.1{}:2380", i + 1)],
            is_learner: false,
            healthy,
        })
        .collect();
    Observed {
        etcd: Some(EtcdObserved {
            answered_by: "cp1".into(),
            members: current,
            status: Default::default(),
        }),
        local_pki_dir: String::new(),
    }
}

fn reset_op(hosts: &[&str]) -> Operation {
    Operation::Reset {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        spec_file: "lab.yaml".into(),
        stamp: STAMP.into(),
    }
}

fn plan_reset(
    c: &Cluster,
    t: &RenderTree,
    facts: &BTreeMap<String, HostProbe>,
    observed: &Observed,
    hosts: &[&str],
) -> Result<Plan, PlanError> {
    let artifacts = ArtifactInventory::new();
    let selection = PhaseSelection::new(None, &[]);
    let input = PlanInput {
        cluster: c,
        tree: t,
        facts,
        artifacts: &artifacts,
        selection: &selection,
        observed,
        applied: None,
    };
    plan(&reset_op(hosts), input)
}

/// What the reset's steps do to a host's facts.
fn simulate_reset(plan: &Plan, facts: &mut BTreeMap<String, HostProbe>) {
    for phase in &plan.phases {
        for (host, steps) in &phase.hosts {
            let Some(Ok(f)) = facts.get_mut(host) else { continue };
            for step in steps {
                match step {
                    Step::Unit(u) => simulate_unit(&mut f.units, u),
                    Step::Run(r) if r.argv[0] == "rm" => {
                        for p in &r.argv[3..] {
                            f.files.insert(p.clone(), FileState::Absent);
                            if p == "/usr/local/bin/containerd" {
                                f.binaries.remove("containerd");
                            }
                        }
                    }
                    Step::Run(r) if r.argv[0] == "mv" => {
                        f.paths_exist.insert(r.argv[2].clone(), false);
                    }
                    Step::Run(r) if r.argv[0] == "sh" => {}
                    other => panic!("unexpected step {other:?}"),
                }
            }
        }
    }
}

fn labels(steps: &[Step]) -> Vec<String> {
    steps.iter().map(Step::label).collect()
}

fn position(labels: &[String], prefix: &str) -> usize {
    labels
        .iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix}: {labels:?}"))
}

#[test]
fn a_whole_cluster_reset_stops_then_disables_then_removes_then_moves_data_and_converges() {
    let (c, t) = lab();
    let mut facts = all_facts(&c, &t);
    let first = plan_reset(&c, &t, &facts, &Observed::default(), &[]).unwrap();
    assert!(first.blocked.is_empty());
    assert!(first.phases[0].sequence.is_empty(), "the whole cluster goes: no member removal");
    let os = &first.phases[1];
    assert_eq!(os.phase, Phase::Os);
    let cp1 = labels(&os.hosts["cp1"]);
    let stop = position(&cp1, "systemctl stop etcd.service");
    let disable = position(&cp1, "systemctl disable etcd.service");
    let rm = position(&cp1, "rm -f -- ");
    let mv = position(&cp1, "mv -T /var/lib/etcd /var/lib/etcd.reset-20270101T000000Z");
    assert!(stop < disable && disable < rm && rm < mv, "{cp1:?}");
    assert!(cp1.contains(&"systemctl stop haproxy.service".to_string()), "{cp1:?}");
    assert!(cp1.contains(&"systemctl stop keepalived.service".to_string()), "{cp1:?}");
    assert!(cp1.contains(&"systemctl daemon-reload".to_string()), "{cp1:?}");
    let rm_line = &cp1[rm];
    for path in [
        "/etc/systemd/system/etcd.service",
        "/etc/haproxy/haproxy.cfg",
        "/etc/kubernetes/pki/ca.key",
        "/var/lib/kubeforge/loaded/etcd.service",
    ] {
        assert!(rm_line.contains(path), "{path} in {rm_line}");
    }
    // Files not on the host are not named; the packaged containerd keeps running, restarted
    // without kubeforge's config.
    assert!(!rm_line.contains("/etc/kubeforge/etcd-bootstrap.env"), "{rm_line}");
    assert!(!cp1.iter().any(|l| l == "systemctl stop containerd.service"), "{cp1:?}");
    assert!(cp1.contains(&"systemctl restart containerd.service".to_string()), "{cp1:?}");
    // The worker has no etcd data and no etcd to stop.
    let w1 = labels(&os.hosts["w1"]);
    assert!(!w1.iter().any(|l| l.contains("etcd")), "{w1:?}");
    let text = render_text(&first);
    assert!(text.contains("etcd's data is kept in /var/lib/etcd.reset-20270101T000000Z"), "{text}");

    simulate_reset(&first, &mut facts);
    let second = plan_reset(&c, &t, &facts, &Observed::default(), &[]).unwrap();
    assert!(second.is_converged(), "{}", render_text(&second));
    assert!(render_text(&second).ends_with("No changes.\n"));
}

#[test]
fn containerd_installed_by_kubeforge_is_stopped_disabled_and_its_unit_removed() {
    let (c, t) = lab();
    let mut facts = all_facts(&c, &t);
    if let Some(Ok(f)) = facts.get_mut("w1") {
        let unit = super::super::runtime::UPSTREAM_UNIT.as_bytes();
        f.files.insert(super::super::runtime::UNIT_FILE.into(), present_file(unit, 0o644));
        f.binaries.insert(
            "containerd".into(),
            crate::facts::Binary { path: Some("/usr/local/bin/containerd".into()), version: None },
        );
    }
    let plan = plan_reset(&c, &t, &facts, &Observed::default(), &["w1"]).unwrap();
    let w1 = labels(&plan.phases[1].hosts["w1"]);
    assert!(w1.contains(&"systemctl stop containerd.service".to_string()), "{w1:?}");
    assert!(w1.contains(&"systemctl disable containerd.service".to_string()), "{w1:?}");
    let rm = &w1[position(&w1, "rm -f")];
    assert!(rm.contains("/etc/systemd/system/containerd.service"), "{rm}");
    assert!(
        rm.contains("/usr/local/bin/containerd /usr/local/bin/containerd-shim-runc-v2"),
        "{rm}"
    );
    assert!(!w1.contains(&"systemctl restart containerd.service".to_string()), "{w1:?}");
    simulate_reset(&plan, &mut facts);
    assert!(plan_reset(&c, &t, &facts, &Observed::default(), &["w1"]).unwrap().is_converged());
}

#[test]
fn resetting_one_worker_touches_nothing_else_and_needs_no_etcd_change() {
    let (c, t) = lab();
    let facts = all_facts(&c, &t);
    let plan = plan_reset(&c, &t, &facts, &members(&[true, true, true]), &["w1"]).unwrap();
    assert!(plan.phases[0].sequence.is_empty());
    assert_eq!(plan.phases[1].hosts.keys().collect::<Vec<_>>(), ["w1"]);
    assert_eq!(plan.operation.rerun(), "kubeforge reset -f lab.yaml --hosts w1");
}

#[test]
fn a_reset_member_is_removed_from_etcd_before_its_etcd_stops() {
    let (c, t) = lab();
    let mut facts = all_facts(&c, &t);
    let plan = plan_reset(&c, &t, &facts, &members(&[true, true, true]), &["cp3"]).unwrap();
    let seq = &plan.phases[0].sequence;
    assert_eq!(plan.phases[0].phase, Phase::Etcd);
    let steps: Vec<(String, String)> =
        seq.iter().map(|s| (s.host.clone(), s.step.label())).collect();
    assert_eq!(steps[0], ("cp1".to_string(), "etcd: member remove cp3 (102)".to_string()));
    assert!(
        steps.iter().any(|(_, l)| l.starts_with("etcd: wait until cp1,cp2 are healthy")),
        "{steps:?}"
    );
    // The etcd phase (with its sequence) runs before the os phase's teardown.
    assert_eq!(plan.phases[1].hosts.keys().collect::<Vec<_>>(), ["cp3"]);
    let cp3 = labels(&plan.phases[1].hosts["cp3"]);
    assert!(cp3.contains(&"systemctl stop etcd.service".to_string()), "{cp3:?}");

    // Once done, the member list no longer has cp3 and cp3 has nothing left.
    simulate_reset(&plan, &mut facts);
    let mut after = members(&[true, true]);
    after.etcd.as_mut().unwrap().members.truncate(2);
    let again = plan_reset(&c, &t, &facts, &after, &["cp3"]).unwrap();
    assert!(again.is_converged(), "{}", render_text(&again));
}

#[test]
fn a_reset_that_would_break_quorum_is_refused() {
    let (c, t) = lab();
    let facts = all_facts(&c, &t);
    let err = plan_reset(&c, &t, &facts, &members(&[true, true, true]), &["cp2", "cp3"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("removing 2 of 3 etcd members in one apply"), "{err}");
    // With one of the staying members down, even one removal loses quorum.
    let err = plan_reset(&c, &t, &facts, &members(&[true, false, true]), &["cp3"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("etcd membership change refused"), "{err}");
}

#[test]
fn unknown_hosts_are_refused_and_unreachable_ones_get_nothing() {
    let (c, t) = lab();
    let mut facts = all_facts(&c, &t);
    let err = plan_reset(&c, &t, &facts, &Observed::default(), &["nope"]).unwrap_err();
    assert_eq!(err, PlanError::UnknownResetHost { host: "nope".into() });
    facts.insert("cp3".into(), Err("connection refused".into()));
    let plan = plan_reset(&c, &t, &facts, &members(&[true, true, true]), &["cp3"]).unwrap();
    assert!(plan.phases.iter().all(|p| p.hosts.is_empty() && p.sequence.is_empty()));
    assert!(plan.blocked["cp3"][0].remedy.contains("not even its removal from etcd"));
}
