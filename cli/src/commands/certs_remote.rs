//! `certs check-expiration --remote`: the certificates and kubeconfigs actually on the hosts,
//! read over SSH at their node paths, and the certificates their etcd, kube-apiserver and
//! kubelet processes actually serve (`served`), each with its expiry and whether it still
//! matches the state dir: a renewal not yet applied shows as `differs` on the file, one applied
//! but not yet picked up by the process as `differs` on the endpoint. Read-only on the hosts;
//! key files are never read, and a kubeconfig's contents never leave this process.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use kubeforge_pki::{ExpiryEntry, ExpiryStatus, Store};
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::render::served::served_endpoints;
use kubeforge_playbooks::render::{RenderInput, RenderTree};
use miette::{IntoDiagnostic as _, miette};
use serde::Serialize;
use time::OffsetDateTime;

use crate::context::OutputFormat;
use crate::state::StateDir;
use crate::transport::ssh::SshConnector;
use crate::transport::{ConnectOptions, Connector as _, Transport};

/// How a host's copy of a file compares with the state dir's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnHost {
    /// Byte-identical to what `apply` would put.
    Matches,
    /// Present but different (an older certificate, or edited on the host).
    Differs,
    Missing,
    /// Nothing listens on the endpoint (the component is not running, or not installed yet).
    NotServing,
    /// The host or the file could not be read; the reason.
    Unreadable(String),
}

/// One certificate file on one host, or one certificate a host serves.
#[derive(Debug, Clone)]
pub struct RemoteCert {
    pub host: String,
    /// The node path, e.g. `/etc/kubernetes/pki/apiserver.crt`, or for a served certificate
    /// the endpoint, e.g. `https://10.0.0.11:2379`.
    pub path: String,
    /// For a served certificate, what serves it (`etcd client`, `kube-apiserver`, ...).
    pub served_by: Option<&'static str>,
    pub on_host: OnHost,
    /// Parsed from the host's copy; `None` when missing or unreadable.
    pub expiry: Option<ExpiryEntry>,
}

/// The node paths that hold a certificate: `*.crt` under the PKI dirs and the top-level
/// kubeconfigs (their client certificate).
pub fn is_certificate_path(path: &str) -> bool {
    let pki = path.starts_with("/etc/kubernetes/pki/") || path.starts_with("/var/lib/kubelet/pki/");
    let kubeconfig = path
        .strip_prefix("/etc/kubernetes/")
        .is_some_and(|name| !name.contains('/') && name.ends_with(".conf"));
    (pki && path.ends_with(".crt")) || kubeconfig
}

/// Where a node file sits in a per-host store, so that kubeforge-pki names it as the state dir
/// does (`nodes/cp1/apiserver.crt`, `nodes/cp1/admin.conf`).
fn store_path(host: &str, node_path: &str) -> String {
    let rel = node_path
        .strip_prefix("/etc/kubernetes/pki/")
        .or_else(|| node_path.strip_prefix("/var/lib/kubelet/pki/"))
        .or_else(|| node_path.strip_prefix("/etc/kubernetes/"))
        .unwrap_or(node_path);
    format!("nodes/{host}/{rel}")
}

/// Reads every certificate file the render tree gives each host, from that host.
pub async fn inspect_hosts(
    tree: &RenderTree,
    transports: &BTreeMap<String, Arc<dyn Transport>>,
    unreachable: &BTreeMap<String, String>,
    state: &Store,
    now: OffsetDateTime,
) -> Vec<RemoteCert> {
    let ca_keys = ca_keys(state);
    let mut out = Vec::new();
    for (host, files) in &tree.hosts {
        for (path, wanted) in files.iter().filter(|(p, _)| is_certificate_path(p)) {
            let (on_host, bytes) = match (transports.get(host), unreachable.get(host)) {
                (Some(t), _) => match t.read_file(path).await {
                    Ok(Some(bytes)) if bytes == wanted.contents => (OnHost::Matches, Some(bytes)),
                    Ok(Some(bytes)) => (OnHost::Differs, Some(bytes)),
                    Ok(None) => (OnHost::Missing, None),
                    Err(e) => (OnHost::Unreadable(e.to_string()), None),
                },
                (None, reason) => {
                    let reason = reason.cloned().unwrap_or_else(|| "not connected".into());
                    (OnHost::Unreadable(reason), None)
                }
            };
            let expiry = match bytes.map(|b| expiry_of(&ca_keys, host, path, b, now)).transpose() {
                Ok(expiry) => expiry.flatten(),
                Err(reason) => {
                    out.push(RemoteCert {
                        host: host.clone(),
                        path: path.clone(),
                        served_by: None,
                        on_host: OnHost::Unreadable(reason),
                        expiry: None,
                    });
                    continue;
                }
            };
            let (host, path) = (host.clone(), path.clone());
            out.push(RemoteCert { host, path, served_by: None, on_host, expiry });
        }
    }
    out
}

