//! The stacked → external etcd switch (`super::topology`) on the examples' real render trees:
//! the order of the whole run checked on facts, step by step (new members promoted before any
//! kube-apiserver moves, every kube-apiserver moved before any stacked member goes, removals
//! one at a time and never below quorum), the removal deferred while an apiserver may still
//! use the old members, and external → stacked still refused.

use std::collections::BTreeMap;

use super::tests::present_file;
use super::tests_phases::*;
use super::*;
use crate::etcd_membership::{CurrentMember, quorum};
use crate::facts::UnitState;

const APISERVER: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";

fn stacked() -> Cluster {
    load(example_text("stacked"))
}

/// The stacked example with three dedicated etcd hosts and `topology: external`.
fn external() -> Cluster {
    let text = example_text("stacked").replace("topology: stacked", "topology: external").replace(
        "  hosts:\n",
        "  hosts:\n    - {name: etcd1, address: 10.88.0.31, roles: [etcd]}\n    - {name: etcd2, \
         address: 10.88.0.32, roles: [etcd]}\n    - {name: etcd3, address: 10.88.0.33, roles: \
         [etcd]}\n",
    );
    load(&text)
}

fn artifacts() -> ArtifactInventory {
    ["etcd", "etcdctl", "etcdutl"]
        .iter()
        .map(|b| {
            let a = LocalArtifact {
                path: format!("/srv/a/etcd/{b}"),
                sha256: "e".repeat(64),
                unverified: false,
            };
            (b.to_string(), a)
        })
        .collect()
}

fn unit(active: &str, enabled: &str) -> UnitState {
    UnitState { active: active.into(), enabled: enabled.into() }
}

/// The stacked cluster as the last apply left it: every control plane holds the stacked tree's
/// files and runs etcd (with its data and backup timer) and, when `kubernetes`, the kubelet;
/// the new etcd hosts are fresh machines. Plus the record of that apply.
fn switching(kubernetes: bool) -> (BTreeMap<String, HostProbe>, crate::applied::Applied) {
    let old = stacked();
    let old_tree = render(&old);
    let mut facts = facts_for(&external());
    for cp in old.control_planes() {
        let Some(Ok(f)) = facts.get_mut(&cp.name) else { panic!() };
        for (path, file) in &old_tree.hosts[&cp.name] {
            f.files.insert(path.clone(), present_file(&file.contents, file.mode));
        }
        f.units.insert("etcd.service".into(), unit("active", "enabled"));
        f.units.insert("kubeforge-backup.timer".into(), unit("active", "enabled"));
        f.paths_exist.insert(crate::render::configs::etcd::MEMBER_DIR.into(), true);
        f.paths_exist.insert(crate::render::configs::etcd::DATA_DIR.into(), true);
        if kubernetes {
            f.units.insert("kubelet.service".into(), unit("active", "enabled"));
        } else {
            f.files.remove(APISERVER);
        }
    }
    let applied = crate::applied::Applied::next(
        None,
        &old,
        &old_tree,
        "apply",
        &[],
        "t".into(),
        super::files::sha256_hex,
    );
    (facts, applied)
}

/// etcd as the stacked cluster runs it: cp1..cp3, healthy voters.
fn observed() -> Observed {
    let members = (1..=3)
        .map(|i| CurrentMember {
            name: format!("cp{i}"),
            id: 0x100 + i,
            peer_urls: vec![format!("https://10.88.0.1{i}:2380")],
            is_learner: false,
            healthy: true,
        })
        .collect();
    Observed {
        etcd: Some(EtcdObserved { answered_by: "cp1".into(), members, status: Default::default() }),
        local_pki_dir: "/state/pki".into(),
    }
}

fn try_plan_switch(
    facts: &BTreeMap<String, HostProbe>,
    applied: Option<&crate::applied::Applied>,
    observed: &Observed,
    phases: &[Phase],
) -> Result<Plan, PlanError> {
    let cluster = external();
    let tree = render(&cluster);
    let skip: Vec<Phase> = Phase::ALL.into_iter().filter(|p| !phases.contains(p)).collect();
    let selection = PhaseSelection::new(None, &skip);
    let artifacts = artifacts();
    let input = PlanInput {
        cluster: &cluster,
        tree: &tree,
        facts,
        artifacts: &artifacts,
        selection: &selection,
        observed,
        applied,
    };
    plan(&Operation::Apply, input)
}

