//! Control-plane static pods (kube-apiserver, kube-controller-manager, kube-scheduler) with
//! kubeadm's flags, probes, resources and mounts, plus the hardening kubeadm lacks: profiling off,
//! audit logging at CIS minimums, Secrets encrypted at rest, kubelet serving certificates
//! verified, no extended service-account tokens, strong TLS suites, and anonymous access limited
//! to the health endpoints where the version supports it.

use kubeforge_templates::contexts::{
    AuditPolicy, AuthenticationConfig, ContainerPort, EncryptionConfig, EncryptionKey,
    HostPathVolume, HttpProbe, KeyValue, StaticPod,
};

use super::{
    APISERVER_PORT, ConfigRenderError, Ctx, HostOut, MANIFESTS_DIR, TLS_CIPHER_SUITES, flags,
    haproxy_shares_apiserver_port, host_port, pki, url,
};
use crate::model::{EtcdTopology, Host};

pub const AUDIT_POLICY: &str = "/etc/kubernetes/audit-policy.yaml";
pub const ENCRYPTION_CONFIG: &str = "/etc/kubernetes/encryption-config.yaml";
pub const AUTHENTICATION_CONFIG: &str = "/etc/kubernetes/authentication-config.yaml";
pub const AUDIT_LOG_DIR: &str = "/var/log/kubernetes/audit";
const CONTROLLER_MANAGER_CONF: &str = "/etc/kubernetes/controller-manager.conf";
const SCHEDULER_CONF: &str = "/etc/kubernetes/scheduler.conf";
const IMAGE_REPOSITORY: &str = "registry.k8s.io";
/// kubeadm's named probe port, from v1.34.
const PROBE_PORT_NAME: &str = "probe-port";
/// Paths anonymous requests may reach: what kubelet probes and load-balancer checks call.
pub const ANONYMOUS_PATHS: [&str; 3] = ["/healthz", "/livez", "/readyz"];

pub(super) fn add(ctx: Ctx<'_>, out: &mut HostOut<'_>) -> Result<(), ConfigRenderError> {
    let host = out.host;
    out.render(&manifest("kube-apiserver"), 0o600, false, &apiserver(ctx, host))?;
    out.render(&manifest("kube-controller-manager"), 0o600, false, &controller_manager(ctx))?;
    out.render(&manifest("kube-scheduler"), 0o600, false, &scheduler(ctx))?;
    out.render(AUDIT_POLICY, 0o600, false, &AuditPolicy {})?;
    out.render(ENCRYPTION_CONFIG, 0o600, true, &encryption_config(ctx)?)?;
    if anonymous_endpoints_configurable(ctx) {
        let config = AuthenticationConfig {
            api_version: "apiserver.config.k8s.io/v1beta1".to_string(),
            anonymous_paths: ANONYMOUS_PATHS.iter().map(|p| p.to_string()).collect(),
        };
        out.render(AUTHENTICATION_CONFIG, 0o600, false, &config)?;
    }
    Ok(())
}

fn manifest(name: &str) -> String {
    format!("{MANIFESTS_DIR}/{name}.yaml")
}

/// Anonymous access per path (AuthenticationConfiguration `anonymous.conditions`) is beta and on
/// by default from v1.32 (alpha, off, in v1.31: there the apiserver keeps its default).
fn anonymous_endpoints_configurable(ctx: Ctx<'_>) -> bool {
    ctx.version().minor >= 32
}

/// v1.34 moved probes to a named container port.
fn named_probe_port(ctx: Ctx<'_>) -> bool {
    ctx.version().minor >= 34
}

fn image(ctx: Ctx<'_>, component: &str) -> String {
    format!("{IMAGE_REPOSITORY}/{component}:{}", ctx.version())
}

