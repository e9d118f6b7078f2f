//! The upgrade planner on the stacked example moved from v1.33.1 to v1.34.1 (etcd 3.5.21 →
//! the 3.6 kubeadm pairs with v1.34). Kubernetes' binaries cannot run in the lab, so the order
//! of every step is pinned here, independently of any golden file: etcd followers before the
//! leader, each gated on health and its version and recorded; control planes one at a time
//! with their manifests kept and the diff shown; kubelets drained in batches of
//! `max_unavailable`; refusals with the rule named; nothing to do once every host runs the
//! target; a member already upgraded skipped (resume).

use std::collections::BTreeMap;

use super::super::tests::present_file;
use super::super::tests_phases::{example_text, facts_for, load, render};
use super::super::*;
use crate::etcd_membership::CurrentMember;
use crate::facts::{Binary, UnitState};

const HOSTS: [&str; 5] = ["cp1", "cp2", "cp3", "worker1", "worker2"];

fn target_cluster() -> crate::model::Cluster {
    load(
        &example_text("stacked")
            .replace("kubernetesVersion: v1.33.1", "kubernetesVersion: v1.34.1"),
    )
}

fn artifacts() -> ArtifactInventory {
    ["etcd", "etcdctl", "etcdutl", "kubelet"]
        .into_iter()
        .map(|k| {
            let sha256 = files::sha256_hex(k.as_bytes());
            (k.to_string(), LocalArtifact { path: format!("/art/{k}"), sha256, unverified: false })
        })
        .collect()
}

/// Every host runs v1.33.1 (kubelet, and the apiserver on control planes).
fn running(cluster: &crate::model::Cluster, k8s: &str) -> BTreeMap<String, HostProbe> {
    let mut facts = facts_for(cluster);
    for (name, probe) in facts.iter_mut() {
        let Ok(f) = probe else { continue };
        f.units.insert(
            "kubelet.service".into(),
            UnitState { active: "active".into(), enabled: "enabled".into() },
        );
        f.binaries.insert(
            "kubelet".into(),
            Binary { path: Some("/usr/local/bin/kubelet".into()), version: Some(k8s.into()) },
        );
        if name.starts_with("cp") {
            let manifest = format!(
                "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    \
                 image: registry.k8s.io/kube-apiserver:{k8s}\n"
            );
            f.files.insert(
                "/etc/kubernetes/manifests/kube-apiserver.yaml".into(),
                present_file(manifest.as_bytes(), 0o600),
            );
            f.units.insert(
                "etcd.service".into(),
                UnitState { active: "active".into(), enabled: "enabled".into() },
            );
        }
    }
    facts
}

fn observed(versions: &[(&str, &str)], leader: &str) -> Observed {
    let members = versions
        .iter()
        .enumerate()
        .map(|(i, (h, _))| CurrentMember {
            name: h.to_string(),
            id: i as u64 + 1,
            peer_urls: vec![format!("https://{h}:2380")],
            is_learner: false,
            healthy: true,
        })
        .collect();
    let status = versions
        .iter()
        .map(|(h, v)| {
            (h.to_string(), MemberReport { version: v.to_string(), is_leader: *h == leader })
        })
        .collect();
    Observed {
        etcd: Some(EtcdObserved { answered_by: "cp1".into(), members, status }),
        local_pki_dir: "/state/pki".into(),
    }
}

fn plan_upgrade(
    cluster: &crate::model::Cluster,
    facts: &BTreeMap<String, HostProbe>,
    observed: &Observed,
    max_unavailable: usize,
) -> Plan {
    let tree = render(cluster);
    let selection = PhaseSelection::new(None, &[]);
    let artifacts = artifacts();
    let input = PlanInput {
        cluster,
        tree: &tree,
        facts,
        artifacts: &artifacts,
        selection: &selection,
        observed,
        applied: None,
    };
    let op = Operation::Upgrade { spec_file: "c.yaml".into(), max_unavailable };
    plan(&op, input).expect("an upgrade always plans")
}

