//! The validated cluster model: what every later stage (PKI inputs, rendering, facts, planning)
//! reads. It is built only by `validate` from a parsed spec, so holding a `Cluster` means every
//! check passed and every default is filled in. It holds no YAML positions and does no I/O.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use kubeforge_pki::KeyAlgorithm;

/// A validated cluster: defaults applied, every cross-field rule checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// `metadata.name`, a DNS-1123 label.
    pub name: String,
    pub kubernetes_version: KubeVersion,
    /// Where clients reach the API; `None` for a single control plane without a load balancer,
    /// and for node-local mode without an explicit endpoint (each node's local haproxy serves).
    /// With keepalived-haproxy and no explicit endpoint it is `<vip>:6443`.
    pub control_plane_endpoint: Option<Endpoint>,
    pub network: Network,
    pub etcd: Etcd,
    pub load_balancer: LoadBalancer,
    pub pki: Pki,
    /// Cluster-wide SSH defaults; each host carries its resolved settings too.
    pub ssh: Ssh,
    pub artifacts: ArtifactSource,
    /// With `upstream`: the mirror base URL (`http://` or `https://`) downloads come from.
    pub artifact_mirror: Option<String>,
    pub backup: Option<Backup>,
    /// In spec order; names and addresses are unique.
    pub hosts: Vec<Host>,
}

impl Cluster {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
    pub fn control_planes(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.is_control_plane())
    }
    pub fn workers(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.roles.contains(&Role::Worker) && !h.is_control_plane())
    }
    /// The etcd members: control planes when stacked, etcd hosts when external.
    pub fn etcd_members(&self) -> impl Iterator<Item = &Host> {
        let topology = self.etcd.topology;
        self.hosts.iter().filter(move |h| match topology {
            EtcdTopology::Stacked => h.is_control_plane(),
            EtcdTopology::External => h.roles.contains(&Role::Etcd),
        })
    }
    /// Hosts that run a kubelet (every host except etcd-only hosts).
    pub fn kubelet_hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.runs_kubelet())
    }
    /// The `https://host:port` every kubeconfig outside the control plane uses.
    pub fn api_server_url(&self) -> String {
        match &self.control_plane_endpoint {
            Some(ep) => format!("https://{ep}"),
            None => {
                let first = self.control_planes().next().expect("validated: one control plane");
                format!("https://{}", Endpoint::ip(first.address, 6443))
            }
        }
    }
}

/// A Kubernetes release `vMAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// `host:port`; IPv6 hosts print in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: EndpointHost,
    pub port: u16,
}

