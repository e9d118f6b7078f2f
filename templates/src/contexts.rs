//! The typed context of every template, one struct per template (nested types are shared). Every
//! field is decided by the caller; templates only lay values out. Lists are rendered in the
//! order given, so callers sort them for deterministic output.

use serde::Serialize;

use crate::TemplateContext;

macro_rules! bind {
    ($ty:ty => $path:literal) => {
        impl TemplateContext for $ty {
            const TEMPLATE: &'static str = $path;
        }
    };
}

/// A `name: value` pair, rendered in the given order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

// ---------------------------------------------------------------- control plane static pods

/// A kubeadm-shaped static Pod for one control-plane component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaticPod {
    /// Pod, container and `component` label name (`kube-apiserver`).
    pub name: String,
    pub annotations: Vec<KeyValue>,
    pub image: String,
    /// argv: the binary, then `--flag=value` sorted by name as kubeadm does.
    pub command: Vec<String>,
    /// Container ports (v1.34+: the named `probe-port`).
    pub ports: Vec<ContainerPort>,
    pub liveness_probe: Option<HttpProbe>,
    pub readiness_probe: Option<HttpProbe>,
    pub startup_probe: Option<HttpProbe>,
    pub cpu_request: String,
    pub memory_request: Option<String>,
    /// Sorted by name; mounts and volumes share the name.
    pub volumes: Vec<HostPathVolume>,
}
bind!(StaticPod => "kubernetes/static-pod.yaml.tera");

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerPort {
    pub name: String,
    pub container_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpProbe {
    /// `None`: the pod IP (kubeadm leaves host empty for wildcard advertise addresses).
    pub host: Option<String>,
    pub path: String,
    /// A port number or a named container port (`probe-port`), written bare.
    pub port: String,
    /// `HTTP` or `HTTPS`.
    pub scheme: String,
    pub initial_delay_seconds: u32,
    pub timeout_seconds: u32,
    pub failure_threshold: u32,
    pub period_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPathVolume {
    pub name: String,
    pub host_path: String,
    /// hostPath `type`: `DirectoryOrCreate`, `FileOrCreate`, `File`, `Directory`.
    pub kind: String,
    pub mount_path: String,
    pub read_only: bool,
}

/// `/etc/kubernetes/audit-policy.yaml`: the policy has no parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditPolicy {}
bind!(AuditPolicy => "kubernetes/audit-policy.yaml.tera");

/// `/etc/kubernetes/encryption-config.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncryptionConfig {
    /// Resources encrypted at rest (`secrets`).
    pub resources: Vec<String>,
    /// secretbox keys (XSalsa20-Poly1305), newest (the one that encrypts) first.
    pub keys: Vec<EncryptionKey>,
}
bind!(EncryptionConfig => "kubernetes/encryption-config.yaml.tera");

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncryptionKey {
    pub name: String,
    /// base64 of the 32-byte key.
    pub secret: String,
}

/// `/etc/kubernetes/authentication-config.yaml` (AuthenticationConfiguration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthenticationConfig {
    /// `apiserver.config.k8s.io/v1beta1` or `/v1`, as the version serves it.
    pub api_version: String,
    /// The only paths anonymous requests may reach.
    pub anonymous_paths: Vec<String>,
}
bind!(AuthenticationConfig => "kubernetes/authentication-config.yaml.tera");

// ---------------------------------------------------------------- etcd

/// `/etc/systemd/system/etcd.service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdService {
    pub binary: String,
    pub user: String,
    pub data_dir: String,
    /// `data_dir` relative to `/var/lib` (systemd's `StateDirectory=`).
    pub state_directory: String,
    /// Files systemd hands to the unprivileged process (`LoadCredential=`), keys stay root-owned.
    pub credentials: Vec<KeyValue>,
    /// `--flag=value`, sorted.
    pub flags: Vec<String>,
}
bind!(EtcdService => "etcd/etcd.service.tera");

/// `/etc/sysusers.d/kubeforge-etcd.conf`: the system user etcd runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdSysusers {
    pub user: String,
    pub home: String,
}
bind!(EtcdSysusers => "etcd/sysusers.conf.tera");

// ---------------------------------------------------------------- kubelet

/// `/etc/systemd/system/kubelet.service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeletService {
    pub binary: String,
}
bind!(KubeletService => "kubelet/kubelet.service.tera");

/// `/etc/systemd/system/kubelet.service.d/10-kubeadm.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeletDropIn {
    pub binary: String,
    /// `--flag=value`, sorted.
    pub flags: Vec<String>,
}
bind!(KubeletDropIn => "kubelet/10-kubeadm.conf.tera");

/// `/var/lib/kubelet/config.yaml` (KubeletConfiguration v1beta1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeletConfig {
    pub client_ca_file: String,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub container_runtime_endpoint: String,
    pub static_pod_path: String,
    pub tls_cert_file: String,
    pub tls_private_key_file: String,
    pub tls_cipher_suites: Vec<String>,
    pub tls_min_version: String,
    pub pod_pids_limit: i64,
    pub healthz_bind_address: String,
    pub healthz_port: u16,
}
bind!(KubeletConfig => "kubelet/config.yaml.tera");

// ---------------------------------------------------------------- node runtime and kernel

/// `/etc/containerd/config.toml` (config version 2, containerd 1.6/1.7; 2.x migrates it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerdConfig {
    pub socket_path: String,
    pub sandbox_image: String,
    pub cni_bin_dir: String,
    pub cni_conf_dir: String,
}
bind!(ContainerdConfig => "node/containerd-config.toml.tera");