/// kubeadm's probe timings (staticpod/utils.go).
fn probe(
    kind: ProbeKind,
    host: Option<String>,
    path: &str,
    port: String,
    scheme: &str,
) -> HttpProbe {
    let (initial_delay_seconds, failure_threshold, period_seconds) = match kind {
        ProbeKind::Liveness => (10, 8, 10),
        ProbeKind::Readiness => (0, 3, 1),
        ProbeKind::Startup => (10, 24, 10),
    };
    HttpProbe {
        host,
        path: path.to_string(),
        port,
        scheme: scheme.to_string(),
        initial_delay_seconds,
        timeout_seconds: 15,
        failure_threshold,
        period_seconds,
    }
}

#[derive(Clone, Copy)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

fn probe_port(ctx: Ctx<'_>, port: u16) -> (String, Vec<ContainerPort>) {
    if named_probe_port(ctx) {
        let ports = vec![ContainerPort { name: PROBE_PORT_NAME.to_string(), container_port: port }];
        (PROBE_PORT_NAME.to_string(), ports)
    } else {
        (port.to_string(), Vec::new())
    }
}

fn volume(name: &str, path: &str, kind: &str, read_only: bool) -> HostPathVolume {
    HostPathVolume {
        name: name.to_string(),
        host_path: path.to_string(),
        kind: kind.to_string(),
        mount_path: path.to_string(),
        read_only,
    }
}

/// The CA bundle directories kubeadm mounts on Debian-family hosts.
fn ca_volumes() -> Vec<HostPathVolume> {
    vec![
        volume("ca-certs", "/etc/ssl/certs", "DirectoryOrCreate", true),
        volume("etc-ca-certificates", "/etc/ca-certificates", "DirectoryOrCreate", true),
        volume("k8s-certs", super::PKI_DIR, "DirectoryOrCreate", true),
        volume(
            "usr-local-share-ca-certificates",
            "/usr/local/share/ca-certificates",
            "DirectoryOrCreate",
            true,
        ),
        volume(
            "usr-share-ca-certificates",
            "/usr/share/ca-certificates",
            "DirectoryOrCreate",
            true,
        ),
    ]
}

fn sorted(mut volumes: Vec<HostPathVolume>) -> Vec<HostPathVolume> {
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    volumes
}

/// `--etcd-servers`: every member; when stacked, the local member first over loopback.
pub(crate) fn etcd_servers(ctx: Ctx<'_>, host: &Host) -> String {
    let cluster = ctx.cluster();
    let mut urls = Vec::new();
    let stacked = cluster.etcd.topology == EtcdTopology::Stacked;
    if stacked {
        urls.push(url("https", super::loopback(host.address), super::ETCD_CLIENT_PORT));
    }
    for member in cluster.etcd_members() {
        if stacked && member.name == host.name {
            continue;
        }
        urls.push(url("https", member.address, super::ETCD_CLIENT_PORT));
    }
    urls.join(",")
}

