//! The serde types of `kubeforge.dev/v1alpha1` `Cluster`, exactly as written in YAML: field
//! names in camelCase, unknown fields refused, optional fields left `None` (defaults are filled
//! by `validate`, which also checks every value). The JSON Schema printed by `kubeforge schema`
//! is derived from these types, so their doc comments are what editors show.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only apiVersion this release reads.
pub const API_VERSION: &str = "kubeforge.dev/v1alpha1";
/// The only kind this release reads.
pub const KIND: &str = "Cluster";

/// A kubeforge cluster spec (`apiVersion: kubeforge.dev/v1alpha1`, `kind: Cluster`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "kubeforge Cluster (kubeforge.dev/v1alpha1)")]
pub struct ClusterSpec {
    /// Must be `kubeforge.dev/v1alpha1`.
    pub api_version: String,
    /// Must be `Cluster`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Cluster name, a DNS-1123 label (lowercase letters, digits and `-`, at most 63).
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// Kubernetes release `vMAJOR.MINOR.PATCH`; supported minors are v1.31 to v1.34.
    pub kubernetes_version: String,
    /// `host:port` where clients reach the API server. Required with more than one control
    /// plane unless `loadBalancer.mode` is `node-local`. Defaults to `<vip>:6443` with
    /// keepalived-haproxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki: Option<PkiSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<ArtifactsSpec>,
    /// Scheduled etcd snapshots; absent means no scheduled backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// The machines, in the order they are set up.
    pub hosts: Vec<HostSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Pod network CIDR [10.244.0.0/16].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_subnet: Option<String>,
    /// Service network CIDR [10.96.0.0/12].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_subnet: Option<String>,
    /// Cluster DNS domain [cluster.local].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EtcdSpec {
    /// Where etcd runs [stacked].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<EtcdTopologySpec>,
    /// etcd release `vX.Y.Z` [the etcd kubeadm pairs with kubernetesVersion].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdTopologySpec {
    /// etcd runs on every control-plane host.
    Stacked,
    /// etcd runs on its own hosts (role `etcd`).
    External,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// How the API servers are balanced [none with one control plane, external with more].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<LoadBalancerModeSpec>,
    /// Virtual IP held by keepalived; required for keepalived-haproxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancerModeSpec {
    /// keepalived holds `vip` on one control plane; haproxy there balances the API servers.
    KeepalivedHaproxy,
    /// Every node runs a local haproxy in front of the API servers.
    NodeLocal,
    /// A load balancer you run yourself answers at controlPlaneEndpoint.
    External,
    /// No load balancer.
    None,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PkiSpec {
    /// Key type for every key kubeforge creates [ecdsa-p256].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<KeyAlgorithmSpec>,
    /// Lifetime of leaf certificates, a duration like `8760h` [8760h].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_validity: Option<String>,
    /// Lifetime of the CAs, a duration like `87600h` [87600h].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_validity: Option<String>,
    /// Extra API server certificate SANs: IP addresses or DNS names.
    #[serde(default, rename = "extraSANs", skip_serializing_if = "Option::is_none")]
    pub extra_sans: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KeyAlgorithmSpec {
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SshSpec {
    /// Login user [root]; other users must have passwordless sudo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SSH port [22].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Private key file [ssh-agent, then ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa, ~/.ssh/id_rsa].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
    /// known_hosts file kubeforge reads and appends to [<state>/known_hosts].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<String>,
    /// What to do with an unknown host key [accept-new]; a changed key is always refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_policy: Option<HostKeyPolicySpec>,
    /// A jump host every connection goes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bastion: Option<BastionSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicySpec {
    /// Only hosts already in known_hosts are accepted.
    Strict,
    /// Unknown hosts are trusted on first use and recorded.
    AcceptNew,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BastionSpec {
    /// Jump host address: an IP address or DNS name (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Jump host SSH port [22].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Jump host user [ssh.user].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Jump host private key [ssh.identityFile].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArtifactsSpec {
    /// `upstream` (download from the projects' release sites) or `dir:<path>` (an offline
    /// bundle; relative paths are taken from the spec file's folder) [upstream].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// With `upstream`: a base URL serving `<mirror>/<component>/<version>/<release file>`
    /// instead of the projects' release sites (an internal mirror); files are still checked
    /// against the built-in sha256s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupSpec {
    /// Five-field cron expression (minute hour day-of-month month day-of-week), e.g.
    /// `0 */6 * * *`; absent means snapshots are only taken by `kubeforge backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How many snapshots to keep, 1 to 10000 [7].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<u32>,
    /// Absolute directory on the etcd hosts for snapshots [/var/backups/kubeforge].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// What runs scheduled snapshots [systemd-timer].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<BackupRunnerSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BackupRunnerSpec {
    /// A systemd timer on every etcd member snapshots its local member: works while the API
    /// server is down, and leaves a copy on each member.
    SystemdTimer,
    /// One Kubernetes CronJob (kube-system, on control planes) snapshots through the
    /// apiserver's etcd client certificate.
    Cronjob,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostSpec {
    /// DNS-1123 label, unique; becomes the Kubernetes node name.
    pub name: String,
    /// IP address kubeforge connects to and the cluster uses; unique.
    pub address: String,
    /// What the host runs; `etcd` only with the external etcd topology.
    pub roles: Vec<RoleSpec>,
    /// Per-host SSH overrides of `spec.ssh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<HostSshSpec>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RoleSpec {
    ControlPlane,
    Worker,
    Etcd,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostSshSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
}
