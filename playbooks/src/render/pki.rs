//! PKI files for each host: certificates, keys and kubeconfigs at their kubeadm node paths, and
//! only what that host needs. Control planes get the CAs with their keys (the controller-manager
//! signs CSRs), the service-account pair, their own leaves and kubeconfigs; etcd members get the
//! etcd CA certificate and their own etcd leaves; every kubelet host gets the cluster CA
//! certificate, its kubelet.conf and its kubelet serving pair. Workers therefore never receive a
//! CA key, sa.key or etcd keys, and etcd-only hosts never receive the Kubernetes CA key.
//! This module only selects and places files; kubeforge-pki decides their contents.

use std::collections::BTreeMap;

use kubeforge_pki::paths::{SA_KEY, SA_PUB, node_file};

use super::{NodeFile, RenderInput, RenderTree};
use crate::model::{EtcdTopology, Host};

/// Files the state dir must hold before rendering; `certs generate` creates them.
#[derive(Debug, thiserror::Error)]
#[error(
    "PKI material missing from the state dir's pki/ folder: {}; run `kubeforge certs generate` first",
    missing.join(", ")
)]
pub struct PkiRenderError {
    pub missing: Vec<String>,
}

const PKI: &str = crate::node::PKI_DIR;

/// Where one store file goes on a node, and whether the host can do without it.
struct Placement {
    store: String,
    node: String,
    optional: bool,
}

fn cluster_file(rel: &str) -> Placement {
    Placement { store: rel.to_string(), node: format!("{PKI}/{rel}"), optional: false }
}

/// A CA key: absent when the CA is externally managed (then the host runs without it, as
/// kubeadm's external-CA mode does).
fn ca_key(rel: &str) -> Placement {
    Placement { optional: true, ..cluster_file(rel) }
}

fn own_pair(host: &str, rel: &str, node_dir: &str) -> [Placement; 2] {
    ["crt", "key"].map(|ext| Placement {
        store: node_file(host, &format!("{rel}.{ext}")),
        node: format!("{node_dir}/{rel}.{ext}"),
        optional: false,
    })
}

fn own_kubeconfig(host: &str, name: &str) -> Placement {
    Placement {
        store: node_file(host, name),
        node: format!("/etc/kubernetes/{name}"),
        optional: false,
    }
}

/// Everything `host` receives, by node path.
fn placements(host: &Host, is_etcd_member: bool, stacked: bool) -> BTreeMap<String, Placement> {
    let h = host.name.as_str();
    let mut list = Vec::new();
    if host.runs_kubelet() {
        list.push(cluster_file("ca.crt"));
        list.push(own_kubeconfig(h, "kubelet.conf"));
        list.extend(own_pair(h, "kubelet", "/var/lib/kubelet/pki"));
    }
    if host.is_control_plane() {
        list.extend([cluster_file("ca.crt"), ca_key("ca.key")]);
        list.extend([cluster_file("front-proxy-ca.crt"), ca_key("front-proxy-ca.key")]);
        list.extend([cluster_file(SA_KEY), cluster_file(SA_PUB), cluster_file("etcd/ca.crt")]);
        if stacked {
            list.push(ca_key("etcd/ca.key"));
        }
        for rel in
            ["apiserver", "apiserver-kubelet-client", "front-proxy-client", "apiserver-etcd-client"]
        {
            list.extend(own_pair(h, rel, PKI));
        }
        for conf in ["admin.conf", "controller-manager.conf", "scheduler.conf"] {
            list.push(own_kubeconfig(h, conf));
        }
    }
    if is_etcd_member {
        list.push(cluster_file("etcd/ca.crt"));
        for rel in ["etcd/server", "etcd/peer", "etcd/healthcheck-client"] {
            list.extend(own_pair(h, rel, PKI));
        }
    }
    list.into_iter().map(|p| (p.node.clone(), p)).collect()
}

/// crt 0644; keys and kubeconfigs 0600 and secret; sa.pub 0600 as kubeadm writes it.
fn node_file_for(node_path: &str, contents: Vec<u8>) -> NodeFile {
    let secret = node_path.ends_with(".key") || node_path.ends_with(".conf");
    let mode = if node_path.ends_with(".crt") { 0o644 } else { 0o600 };
    NodeFile { contents, mode, secret }
}

pub fn add_files(input: RenderInput<'_>, tree: &mut RenderTree) -> Result<(), super::RenderError> {
    let cluster = input.cluster;
    let stacked = cluster.etcd.topology == EtcdTopology::Stacked;
    let members: Vec<&str> = cluster.etcd_members().map(|h| h.name.as_str()).collect();
    let mut missing = Vec::new();
    let mut files = Vec::new();
    for host in &cluster.hosts {
        for (node_path, placement) in
            placements(host, members.contains(&host.name.as_str()), stacked)
        {
            match input.pki.get(&placement.store) {
                Some(bytes) => files.push((host.name.clone(), node_path, bytes.clone())),
                None if placement.optional => {}
                None => missing.push(placement.store),
            }
        }
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(PkiRenderError { missing }.into());
    }
    for (host, node_path, bytes) in files {
        let file = node_file_for(&node_path, bytes);
        tree.insert(&host, &node_path, file)?;
    }
    Ok(())
}
