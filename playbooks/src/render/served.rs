//! The TLS endpoints each host serves from the cluster PKI, and the node file whose certificate
//! each must present: what `certs check-expiration --remote` compares, so that a renewal written
//! to disk but not yet picked up by the running process shows. Pure: it names addresses, ports
//! and paths from the spec; it never connects. kube-controller-manager and kube-scheduler are
//! left out: they serve certificates they generate themselves, not ours.

use std::net::{IpAddr, SocketAddr};

use crate::model::Cluster;

use super::configs::{APISERVER_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, PKI_DIR, kubelet};

/// The kubelet's secure port (KubeletConfiguration `port`, left at its default).
pub use crate::node::KUBELET_PORT;

/// One TLS endpoint on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedEndpoint {
    pub host: String,
    /// What serves there: `etcd client`, `etcd peer`, `kube-apiserver`, `kubelet`.
    pub component: &'static str,
    /// The host's own address and the port: reached from the host itself, through SSH.
    pub address: SocketAddr,
    /// The node file holding the certificate the process must be serving.
    pub cert_path: String,
}

/// Every endpoint of every host, in spec host order, then etcd, kube-apiserver, kubelet.
pub fn served_endpoints(cluster: &Cluster) -> Vec<ServedEndpoint> {
    let mut out = Vec::new();
    for host in &cluster.hosts {
        let mut add = |component, port, cert_path: String| {
            let address = SocketAddr::new(host.address, port);
            out.push(ServedEndpoint { host: host.name.clone(), component, address, cert_path });
        };
        if cluster.etcd_members().any(|m| m.name == host.name) {
            add("etcd client", ETCD_CLIENT_PORT, format!("{PKI_DIR}/etcd/server.crt"));
            add("etcd peer", ETCD_PEER_PORT, format!("{PKI_DIR}/etcd/peer.crt"));
        }
        if host.is_control_plane() {
            add("kube-apiserver", APISERVER_PORT, format!("{PKI_DIR}/apiserver.crt"));
        }
        if host.runs_kubelet() {
            add("kubelet", KUBELET_PORT, kubelet::SERVING_CERT.to_string());
        }
    }
    out
}

/// `https://address:port` as operators write it (IPv6 in brackets).
pub fn endpoint_url(address: SocketAddr) -> String {
    match address.ip() {
        IpAddr::V4(ip) => format!("https://{ip}:{}", address.port()),
        IpAddr::V6(ip) => format!("https://[{ip}]:{}", address.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;
    use crate::plan::tests::cluster;

    fn listed(cluster: &Cluster) -> Vec<String> {
        served_endpoints(cluster)
            .iter()
            .map(|e| format!("{} {} {} {}", e.host, e.component, e.address, e.cert_path))
            .collect()
    }

    #[test]
    fn stacked_control_planes_serve_etcd_and_the_apiserver_and_workers_only_the_kubelet() {
        let c = cluster(&[
            ("cp1", "10.0.0.11", &[Role::ControlPlane]),
            ("w1", "10.0.0.21", &[Role::Worker]),
        ]);
        assert_eq!(
            listed(&c),
            [
                "cp1 etcd client 10.0.0.11:2379 /etc/kubernetes/pki/etcd/server.crt",
                "cp1 etcd peer 10.0.0.11:2380 /etc/kubernetes/pki/etcd/peer.crt",
                "cp1 kube-apiserver 10.0.0.11:6443 /etc/kubernetes/pki/apiserver.crt",
                "cp1 kubelet 10.0.0.11:10250 /var/lib/kubelet/pki/kubelet.crt",
                "w1 kubelet 10.0.0.21:10250 /var/lib/kubelet/pki/kubelet.crt",
            ]
        );
    }

    #[test]
    fn external_etcd_hosts_serve_etcd_only_and_control_planes_no_etcd() {
        let mut c = cluster(&[
            ("cp1", "10.0.0.11", &[Role::ControlPlane]),
            ("e1", "10.0.0.31", &[Role::Etcd]),
        ]);
        c.etcd.topology = crate::model::EtcdTopology::External;
        assert_eq!(
            listed(&c),
            [
                "cp1 kube-apiserver 10.0.0.11:6443 /etc/kubernetes/pki/apiserver.crt",
                "cp1 kubelet 10.0.0.11:10250 /var/lib/kubelet/pki/kubelet.crt",
                "e1 etcd client 10.0.0.31:2379 /etc/kubernetes/pki/etcd/server.crt",
                "e1 etcd peer 10.0.0.31:2380 /etc/kubernetes/pki/etcd/peer.crt",
            ]
        );
    }

    #[test]
    fn ipv6_urls_are_bracketed() {
        assert_eq!(endpoint_url("[fd00::1]:2379".parse().unwrap()), "https://[fd00::1]:2379");
        assert_eq!(endpoint_url("10.0.0.1:6443".parse().unwrap()), "https://10.0.0.1:6443");
    }
}