/// `/etc/crictl.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crictl {
    pub runtime_endpoint: String,
}
bind!(Crictl => "node/crictl.yaml.tera");

/// A file in `/etc/sysctl.d/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sysctl {
    pub settings: Vec<KeyValue>,
}
bind!(Sysctl => "node/sysctl.conf.tera");

/// A file in `/etc/modules-load.d/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModulesLoad {
    pub modules: Vec<String>,
}
bind!(ModulesLoad => "node/modules-load.conf.tera");

// ---------------------------------------------------------------- load balancer

/// `/etc/haproxy/haproxy.cfg`: TCP pass-through to every kube-apiserver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Haproxy {
    /// `ADDRESS:PORT` haproxy listens on (IPv6 in brackets is not valid here: `ipv6@` handled by caller).
    pub bind: String,
    pub health_path: String,
    pub backends: Vec<HaproxyBackend>,
}
bind!(Haproxy => "loadbalancer/haproxy.cfg.tera");

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaproxyBackend {
    pub name: String,
    /// `ADDRESS:PORT`.
    pub address: String,
}

/// `/etc/keepalived/keepalived.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Keepalived {
    pub router_id: String,
    /// File defining `$KUBEFORGE_INTERFACE`, written at service start.
    pub interface_include: String,
    pub virtual_router_id: u8,
    pub priority: u8,
    pub auth_pass: String,
    pub unicast_src_ip: String,
    pub unicast_peers: Vec<String>,
    /// `VIP/PREFIX`.
    pub virtual_ipaddress: String,
}
bind!(Keepalived => "loadbalancer/keepalived.conf.tera");

/// `/etc/systemd/system/keepalived.service.d/10-kubeforge.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeepalivedDropIn {
    pub interface_script: String,
}
bind!(KeepalivedDropIn => "loadbalancer/keepalived-kubeforge.conf.tera");

/// `/usr/local/lib/kubeforge/keepalived-interface`: finds the NIC holding the host's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeepalivedInterfaceScript {
    pub host_address: String,
    pub output: String,
}
bind!(KeepalivedInterfaceScript => "loadbalancer/keepalived-interface.sh.tera");

// ---------------------------------------------------------------- scheduled backups

/// `/etc/kubernetes/addons/etcd-backup.yaml`: a CronJob in kube-system on control planes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdBackupCronJob {
    pub schedule: String,
    pub image: String,
    /// argv of `kubeforge backup run …`.
    pub command: Vec<String>,
    pub volumes: Vec<HostPathVolume>,
}
bind!(EtcdBackupCronJob => "backup/etcd-backup.yaml.tera");

/// `/etc/systemd/system/kubeforge-backup.service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupService {
    /// argv of `kubeforge backup run …`, already systemd-escaped.
    pub command: Vec<String>,
}
bind!(BackupService => "backup/kubeforge-backup.service.tera");

/// `/etc/systemd/system/kubeforge-backup.timer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupTimer {
    /// The cron schedule, for the reader.
    pub schedule: String,
    /// systemd `OnCalendar=` expressions equivalent to the cron schedule.
    pub on_calendar: Vec<String>,
}
bind!(BackupTimer => "backup/kubeforge-backup.timer.tera");

// ---------------------------------------------------------------- cluster add-ons

/// `/etc/kubernetes/addons/coredns.yaml`: kubeadm's CoreDNS objects, hardened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoreDns {
    /// `registry.k8s.io/coredns/coredns:<tag>`.
    pub image: String,
    pub replicas: u32,
    /// The `kubernetes` plugin's zone (`spec.network.clusterDomain`).
    pub cluster_domain: String,
    /// The `kube-dns` Service's clusterIP (the kubelets' `clusterDNS`).
    pub cluster_ip: String,
    /// uid/gid CoreDNS runs as (the distroless `nonroot` user).
    pub run_as_user: u32,
}
bind!(CoreDns => "addons/coredns.yaml.tera");

/// `/etc/kubernetes/addons/kube-proxy.yaml`: one ConfigMap + DaemonSet per variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeProxy {
    /// `registry.k8s.io/kube-proxy:<kubernetesVersion>`.
    pub image: String,
    /// `clusterCIDR`: the pod subnet.
    pub cluster_cidr: String,
    /// `iptables`.
    pub mode: String,
    /// `127.0.0.1:10249` (CIS 4.3.1).
    pub metrics_bind_address: String,
    pub variants: Vec<KubeProxyVariant>,
}
bind!(KubeProxy => "addons/kube-proxy.yaml.tera");

/// One kube-proxy DaemonSet with its own ConfigMap (its kubeconfig's server differs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeProxyVariant {
    /// DaemonSet, ConfigMap and `k8s-app` label value.
    pub name: String,
    /// The kubeconfig's `server:` URL.
    pub server: String,
    /// Node affinity on `node-role.kubernetes.io/control-plane`: `Exists`, `DoesNotExist`, or
    /// `None` for every node.
    pub control_plane_operator: Option<String>,
}

/// `/etc/kubernetes/addons/cni-flannel.yaml`: flannel with the VXLAN backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flannel {
    pub flannel_image: String,
    pub cni_plugin_image: String,
    /// The pod subnet; `ipv6` picks flannel's IPv6-only keys.
    pub pod_subnet: String,
    pub ipv6: bool,
    pub cni_bin_dir: String,
    pub cni_conf_dir: String,
    /// Where the init containers copy flannel's plugin and CNI config.
    pub cni_plugin_target: String,
    pub cni_conf_target: String,
}
bind!(Flannel => "addons/cni-flannel.yaml.tera");
