//! `spec.hosts` and the rules that depend on the set of hosts: unique names and addresses,
//! roles against the etcd topology, etcd quorum sizes, pod-subnet capacity, and the load
//! balancer / controlPlaneEndpoint rules.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use super::network::{node_mask, subnet_containing};
use super::{Checker, optional, values};
use crate::model::{
    Endpoint, EndpointHost, EtcdTopology, Host, LoadBalancer, LoadBalancerMode, Network, Role, Ssh,
};
use crate::spec::types::{LoadBalancerModeSpec, RoleSpec, Spec};

/// What later rules need to know about the hosts.
pub struct Hosts {
    /// `None` when any host had a problem.
    pub hosts: Option<Vec<Host>>,
    pub control_planes: usize,
    /// Valid addresses → index of the first host with it.
    pub addresses: HashMap<IpAddr, usize>,
    /// Index → whether the host is a control plane.
    pub is_control_plane: Vec<bool>,
}

pub fn hosts(
    c: &mut Checker<'_>,
    s: &Spec,
    topology: EtcdTopology,
    network: Option<&Network>,
    ssh: Option<&Ssh>,
) -> Hosts {
    let mut out = Vec::with_capacity(s.hosts.len());
    let mut all_ok = true;
    let mut names: HashMap<&str, usize> = HashMap::with_capacity(s.hosts.len());
    let mut addresses: HashMap<IpAddr, usize> = HashMap::with_capacity(s.hosts.len());
    let mut is_control_plane = Vec::with_capacity(s.hosts.len());
    let (mut control_planes, mut etcd_hosts, mut kubelets) = (0usize, 0usize, 0usize);

    for (i, h) in s.hosts.iter().enumerate() {
        let at = |field: &str| format!("spec.hosts[{i}].{field}");
        let mut ok = true;

        let name = c.check(|| at("name"), values::dns_label(&h.name, "host name"));
        if let Some(name) = &name {
            if let Some(first) = names.get(name.as_str()) {
                c.report_related(
                    &at("name"),
                    format!("host name `{name}` is already used by spec.hosts[{first}]"),
                    "give every host its own name; it becomes the Kubernetes node name",
                    &format!("spec.hosts[{first}].name"),
                    "first used here",
                );
                ok = false;
            } else {
                names.insert(&h.name, i);
            }
        }

        let address = c.check(|| at("address"), values::host_ip(&h.address));
        if let Some(ip) = address {
            if let Some(first) = addresses.get(&ip) {
                c.report_related(
                    &at("address"),
                    format!("address {ip} is already used by spec.hosts[{first}]"),
                    "every host needs its own address; remove the duplicate or correct the typo",
                    &format!("spec.hosts[{first}].address"),
                    "first used here",
                );
                ok = false;
            } else {
                addresses.insert(ip, i);
            }
            if let Some((which, cidr)) = network.and_then(|n| subnet_containing(n, ip)) {
                c.report(
                    &at("address"),
                    format!("address {ip} lies inside the {which} {cidr}"),
                    "Kubernetes routes that range inside the cluster, so the host would become unreachable; move the subnet (spec.network) away from your machines' network",
                );
                ok = false;
            }
        }

        // Counted even when a role is refused, so quorum rules still see the host.
        let (r, roles_ok) = roles(c, i, &h.roles, topology);
        let cp = r.contains(&Role::ControlPlane);
        is_control_plane.push(cp);
        control_planes += usize::from(cp);
        etcd_hosts += usize::from(r.contains(&Role::Etcd));
        let etcd_only = r.len() == 1 && r.contains(&Role::Etcd);
        kubelets += usize::from(!r.is_empty() && !etcd_only);
        let roles = roles_ok.then_some(r);

        let host_ssh = host_ssh(c, i, h.ssh.as_ref(), ssh);
        match (name, address, roles, host_ssh, ok) {
            (Some(name), Some(address), Some(roles), Some(ssh), true) => {
                out.push(Host { name, address, roles, ssh })
            }
            _ => all_ok = false,
        }
    }

    membership(c, s, topology, control_planes, etcd_hosts);
    if let Some(n) = network {
        pod_capacity(c, n, kubelets);
    }
    Hosts { hosts: all_ok.then_some(out), control_planes, addresses, is_control_plane }
}

fn roles(
    c: &mut Checker<'_>,
    i: usize,
    spec: &[RoleSpec],
    topology: EtcdTopology,
) -> (BTreeSet<Role>, bool) {
    let path = format!("spec.hosts[{i}].roles");
    if spec.is_empty() {
        c.report(
            &path,
            "the host has no roles",
            "give it at least one of `control-plane`, `worker` or `etcd` (external etcd only)",
        );
        return (BTreeSet::new(), false);
    }
    let mut roles = BTreeSet::new();
    let mut ok = true;
    for (j, r) in spec.iter().enumerate() {
        let role = match r {
            RoleSpec::ControlPlane => Role::ControlPlane,
            RoleSpec::Worker => Role::Worker,
            RoleSpec::Etcd => Role::Etcd,
        };
        if !roles.insert(role) {
            c.report(
                &format!("{path}[{j}]"),
                format!("role `{role}` is listed twice"),
                "list each role once",
            );
            ok = false;
        }
        if role == Role::Etcd && topology == EtcdTopology::Stacked {
            c.report(
                &format!("{path}[{j}]"),
                "the etcd role needs the external etcd topology",
                "with the stacked topology (the default) etcd runs on the control planes; remove the role, or set `spec.etcd.topology: external`",
            );
            ok = false;
        }
    }
    if topology == EtcdTopology::External && roles.contains(&Role::Etcd) && roles.len() > 1 {
        c.report(
            &path,
            "with the external etcd topology, etcd hosts run only etcd",
            "give this host only `roles: [etcd]` and run control planes and workers on other hosts (or use the stacked topology)",
        );
        ok = false;
    }
    (roles, ok)
}

