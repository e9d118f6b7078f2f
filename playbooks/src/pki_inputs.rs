//! Maps the validated model to `kubeforge-pki`'s request: for each control plane, etcd member
//! and kubelet host the names, addresses and API endpoints its certificates and kubeconfigs
//! carry. It decides which server each kubeconfig talks to; the PKI crate applies kubeadm's
//! certificate rules. Pure: no I/O.

use kubeforge_pki::{ApiServerNames, ControlPlane, EtcdMember, Node, PkiRequest};

use crate::model::{Cluster, Endpoint, EndpointHost, Host, LoadBalancerMode};
use crate::render::configs::kubeconfig_server;

/// kubeadm's default `bindPort`: every apiserver listens here on its own address.
pub const API_SERVER_PORT: u16 = crate::node::APISERVER_PORT;

/// `https://<address>:6443`, the host's own apiserver.
pub fn local_api_server_url(host: &Host) -> String {
    format!("https://{}", Endpoint::ip(host.address, API_SERVER_PORT))
}

/// The server a node's kubelet.conf uses: its local apiserver on control planes from v1.33
/// (kubeadm's `ControlPlaneKubeletLocalMode`); otherwise the server every kubeconfig of that
/// host uses (in node-local mode, the node's own haproxy on loopback).
pub fn kubelet_server_url(cluster: &Cluster, host: &Host) -> String {
    let local_mode = cluster.kubernetes_version.major > 1 || cluster.kubernetes_version.minor >= 33;
    if host.is_control_plane() && local_mode {
        local_api_server_url(host)
    } else {
        kubeconfig_server(cluster, host)
    }
}

/// Names the apiserver certificate needs beyond the spec's `extraSANs`: in node-local mode
/// clients reach it through their own haproxy on loopback (`::1` on IPv6 hosts), so that
/// address must verify.
fn api_server_extra_sans(cluster: &Cluster) -> Vec<String> {
    let mut sans = cluster.pki.extra_sans.clone();
    if cluster.load_balancer.mode == LoadBalancerMode::NodeLocal {
        let ipv6 = cluster.hosts.iter().any(|h| h.address.is_ipv6());
        let loopbacks = if ipv6 {
            &["127.0.0.1", "::1", "localhost"][..]
        } else {
            &["127.0.0.1", "localhost"][..]
        };
        for name in loopbacks {
            if !sans.iter().any(|s| s == name) {
                sans.push((*name).to_string());
            }
        }
    }
    sans
}

/// The PKI request for the whole cluster.
pub fn pki_request(cluster: &Cluster) -> PkiRequest {
    let endpoint_host = cluster.control_plane_endpoint.as_ref().map(|ep| match &ep.host {
        EndpointHost::Ip(ip) => ip.to_string(),
        EndpointHost::Dns(name) => name.clone(),
    });
    PkiRequest {
        cluster_name: cluster.name.clone(),
        key_algorithm: cluster.pki.key_algorithm,
        certificate_validity: cluster.pki.certificate_validity,
        ca_validity: cluster.pki.ca_validity,
        api_server: ApiServerNames {
            service_ip: cluster.network.api_service_ip(),
            cluster_domain: cluster.network.cluster_domain.clone(),
            endpoint_host,
            vip: cluster.load_balancer.vip,
            extra_sans: api_server_extra_sans(cluster),
        },
        cluster_server: cluster.api_server_url(),
        control_planes: cluster
            .control_planes()
            .map(|h| ControlPlane {
                name: h.name.clone(),
                address: h.address,
                local_server: local_api_server_url(h),
            })
            .collect(),
        etcd_members: cluster
            .etcd_members()
            .map(|h| EtcdMember { name: h.name.clone(), address: h.address })
            .collect(),
        nodes: cluster
            .kubelet_hosts()
            .map(|h| Node {
                name: h.name.clone(),
                address: h.address,
                kubelet_server: kubelet_server_url(cluster, h),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::configs::test_cluster::{node_local, stacked};

    #[test]
    fn node_local_workers_reach_the_api_through_their_own_haproxy() {
        let cluster = node_local();
        let request = pki_request(&cluster);
        let w1 = request.nodes.iter().find(|n| n.name == "w1").expect("w1 runs a kubelet");
        assert_eq!(w1.kubelet_server, "https://127.0.0.1:6443");
        let cp1 = request.nodes.iter().find(|n| n.name == "cp1").expect("cp1 runs a kubelet");
        assert_eq!(cp1.kubelet_server, "https://10.88.0.11:6443");
        for name in ["127.0.0.1", "localhost"] {
            assert_eq!(request.api_server.extra_sans.iter().filter(|s| *s == name).count(), 1);
        }
        assert!(!request.api_server.extra_sans.iter().any(|s| s == "::1"), "IPv4-only cluster");
        let mut v6 = node_local();
        let w1 = v6.hosts.iter_mut().find(|h| h.name == "w1").unwrap();
        w1.address = "fd00::51".parse().unwrap();
        let request = pki_request(&v6);
        assert!(request.api_server.extra_sans.iter().any(|s| s == "::1"), "IPv6 worker's haproxy");
    }

    #[test]
    fn other_modes_use_the_endpoint_and_add_no_loopback_san() {
        let cluster = stacked();
        let request = pki_request(&cluster);
        let w1 = request.nodes.iter().find(|n| n.name == "w1").expect("w1 runs a kubelet");
        assert_eq!(w1.kubelet_server, cluster.api_server_url());
        assert!(!request.api_server.extra_sans.iter().any(|s| s == "127.0.0.1"));
    }
}
