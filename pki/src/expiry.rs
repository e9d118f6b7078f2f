//! `certs check-expiration`: every certificate and kubeconfig in the store with its host,
//! subject, signer, expiry and time left, as kubeadm's table but across all hosts. The signer is
//! found by signature among the store's CA certificates, not by name: during a rotation the old
//! and the new CA share their name, so each entry says which one signed it (the CA file it is
//! in — `etcd/ca`, `etcd/ca-next`, `etcd/ca-prev` — and a short fingerprint of its key).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Store;
use crate::error::PkiError;
use crate::inspect::{inspect_pem, signed_by};
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
    /// The CA that signed it, found by signature (a CA certificate: itself): its store base
    /// (`etcd/ca`, or during a rotation `etcd/ca-next` / `etcd/ca-prev`); `None` when no CA
    /// certificate in the store signed it.
    pub signed_by: Option<String>,
    /// The first 8 bytes (hex) of the sha256 of the signing CA's public key: tells the old and
    /// the new CA apart, which share their name.
    pub signer_key_id: Option<String>,
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
    let cas = ca_certificates(store);
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
        let signer = cas.iter().find(|ca| {
            if facts.is_ca { ca.spki == facts.spki_der } else { signed_by(&facts.der, &ca.spki) }
        });
        let signer_ca = match signer {
            Some(ca) => ca.base.clone(),
            None => signer_base(&name, facts.is_ca).to_string(),
        };
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
            signed_by: signer.map(|ca| ca.base.clone()),
            signer_key_id: signer.map(|ca| key_id(&ca.spki)),
            is_ca: facts.is_ca,
            not_after: facts.not_after,
            residual_seconds,
            externally_managed,
            status,
        });
    }
    Ok(out)
}

/// One CA certificate of the store, named by the file it is best known by.
struct CaCert {
    base: String,
    spki: Vec<u8>,
}

/// Every CA certificate at the store's top level (not under `nodes/`). A CA in two files (the
/// incoming CA in `etcd/ca-next.crt` and second in the bundle `etcd/ca.crt`) is named by the
/// file that holds it alone, so the old and the new CA keep apart: the signing (first)
/// certificate of a bundle is named by the bundle, the others by their `-next`/`-prev` file.
fn ca_certificates(store: &Store) -> Vec<CaCert> {
    let mut firsts = Vec::new();
    let mut others = Vec::new();
    for (path, bytes) in store {
        let Some(base) = path.strip_suffix(".crt") else { continue };
        if path.starts_with("nodes/") {
            continue;
        }
        let Ok(blocks) = crate::der::pem_blocks(bytes) else { continue };
        let certs = blocks.into_iter().filter(|(l, _)| l == "CERTIFICATE");
        for (i, (_, der)) in certs.enumerate() {
            let Ok(facts) = crate::inspect::inspect_der(&der) else { continue };
            if !facts.is_ca {
                continue;
            }
            let ca = CaCert { base: base.to_string(), spki: facts.spki_der };
            if i == 0 { firsts.push(ca) } else { others.push(ca) }
        }
    }
    // A bundle's second certificate only when no file holds it alone.
    for other in others {
        if !firsts.iter().any(|f| f.spki == other.spki) {
            firsts.push(other);
        }
    }
    firsts
}

fn key_id(spki: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(spki).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The CA (store base path) that signs the object called `name`, by kubeadm's names (when no
/// CA certificate of the store signed it).
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