/// Every step in execution order: each phase's per-host steps, then its ordered steps.
fn in_order(plan: &Plan) -> Vec<(String, Step)> {
    let mut out = Vec::new();
    for phase in &plan.phases {
        for (host, steps) in &phase.hosts {
            out.extend(steps.iter().map(|s| (host.clone(), s.clone())));
        }
        out.extend(phase.sequence.iter().map(|s| (s.host.clone(), s.step.clone())));
    }
    out
}

fn etcd_action(step: &Step) -> Option<&EtcdAction> {
    match step {
        Step::Etcd(op) => Some(&op.action),
        _ => None,
    }
}

fn is_remove(step: &Step) -> bool {
    matches!(etcd_action(step), Some(EtcdAction::Remove { .. }))
}

/// Runs the plan's membership operations on a model of etcd, from the observed members;
/// asserts that learners join one at a time, leadership is moved away before every voter's
/// removal, each removal leaves a majority of the cluster it came from, and a health gate
/// separates removals. Returns the final member names.
fn check_membership(steps: &[(String, Step)]) -> Vec<String> {
    // (name, voter)
    let mut members: Vec<(String, bool)> = (1..=3).map(|i| (format!("cp{i}"), true)).collect();
    let mut moved_away: Vec<String> = Vec::new();
    let mut gated_since_removal = true;
    for (_, step) in steps {
        match etcd_action(step) {
            Some(EtcdAction::AddLearner { name, .. }) => {
                assert!(members.iter().all(|(_, voter)| *voter), "a second learner at once");
                members.push((name.clone(), false));
            }
            Some(EtcdAction::Promote { name, .. }) => {
                members.iter_mut().find(|(n, _)| n == name).expect("promoted a member").1 = true;
            }
            Some(EtcdAction::MoveLeader { name, .. }) => moved_away.push(name.clone()),
            Some(EtcdAction::Remove { name, .. }) => {
                assert!(gated_since_removal, "{name} removed without a gate since the last one");
                assert!(moved_away.contains(name), "{name} removed while it might lead");
                let before = members.iter().filter(|(_, v)| *v).count();
                members.retain(|(n, _)| n != name);
                let after = members.iter().filter(|(_, v)| *v).count();
                assert!(after >= quorum(before), "{name}: {after} of {before} voters stay");
                gated_since_removal = false;
            }
            Some(EtcdAction::HealthGate { .. }) => gated_since_removal = true,
            _ => {}
        }
    }
    members.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn stacked_to_external_promotes_the_new_members_then_moves_the_apiservers_then_removes_the_old() {
    let (facts, applied) = switching(true);
    let phases = [Phase::Pki, Phase::Etcd, Phase::ControlPlane];
    let plan = try_plan_switch(&facts, Some(&applied), &observed(), &phases).unwrap();
    let steps = in_order(&plan);
    let promoted: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| matches!(etcd_action(s), Some(EtcdAction::Promote { .. })))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(promoted.len(), 3, "every new member is promoted");
    let repoints: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| matches!(s, Step::PutFile(p) if p.path == APISERVER))
        .map(|(i, (host, s))| {
            let Step::PutFile(p) = s else { unreachable!() };
            let manifest = String::from_utf8_lossy(&p.contents);
            assert!(
                manifest.contains(
                    "--etcd-servers=https://10.88.0.31:2379,https://10.88.0.32:2379,https://10.88.0.33:2379"
                ),
                "{host}: {manifest}"
            );
            i
        })
        .collect();
    assert_eq!(repoints.len(), 3, "every kube-apiserver moves to the external members");
    let removals: Vec<usize> =
        steps.iter().enumerate().filter(|(_, (_, s))| is_remove(s)).map(|(i, _)| i).collect();
    assert_eq!(removals.len(), 3, "every stacked member goes");
    assert!(promoted.iter().max() < repoints.iter().min(), "promoted before any apiserver moves");
    assert!(repoints.iter().max() < removals.iter().min(), "apiservers move before any removal");
    // The control-plane phase rolls one control plane at a time (its `/readyz` gates).
    let cp = plan.phases.iter().find(|p| p.phase == Phase::ControlPlane).unwrap();
    assert_eq!(cp.batch, Some(1));
    assert_eq!(check_membership(&steps), ["etcd1", "etcd2", "etcd3"]);

    // After its removal, each control plane's etcd is stopped and disabled, its data moved
    // aside and etcd's files removed (the etcd CA, which the apiserver needs, stays).
    for name in ["cp1", "cp2", "cp3"] {
        let removed = steps
            .iter()
            .position(|(_, s)| matches!(etcd_action(s), Some(EtcdAction::Remove { name: n, .. }) if n == name))
            .unwrap();
        let on_host: Vec<String> =
            steps[removed..].iter().filter(|(h, _)| h == name).map(|(_, s)| s.label()).collect();
        assert!(on_host[0] == "systemctl disable --now etcd.service", "{on_host:#?}");
        assert!(on_host.iter().any(|l| l.contains("kubeforge-backup.timer")), "{on_host:#?}");
        assert!(on_host.iter().any(|l| l.contains("mv -T /var/lib/etcd")), "{on_host:#?}");
        let rm = steps[removed..]
            .iter()
            .find_map(|(h, s)| match s {
                Step::Run(r) if h == name && r.argv[..2] == ["rm", "-f"] => Some(r.argv.clone()),
                _ => None,
            })
            .expect("etcd's files removed");
        for gone in [
            "/etc/systemd/system/etcd.service",
            "/etc/kubernetes/pki/etcd/server.key",
            "/etc/kubernetes/pki/etcd/peer.key",
            "/var/lib/kubeforge/loaded/etcd.service",
            "/etc/systemd/system/kubeforge-backup.timer",
        ] {
            assert!(rm.iter().any(|a| a == gone), "{gone} not in {rm:?}");
        }
        assert!(!rm.iter().any(|a| a == "/etc/kubernetes/pki/etcd/ca.crt"), "{rm:?}");
        assert!(!rm.iter().any(|a| a == "/etc/kubernetes/pki/apiserver-etcd-client.key"));
    }
    // No data dir is ever deleted.
    assert!(!steps.iter().any(|(_, s)| s.label().contains("rm -rf")));
}

