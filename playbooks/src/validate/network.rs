//! `spec.network`: pod and service CIDRs (parsed, sized, not overlapping) and the cluster DNS
//! domain. Rules that compare host addresses with these subnets live with the hosts.

use std::net::IpAddr;

use super::Checker;
use super::values;
use crate::model::{Cidr, Network};
use crate::spec::types::Spec;

pub const DEFAULT_POD_SUBNET: &str = "10.244.0.0/16";
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The per-node pod CIDR size kube-controller-manager hands out by default.
pub fn node_mask(pods: &Cidr) -> u8 {
    if pods.network.is_ipv4() { 24 } else { 64 }
}

pub fn network(c: &mut Checker<'_>, s: &Spec) -> Option<Network> {
    let spec = s.network.clone().unwrap_or_default();
    let pods = c.check(
        || "spec.network.podSubnet".into(),
        values::cidr(spec.pod_subnet.as_deref().unwrap_or(DEFAULT_POD_SUBNET)),
    );
    let services = c.check(
        || "spec.network.serviceSubnet".into(),
        values::cidr(spec.service_subnet.as_deref().unwrap_or(DEFAULT_SERVICE_SUBNET)),
    );
    let domain = spec.cluster_domain.as_deref().unwrap_or(DEFAULT_CLUSTER_DOMAIN);
    let domain_ok = values::is_dns_subdomain(domain);
    if !domain_ok {
        c.report(
            "spec.network.clusterDomain",
            format!("cluster domain `{}` is not a DNS name", values::shorten(domain)),
            "use lowercase DNS labels separated by dots, e.g. `cluster.local`",
        );
    }
    let mut ok = domain_ok;
    if let Some(p) = &pods {
        ok &= pod_size(c, p);
    }
    if let Some(svc) = &services {
        ok &= service_size(c, svc);
    }
    if let (Some(p), Some(svc)) = (&pods, &services) {
        if p.network.is_ipv4() != svc.network.is_ipv4() {
            c.report_related(
                "spec.network.serviceSubnet",
                format!("service subnet {svc} and pod subnet {p} are of different IP families"),
                "use IPv4 for both or IPv6 for both (dual-stack is not supported yet)",
                "spec.network.podSubnet",
                "pod subnet",
            );
            ok = false;
        } else if p.overlaps(svc) {
            c.report_related(
                "spec.network.serviceSubnet",
                format!("service subnet {svc} overlaps pod subnet {p}"),
                "pick disjoint ranges, e.g. podSubnet 10.244.0.0/16 and serviceSubnet 10.96.0.0/12",
                "spec.network.podSubnet",
                "pod subnet",
            );
            ok = false;
        }
    }
    ok.then_some(())?;
    Some(Network {
        pod_subnet: pods?,
        service_subnet: services?,
        cluster_domain: domain.to_string(),
    })
}

fn pod_size(c: &mut Checker<'_>, pods: &Cidr) -> bool {
    let node = node_mask(pods);
    if pods.prefix > node {
        c.report(
            "spec.network.podSubnet",
            format!("pod subnet {pods} is smaller than one node's pod range (/{node})"),
            format!("use a prefix of /{node} or shorter, e.g. /16"),
        );
        return false;
    }
    true
}

fn service_size(c: &mut Checker<'_>, svc: &Cidr) -> bool {
    // kube-apiserver refuses more than 20 host bits; kubeadm needs the 10th address for DNS.
    let (min, max) = if svc.network.is_ipv4() { (12, 28) } else { (108, 124) };
    if svc.prefix < min || svc.prefix > max {
        c.report(
            "spec.network.serviceSubnet",
            format!("service subnet {svc} has prefix /{}, outside /{min} to /{max}", svc.prefix),
            format!(
                "the API server allows at most 20 host bits and cluster DNS takes the 10th address; use /{min} to /{max}, e.g. {}",
                if svc.network.is_ipv4() { "10.96.0.0/12" } else { "fd00:96::/108" }
            ),
        );
        return false;
    }
    true
}

/// Which cluster subnet, if any, contains `ip`.
pub fn subnet_containing(network: &Network, ip: IpAddr) -> Option<(&'static str, Cidr)> {
    if network.pod_subnet.contains(ip) {
        Some(("pod subnet", network.pod_subnet))
    } else if network.service_subnet.contains(ip) {
        Some(("service subnet", network.service_subnet))
    } else {
        None
    }
}
