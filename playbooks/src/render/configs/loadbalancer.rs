//! The API load balancer. `keepalived-haproxy`: every control plane runs haproxy on the
//! endpoint's port (bound to the VIP) with every kube-apiserver as a health-checked backend, and
//! keepalived moves the VIP (VRRP, unicast between control planes, password from the cluster
//! secrets, haproxy tracked). `node-local`: every other kubelet host runs haproxy on
//! `127.0.0.1:<port>` and its kubeconfigs point there ([`kubeconfig_server`]). `external` and
//! `none` render nothing.

use std::net::IpAddr;

use kubeforge_templates::contexts::{
    Haproxy, HaproxyBackend, KeepalivedDropIn, KeepalivedInterfaceScript, KeyValue, Sysctl,
};
use sha2::{Digest as _, Sha256};

use super::{APISERVER_PORT, ConfigRenderError, Ctx, HostOut, host_port, loopback, url};
use crate::model::{Cluster, Host, LoadBalancerMode};

pub const HAPROXY_CONFIG: &str = "/etc/haproxy/haproxy.cfg";
pub const KEEPALIVED_CONFIG: &str = "/etc/keepalived/keepalived.conf";
pub const KEEPALIVED_DROP_IN: &str = "/etc/systemd/system/keepalived.service.d/10-kubeforge.conf";
pub const INTERFACE_SCRIPT: &str = "/usr/local/lib/kubeforge/keepalived-interface";
/// Written by [`INTERFACE_SCRIPT`] at keepalived start; defines `$KUBEFORGE_INTERFACE`.
pub const INTERFACE_INCLUDE: &str = "/run/keepalived-kubeforge/interface.conf";
pub const NONLOCAL_BIND_SYSCTL: &str = "/etc/sysctl.d/99-kubeforge-loadbalancer.conf";
/// haproxy's check: answered to anonymous clients (see the AuthenticationConfiguration).
const HEALTH_PATH: &str = "/readyz";

/// The `server:` URL of a host's kubeconfigs (kubelet and, on control planes, the components
/// that go through the endpoint): node-local hosts use their local haproxy; control planes in
/// node-local mode talk to their own apiserver; everyone else uses the cluster endpoint.
pub fn kubeconfig_server(cluster: &Cluster, host: &Host) -> String {
    if cluster.load_balancer.mode == LoadBalancerMode::NodeLocal {
        if host.is_control_plane() {
            return url("https", host.address, APISERVER_PORT);
        }
        return url("https", loopback(host.address), node_local_port(cluster));
    }
    cluster.api_server_url()
}

/// The port clients use: the endpoint's, else the apiserver's.
fn node_local_port(cluster: &Cluster) -> u16 {
    cluster.control_plane_endpoint.as_ref().map_or(APISERVER_PORT, |ep| ep.port)
}

pub(super) fn add(ctx: Ctx<'_>, out: &mut HostOut<'_>) -> Result<(), ConfigRenderError> {
    let cluster = ctx.cluster();
    let host = out.host;
    match cluster.load_balancer.mode {
        LoadBalancerMode::KeepalivedHaproxy if host.is_control_plane() => {
            keepalived_haproxy(ctx, out)
        }
        LoadBalancerMode::NodeLocal if host.runs_kubelet() && !host.is_control_plane() => {
            let bind = host_port(loopback(host.address), node_local_port(cluster));
            out.render(HAPROXY_CONFIG, 0o644, false, &haproxy(cluster, bind))
        }
        _ => Ok(()),
    }
}

fn haproxy(cluster: &Cluster, bind: String) -> Haproxy {
    Haproxy {
        bind,
        health_path: HEALTH_PATH.to_string(),
        backends: cluster
            .control_planes()
            .map(|cp| HaproxyBackend {
                name: cp.name.clone(),
                address: host_port(cp.address, APISERVER_PORT),
            })
            .collect(),
    }
}

fn keepalived_haproxy(ctx: Ctx<'_>, out: &mut HostOut<'_>) -> Result<(), ConfigRenderError> {
    let cluster = ctx.cluster();
    let host = out.host;
    let (Some(vip), Some(endpoint)) = (cluster.load_balancer.vip, &cluster.control_plane_endpoint)
    else {
        return Err(ConfigRenderError::MissingVip);
    };
    out.render(HAPROXY_CONFIG, 0o644, false, &haproxy(cluster, host_port(vip, endpoint.port)))?;

    let control_planes: Vec<&Host> = cluster.control_planes().collect();
    let index = control_planes.iter().position(|cp| cp.name == host.name).unwrap_or(0);
    let keepalived = kubeforge_templates::contexts::Keepalived {
        router_id: host.name.clone(),
        interface_include: INTERFACE_INCLUDE.to_string(),
        virtual_router_id: virtual_router_id(&cluster.name),
        // First control plane preferred; the rest in spec order; all distinct.
        priority: u8::try_from(150usize.saturating_sub(index * 10).max(1)).unwrap_or(1),
        auth_pass: ctx.input.secrets.vrrp_password.clone(),
        unicast_src_ip: host.address.to_string(),
        unicast_peers: control_planes
            .iter()
            .filter(|cp| cp.name != host.name)
            .map(|cp| cp.address.to_string())
            .collect(),
        virtual_ipaddress: format!("{vip}/{}", if vip.is_ipv4() { 32 } else { 128 }),
    };
    out.render(KEEPALIVED_CONFIG, 0o600, true, &keepalived)?;
    let drop_in = KeepalivedDropIn { interface_script: INTERFACE_SCRIPT.to_string() };
    out.render(KEEPALIVED_DROP_IN, 0o644, false, &drop_in)?;
    let script = KeepalivedInterfaceScript {
        host_address: host.address.to_string(),
        output: INTERFACE_INCLUDE.to_string(),
    };
    out.render(INTERFACE_SCRIPT, 0o755, false, &script)?;
    // haproxy binds the VIP even on hosts that do not hold it right now.
    let key = match vip {
        IpAddr::V4(_) => "net.ipv4.ip_nonlocal_bind",
        IpAddr::V6(_) => "net.ipv6.ip_nonlocal_bind",
    };
    let settings = vec![KeyValue { key: key.to_string(), value: "1".to_string() }];
    out.render(NONLOCAL_BIND_SYSCTL, 0o644, false, &Sysctl { settings })
}

/// A VRRP router id (1–255) derived from the cluster name, so two clusters on one segment are
/// unlikely to collide and the value never changes between renders.
pub fn virtual_router_id(cluster_name: &str) -> u8 {
    let digest = Sha256::digest(cluster_name.as_bytes());
    (digest[0] % 255) + 1
}