fn host_ssh(
    c: &mut Checker<'_>,
    i: usize,
    spec: Option<&crate::spec::types::HostSshSpec>,
    defaults: Option<&Ssh>,
) -> Option<Ssh> {
    let Some(spec) = spec else { return defaults.cloned() };
    let at = |field: &str| format!("spec.hosts[{i}].ssh.{field}");
    let user =
        optional(spec.user.as_ref().map(|u| c.check(|| at("user"), values::user(u, "ssh user"))));
    let port = optional(spec.port.map(|p| c.check(|| at("port"), values::port(p))));
    let identity = optional(
        spec.identity_file
            .as_ref()
            .map(|p| c.check(|| at("identityFile"), values::path(p, "identityFile"))),
    );
    let mut ssh = defaults?.clone();
    if let Some(u) = user? {
        ssh.user = u;
    }
    if let Some(p) = port? {
        ssh.port = p;
    }
    if let Some(f) = identity? {
        ssh.identity_file = Some(f);
    }
    Some(ssh)
}

/// etcd quorum rules: a member count that is odd, present and not oversized.
fn membership(c: &mut Checker<'_>, s: &Spec, topology: EtcdTopology, cps: usize, etcd: usize) {
    if cps == 0 {
        c.report(
            "spec.hosts",
            if s.hosts.is_empty() {
                "the spec lists no hosts".to_string()
            } else {
                "no host has the control-plane role".to_string()
            },
            "give at least one host `roles: [control-plane]` (three for high availability)",
        );
    }
    let (members, what, path) = match topology {
        EtcdTopology::Stacked => (cps, "control planes", "spec.hosts"),
        EtcdTopology::External => (etcd, "etcd hosts", "spec.etcd.topology"),
    };
    if topology == EtcdTopology::External && etcd == 0 {
        c.report(
            path,
            "the external etcd topology needs etcd hosts, but no host has the etcd role",
            "add three hosts with `roles: [etcd]`, or use `topology: stacked` to run etcd on the control planes",
        );
        return;
    }
    if members > 0 && members % 2 == 0 {
        c.report(
            path,
            format!(
                "{members} {what} make an etcd cluster of {members} members, which survives no more failures than {}",
                members - 1
            ),
            format!("use an odd number of {what}: {} or {}", members - 1, members + 1),
        );
    } else if members > 7 {
        c.report(
            path,
            format!("{members} {what} make an etcd cluster of {members} members; every write waits for a majority of them"),
            format!("use 3, 5 or 7 {what}"),
        );
    }
}

fn pod_capacity(c: &mut Checker<'_>, network: &Network, kubelets: usize) {
    let pods = network.pod_subnet;
    let node = node_mask(&pods);
    let bits = u32::from(node.saturating_sub(pods.prefix));
    let room: u128 = if bits >= 64 { u128::MAX } else { 1u128 << bits };
    if (kubelets as u128) > room {
        c.report(
            "spec.network.podSubnet",
            format!("pod subnet {pods} holds {room} node ranges of /{node}, but {kubelets} hosts run a kubelet"),
            format!("use a larger pod subnet (a prefix of /{} or shorter)", node - bits_for(kubelets)),
        );
    }
}

fn bits_for(n: usize) -> u8 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as u8
}