#[test]
fn without_the_control_plane_phase_the_stacked_members_stay_while_kubernetes_runs() {
    let (facts, applied) = switching(true);
    let plan =
        try_plan_switch(&facts, Some(&applied), &observed(), &[Phase::Pki, Phase::Etcd]).unwrap();
    let steps = in_order(&plan);
    let promoted = steps
        .iter()
        .filter(|(_, s)| matches!(etcd_action(s), Some(EtcdAction::Promote { .. })))
        .count();
    assert_eq!(promoted, 3, "the new members still join");
    assert!(!steps.iter().any(|(_, s)| is_remove(s)), "removal deferred");
    // The plan says what is left and why, and is not "No changes." while it is.
    let (host, last) = steps.last().unwrap();
    let Step::Etcd(gate) = last else { panic!("{last:?}") };
    assert_eq!(host, "etcd1");
    assert!(gate.why.contains("the members on cp1, cp2, cp3 stay"), "{}", gate.why);
    assert!(gate.why.contains("does not cover the control-plane phase"), "{}", gate.why);
    assert!(
        !steps.iter().any(|(h, s)| h.starts_with("cp") && s.label().contains("disable --now")),
        "nothing stops on the control planes"
    );
    // A control plane not in the run may still use the old members, whatever the phases.
    let mut facts = facts;
    facts.insert("cp2".into(), Err("connection refused".into()));
    let phases = [Phase::Pki, Phase::Etcd, Phase::ControlPlane];
    let plan = try_plan_switch(&facts, Some(&applied), &observed(), &phases).unwrap();
    assert!(!in_order(&plan).iter().any(|(_, s)| is_remove(s)));
}

#[test]
fn without_kubernetes_the_stacked_members_go_in_the_same_run() {
    // The lab's case: `--until loadbalancer`, no kube-apiserver uses etcd.
    let (facts, applied) = switching(false);
    let phases = [Phase::Pki, Phase::Etcd, Phase::LoadBalancer];
    let plan = try_plan_switch(&facts, Some(&applied), &observed(), &phases).unwrap();
    let steps = in_order(&plan);
    assert_eq!(check_membership(&steps), ["etcd1", "etcd2", "etcd3"]);
    // The retirement comes after everything else of the run.
    let first_removal = steps.iter().position(|(_, s)| is_remove(s)).unwrap();
    let lb = plan.phases.iter().find(|p| p.phase == Phase::LoadBalancer).unwrap();
    let lb_steps: usize = lb.hosts.values().map(Vec::len).sum();
    assert!(first_removal >= steps.len() - lb.sequence.len(), "removals end the run");
    assert!(lb_steps > 0 || !lb.sequence.is_empty());
    // Once done (etcd lists the external members only, the control planes run no etcd), the
    // switch is over: nothing of it is planned again, and the record no longer matters.
    let mut after = facts.clone();
    for cp in ["cp1", "cp2", "cp3"] {
        if let Some(Ok(f)) = after.get_mut(cp) {
            f.units.insert("etcd.service".into(), unit("inactive", "disabled"));
        }
    }
    let done = Observed {
        etcd: Some(EtcdObserved {
            answered_by: "etcd1".into(),
            members: (1..=3)
                .map(|i| CurrentMember {
                    name: format!("etcd{i}"),
                    id: 0x200 + i,
                    peer_urls: vec![format!("https://10.88.0.3{i}:2380")],
                    is_learner: false,
                    healthy: true,
                })
                .collect(),
            status: Default::default(),
        }),
        local_pki_dir: "/state/pki".into(),
    };
    let plan = try_plan_switch(&after, Some(&applied), &done, &[Phase::Pki, Phase::Etcd]).unwrap();
    let steps = in_order(&plan);
    assert!(
        !steps
            .iter()
            .any(|(_, s)| etcd_action(s)
                .is_some_and(|a| !matches!(a, EtcdAction::HealthGate { .. }))),
        "{:#?}",
        steps.iter().map(|(h, s)| format!("{h}: {}", s.label())).collect::<Vec<_>>()
    );
}