impl Endpoint {
    pub fn ip(ip: IpAddr, port: u16) -> Self {
        Endpoint { host: EndpointHost::Ip(ip), port }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            EndpointHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            EndpointHost::Ip(ip) => write!(f, "{ip}:{}", self.port),
            EndpointHost::Dns(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointHost {
    Ip(IpAddr),
    Dns(String),
}

/// An IP network in CIDR notation with its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }
    fn mask(&self) -> u128 {
        let (_, width) = Self::bits(self.network);
        if self.prefix == 0 {
            0
        } else {
            (!0u128 << (width - self.prefix))
                & (if width == 32 { u32::MAX as u128 } else { u128::MAX })
        }
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.network.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let (net, _) = Self::bits(self.network);
        let (addr, _) = Self::bits(ip);
        net & self.mask() == addr & self.mask()
    }
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
    /// The `n`th address of the network (the first service IP is `nth(1)`), if it fits.
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        let (net, width) = Self::bits(self.network);
        let size_bits = width - self.prefix;
        if size_bits < 128 && n >= (1u128 << size_bits) {
            return None;
        }
        let v = net + n;
        Some(match self.network {
            IpAddr::V4(_) => IpAddr::V4((v as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(v.into()),
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub pod_subnet: Cidr,
    pub service_subnet: Cidr,
    pub cluster_domain: String,
}

impl Network {
    /// The kubernetes.default Service IP: the first address of the service subnet.
    pub fn api_service_ip(&self) -> IpAddr {
        self.service_subnet.nth(1).expect("validated: service subnet has room")
    }
    /// The cluster DNS Service IP, as kubeadm picks it: the tenth address.
    pub fn dns_service_ip(&self) -> IpAddr {
        self.service_subnet.nth(10).expect("validated: service subnet has room")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EtcdTopology {
    Stacked,
    External,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Etcd {
    pub topology: EtcdTopology,
    /// `vX.Y.Z`, resolved from the Kubernetes version when the spec leaves it out.
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoadBalancerMode {
    KeepalivedHaproxy,
    NodeLocal,
    External,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancer {
    pub mode: LoadBalancerMode,
    /// Set exactly when the mode is keepalived-haproxy.
    pub vip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pki {
    pub key_algorithm: KeyAlgorithm,
    pub certificate_validity: Duration,
    pub ca_validity: Duration,
    /// Extra apiserver SANs: IPs and DNS names, as written.
    pub extra_sans: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    Strict,
    AcceptNew,
}

/// SSH settings; on a host these are the cluster defaults with its overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Ssh {
    pub user: String,
    pub port: u16,
    /// `None`: ssh-agent, then the usual key files under `~/.ssh`.
    pub identity_file: Option<PathBuf>,
    /// `None`: `<state>/known_hosts`.
    pub known_hosts_file: Option<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    pub bastion: Option<Bastion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bastion {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArtifactSource {
    Upstream,
    /// An offline bundle directory, as written in the spec (relative to the spec file's folder).
    Dir(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// A five-field cron expression, validated.
    pub schedule: Option<String>,
    pub retention: u32,
    pub destination: PathBuf,
    /// What runs the scheduled snapshots (one of them, never both: no double snapshots).
    pub runner: BackupRunner,
}

/// What runs scheduled snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackupRunner {
    /// `kubeforge-backup.timer` on every etcd member.
    #[default]
    SystemdTimer,
    /// The `etcd-backup` CronJob in kube-system.
    CronJob,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    ControlPlane,
    Worker,
    Etcd,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
            Role::Etcd => "etcd",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// DNS-1123 label; the node name.
    pub name: String,
    pub address: IpAddr,
    pub roles: BTreeSet<Role>,
    pub ssh: Ssh,
}

impl Host {
    pub fn is_control_plane(&self) -> bool {
        self.roles.contains(&Role::ControlPlane)
    }
    pub fn is_etcd_only(&self) -> bool {
        self.roles.len() == 1 && self.roles.contains(&Role::Etcd)
    }
    pub fn runs_kubelet(&self) -> bool {
        !self.is_etcd_only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        let (ip, p) = s.split_once('/').unwrap();
        Cidr { network: ip.parse().unwrap(), prefix: p.parse().unwrap() }
    }

    #[test]
    fn cidr_contains_and_overlaps() {
        let pods = cidr("10.244.0.0/16");
        assert!(pods.contains("10.244.3.4".parse().unwrap()));
        assert!(!pods.contains("10.245.0.1".parse().unwrap()));
        assert!(!pods.contains("::1".parse().unwrap()));
        assert!(pods.overlaps(&cidr("10.0.0.0/8")));
        assert!(!pods.overlaps(&cidr("10.96.0.0/12")));
        assert!(cidr("0.0.0.0/0").contains("192.0.2.1".parse().unwrap()));
        assert!(cidr("fd00::/8").contains("fd12::1".parse().unwrap()));
    }

    #[test]
    fn cidr_nth_gives_service_ips() {
        let svc = cidr("10.96.0.0/12");
        assert_eq!(svc.nth(1), Some("10.96.0.1".parse().unwrap()));
        assert_eq!(svc.nth(10), Some("10.96.0.10".parse().unwrap()));
        assert_eq!(cidr("10.0.0.0/31").nth(2), None);
        assert_eq!(cidr("fd00::/112").nth(1), Some("fd00::1".parse().unwrap()));
    }
}
