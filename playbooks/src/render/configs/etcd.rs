//! The etcd member unit: a systemd service running etcd as the unprivileged `etcd` user with its
//! data in `/var/lib/etcd` (0700, created by systemd), mutual TLS for clients and peers (no
//! auto-TLS) and metrics on localhost only. The initial-cluster settings are not in the unit: they
//! differ between a new cluster and a later join, so the etcd phase writes them into a bootstrap
//! environment file ([`BOOTSTRAP_ENV`], [`bootstrap_env`]) before a member's first start. The TLS files
//! stay root-owned 0600 under `/etc/kubernetes/pki/etcd`; systemd hands the service a private
//! copy (`LoadCredential=`), so neither ownership nor modes have to be loosened.

use kubeforge_templates::contexts::{EtcdService, EtcdSysusers, KeyValue};

use super::{
    BIN_DIR, ConfigRenderError, Ctx, ETCD_CLIENT_PORT, ETCD_PEER_PORT, HostOut, TLS_CIPHER_SUITES,
    flags, loopback, pki, url,
};

pub const UNIT: &str = "/etc/systemd/system/etcd.service";
pub const SYSUSERS: &str = "/etc/sysusers.d/kubeforge-etcd.conf";
pub const USER: &str = "etcd";
pub const DATA_DIR: &str = "/var/lib/etcd";
pub const METRICS_PORT: u16 = 2381;
/// The environment file the unit reads the `ETCD_INITIAL_*` settings from (named in the
/// unit template, `templates/files/etcd/etcd.service.tera`).
pub const BOOTSTRAP_ENV: &str = "/etc/kubeforge/etcd-bootstrap.env";
/// Where etcd keeps its state once it has started; its existence means the initial-cluster
/// settings no longer matter.
pub const MEMBER_DIR: &str = "/var/lib/etcd/member";

/// Whether a member starts a new cluster or joins an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    New,
    Existing,
}

/// The bootstrap environment file for a member's first start: `initial_cluster` as
/// `name=peer-url` pairs (every member, this one included), the cluster state and the token
/// (the cluster name, so two clusters' members never mix).
pub fn bootstrap_env(
    token: &str,
    initial_cluster: &[(String, String)],
    state: InitialState,
) -> String {
    let members: Vec<String> = initial_cluster.iter().map(|(n, u)| format!("{n}={u}")).collect();
    let state = match state {
        InitialState::New => "new",
        InitialState::Existing => "existing",
    };
    format!(
        "# Written by kubeforge before this etcd member first started. etcd reads these only while\n\
         # /var/lib/etcd holds no data; kubeforge does not change this file afterwards.\n\
         ETCD_INITIAL_CLUSTER={}\n\
         ETCD_INITIAL_CLUSTER_STATE={state}\n\
         ETCD_INITIAL_CLUSTER_TOKEN={token}\n",
        members.join(",")
    )
}

/// A member's peer URL (`https://<address>:2380`).
pub fn peer_url(address: std::net::IpAddr) -> String {
    url("https", address, ETCD_PEER_PORT)
}

pub(super) fn add(ctx: Ctx<'_>, out: &mut HostOut<'_>) -> Result<(), ConfigRenderError> {
    let service = service(ctx, out.host)?;
    out.render(UNIT, 0o600, false, &service)?;
    let user = EtcdSysusers { user: USER.to_string(), home: DATA_DIR.to_string() };
    out.render(SYSUSERS, 0o644, false, &user)
}

/// `(major, minor)` of `vX.Y.Z`.
pub(crate) fn etcd_minor(version: &str) -> Result<(u32, u32), ConfigRenderError> {
    let bad = || ConfigRenderError::EtcdVersion(version.to_string());
    let mut parts = version.strip_prefix('v').unwrap_or(version).split('.');
    let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let minor = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    Ok((major, minor))
}

fn service(ctx: Ctx<'_>, host: &crate::model::Host) -> Result<EtcdService, ConfigRenderError> {
    let cluster = ctx.cluster();
    let credentials = [
        ("etcd-ca.crt", "etcd/ca.crt"),
        ("etcd-peer.crt", "etcd/peer.crt"),
        ("etcd-peer.key", "etcd/peer.key"),
        ("etcd-server.crt", "etcd/server.crt"),
        ("etcd-server.key", "etcd/server.key"),
    ];
    let cred = |name: &str| format!("%d/{name}");
    let client_url = url("https", host.address, ETCD_CLIENT_PORT);
    let peer_url = url("https", host.address, ETCD_PEER_PORT);
    let mut pairs = vec![
        ("advertise-client-urls", client_url.clone()),
        ("auto-tls", "false".to_string()),
        ("cert-file", cred("etcd-server.crt")),
        ("cipher-suites", TLS_CIPHER_SUITES.join(",")),
        ("client-cert-auth", "true".to_string()),
        ("data-dir", DATA_DIR.to_string()),
        ("initial-advertise-peer-urls", peer_url.clone()),
        ("key-file", cred("etcd-server.key")),
        (
            "listen-client-urls",
            format!("{},{client_url}", url("https", loopback(host.address), ETCD_CLIENT_PORT)),
        ),
        ("listen-metrics-urls", url("http", loopback(host.address), METRICS_PORT)),
        ("listen-peer-urls", peer_url),
        ("name", host.name.clone()),
        ("peer-auto-tls", "false".to_string()),
        ("peer-cert-file", cred("etcd-peer.crt")),
        ("peer-client-cert-auth", "true".to_string()),
        ("peer-key-file", cred("etcd-peer.key")),
        ("peer-trusted-ca-file", cred("etcd-ca.crt")),
        ("snapshot-count", "10000".to_string()),
        ("trusted-ca-file", cred("etcd-ca.crt")),
    ];
    // etcd 3.6 graduated the corruption check and progress notifications (kubeadm v1.34).
    if etcd_minor(&cluster.etcd.version)? >= (3, 6) {
        pairs.push(("feature-gates", "InitialCorruptCheck=true".to_string()));
        pairs.push(("watch-progress-notify-interval", "5s".to_string()));
    } else {
        pairs.push(("experimental-initial-corrupt-check", "true".to_string()));
        pairs.push(("experimental-watch-progress-notify-interval", "5s".to_string()));
    }
    Ok(EtcdService {
        binary: format!("{BIN_DIR}/etcd"),
        user: USER.to_string(),
        data_dir: DATA_DIR.to_string(),
        state_directory: DATA_DIR.trim_start_matches("/var/lib/").to_string(),
        credentials: credentials
            .iter()
            .map(|(name, file)| KeyValue { key: name.to_string(), value: pki(file) })
            .collect(),
        flags: flags(pairs),
    })
}
