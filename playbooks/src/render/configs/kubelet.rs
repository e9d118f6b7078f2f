//! The kubelet on every node: its unit, the kubeadm-named drop-in with the command line, and
//! `/var/lib/kubelet/config.yaml` — anonymous access off, webhook authentication and
//! authorization, no read-only port, a serving certificate signed by the cluster CA, rotation,
//! the RuntimeDefault seccomp profile, a PID limit per pod and strong TLS suites. Unit, drop-in
//! and config are 0600 (CIS 4.1.1, 4.1.9). The node registers under the spec's host name
//! (`--hostname-override`), so a machine whose hostname differs from it needs no renaming.

use kubeforge_templates::contexts::{KubeletConfig, KubeletDropIn, KubeletService};

use super::{
    BIN_DIR, CRI_SOCKET, ConfigRenderError, Ctx, HostOut, MANIFESTS_DIR, TLS_CIPHER_SUITES, flags,
    pki,
};

pub const UNIT: &str = "/etc/systemd/system/kubelet.service";
pub const DROP_IN: &str = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf";
pub const CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
/// The serving certificate the PKI renderer writes (signed by the cluster CA).
pub const SERVING_CERT: &str = "/var/lib/kubelet/pki/kubelet.crt";
pub const SERVING_KEY: &str = "/var/lib/kubelet/pki/kubelet.key";
/// Processes per pod: generous for real workloads, fatal to fork bombs.
pub const POD_PIDS_LIMIT: i64 = 4096;

pub(super) fn add(ctx: Ctx<'_>, out: &mut HostOut<'_>) -> Result<(), ConfigRenderError> {
    let cluster = ctx.cluster();
    let binary = format!("{BIN_DIR}/kubelet");
    out.render(UNIT, 0o600, false, &KubeletService { binary: binary.clone() })?;
    let drop_in = KubeletDropIn {
        binary,
        flags: flags(vec![
            ("config", CONFIG.to_string()),
            // The node's name is the spec's host name, whatever the machine's hostname: it is
            // the name in the kubelet's certificate (system:node:<name>), which NodeRestriction
            // requires to match the Node the kubelet registers and updates.
            ("hostname-override", out.host.name.clone()),
            ("kubeconfig", KUBECONFIG.to_string()),
            ("node-ip", out.host.address.to_string()),
        ]),
    };
    out.render(DROP_IN, 0o600, false, &drop_in)?;
    let config = KubeletConfig {
        client_ca_file: pki("ca.crt"),
        cluster_dns: vec![cluster.network.dns_service_ip().to_string()],
        cluster_domain: cluster.network.cluster_domain.clone(),
        container_runtime_endpoint: format!("unix://{CRI_SOCKET}"),
        static_pod_path: MANIFESTS_DIR.to_string(),
        tls_cert_file: SERVING_CERT.to_string(),
        tls_private_key_file: SERVING_KEY.to_string(),
        tls_cipher_suites: TLS_CIPHER_SUITES.iter().map(|s| s.to_string()).collect(),
        tls_min_version: "VersionTLS12".to_string(),
        pod_pids_limit: POD_PIDS_LIMIT,
        healthz_bind_address: "127.0.0.1".to_string(),
        healthz_port: 10248,
    };
    out.render(CONFIG, 0o600, false, &config)
}
