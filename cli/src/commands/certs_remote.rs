//! `certs check-expiration --remote`: the certificates and kubeconfigs actually on the hosts,
//! read over SSH at their node paths, with their expiry and whether each still matches the
//! state dir (a renewal not yet applied shows as `differs`). Read-only on the hosts; key files
//! are never read, and a kubeconfig's contents never leave this process.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use kubeforge_pki::{ExpiryEntry, ExpiryStatus, Store};
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::render::{RenderInput, RenderTree};
use miette::{IntoDiagnostic as _, miette};
use serde::Serialize;
use time::OffsetDateTime;

use crate::context::OutputFormat;
use crate::state::StateDir;
use crate::transport::ssh::SshConnector;
use crate::transport::{ConnectOptions, Connector as _, SshTarget, Transport};

/// How a host's copy of a file compares with the state dir's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnHost {
    /// Byte-identical to what `apply` would put.
    Matches,
    /// Present but different (an older certificate, or edited on the host).
    Differs,
    Missing,
    /// The host or the file could not be read; the reason.
    Unreadable(String),
}

/// One certificate file on one host.
#[derive(Debug, Clone)]
pub struct RemoteCert {
    pub host: String,
    /// The node path, e.g. `/etc/kubernetes/pki/apiserver.crt`.
    pub path: String,
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
    // The CA keys the state holds, so that "externally managed" is judged as for the state.
    let ca_keys: Store = state
        .iter()
        .filter(|(p, _)| p.ends_with(".key") && !p.starts_with("nodes/"))
        .map(|(p, _)| (p.clone(), Vec::new()))
        .collect();
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
            let expiry = match bytes {
                Some(bytes) => {
                    let mut one = ca_keys.clone();
                    let key = store_path(host, path);
                    one.insert(key.clone(), bytes);
                    match kubeforge_pki::check_expiration(&one, now) {
                        Ok(entries) => entries.into_iter().find(|e| e.path == key),
                        Err(e) => {
                            let reason = format!("not a certificate kubeforge can read: {e}");
                            out.push(RemoteCert {
                                host: host.clone(),
                                path: path.clone(),
                                on_host: OnHost::Unreadable(reason),
                                expiry: None,
                            });
                            continue;
                        }
                    }
                }
                None => None,
            };
            out.push(RemoteCert { host: host.clone(), path: path.clone(), on_host, expiry });
        }
    }
    out
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
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    let certs = runtime.block_on(async {
        let connector = Arc::new(SshConnector::new(ConnectOptions::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for host in &cluster.hosts {
            let target = SshTarget::from_host(host, &known_hosts);
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
        inspect_hosts(&tree, &transports, &unreachable, &store, now).await
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
                    "host": c.host, "path": c.path, "onHost": c.on_host,
                    "subject": c.expiry.as_ref().map(|e| &e.subject),
                    "notAfter": c.expiry.as_ref().map(|e| e.not_after_rfc3339()),
                    "residualSeconds": c.expiry.as_ref().map(|e| e.residual_seconds),
                })
            })
            .collect();
        writeln!(out, "{:#}", serde_json::Value::Array(json)).into_diagnostic()?;
        return Ok(());
    }
    let header = ["HOST", "FILE", "SUBJECT", "EXPIRES", "RESIDUAL", "VS STATE DIR"];
    let rows: Vec<[String; 6]> = certs
        .iter()
        .map(|c| {
            let (subject, expires, residual) = match &c.expiry {
                Some(e) => (e.subject.clone(), e.not_after_rfc3339(), e.residual()),
                None => ("-".into(), "-".into(), "-".into()),
            };
            [c.host.clone(), c.path.clone(), subject, expires, residual, on_host_text(&c.on_host)]
        })
        .collect();
    super::certs::write_table(&mut out, header, &rows)?;
    Ok(())
}

#[cfg(test)]
mod tests;