#[test]
fn a_switch_is_refused_when_it_cannot_keep_the_old_members() {
    let (facts, applied) = switching(true);
    // etcd's member list was not read: the old members could not be kept.
    let err = try_plan_switch(&facts, Some(&applied), &Observed::default(), &Phase::ALL)
        .unwrap_err()
        .to_string();
    assert!(err.contains("stacked → external"), "{err}");
    assert!(err.contains("no etcd member list was read"), "{err}");
    // The run does not cover the etcd phase, where the switch starts.
    let err = try_plan_switch(&facts, Some(&applied), &observed(), &[Phase::ControlPlane])
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not cover"), "{err}");
    // A new etcd host is unreachable: no apiserver may move yet.
    let mut facts = facts;
    facts.insert("etcd2".into(), Err("connection refused".into()));
    let phases = [Phase::Pki, Phase::Etcd, Phase::ControlPlane];
    let err =
        try_plan_switch(&facts, Some(&applied), &observed(), &phases).unwrap_err().to_string();
    assert!(err.contains("etcd2"), "{err}");
}

#[test]
fn external_to_stacked_stays_refused() {
    let ext = external();
    let ext_tree = render(&ext);
    let record = crate::applied::Applied::next(
        None,
        &ext,
        &ext_tree,
        "apply",
        &[],
        "t".into(),
        super::files::sha256_hex,
    );
    let back = stacked();
    let tree = render(&back);
    let facts = facts_for(&back);
    let selection = PhaseSelection::new(None, &[]);
    let artifacts = artifacts();
    let observed = Observed::default();
    let input = PlanInput {
        cluster: &back,
        tree: &tree,
        facts: &facts,
        artifacts: &artifacts,
        selection: &selection,
        observed: &observed,
        applied: Some(&record),
    };
    let err = plan(&Operation::Apply, input).unwrap_err().to_string();
    assert!(err.contains("external → stacked"), "{err}");
    assert!(err.contains("no sequence back"), "{err}");
}

#[test]
fn a_switch_interrupted_after_a_removal_is_finished_and_the_removed_member_cleaned() {
    // cp1 was removed from etcd, but the run stopped before its etcd was stopped.
    let (facts, applied) = switching(false);
    let mut members = observed().etcd.unwrap().members;
    members.retain(|m| m.name != "cp1");
    members.extend((1..=3).map(|i| CurrentMember {
        name: format!("etcd{i}"),
        id: 0x200 + i,
        peer_urls: vec![format!("https://10.88.0.3{i}:2380")],
        is_learner: false,
        healthy: true,
    }));
    let observed = Observed {
        etcd: Some(EtcdObserved { answered_by: "cp2".into(), members, status: Default::default() }),
        local_pki_dir: "/state/pki".into(),
    };
    let phases = [Phase::Pki, Phase::Etcd, Phase::LoadBalancer];
    let plan = try_plan_switch(&facts, Some(&applied), &observed, &phases).unwrap();
    let steps = in_order(&plan);
    let labels: Vec<String> = steps.iter().map(|(h, s)| format!("{h}: {}", s.label())).collect();
    assert!(
        !steps.iter().any(|(_, s)| matches!(etcd_action(s), Some(EtcdAction::AddLearner { .. })))
    );
    let removed: Vec<&str> = steps
        .iter()
        .filter_map(|(_, s)| match etcd_action(s) {
            Some(EtcdAction::Remove { name, .. }) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, ["cp2", "cp3"], "{labels:#?}");
    for cp in ["cp1", "cp2", "cp3"] {
        assert!(
            labels.contains(&format!("{cp}: systemctl disable --now etcd.service")),
            "{cp}: {labels:#?}"
        );
    }
}
