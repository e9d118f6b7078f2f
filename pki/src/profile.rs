//! The certificate profiles kubeadm uses (kubeadm.md §1.2, §1.3, §2), computed from a request:
//! for every CA and leaf its store path, signer, subject, SANs and extended key usages. Nothing
//! here signs or reads files.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::inspect::ExtKeyUsage;
use crate::paths::{SUPER_ADMIN_CONF, node_file};
use crate::request::PkiRequest;

/// The three CAs of a kubeadm cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaId {
    Kubernetes,
    FrontProxy,
    Etcd,
}

impl CaId {
    pub const ALL: [CaId; 3] = [CaId::Kubernetes, CaId::FrontProxy, CaId::Etcd];
    /// Store path without extension (also the kubeadm name).
    pub fn base(self) -> &'static str {
        match self {
            CaId::Kubernetes => "ca",
            CaId::FrontProxy => "front-proxy-ca",
            CaId::Etcd => "etcd/ca",
        }
    }
    pub fn common_name(self) -> &'static str {
        match self {
            CaId::Kubernetes => "kubernetes",
            CaId::FrontProxy => "front-proxy-ca",
            CaId::Etcd => "etcd-ca",
        }
    }
}

/// A leaf is either a cert + key pair or a kubeconfig embedding both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeafKind {
    Pair,
    Kubeconfig { server: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeafProfile {
    /// The name `certs renew` accepts (kubeadm's, plus `kubelet.conf` and `kubelet-serving`).
    pub name: &'static str,
    pub host: Option<String>,
    /// Pair: store path without extension; kubeconfig: the `.conf` path.
    pub base: String,
    pub kind: LeafKind,
    pub signer: CaId,
    pub common_name: String,
    pub organization: Option<String>,
    /// Sorted and de-duplicated, as kubeadm does.
    pub dns_names: Vec<String>,
    /// De-duplicated in order, as kubeadm does.
    pub ip_addresses: Vec<IpAddr>,
    pub ext_key_usages: Vec<ExtKeyUsage>,
}

impl LeafProfile {
    /// The store path shown to users: `.crt` of a pair or the `.conf`.
    pub fn display_path(&self) -> String {
        match self.kind {
            LeafKind::Pair => format!("{}.crt", self.base),
            LeafKind::Kubeconfig { .. } => self.base.clone(),
        }
    }
    /// Every store file this leaf owns.
    pub fn files(&self) -> Vec<String> {
        match self.kind {
            LeafKind::Pair => vec![format!("{}.crt", self.base), format!("{}.key", self.base)],
            LeafKind::Kubeconfig { .. } => vec![self.base.clone()],
        }
    }
}

/// Every name `certs renew` accepts.
pub const RENEWABLE_NAMES: [&str; 13] = [
    "apiserver",
    "apiserver-kubelet-client",
    "front-proxy-client",
    "apiserver-etcd-client",
    "etcd-server",
    "etcd-peer",
    "etcd-healthcheck-client",
    "admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
    "super-admin.conf",
    "kubelet.conf",
    "kubelet-serving",
];

struct Leaf<'a> {
    name: &'static str,
    host: &'a str,
    rel: &'a str,
    signer: CaId,
    cn: String,
    org: Option<&'a str>,
    eku: &'a [ExtKeyUsage],
}

const SERVER: &[ExtKeyUsage] = &[ExtKeyUsage::ServerAuth];
const CLIENT: &[ExtKeyUsage] = &[ExtKeyUsage::ClientAuth];
const BOTH: &[ExtKeyUsage] = &[ExtKeyUsage::ServerAuth, ExtKeyUsage::ClientAuth];

fn pair(l: Leaf<'_>, dns: Vec<String>, ips: Vec<IpAddr>) -> LeafProfile {
    LeafProfile {
        name: l.name,
        host: Some(l.host.to_string()),
        base: node_file(l.host, l.rel),
        kind: LeafKind::Pair,
        signer: l.signer,
        common_name: l.cn,
        organization: l.org.map(str::to_string),
        dns_names: dns.into_iter().collect::<BTreeSet<_>>().into_iter().collect(),
        ip_addresses: dedup(ips),
        ext_key_usages: l.eku.to_vec(),
    }
}