/// `host` as a finished upgrade leaves it: the target binaries, the rendered unit and
/// certificates, and the record of what etcd loaded.
fn upgraded(cluster: &crate::model::Cluster, facts: &mut BTreeMap<String, HostProbe>, host: &str) {
    let tree = render(cluster);
    let arts = artifacts();
    {
        let Some(Ok(f)) = facts.get_mut(host) else { panic!("{host}") };
        for bin in ["etcd", "etcdctl", "etcdutl"] {
            let mut file = present_file(bin.as_bytes(), 0o755);
            if let crate::facts::FileState::Present { sha256, .. } = &mut file {
                *sha256 = arts[bin].sha256.clone();
            }
            f.files.insert(format!("/usr/local/bin/{bin}"), file);
        }
        let mut paths = vec!["/etc/systemd/system/etcd.service"];
        paths.extend(super::super::etcd::PKI_FILES);
        for path in paths {
            let file = &tree.hosts[host][path];
            f.files.insert(path.into(), present_file(&file.contents, file.mode));
        }
    }
    let selection = PhaseSelection::new(None, &[]);
    let observed = Observed::default();
    let input = PlanInput {
        cluster,
        tree: &tree,
        facts,
        artifacts: &arts,
        selection: &selection,
        observed: &observed,
        applied: None,
    };
    let Some(Ok(f)) = facts.get(host) else { panic!("{host}") };
    let mut loads = super::super::restart::Loads::new("etcd.service").file(
        input,
        host,
        f,
        "/etc/systemd/system/etcd.service",
    );
    for path in super::super::etcd::PKI_FILES {
        loads = loads.file(input, host, f, path);
    }
    let record = loads.binary(input, f, "etcd", "/usr/local/bin/etcd").record();
    let Some(Ok(f)) = facts.get_mut(host) else { panic!("{host}") };
    f.files.insert("/var/lib/kubeforge/loaded/etcd.service".into(), present_file(&record, 0o644));
}

fn old_etcd() -> Observed {
    observed(&[("cp1", "3.5.21"), ("cp2", "3.5.21"), ("cp3", "3.5.21")], "cp2")
}

fn sequence(plan: &Plan, phase: Phase) -> Vec<String> {
    let p = plan.phases.iter().find(|p| p.phase == phase).expect("phase planned");
    p.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect()
}

#[test]
fn etcd_members_restart_one_at_a_time_followers_first_each_gated_and_recorded() {
    let cluster = target_cluster();
    let mut facts = running(&cluster, "v1.33.1");
    let tree = render(&cluster);
    for h in ["cp1", "cp2", "cp3"] {
        let unit = &tree.hosts[h]["/etc/systemd/system/etcd.service"];
        if let Some(Ok(f)) = facts.get_mut(h) {
            f.files.insert(
                "/etc/systemd/system/etcd.service".into(),
                present_file(&unit.contents, unit.mode),
            );
        }
    }
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 1);
    assert!(plan.blocked.is_empty(), "{:#?}", plan.blocked);
    let target = &cluster.etcd.version;
    assert!(target.starts_with("v3.6."), "{target}");
    let t = target.trim_start_matches('v');
    let etcd = plan.phases.iter().find(|p| p.phase == Phase::Etcd).expect("etcd phase");
    for h in ["cp1", "cp2", "cp3"] {
        let staged: Vec<String> = etcd.hosts[h].iter().map(Step::label).collect();
        assert_eq!(
            staged,
            [
                format!("push etcd {target} to /usr/local/bin/etcd"),
                format!("push etcdctl {target} to /usr/local/bin/etcdctl"),
                format!("push etcdutl {target} to /usr/local/bin/etcdutl"),
            ]
        );
    }
    let member = |h: &str| {
        vec![
            format!("{h}: systemctl restart etcd.service"),
            format!("{h}: etcd: wait until cp1,cp2,cp3 are healthy (up to 120 s)"),
            format!("{h}: etcd: wait until {h} runs etcd {t} (up to 60 s)"),
            format!("{h}: create /var/lib/kubeforge/loaded/etcd.service"),
        ]
    };
    let mut want = member("cp1");
    want.extend(member("cp3"));
    want.extend(member("cp2")); // the leader, last
    assert_eq!(sequence(&plan, Phase::Etcd), want);

    // A unit rendered differently for the new release is put with the binaries, then
    // reloaded, before any restart.
    let mut old_unit = facts.clone();
    if let Some(Ok(f)) = old_unit.get_mut("cp3") {
        f.files.insert(
            "/etc/systemd/system/etcd.service".into(),
            present_file(b"[Service]\nExecStart=/usr/local/bin/etcd --logger=capnslog\n", 0o644),
        );
    }
    let plan = plan_upgrade(&cluster, &old_unit, &old_etcd(), 1);
    let etcd = plan.phases.iter().find(|p| p.phase == Phase::Etcd).expect("etcd phase");
    let cp3: Vec<String> = etcd.hosts["cp3"].iter().map(Step::label).collect();
    assert_eq!(cp3[3], "change /etc/systemd/system/etcd.service");
    assert_eq!(cp3[4], "systemctl daemon-reload");
    assert_eq!(cp3.len(), 5);
    assert_eq!(plan.operation.rerun(), "kubeforge upgrade apply -f c.yaml");
}

