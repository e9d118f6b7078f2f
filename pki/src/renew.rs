//! `certs renew`: new keys, serials and validity for leaves, keeping each certificate's subject,
//! SANs and usages exactly as they are (read back from the certificate, as kubeadm does). CAs
//! and sa.key are never touched.

use time::OffsetDateTime;

use crate::Store;
use crate::cas;
use crate::error::PkiError;
use crate::generate::{Outcome, truncate, write_leaf};
use crate::inspect::{CertFacts, inspect_pem};
use crate::issue::Subject;
use crate::kubeconfig::Kubeconfig;
use crate::paths::crt;
use crate::profile::{self, CaId, LeafKind, LeafProfile, RENEWABLE_NAMES};
use crate::report::{Action, Report};
use crate::request::PkiRequest;
use crate::serial::SerialSource;

/// Which leaves to renew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewSelection {
    All,
    /// kubeadm names (`apiserver`, `admin.conf`, `etcd-server`, ...), optionally `host/name`.
    Names(Vec<String>),
}

fn selected(leaf: &LeafProfile, names: &[String]) -> bool {
    names.iter().any(|n| match n.split_once('/') {
        Some((host, name)) => leaf.host.as_deref() == Some(host) && leaf.name == name,
        None => leaf.name == n,
    })
}

/// Renews the selected leaves. Every selected leaf must already exist; run generate first.
pub fn renew(
    req: &PkiRequest,
    store: &Store,
    now: OffsetDateTime,
    serials: &mut dyn SerialSource,
    selection: &RenewSelection,
) -> Result<Outcome, PkiError> {
    let now = truncate(now);
    let all = profile::leaves(req);
    let chosen: Vec<&LeafProfile> = match selection {
        RenewSelection::All => all.iter().collect(),
        RenewSelection::Names(names) => {
            for n in names {
                let known = all.iter().any(|l| selected(l, std::slice::from_ref(n)));
                if !known {
                    return Err(PkiError::UnknownName {
                        name: n.clone(),
                        known: RENEWABLE_NAMES.iter().map(|s| s.to_string()).collect(),
                    });
                }
            }
            all.iter().filter(|l| selected(l, names)).collect()
        }
    };
    let mut cas = std::collections::BTreeMap::new();
    for id in CaId::ALL {
        let ca = cas::load(store, id, now)?
            .ok_or_else(|| PkiError::NotGenerated { path: crt(id.base()) })?;
        cas.insert(id, ca);
    }
    // Check every selected leaf before generating any key.
    let mut work = Vec::new();
    for leaf in chosen {
        let ca = &cas[&leaf.signer];
        let Some(issuer) = &ca.issuer else {
            return Err(PkiError::ExternallyManaged {
                what: leaf.display_path(),
                ca: ca.id.base().into(),
            });
        };
        work.push((leaf, ca, issuer, existing(leaf, store)?));
    }
    let mut out = store.clone();
    let mut report = Report::default();
    let new_keys = crate::keys::generate_many(req.key_algorithm, work.len())?;
    for ((leaf, ca, issuer, facts), pair) in work.into_iter().zip(new_keys) {
        let mut renewed = leaf.clone();
        if let LeafKind::Kubeconfig { server } = &mut renewed.kind {
            // Keep the kubeconfig's own server, as kubeadm does.
            if let Some(k) = store.get(&leaf.base).and_then(|b| Kubeconfig::parse(b).ok()) {
                *server = k.server;
            }
        }
        let ips: Vec<_> = facts.ip_addresses.iter().copied().collect();
        let dns: Vec<_> = facts.dns_names.iter().cloned().collect();
        let ekus: Vec<_> = facts.ext_key_usages.iter().copied().collect();
        let subject = Subject {
            common_name: &facts.common_name,
            organizations: &facts.organizations,
            dns_names: &dns,
            ip_addresses: &ips,
            ext_key_usages: &ekus,
        };
        renewed.common_name = facts.common_name.clone();
        write_leaf(&renewed, &subject, pair, issuer, ca, req, now, serials, &mut out)?;
        report.push(leaf.display_path(), leaf.files(), leaf.host.clone(), Action::Renewed);
    }
    Ok(Outcome { store: out, report })
}

fn existing(leaf: &LeafProfile, store: &Store) -> Result<CertFacts, PkiError> {
    let path = leaf.display_path();
    let bytes = store.get(&path).ok_or_else(|| PkiError::NotGenerated { path: path.clone() })?;
    let pem = match leaf.kind {
        LeafKind::Pair => bytes.clone(),
        LeafKind::Kubeconfig { .. } => {
            Kubeconfig::parse(bytes)
                .map_err(|problem| PkiError::Unreadable { path: path.clone(), problem })?
                .client_cert_pem
        }
    };
    inspect_pem(&pem).map_err(|problem| PkiError::Unreadable { path, problem })
}
