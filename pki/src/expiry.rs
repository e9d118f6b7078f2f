//! `certs check-expiration`: every certificate and kubeconfig in the store with its host,
//! subject, signer, expiry and time left, as kubeadm's table but across all hosts.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Store;
use crate::error::PkiError;
use crate::inspect::inspect_pem;
use crate::kubeconfig::Kubeconfig;
use crate::paths::split_node_path;

/// Certificates with less time left than this are flagged.
pub const WARN_BEFORE: time::Duration = time::Duration::days(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExpiryStatus {
    Ok,
    /// Less than [`WARN_BEFORE`] left.
    Warning,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryEntry {
    /// Store path (`nodes/cp1/apiserver.crt`).
    pub path: String,
    /// `None` for cluster-wide material.
    pub host: Option<String>,
    /// kubeadm's name (`apiserver`, `etcd/server`, `admin.conf`, `ca`).
    pub name: String,
    pub subject: String,
    /// The issuer's common name.
    pub signer: String,
    pub is_ca: bool,
    pub not_after: OffsetDateTime,
    /// Seconds until expiry; negative once expired.
    pub residual_seconds: i64,
    /// The signing CA's key is not in the store: kubeforge cannot renew it.
    pub externally_managed: bool,
    pub status: ExpiryStatus,
}

/// `2026-11-30T12:00:00Z`.
pub(crate) fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

impl ExpiryEntry {
    pub fn not_after_rfc3339(&self) -> String {
        fmt_time(self.not_after)
    }
    /// `364d`, `9y`, `23h`, `expired`, as kubeadm's RESIDUAL TIME column (Go's
    /// `ShortHumanDuration`: days below two years).
    pub fn residual(&self) -> String {
        let s = self.residual_seconds;
        if s <= 0 {
            "expired".into()
        } else if s >= 86_400 * 365 * 2 {
            format!("{}y", s / (86_400 * 365))
        } else if s >= 86_400 {
            format!("{}d", s / 86_400)
        } else {
            format!("{}h", s / 3600)
        }
    }
}

/// Inspects every `.crt` and `.conf` in the store. Fails on a file that cannot be read.
pub fn check_expiration(store: &Store, now: OffsetDateTime) -> Result<Vec<ExpiryEntry>, PkiError> {
    let mut out = Vec::new();
    for (path, bytes) in store {
        let cert_pem = if path.ends_with(".crt") {
            bytes.clone()
        } else if path.ends_with(".conf") {
            Kubeconfig::parse(bytes)
                .map_err(|problem| PkiError::Unreadable { path: path.clone(), problem })?
                .client_cert_pem
        } else {
            continue;
        };
        let facts = inspect_pem(&cert_pem)
            .map_err(|problem| PkiError::Unreadable { path: path.clone(), problem })?;
        let (host, rel) = match split_node_path(path) {
            Some((h, rel)) => (Some(h.to_string()), rel),
            None => (None, path.as_str()),
        };
        let name = rel.strip_suffix(".crt").unwrap_or(rel).to_string();
        let signer_ca = signer_base(&name, facts.is_ca);
        let externally_managed = !store.contains_key(&format!("{signer_ca}.key"));
        let residual_seconds = (facts.not_after - now).whole_seconds();
        let status = if residual_seconds <= 0 {
            ExpiryStatus::Expired
        } else if facts.not_after - now < WARN_BEFORE {
            ExpiryStatus::Warning
        } else {
            ExpiryStatus::Ok
        };
        out.push(ExpiryEntry {
            path: path.clone(),
            host,
            name,
            subject: facts.subject(),
            signer: facts.issuer_common_name.clone(),
            is_ca: facts.is_ca,
            not_after: facts.not_after,
            residual_seconds,
            externally_managed,
            status,
        });
    }
    Ok(out)
}

/// The CA (store base path) that signs the object called `name`.
fn signer_base(name: &str, is_ca: bool) -> &'static str {
    match name {
        _ if is_ca && name == "front-proxy-ca" => "front-proxy-ca",
        _ if is_ca && name == "etcd/ca" => "etcd/ca",
        _ if is_ca => "ca",
        "front-proxy-client" => "front-proxy-ca",
        "apiserver-etcd-client" => "etcd/ca",
        n if n.starts_with("etcd/") => "etcd/ca",
        _ => "ca",
    }
}