fn kubeconfig(l: Leaf<'_>, server: &str) -> LeafProfile {
    let mut p = pair(l, vec![], vec![]);
    p.kind = LeafKind::Kubeconfig { server: server.to_string() };
    p
}

fn dedup(ips: Vec<IpAddr>) -> Vec<IpAddr> {
    let mut seen = BTreeSet::new();
    ips.into_iter().filter(|ip| seen.insert(*ip)).collect()
}

/// The apiserver SANs of one control plane (kubeadm `GetAPIServerAltNames`).
fn apiserver_sans(req: &PkiRequest, name: &str, address: IpAddr) -> (Vec<String>, Vec<IpAddr>) {
    let names = &req.api_server;
    let mut dns = vec![
        name.to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        format!("kubernetes.default.svc.{}", names.cluster_domain),
    ];
    let mut ips = vec![names.service_ip, address];
    let extra = names.endpoint_host.iter().chain(names.extra_sans.iter());
    for entry in extra {
        match entry.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(entry.clone()),
        }
    }
    if let Some(vip) = names.vip {
        ips.push(vip);
    }
    (dns, ips)
}

fn loopbacks() -> [IpAddr; 2] {
    [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
}

/// Every leaf of the cluster in a fixed order: per control plane, per etcd member, per node,
/// then super-admin.conf. Serial numbers are drawn in this order.
pub(crate) fn leaves(req: &PkiRequest) -> Vec<LeafProfile> {
    use CaId::*;
    let mut out = Vec::new();
    let admins = Some("kubeadm:cluster-admins");
    for cp in &req.control_planes {
        let h = cp.name.as_str();
        let leaf = |name, rel, signer, cn: &str, org, eku| Leaf {
            name,
            host: h,
            rel,
            signer,
            cn: cn.to_string(),
            org,
            eku,
        };
        let (dns, ips) = apiserver_sans(req, h, cp.address);
        out.push(pair(
            leaf("apiserver", "apiserver", Kubernetes, "kube-apiserver", None, SERVER),
            dns,
            ips,
        ));
        out.push(pair(
            leaf(
                "apiserver-kubelet-client",
                "apiserver-kubelet-client",
                Kubernetes,
                "kube-apiserver-kubelet-client",
                admins,
                CLIENT,
            ),
            vec![],
            vec![],
        ));
        out.push(pair(
            leaf(
                "front-proxy-client",
                "front-proxy-client",
                FrontProxy,
                "front-proxy-client",
                None,
                CLIENT,
            ),
            vec![],
            vec![],
        ));
        out.push(pair(
            leaf(
                "apiserver-etcd-client",
                "apiserver-etcd-client",
                Etcd,
                "kube-apiserver-etcd-client",
                None,
                CLIENT,
            ),
            vec![],
            vec![],
        ));
        out.push(kubeconfig(
            leaf("admin.conf", "admin.conf", Kubernetes, "kubernetes-admin", admins, CLIENT),
            &req.cluster_server,
        ));
        out.push(kubeconfig(
            leaf(
                "controller-manager.conf",
                "controller-manager.conf",
                Kubernetes,
                "system:kube-controller-manager",
                None,
                CLIENT,
            ),
            &cp.local_server,
        ));
        out.push(kubeconfig(
            leaf(
                "scheduler.conf",
                "scheduler.conf",
                Kubernetes,
                "system:kube-scheduler",
                None,
                CLIENT,
            ),
            &cp.local_server,
        ));
    }
    for member in &req.etcd_members {
        let h = member.name.as_str();
        let dns = vec![h.to_string(), "localhost".to_string()];
        let mut ips = vec![member.address];
        ips.extend(loopbacks());
        for (name, rel) in [("etcd-server", "etcd/server"), ("etcd-peer", "etcd/peer")] {
            let l =
                Leaf { name, host: h, rel, signer: Etcd, cn: h.to_string(), org: None, eku: BOTH };
            out.push(pair(l, dns.clone(), ips.clone()));
        }
        let l = Leaf {
            name: "etcd-healthcheck-client",
            host: h,
            rel: "etcd/healthcheck-client",
            signer: Etcd,
            cn: "kube-etcd-healthcheck-client".into(),
            org: None,
            eku: CLIENT,
        };
        out.push(pair(l, vec![], vec![]));
    }
    for node in &req.nodes {
        let h = node.name.as_str();
        let cn = format!("system:node:{h}");
        let nodes = Some("system:nodes");
        let l = Leaf {
            name: "kubelet.conf",
            host: h,
            rel: "kubelet.conf",
            signer: Kubernetes,
            cn: cn.clone(),
            org: nodes,
            eku: CLIENT,
        };
        out.push(kubeconfig(l, &node.kubelet_server));
        let l = Leaf {
            name: "kubelet-serving",
            host: h,
            rel: "kubelet",
            signer: Kubernetes,
            cn,
            org: nodes,
            eku: SERVER,
        };
        out.push(pair(l, vec![h.to_string()], vec![node.address]));
    }
    let super_admin = LeafProfile {
        name: "super-admin.conf",
        host: None,
        base: SUPER_ADMIN_CONF.to_string(),
        kind: LeafKind::Kubeconfig { server: req.cluster_server.clone() },
        signer: Kubernetes,
        common_name: "kubernetes-super-admin".into(),
        organization: Some("system:masters".into()),
        dns_names: vec![],
        ip_addresses: vec![],
        ext_key_usages: CLIENT.to_vec(),
    };
    out.push(super_admin);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{ApiServerNames, ControlPlane};

    fn request(endpoint: Option<&str>, extra: &[&str]) -> PkiRequest {
        PkiRequest {
            cluster_name: "t".into(),
            key_algorithm: crate::KeyAlgorithm::EcdsaP256,
            certificate_validity: std::time::Duration::from_secs(86_400),
            ca_validity: std::time::Duration::from_secs(86_400 * 10),
            api_server: ApiServerNames {
                service_ip: "10.96.0.1".parse().unwrap(),
                cluster_domain: "corp.local".into(),
                endpoint_host: endpoint.map(str::to_string),
                vip: Some("10.0.0.100".parse().unwrap()),
                extra_sans: extra.iter().map(|s| s.to_string()).collect(),
            },
            cluster_server: "https://10.0.0.100:6443".into(),
            control_planes: vec![ControlPlane {
                name: "cp1".into(),
                address: "10.0.0.1".parse().unwrap(),
                local_server: "https://10.0.0.1:6443".into(),
            }],
            etcd_members: vec![],
            nodes: vec![],
        }
    }

    #[test]
    fn apiserver_sans_follow_kubeadm_sorting_and_dedup() {
        let req = request(Some("api.corp.example"), &["fd00::5", "*.apps.example", "10.0.0.1"]);
        let apiserver = leaves(&req).into_iter().find(|l| l.name == "apiserver").unwrap();
        assert_eq!(
            apiserver.dns_names,
            [
                "*.apps.example",
                "api.corp.example",
                "cp1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.corp.local"
            ]
        );
        let ips: Vec<String> = apiserver.ip_addresses.iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["10.96.0.1", "10.0.0.1", "fd00::5", "10.0.0.100"]);
        let bracketed = request(Some("[fd00::9]"), &[]);
        let apiserver = leaves(&bracketed).into_iter().find(|l| l.name == "apiserver").unwrap();
        assert!(apiserver.ip_addresses.contains(&"fd00::9".parse().unwrap()));
    }

    #[test]
    fn a_san_that_is_no_dns_name_is_an_error_not_a_panic() {
        let req = request(None, &["bücher.example"]);
        let err = crate::generate(
            &req,
            &crate::Store::new(),
            time::OffsetDateTime::UNIX_EPOCH,
            &mut crate::SeededSerials::new(1),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("SAN \"bücher.example\" is not a valid DNS name"),
            "{err}"
        );
    }
}