fn apiserver(ctx: Ctx<'_>, host: &Host) -> StaticPod {
    let cluster = ctx.cluster();
    let advertise = host.address.to_string();
    let mut pairs = vec![
        ("advertise-address", advertise.clone()),
        ("allow-privileged", "true".to_string()),
        ("audit-log-maxage", "30".to_string()),
        ("audit-log-maxbackup", "10".to_string()),
        ("audit-log-maxsize", "100".to_string()),
        ("audit-log-path", format!("{AUDIT_LOG_DIR}/audit.log")),
        ("audit-policy-file", AUDIT_POLICY.to_string()),
        ("authorization-mode", "Node,RBAC".to_string()),
        ("client-ca-file", pki("ca.crt")),
        ("enable-admission-plugins", "DenyServiceExternalIPs,NodeRestriction".to_string()),
        ("enable-bootstrap-token-auth", "true".to_string()),
        ("encryption-provider-config", ENCRYPTION_CONFIG.to_string()),
        ("etcd-cafile", pki("etcd/ca.crt")),
        ("etcd-certfile", pki("apiserver-etcd-client.crt")),
        ("etcd-keyfile", pki("apiserver-etcd-client.key")),
        ("etcd-servers", etcd_servers(ctx, host)),
        ("kubelet-certificate-authority", pki("ca.crt")),
        ("kubelet-client-certificate", pki("apiserver-kubelet-client.crt")),
        ("kubelet-client-key", pki("apiserver-kubelet-client.key")),
        ("kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname".to_string()),
        ("profiling", "false".to_string()),
        ("proxy-client-cert-file", pki("front-proxy-client.crt")),
        ("proxy-client-key-file", pki("front-proxy-client.key")),
        ("requestheader-allowed-names", "front-proxy-client".to_string()),
        ("requestheader-client-ca-file", pki("front-proxy-ca.crt")),
        ("requestheader-extra-headers-prefix", "X-Remote-Extra-".to_string()),
        ("requestheader-group-headers", "X-Remote-Group".to_string()),
        ("requestheader-username-headers", "X-Remote-User".to_string()),
        ("secure-port", APISERVER_PORT.to_string()),
        ("service-account-extend-token-expiration", "false".to_string()),
        (
            "service-account-issuer",
            format!("https://kubernetes.default.svc.{}", cluster.network.cluster_domain),
        ),
        ("service-account-key-file", pki("sa.pub")),
        ("service-account-lookup", "true".to_string()),
        ("service-account-signing-key-file", pki("sa.key")),
        ("service-cluster-ip-range", cluster.network.service_subnet.to_string()),
        ("tls-cert-file", pki("apiserver.crt")),
        ("tls-cipher-suites", TLS_CIPHER_SUITES.join(",")),
        ("tls-min-version", "VersionTLS12".to_string()),
        ("tls-private-key-file", pki("apiserver.key")),
    ];
    let mut volumes = ca_volumes();
    volumes.push(volume("audit-log", AUDIT_LOG_DIR, "DirectoryOrCreate", false));
    volumes.push(volume("audit-policy", AUDIT_POLICY, "File", true));
    volumes.push(volume("encryption-config", ENCRYPTION_CONFIG, "File", true));
    if anonymous_endpoints_configurable(ctx) {
        pairs.push(("authentication-config", AUTHENTICATION_CONFIG.to_string()));
        volumes.push(volume("authentication-config", AUTHENTICATION_CONFIG, "File", true));
    }
    if haproxy_shares_apiserver_port(cluster) {
        // haproxy holds VIP:6443 on this host, so the apiserver must not take 0.0.0.0:6443.
        pairs.push(("bind-address", advertise.clone()));
    }
    let mut command = vec!["kube-apiserver".to_string()];
    command.extend(flags(pairs));
    let (port, ports) = probe_port(ctx, APISERVER_PORT);
    let probe_host = Some(advertise);
    StaticPod {
        name: "kube-apiserver".to_string(),
        annotations: vec![KeyValue {
            key: "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint".to_string(),
            value: host_port(host.address, APISERVER_PORT),
        }],
        image: image(ctx, "kube-apiserver"),
        command,
        ports,
        liveness_probe: Some(probe(
            ProbeKind::Liveness,
            probe_host.clone(),
            "/livez",
            port.clone(),
            "HTTPS",
        )),
        readiness_probe: Some(probe(
            ProbeKind::Readiness,
            probe_host.clone(),
            "/readyz",
            port.clone(),
            "HTTPS",
        )),
        startup_probe: Some(probe(ProbeKind::Startup, probe_host, "/livez", port, "HTTPS")),
        cpu_request: "250m".to_string(),
        memory_request: None,
        volumes: sorted(volumes),
    }
}