/// loadBalancer and controlPlaneEndpoint, checked against the hosts.
pub fn load_balancer(
    c: &mut Checker<'_>,
    s: &Spec,
    hosts: &Hosts,
    network: Option<&Network>,
) -> Option<(LoadBalancer, Option<Endpoint>)> {
    let spec = s.load_balancer.clone().unwrap_or_default();
    let mode = match spec.mode {
        Some(LoadBalancerModeSpec::KeepalivedHaproxy) => LoadBalancerMode::KeepalivedHaproxy,
        Some(LoadBalancerModeSpec::NodeLocal) => LoadBalancerMode::NodeLocal,
        Some(LoadBalancerModeSpec::External) => LoadBalancerMode::External,
        Some(LoadBalancerModeSpec::None) => LoadBalancerMode::None,
        None if hosts.control_planes > 1 => LoadBalancerMode::External,
        None => LoadBalancerMode::None,
    };
    let mut ok = true;
    let vip = match &spec.vip {
        Some(text) => c.check(|| "spec.loadBalancer.vip".into(), values::host_ip(text)).map(Some),
        None => Some(None),
    };
    ok &= vip.is_some();
    let vip = vip.flatten();
    if let Some(vip) = vip {
        if mode != LoadBalancerMode::KeepalivedHaproxy {
            c.report(
                "spec.loadBalancer.vip",
                format!("vip is set but loadBalancer.mode is {}", mode_name(mode)),
                "only keepalived-haproxy uses a vip; set `mode: keepalived-haproxy` or remove `vip`",
            );
            ok = false;
        }
        if let Some(&i) = hosts.addresses.get(&vip) {
            c.report_related(
                "spec.loadBalancer.vip",
                format!("vip {vip} is also the address of spec.hosts[{i}]"),
                "the vip must be a free address in the control planes' network that no machine uses",
                &format!("spec.hosts[{i}].address"),
                "host address",
            );
            ok = false;
        }
        if let Some((which, cidr)) = network.and_then(|n| subnet_containing(n, vip)) {
            c.report(
                "spec.loadBalancer.vip",
                format!("vip {vip} lies inside the {which} {cidr}"),
                "pick a free address in the control planes' network, outside the cluster's subnets",
            );
            ok = false;
        }
    } else if mode == LoadBalancerMode::KeepalivedHaproxy && spec.vip.is_none() {
        c.report(
            "spec.loadBalancer.vip",
            "loadBalancer.mode keepalived-haproxy needs a vip",
            "add `vip:` with a free address in the control planes' network, e.g. `vip: 10.88.0.100`",
        );
        ok = false;
    }

    let endpoint_path = "spec.controlPlaneEndpoint";
    let mut endpoint = match &s.control_plane_endpoint {
        Some(text) => {
            let ep = c.check(|| endpoint_path.into(), values::endpoint(text));
            ok &= ep.is_some();
            ep
        }
        None => None,
    };
    if let Some(EndpointHost::Ip(ip)) = endpoint.as_ref().map(|e| &e.host) {
        let ip = *ip;
        if mode == LoadBalancerMode::KeepalivedHaproxy && vip.is_some_and(|v| v != ip) {
            let port = endpoint.as_ref().map_or(6443, |e| e.port);
            let vip_ep = vip.map(|v| Endpoint::ip(v, port).to_string()).unwrap_or_default();
            c.report_related(
                endpoint_path,
                format!("controlPlaneEndpoint {ip} is not the vip"),
                format!("with keepalived-haproxy clients reach the API through the vip: write `{vip_ep}`, or leave controlPlaneEndpoint out"),
                "spec.loadBalancer.vip",
                "vip",
            );
            ok = false;
        }
        if let Some(&i) = hosts.addresses.get(&ip)
            && !hosts.is_control_plane.get(i).copied().unwrap_or(false)
        {
            c.report_related(
                endpoint_path,
                format!(
                    "controlPlaneEndpoint {ip} is spec.hosts[{i}], which is not a control plane"
                ),
                "point it at a control plane, the vip or your load balancer",
                &format!("spec.hosts[{i}].address"),
                "that host",
            );
            ok = false;
        }
        if let Some((which, cidr)) = network.and_then(|n| subnet_containing(n, ip)) {
            c.report(
                endpoint_path,
                format!("controlPlaneEndpoint {ip} lies inside the {which} {cidr}"),
                "use an address outside the cluster's subnets",
            );
            ok = false;
        }
    }
    if endpoint.is_none() && s.control_plane_endpoint.is_none() {
        match mode {
            LoadBalancerMode::KeepalivedHaproxy => endpoint = vip.map(|v| Endpoint::ip(v, 6443)),
            LoadBalancerMode::External => {
                c.report(
                    endpoint_path,
                    if hosts.control_planes > 1 {
                        format!("{} control planes but no controlPlaneEndpoint", hosts.control_planes)
                    } else {
                        "loadBalancer.mode external needs a controlPlaneEndpoint".to_string()
                    },
                    "set `controlPlaneEndpoint: <your load balancer>:6443`, or let kubeforge balance the API with `loadBalancer.mode: keepalived-haproxy` (with a vip) or `node-local`",
                );
                ok = false;
            }
            LoadBalancerMode::None if hosts.control_planes > 1 => {
                c.report(
                    endpoint_path,
                    format!("{} control planes but no controlPlaneEndpoint", hosts.control_planes),
                    "with several control planes clients need one address: set `controlPlaneEndpoint`, or use `loadBalancer.mode: keepalived-haproxy` (with a vip) or `node-local`",
                );
                ok = false;
            }
            _ => {}
        }
    }
    ok.then_some(())?;
    Some((
        LoadBalancer {
            mode,
            vip: if mode == LoadBalancerMode::KeepalivedHaproxy { vip } else { None },
        },
        endpoint,
    ))
}

fn mode_name(mode: LoadBalancerMode) -> &'static str {
    match mode {
        LoadBalancerMode::KeepalivedHaproxy => "keepalived-haproxy",
        LoadBalancerMode::NodeLocal => "node-local",
        LoadBalancerMode::External => "external",
        LoadBalancerMode::None => "none",
    }
}
