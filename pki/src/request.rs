//! What the caller asks for: the cluster's hosts by role with the names, addresses and API
//! endpoints their certificates must carry. `kubeforge-playbooks` builds it from the validated
//! model; this crate applies kubeadm's rules to it.

use std::net::IpAddr;
use std::time::Duration;

use crate::KeyAlgorithm;

/// Everything certificate generation reads from the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct PkiRequest {
    /// The kubeconfig cluster name (kubeadm's `clusterName`).
    pub cluster_name: String,
    pub key_algorithm: KeyAlgorithm,
    /// Leaf validity (kubeadm `certificateValidityPeriod`).
    pub certificate_validity: Duration,
    /// CA validity (kubeadm `caCertificateValidityPeriod`).
    pub ca_validity: Duration,
    pub api_server: ApiServerNames,
    /// `https://host:port` of the control-plane endpoint: admin.conf and super-admin.conf use it.
    pub cluster_server: String,
    pub control_planes: Vec<ControlPlane>,
    /// Control planes when etcd is stacked, etcd hosts when it is external.
    pub etcd_members: Vec<EtcdMember>,
    /// Every host running a kubelet.
    pub nodes: Vec<Node>,
}

/// Cluster-wide names in every apiserver certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiServerNames {
    /// The `kubernetes.default` Service IP (first address of the service subnet).
    pub service_ip: IpAddr,
    /// e.g. `cluster.local`.
    pub cluster_domain: String,
    /// The controlPlaneEndpoint's host: an IP or a DNS name.
    pub endpoint_host: Option<String>,
    /// The keepalived VIP, when there is one.
    pub vip: Option<IpAddr>,
    /// `spec.pki.extraSANs`: IPs become IP SANs, anything else a DNS SAN.
    pub extra_sans: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControlPlane {
    pub name: String,
    pub address: IpAddr,
    /// `https://<address>:6443`: controller-manager.conf and scheduler.conf use it.
    pub local_server: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EtcdMember {
    pub name: String,
    pub address: IpAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub address: IpAddr,
    /// The server in this node's kubelet.conf.
    pub kubelet_server: String,
}
