//! The pki phase on the examples' render trees: each host gets exactly its PKI files (secrets
//! redacted in the plan), a re-plan after applying is empty, a changed certificate is planned
//! alone, and a signing key that reached a worker's tree entry is still never planned for it.

use std::collections::BTreeMap;

use super::tests::present_file;
use super::tests_phases::*;
use super::*;
use crate::render::NodeFile;

const PKI: &[Phase] = &[Phase::Pki];

fn pki_plan(cluster: &Cluster, tree: &RenderTree, facts: &BTreeMap<String, HostProbe>) -> Plan {
    plan_phases(cluster, tree, facts, &ArtifactInventory::new(), PKI)
}

fn created(plan: &Plan, host: &str) -> Vec<String> {
    labels(plan, Phase::Pki, host)
        .into_iter()
        .map(|l| l.strip_prefix("create ").map(str::to_string).unwrap_or(l))
        .collect()
}

#[test]
fn each_host_gets_its_own_pki_files_and_a_replan_is_empty() {
    let cluster = load(example_text("stacked"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    let first = pki_plan(&cluster, &tree, &facts);
    assert_eq!(
        created(&first, "worker1"),
        [
            "/etc/kubernetes/kubelet.conf",
            "/etc/kubernetes/pki/ca.crt",
            "/var/lib/kubelet/pki/kubelet.crt",
            "/var/lib/kubelet/pki/kubelet.key",
        ]
    );
    let cp1 = created(&first, "cp1");
    for expected in [
        "/etc/kubernetes/admin.conf",
        "/etc/kubernetes/controller-manager.conf",
        "/etc/kubernetes/scheduler.conf",
        "/etc/kubernetes/pki/ca.key",
        "/etc/kubernetes/pki/etcd/ca.key",
        "/etc/kubernetes/pki/etcd/peer.key",
        "/etc/kubernetes/pki/front-proxy-ca.key",
        "/etc/kubernetes/pki/sa.key",
        "/etc/kubernetes/pki/apiserver.crt",
    ] {
        assert!(cp1.iter().any(|p| p == expected), "cp1 lacks {expected}: {cp1:?}");
    }
    // Exactly the tree's PKI files, nothing else (no manifests, no configs).
    let tree_pki: Vec<&String> = tree.hosts["cp1"].keys().filter(|p| pki::owns(p)).collect();
    assert_eq!(cp1.len(), tree_pki.len());
    // Keys and kubeconfigs are secret: 0600 and never printed.
    let text = render_text(&first);
    assert!(text.contains("+ create /etc/kubernetes/pki/ca.key (0600 root:root, "), "{text}");
    assert!(text.contains("+ create /etc/kubernetes/admin.conf (0600 root:root, "), "{text}");
    assert!(!text.contains("placeholder"), "contents leaked: {text}");
    let json = serde_json::to_string(&first).unwrap();
    assert!(!json.contains("placeholder"), "{json}");

    simulate(&first, &mut facts, "v1.33.1");
    let again = pki_plan(&cluster, &tree, &facts);
    assert!(again.is_converged(), "{}", render_text(&again));
}

#[test]
fn a_renewed_certificate_is_the_only_change_and_its_diff_is_shown() {
    let cluster = load(example_text("external"));
    let mut tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    simulate(&pki_plan(&cluster, &tree, &facts), &mut facts, "v1.33.1");
    let path = "/etc/kubernetes/pki/etcd/server.crt";
    tree.hosts.get_mut("etcd2").unwrap().insert(
        path.into(),
        NodeFile { contents: b"renewed server.crt\n".to_vec(), mode: 0o644, secret: false },
    );
    let plan = pki_plan(&cluster, &tree, &facts);
    assert_eq!(plan.phases[0].hosts.keys().collect::<Vec<_>>(), ["etcd2"]);
    assert_eq!(labels(&plan, Phase::Pki, "etcd2"), [format!("change {path}")]);
    let text = render_text(&plan);
    assert!(text.contains("+renewed server.crt"), "{text}");
}

#[test]
fn a_signing_key_in_a_workers_tree_is_never_planned() {
    let cluster = load(example_text("stacked"));
    let mut tree = render(&cluster);
    let facts = facts_for(&cluster);
    let secret = |s: &str| NodeFile { contents: s.as_bytes().to_vec(), mode: 0o600, secret: true };
    let worker = tree.hosts.get_mut("worker1").unwrap();
    for key in [
        "/etc/kubernetes/pki/ca.key",
        "/etc/kubernetes/pki/etcd/ca.key",
        "/etc/kubernetes/pki/front-proxy-ca.key",
        "/etc/kubernetes/pki/sa.key",
    ] {
        worker.insert(key.into(), secret("a CA key by mistake\n"));
    }
    let plan = pki_plan(&cluster, &tree, &facts);
    let planned = labels(&plan, Phase::Pki, "worker1");
    assert_eq!(planned.len(), 4, "{planned:?}");
    assert!(!planned.iter().any(|l| l.ends_with(".key") && !l.ends_with("kubelet.key")));
    // A worker's own kubelet key is not a signing key.
    assert!(!pki::is_signing_key("/var/lib/kubelet/pki/kubelet.key"));
    assert!(!pki::is_signing_key("/etc/kubernetes/pki/apiserver.key"));
    assert!(pki::is_signing_key("/etc/kubernetes/pki/etcd/ca.key"));
}

#[test]
fn mode_drift_on_a_key_is_fixed_without_rewriting_it() {
    let cluster = load(example_text("stacked"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    simulate(&pki_plan(&cluster, &tree, &facts), &mut facts, "v1.33.1");
    let path = "/var/lib/kubelet/pki/kubelet.key";
    if let Some(Ok(f)) = facts.get_mut("worker2") {
        f.files.insert(path.into(), present_file(&tree.hosts["worker2"][path].contents, 0o644));
    }
    let plan = pki_plan(&cluster, &tree, &facts);
    assert_eq!(labels(&plan, Phase::Pki, "worker2"), [format!("fix mode/owner of {path}")]);
}