#[test]
fn a_member_already_on_the_target_is_skipped_so_a_rerun_continues_with_the_next() {
    let cluster = target_cluster();
    let mut facts = running(&cluster, "v1.34.1");
    upgraded(&cluster, &mut facts, "cp1");
    let t = cluster.etcd.version.trim_start_matches('v').to_string();
    let resumed = observed(&[("cp1", &t), ("cp2", "3.5.21"), ("cp3", "3.5.21")], "cp2");
    let plan = plan_upgrade(&cluster, &facts, &resumed, 1);
    let restarts: Vec<String> = sequence(&plan, Phase::Etcd)
        .into_iter()
        .filter(|l| l.ends_with("systemctl restart etcd.service"))
        .collect();
    assert_eq!(
        restarts,
        ["cp3: systemctl restart etcd.service", "cp2: systemctl restart etcd.service"]
    );
    // Interrupted between its restart and its record: it is restarted again, not trusted.
    let mut no_record = facts.clone();
    if let Some(Ok(f)) = no_record.get_mut("cp1") {
        f.files.remove("/var/lib/kubeforge/loaded/etcd.service");
    }
    let plan = plan_upgrade(&cluster, &no_record, &resumed, 1);
    let restarted: Vec<String> = sequence(&plan, Phase::Etcd)
        .into_iter()
        .filter(|l| l.ends_with("systemctl restart etcd.service"))
        .collect();
    assert_eq!(restarted.len(), 3, "{restarted:?}");
}

#[test]
fn control_planes_roll_one_at_a_time_with_manifests_kept_diffs_shown_and_readyz_gates() {
    let cluster = target_cluster();
    let facts = running(&cluster, "v1.33.1");
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 1);
    let cp = plan.phases.iter().find(|p| p.phase == Phase::ControlPlane).expect("cp phase");
    assert_eq!(cp.batch, Some(1), "one control plane at a time");
    assert_eq!(cp.hosts.keys().collect::<Vec<_>>(), ["cp1", "cp2", "cp3"]);
    let labels: Vec<String> = cp.hosts["cp1"].iter().map(Step::label).collect();
    assert_eq!(
        labels,
        [
            "sh -c mkdir -p -m 0700 /etc/kubernetes/manifests-before-upgrade && cp -a \
             /etc/kubernetes/manifests/. /etc/kubernetes/manifests-before-upgrade/",
            "change /etc/kubernetes/manifests/kube-apiserver.yaml",
            "create /etc/kubernetes/manifests/kube-controller-manager.yaml",
            "create /etc/kubernetes/manifests/kube-scheduler.yaml",
            "wait: kube-apiserver 1.34.1 on cp1 answers /readyz",
            "wait: the API answers /readyz through https://10.88.0.100:6443",
        ]
    );
    let Step::PutFile(put) = &cp.hosts["cp1"][1] else { panic!("a manifest") };
    let FileReason::Change { diff: DiffText::Unified(diff) } = &put.reason else {
        panic!("a diff: {:?}", put.reason)
    };
    assert!(diff.contains("-    image: registry.k8s.io/kube-apiserver:v1.33.1"), "{diff}");
    assert!(diff.contains("kube-apiserver:v1.34.1"), "{diff}");
}

