//! Configs and manifests for each host, rendered from `kubeforge-templates`: this module decides
//! every value (flags, paths, modes, who gets what) from the validated `Cluster` and the cluster
//! secrets, builds the typed template contexts and adds the results to the render tree. One
//! submodule per family of files; certificates and kubeconfigs are `render::pki`'s, and nothing
//! here touches disk or the network.
//!
//! Which host receives which family:
//! - control planes: kube-apiserver / kube-controller-manager / kube-scheduler static pods with
//!   their audit, encryption and authentication configs; keepalived + haproxy in
//!   `keepalived-haproxy` mode; the etcd backup CronJob when a schedule is set;
//! - etcd members (control planes when stacked, etcd hosts when external): the etcd unit, its
//!   system user and the backup service + timer when a schedule is set;
//! - every kubelet host: kubelet unit, drop-in and config, containerd, crictl, sysctl, modules;
//!   non-control-plane ones also get the node-local haproxy in `node-local` mode;
//! - etcd-only hosts: etcd files plus the kernel settings.

pub mod addons;
pub mod backup;
mod control_plane;
pub mod etcd;
pub mod kubelet;
pub(crate) mod loadbalancer;
mod node;

use std::net::IpAddr;

use kubeforge_templates::{TemplateContext, TemplateError};

use super::{DuplicateFile, NodeFile, RenderInput, RenderTree};
use crate::model::{Cluster, Host, KubeVersion, LoadBalancerMode};
use crate::versions::{self, Release};

pub use backup::{BACKUP_BINARY, backup_command, cron_to_on_calendar};
pub use loadbalancer::kubeconfig_server;

pub use crate::node::{
    APISERVER_PORT, BIN_DIR, CRI_SOCKET, ETCD_CLIENT_PORT, ETCD_PEER_PORT, MANIFESTS_DIR, PKI_DIR,
};

/// Strong TLS suites allowed by CIS 1.2.29 and 4.2.12 alike (TLS 1.3 suites are not
/// configurable in Go and always on).
pub const TLS_CIPHER_SUITES: [&str; 6] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
];

/// Why configs could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ConfigRenderError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Duplicate(#[from] DuplicateFile),
    #[error(
        "Kubernetes {version} is not supported by this kubeforge (supported: {supported}); \
         set spec.kubernetesVersion to a supported release"
    )]
    UnsupportedVersion { version: KubeVersion, supported: String },
    #[error("etcd version {0:?} is not vMAJOR.MINOR.PATCH; set spec.etcd.version")]
    EtcdVersion(String),
    #[error("backup schedule {schedule:?} cannot be turned into a systemd timer: {reason}")]
    Schedule { schedule: String, reason: String },
    #[error(
        "the cluster secrets hold no encryption key; restore <state>/secrets.json from a backup"
    )]
    NoEncryptionKey,
    #[error("loadBalancer.mode keepalived-haproxy needs loadBalancer.vip and controlPlaneEndpoint")]
    MissingVip,
    #[error("internal error: {0}")]
    Internal(String),
}

/// Everything the families share: the input and the version data, resolved once.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub input: RenderInput<'a>,
    pub release: &'static Release,
}

impl<'a> Ctx<'a> {
    pub fn cluster(&self) -> &'a Cluster {
        self.input.cluster
    }
    pub fn version(&self) -> KubeVersion {
        self.input.cluster.kubernetes_version
    }
}

/// Adds every config and manifest of every host to `tree`.
pub fn add_files(input: RenderInput<'_>, tree: &mut RenderTree) -> Result<(), ConfigRenderError> {
    let cluster = input.cluster;
    let release = versions::release(cluster.kubernetes_version).ok_or_else(|| {
        ConfigRenderError::UnsupportedVersion {
            version: cluster.kubernetes_version,
            supported: versions::supported_range(),
        }
    })?;
    let ctx = Ctx { input, release };
    for host in &cluster.hosts {
        let mut out = HostOut { host, files: Vec::new() };
        node::add(ctx, &mut out)?;
        if host.runs_kubelet() {
            kubelet::add(ctx, &mut out)?;
        }
        if host.is_control_plane() {
            control_plane::add(ctx, &mut out)?;
        }
        if cluster.etcd_members().any(|m| m.name == host.name) {
            etcd::add(ctx, &mut out)?;
        }
        loadbalancer::add(ctx, &mut out)?;
        backup::add(ctx, &mut out)?;
        addons::add(ctx, &mut out)?;
        for (path, file) in out.files {
            tree.insert(&host.name, &path, file)?;
        }
    }
    Ok(())
}

/// The files one host receives from this module, in the order the families add them.
pub(crate) struct HostOut<'a> {
    pub host: &'a Host,
    files: Vec<(String, NodeFile)>,
}

impl HostOut<'_> {
    /// Renders `context` and adds it at `path` with `mode`.
    pub fn render<C: TemplateContext>(
        &mut self,
        path: &str,
        mode: u32,
        secret: bool,
        context: &C,
    ) -> Result<(), ConfigRenderError> {
        let text = kubeforge_templates::render(context)?;
        self.files.push((path.to_string(), NodeFile { contents: text.into_bytes(), mode, secret }));
        Ok(())
    }
}

/// `https://ADDRESS:PORT` with IPv6 in brackets.
pub(crate) fn url(scheme: &str, ip: IpAddr, port: u16) -> String {
    format!("{scheme}://{}", host_port(ip, port))
}

/// `ADDRESS:PORT` with IPv6 in brackets.
pub(crate) fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    }
}

/// The loopback address of the host's address family.
pub(crate) fn loopback(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    }
}

/// `/etc/kubernetes/pki/NAME`.
pub(crate) fn pki(name: &str) -> String {
    format!("{PKI_DIR}/{name}")
}

/// Whether keepalived-haproxy puts haproxy on the apiserver's own port on control planes, in
/// which case the apiserver binds only the host address and haproxy only the VIP.
pub(crate) fn haproxy_shares_apiserver_port(cluster: &Cluster) -> bool {
    cluster.load_balancer.mode == LoadBalancerMode::KeepalivedHaproxy
        && cluster.control_plane_endpoint.as_ref().is_some_and(|ep| ep.port == APISERVER_PORT)
}

/// Sorted `--name=value` flags from (name, value) pairs, as kubeadm orders them.
pub(crate) fn flags(mut pairs: Vec<(&str, String)>) -> Vec<String> {
    pairs.sort();
    pairs.into_iter().map(|(name, value)| format!("--{name}={value}")).collect()
}

#[cfg(test)]
pub(crate) mod test_cluster;

#[cfg(test)]
mod tests;