/// The state's CA certificates (the old and new CA during a rotation, so that each host
/// certificate's signer is found by signature) and the names of its cluster-wide keys (names
/// only, never their bytes), so that "externally managed" is judged for a host's certificate as
/// for the state's.
fn ca_keys(state: &Store) -> Store {
    state
        .iter()
        .filter(|(p, _)| !p.starts_with("nodes/"))
        .filter_map(|(p, bytes)| {
            if p.ends_with(".key") {
                Some((p.clone(), Vec::new()))
            } else if p.ends_with(".crt") {
                Some((p.clone(), bytes.clone()))
            } else {
                None
            }
        })
        .collect()
}

/// The expiry entry of a certificate (PEM, or a kubeconfig) found on `host` for `node_path`.
fn expiry_of(
    ca_keys: &Store,
    host: &str,
    node_path: &str,
    bytes: Vec<u8>,
    now: OffsetDateTime,
) -> Result<Option<ExpiryEntry>, String> {
    let mut one = ca_keys.clone();
    let key = store_path(host, node_path);
    one.insert(key.clone(), bytes);
    kubeforge_pki::check_expiration(&one, now)
        .map(|entries| entries.into_iter().find(|e| e.path == key))
        .map_err(|e| format!("not a certificate kubeforge can read: {e}"))
}

/// The command: connect to every host, inspect, print; exit 1 when a certificate on a host has
/// expired or a host could not be checked.
pub fn run(
    cluster: &Cluster,
    state: &StateDir,
    output: OutputFormat,
    now: OffsetDateTime,
) -> miette::Result<ExitCode> {
    let store = super::certs::existing_pki(state)?;
    let secrets = crate::secrets_store::load_or_create(state.root())?;
    let mut tree = RenderTree::default();
    kubeforge_playbooks::render::pki::add_files(
        RenderInput { cluster, pki: &store, secrets: &secrets },
        &mut tree,
    )
    .map_err(|e| miette!("{e}"))?;
    let known_hosts = state.root().join("known_hosts");
    let targets = crate::transport::ssh_targets(cluster, &known_hosts)?;
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    let certs = runtime.block_on(async {
        let connector = Arc::new(SshConnector::new(ConnectOptions::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for target in targets {
            let connector = connector.clone();
            tasks.spawn(async move { (target.host.clone(), connector.connect(&target).await) });
        }
        let (mut transports, mut unreachable) = (BTreeMap::new(), BTreeMap::new());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((host, Ok(t))) => {
                    transports.insert(host, t);
                }
                Ok((host, Err(e))) => {
                    unreachable.insert(host, e.to_string());
                }
                Err(e) => tracing::error!("a connection task failed: {e}"),
            }
        }
        let mut certs = inspect_hosts(&tree, &transports, &unreachable, &store, now).await;
        let endpoints = served_endpoints(cluster);
        certs.extend(
            served::inspect_served(&endpoints, &tree, &transports, &unreachable, &store, now).await,
        );
        certs
    });
    print(&certs, output)?;
    let failed = certs.iter().any(|c| {
        matches!(c.on_host, OnHost::Unreadable(_))
            || c.expiry.as_ref().is_some_and(|e| e.status == ExpiryStatus::Expired)
    });
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn on_host_text(on_host: &OnHost) -> String {
    match on_host {
        OnHost::Matches => "matches".into(),
        OnHost::Differs => "differs".into(),
        OnHost::Missing => "missing".into(),
        OnHost::NotServing => "not serving".into(),
        OnHost::Unreadable(reason) => format!("unreadable: {reason}"),
    }
}

fn print(certs: &[RemoteCert], output: OutputFormat) -> miette::Result<()> {
    let mut out = std::io::stdout().lock();
    if output == OutputFormat::Json {
        let json: Vec<_> = certs
            .iter()
            .map(|c| {
                serde_json::json!({
                    "host": c.host, "path": c.path, "servedBy": c.served_by, "onHost": c.on_host,
                    "subject": c.expiry.as_ref().map(|e| &e.subject),
                    "signer": c.expiry.as_ref().map(|e| &e.signer),
                    "signedBy": c.expiry.as_ref().and_then(|e| e.signed_by.as_ref()),
                    "signerKeyId": c.expiry.as_ref().and_then(|e| e.signer_key_id.as_ref()),
                    "notAfter": c.expiry.as_ref().map(|e| e.not_after_rfc3339()),
                    "residualSeconds": c.expiry.as_ref().map(|e| e.residual_seconds),
                })
            })
            .collect();
        writeln!(out, "{:#}", serde_json::Value::Array(json)).into_diagnostic()?;
        return Ok(());
    }
    let header =
        ["HOST", "FILE OR ENDPOINT", "SUBJECT", "SIGNED BY", "EXPIRES", "RESIDUAL", "VS STATE DIR"];
    let rows: Vec<[String; 7]> = certs
        .iter()
        .map(|c| {
            let (subject, signed, expires, residual) = match &c.expiry {
                Some(e) => (
                    e.subject.clone(),
                    super::certs::signed_by_text(e),
                    e.not_after_rfc3339(),
                    e.residual(),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            let path = match c.served_by {
                Some(component) => format!("{} ({component})", c.path),
                None => c.path.clone(),
            };
            [c.host.clone(), path, subject, signed, expires, residual, on_host_text(&c.on_host)]
        })
        .collect();
    super::certs::write_table(&mut out, header, &rows)?;
    Ok(())
}

mod served;

#[cfg(test)]
mod tests;