#[test]
fn kubelets_are_drained_in_batches_of_max_unavailable_control_planes_first() {
    let cluster = target_cluster();
    let facts = running(&cluster, "v1.33.1");
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 2);
    let seq = sequence(&plan, Phase::Workers);
    let k = "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf";
    let drain = |h: &str| {
        vec![
            format!("cp1: {k} cordon {h}"),
            format!("cp1: {k} drain {h} --ignore-daemonsets --delete-emptydir-data --timeout=300s"),
        ]
    };
    let kubelet = |h: &str| {
        vec![
            format!("{h}: push kubelet v1.34.1 to /usr/local/bin/kubelet"),
            format!("{h}: systemctl restart kubelet.service"),
            format!("cp1: wait: node {h} reports kubelet v1.34.1"),
        ]
    };
    let uncordon = |h: &str| vec![format!("cp1: {k} uncordon {h}")];
    let mut want = Vec::new();
    for batch in [&["cp1", "cp2"][..], &["cp3", "worker1"], &["worker2"]] {
        for h in batch {
            want.extend(drain(h));
        }
        for h in batch {
            want.extend(kubelet(h));
        }
        for h in batch {
            want.extend(uncordon(h));
        }
    }
    assert_eq!(seq, want);
    assert_eq!(HOSTS.len(), 5);
}

#[test]
fn skew_violations_are_refused_with_the_rule_named_and_nothing_planned() {
    let cluster = target_cluster();
    for (k8s, etcd, rule) in [
        ("v1.32.4", "3.5.21", "control-plane-one-minor-at-a-time"),
        ("v1.34.2", "3.5.21", "no-downgrade"),
        ("v1.33.1", "3.4.23", "etcd-one-minor-at-a-time"),
        ("v1.33.1", "3.6.9", "etcd-no-downgrade"),
    ] {
        let facts = running(&cluster, k8s);
        let obs = observed(&[("cp1", etcd), ("cp2", etcd), ("cp3", etcd)], "cp1");
        let plan = plan_upgrade(&cluster, &facts, &obs, 1);
        assert!(plan.has_no_steps(), "{rule}: {:#?}", plan.phases);
        let checks: Vec<&str> = plan.blocked.values().flatten().map(|p| p.check.as_str()).collect();
        assert!(checks.contains(&rule), "{rule}: {checks:?}");
        let messages: Vec<&str> =
            plan.blocked.values().flatten().map(|p| p.message.as_str()).collect();
        assert!(messages.iter().any(|m| m.contains(rule)), "{messages:?}");
    }
}

#[test]
fn nothing_to_do_once_every_host_runs_the_target() {
    let cluster = target_cluster();
    let mut facts = running(&cluster, "v1.34.1");
    for h in ["cp1", "cp2", "cp3"] {
        upgraded(&cluster, &mut facts, h);
    }
    let t = cluster.etcd.version.trim_start_matches('v').to_string();
    let obs = observed(&[("cp1", &t), ("cp2", &t), ("cp3", &t)], "cp1");
    // Kubelet and manifests already as the render tree has them.
    let tree = render(&cluster);
    for (host, probe) in facts.iter_mut() {
        let Ok(f) = probe else { continue };
        for (path, file) in tree.hosts.get(host).into_iter().flatten() {
            if path.starts_with("/etc/kubernetes/manifests/") {
                f.files.insert(path.clone(), present_file(&file.contents, file.mode));
            }
        }
    }
    let plan = plan_upgrade(&cluster, &facts, &obs, 1);
    assert!(plan.is_converged(), "{:#?}", plan);
}
