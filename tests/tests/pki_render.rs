//! Which PKI files each host receives in the render tree, at which node path and mode: the
//! least-privilege rules (workers: no CA key, sa.key or etcd keys; etcd-only hosts: no
//! Kubernetes CA key) for the stacked and external examples.

mod pki_common;

use std::collections::BTreeMap;

use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::render::{RenderInput, RenderTree};
use kubeforge_playbooks::secrets::ClusterSecrets;
use pki_common::*;

fn pki_tree(c: &Cluster, store: &kubeforge_pki::Store) -> RenderTree {
    let secrets = ClusterSecrets::generate(|b: &mut [u8]| -> Result<(), ()> {
        b.fill(7);
        Ok(())
    })
    .unwrap();
    let mut tree = RenderTree::default();
    kubeforge_playbooks::render::pki::add_files(
        RenderInput { cluster: c, pki: store, secrets: &secrets },
        &mut tree,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    tree
}

fn listing(tree: &RenderTree, host: &str) -> BTreeMap<String, (u32, bool)> {
    tree.hosts[host].iter().map(|(p, f)| (p.clone(), (f.mode, f.secret))).collect()
}

fn expect(items: &[(&str, u32, bool)]) -> BTreeMap<String, (u32, bool)> {
    items.iter().map(|(p, m, s)| (p.to_string(), (*m, *s))).collect()
}

const KUBELET: &[(&str, u32, bool)] = &[
    ("/etc/kubernetes/kubelet.conf", 0o600, true),
    ("/etc/kubernetes/pki/ca.crt", 0o644, false),
    ("/var/lib/kubelet/pki/kubelet.crt", 0o644, false),
    ("/var/lib/kubelet/pki/kubelet.key", 0o600, true),
];

fn control_plane(stacked: bool) -> BTreeMap<String, (u32, bool)> {
    let mut m = expect(KUBELET);
    let mut add = |p: &str, mode: u32, secret: bool| {
        m.insert(p.to_string(), (mode, secret));
    };
    for conf in ["admin", "controller-manager", "scheduler"] {
        add(&format!("/etc/kubernetes/{conf}.conf"), 0o600, true);
    }
    let mut pairs = vec![
        "ca",
        "front-proxy-ca",
        "apiserver",
        "apiserver-kubelet-client",
        "front-proxy-client",
        "apiserver-etcd-client",
    ];
    if stacked {
        pairs.extend(["etcd/ca", "etcd/server", "etcd/peer", "etcd/healthcheck-client"]);
    } else {
        add("/etc/kubernetes/pki/etcd/ca.crt", 0o644, false);
    }
    for p in pairs {
        add(&format!("/etc/kubernetes/pki/{p}.crt"), 0o644, false);
        add(&format!("/etc/kubernetes/pki/{p}.key"), 0o600, true);
    }
    add("/etc/kubernetes/pki/sa.key", 0o600, true);
    add("/etc/kubernetes/pki/sa.pub", 0o600, false);
    m
}

#[test]
fn stacked_hosts_get_exactly_their_files() {
    let c = cluster("stacked");
    let store = fresh(&c);
    let tree = pki_tree(&c, &store);
    assert_eq!(tree.hosts.len(), 5);
    for cp in ["cp1", "cp2", "cp3"] {
        assert_eq!(listing(&tree, cp), control_plane(true), "{cp}");
    }
    for w in ["worker1", "worker2"] {
        assert_eq!(listing(&tree, w), expect(KUBELET), "{w}");
    }
    // Each host gets its own leaves, byte for byte from the store.
    let file = |h: &str, p: &str| tree.hosts[h][p].contents.clone();
    assert_eq!(file("cp2", "/etc/kubernetes/pki/apiserver.crt"), store["nodes/cp2/apiserver.crt"]);
    assert_eq!(
        file("worker2", "/etc/kubernetes/kubelet.conf"),
        store["nodes/worker2/kubelet.conf"]
    );
    assert_eq!(file("worker1", "/etc/kubernetes/pki/ca.crt"), store["ca.crt"]);
    // super-admin.conf stays with the operator.
    assert!(tree.hosts.values().all(|files| !files.keys().any(|p| p.contains("super-admin"))));
}

#[test]
fn external_etcd_hosts_get_no_kubernetes_ca_key_and_control_planes_no_etcd_keys() {
    let c = cluster("external");
    let store = fresh(&c);
    let tree = pki_tree(&c, &store);
    for cp in ["cp1", "cp2", "cp3"] {
        assert_eq!(listing(&tree, cp), control_plane(false), "{cp}");
    }
    let etcd = expect(&[
        ("/etc/kubernetes/pki/etcd/ca.crt", 0o644, false),
        ("/etc/kubernetes/pki/etcd/healthcheck-client.crt", 0o644, false),
        ("/etc/kubernetes/pki/etcd/healthcheck-client.key", 0o600, true),
        ("/etc/kubernetes/pki/etcd/peer.crt", 0o644, false),
        ("/etc/kubernetes/pki/etcd/peer.key", 0o600, true),
        ("/etc/kubernetes/pki/etcd/server.crt", 0o644, false),
        ("/etc/kubernetes/pki/etcd/server.key", 0o600, true),
    ]);
    for h in ["etcd1", "etcd2", "etcd3"] {
        assert_eq!(listing(&tree, h), etcd, "{h}");
    }
    for w in ["worker1", "worker2"] {
        assert_eq!(listing(&tree, w), expect(KUBELET), "{w}");
    }
}

#[test]
fn missing_material_is_listed_not_invented() {
    let c = cluster("stacked");
    let mut store = fresh(&c);
    store.remove("nodes/worker2/kubelet.conf");
    store.remove("sa.pub");
    store.remove("ca.key"); // externally managed: control planes run without it
    let secrets = ClusterSecrets::generate(|b: &mut [u8]| -> Result<(), ()> {
        b.fill(7);
        Ok(())
    })
    .unwrap();
    let err = kubeforge_playbooks::render::pki::add_files(
        RenderInput { cluster: &c, pki: &store, secrets: &secrets },
        &mut RenderTree::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "PKI material missing from the state dir's pki/ folder: nodes/worker2/kubelet.conf, sa.pub; run `kubeforge certs generate` first"
    );
    store.insert("sa.pub".into(), fresh(&c)["sa.pub"].clone());
    store.insert("nodes/worker2/kubelet.conf".into(), b"x".to_vec());
    let tree = pki_tree(&c, &store);
    assert!(!tree.hosts["cp1"].contains_key("/etc/kubernetes/pki/ca.key"));
}