fn controller_manager(ctx: Ctx<'_>) -> StaticPod {
    let cluster = ctx.cluster();
    let pairs = vec![
        ("allocate-node-cidrs", "true".to_string()),
        ("authentication-kubeconfig", CONTROLLER_MANAGER_CONF.to_string()),
        ("authorization-kubeconfig", CONTROLLER_MANAGER_CONF.to_string()),
        ("bind-address", "127.0.0.1".to_string()),
        ("client-ca-file", pki("ca.crt")),
        ("cluster-cidr", cluster.network.pod_subnet.to_string()),
        ("cluster-name", cluster.name.clone()),
        ("cluster-signing-cert-file", pki("ca.crt")),
        ("cluster-signing-key-file", pki("ca.key")),
        ("controllers", "*,bootstrapsigner,tokencleaner".to_string()),
        ("kubeconfig", CONTROLLER_MANAGER_CONF.to_string()),
        ("leader-elect", "true".to_string()),
        ("profiling", "false".to_string()),
        ("requestheader-client-ca-file", pki("front-proxy-ca.crt")),
        ("root-ca-file", pki("ca.crt")),
        ("service-account-private-key-file", pki("sa.key")),
        ("service-cluster-ip-range", cluster.network.service_subnet.to_string()),
        ("terminated-pod-gc-threshold", "1000".to_string()),
        ("tls-cipher-suites", TLS_CIPHER_SUITES.join(",")),
        ("tls-min-version", "VersionTLS12".to_string()),
        ("use-service-account-credentials", "true".to_string()),
    ];
    let mut command = vec!["kube-controller-manager".to_string()];
    command.extend(flags(pairs));
    let mut volumes = ca_volumes();
    volumes.push(volume(
        "flexvolume-dir",
        "/usr/libexec/kubernetes/kubelet-plugins/volume/exec",
        "DirectoryOrCreate",
        false,
    ));
    volumes.push(volume("kubeconfig", CONTROLLER_MANAGER_CONF, "FileOrCreate", true));
    local_component_pod(ctx, "kube-controller-manager", command, 10257, "200m", volumes)
}

fn scheduler(ctx: Ctx<'_>) -> StaticPod {
    let pairs = vec![
        ("authentication-kubeconfig", SCHEDULER_CONF.to_string()),
        ("authorization-kubeconfig", SCHEDULER_CONF.to_string()),
        ("bind-address", "127.0.0.1".to_string()),
        ("kubeconfig", SCHEDULER_CONF.to_string()),
        ("leader-elect", "true".to_string()),
        ("profiling", "false".to_string()),
        ("tls-cipher-suites", TLS_CIPHER_SUITES.join(",")),
        ("tls-min-version", "VersionTLS12".to_string()),
    ];
    let mut command = vec!["kube-scheduler".to_string()];
    command.extend(flags(pairs));
    let volumes = vec![volume("kubeconfig", SCHEDULER_CONF, "FileOrCreate", true)];
    local_component_pod(ctx, "kube-scheduler", command, 10259, "100m", volumes)
}

/// kube-controller-manager and kube-scheduler: serving only on loopback (`secure_port`), probed
/// there over HTTPS on `/healthz`, as kubeadm writes them.
fn local_component_pod(
    ctx: Ctx<'_>,
    name: &str,
    command: Vec<String>,
    secure_port: u16,
    cpu_request: &str,
    volumes: Vec<HostPathVolume>,
) -> StaticPod {
    let (port, ports) = probe_port(ctx, secure_port);
    let local = Some("127.0.0.1".to_string());
    StaticPod {
        name: name.to_string(),
        annotations: Vec::new(),
        image: image(ctx, name),
        command,
        ports,
        liveness_probe: Some(probe(
            ProbeKind::Liveness,
            local.clone(),
            "/healthz",
            port.clone(),
            "HTTPS",
        )),
        readiness_probe: None,
        startup_probe: Some(probe(ProbeKind::Startup, local, "/healthz", port, "HTTPS")),
        cpu_request: cpu_request.to_string(),
        memory_request: None,
        volumes: sorted(volumes),
    }
}

fn encryption_config(ctx: Ctx<'_>) -> Result<EncryptionConfig, ConfigRenderError> {
    let keys: Vec<EncryptionKey> = ctx
        .input
        .secrets
        .encryption_keys
        .iter()
        .map(|k| EncryptionKey { name: k.name.clone(), secret: k.secret_base64() })
        .collect();
    if keys.is_empty() {
        return Err(ConfigRenderError::NoEncryptionKey);
    }
    Ok(EncryptionConfig { resources: vec!["secrets".to_string()], keys })
}
