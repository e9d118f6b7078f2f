//! `certs generate`: bring the store in line with the request. CAs and the service-account key
//! are created when absent and otherwise only checked (never replaced); every leaf is reused
//! when it still matches its profile, reissued when it does not (with the reasons), and
//! kubeconfigs whose certificate still fits but whose server or CA bundle changed are
//! rewritten around the same certificate and key.

use std::collections::{BTreeMap, BTreeSet};

use rcgen::{KeyPair, PublicKeyData};
use time::OffsetDateTime;

use crate::cas::{self, LoadedCa};
use crate::error::PkiError;
use crate::inspect::{CertFacts, ExtKeyUsage, inspect_pem, signed_by};
use crate::issue::{self, Subject};
use crate::keys;
use crate::kubeconfig::Kubeconfig;
use crate::paths::{SA_KEY, SA_PUB, crt, key, split_node_path};
use crate::profile::{self, CaId, LeafKind, LeafProfile};
use crate::report::{Action, Reason, Report};
use crate::request::PkiRequest;
use crate::serial::SerialSource;
use crate::{KeyAlgorithm, Store};

/// The new store and what was done to get there.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub store: Store,
    pub report: Report,
}

/// Leaves are reissued when less than this much of their life is left: 30 days, or a third of
/// the validity for short-lived certificates (so that two runs in a row never both reissue).
pub(crate) fn renew_window(validity: std::time::Duration) -> time::Duration {
    let third = time::Duration::try_from(validity / 3).unwrap_or(time::Duration::MAX);
    third.min(time::Duration::days(30))
}

pub(crate) fn truncate(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Creates what is missing, reuses what is valid and reissues leaves the spec no longer
/// matches. Fails without changing anything when a CA is unusable or a leaf would need a CA
/// whose key is not in the store.
pub fn generate(
    req: &PkiRequest,
    store: &Store,
    now: OffsetDateTime,
    serials: &mut dyn SerialSource,
) -> Result<Outcome, PkiError> {
    let now = truncate(now);
    let mut out = store.clone();
    let mut report = Report::default();
    let mut cas = BTreeMap::new();
    for id in CaId::ALL {
        let ca = match cas::load(&out, id, now)? {
            Some(ca) => {
                report.push(ca.path(), vec![], None, Action::Reused);
                note_ca(&ca, req, now, &mut report);
                ca
            }
            None => {
                create_ca(id, req, now, serials, &mut out)?;
                report.push(
                    crt(id.base()),
                    vec![crt(id.base()), key(id.base())],
                    None,
                    Action::Created,
                );
                cas::load(&out, id, now)?
                    .ok_or_else(|| PkiError::NotGenerated { path: crt(id.base()) })?
            }
        };
        cas.insert(id, ca);
    }
    service_account(req, &mut out, &mut report)?;

    let leaves = profile::leaves(req);
    let verdicts: Vec<Verdict> =
        leaves.iter().map(|leaf| evaluate(leaf, &out, &cas[&leaf.signer], req, now)).collect();
    let mut needs_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (leaf, verdict) in leaves.iter().zip(&verdicts) {
        let ca = &cas[&leaf.signer];
        if matches!(verdict, Verdict::Issue(_)) && ca.issuer.is_none() {
            needs_key.entry(ca.id.base().to_string()).or_default().push(leaf.display_path());
        }
    }
    if !needs_key.is_empty() {
        let ca = needs_key.keys().cloned().collect::<Vec<_>>().join(".crt, ");
        let leaves = needs_key.into_values().flatten().collect();
        return Err(PkiError::CaKeyMissing { ca, leaves });
    }
    let to_issue = verdicts.iter().filter(|v| matches!(v, Verdict::Issue(_))).count();
    let mut new_keys = keys::generate_many(req.key_algorithm, to_issue)?.into_iter();
    for (leaf, verdict) in leaves.iter().zip(verdicts) {
        let ca = &cas[&leaf.signer];
        let files = leaf.files();
        match verdict {
            Verdict::Reuse => {
                report.push(leaf.display_path(), vec![], leaf.host.clone(), Action::Reused)
            }
            Verdict::Rewrite(kubeconfig, reasons) => {
                out.insert(leaf.base.clone(), kubeconfig);
                let action = Action::Rewritten(reasons);
                report.push(leaf.display_path(), files, leaf.host.clone(), action);
            }
            Verdict::Issue(reasons) => {
                let (Some(issuer), Some(pair)) = (&ca.issuer, new_keys.next()) else {
                    return Err(PkiError::NotGenerated { path: leaf.display_path() });
                };
                let subject = Subject {
                    common_name: &leaf.common_name,
                    organizations: &leaf.organization.iter().cloned().collect::<Vec<_>>(),
                    dns_names: &leaf.dns_names,
                    ip_addresses: &leaf.ip_addresses,
                    ext_key_usages: &leaf.ext_key_usages,
                };
                write_leaf(leaf, &subject, pair, issuer, ca, req, now, serials, &mut out)?;
                let action = match reasons {
                    None => Action::Created,
                    Some(r) => Action::Reissued(r),
                };
                report.push(leaf.display_path(), files, leaf.host.clone(), action);
            }
        }
    }
    note_orphans(req, &out, &mut report);
    Ok(Outcome { store: out, report })
}

/// Writes a new key and certificate for `leaf` (or the kubeconfig embedding them).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_leaf(
    leaf: &LeafProfile,
    subject: &Subject<'_>,
    pair: KeyPair,
    issuer: &rcgen::Issuer<'_, KeyPair>,
    ca: &LoadedCa,
    req: &PkiRequest,
    now: OffsetDateTime,
    serials: &mut dyn SerialSource,
    out: &mut Store,
) -> Result<(), PkiError> {
    let what = leaf.display_path();
    let cert =
        issue::signed_leaf(subject, &pair, issuer, now, req.certificate_validity, serials, &what)?;
    let key_pem = keys::to_pem(&pair, &what)?;
    match &leaf.kind {
        LeafKind::Pair => {
            out.insert(crt(&leaf.base), cert.into_bytes());
            out.insert(key(&leaf.base), key_pem.into_bytes());
        }
        LeafKind::Kubeconfig { server } => {
            let kc = Kubeconfig {
                cluster_name: req.cluster_name.clone(),
                server: server.clone(),
                ca_pem: ca.bundle.clone(),
                user: leaf.common_name.clone(),
                client_cert_pem: cert.into_bytes(),
                client_key_pem: key_pem.into_bytes(),
            };
            out.insert(leaf.base.clone(), kc.render());
        }
    }
    Ok(())
}

fn create_ca(
    id: CaId,
    req: &PkiRequest,
    now: OffsetDateTime,
    serials: &mut dyn SerialSource,
    out: &mut Store,
) -> Result<(), PkiError> {
    let what = crt(id.base());
    let pair = keys::generate(req.key_algorithm, &what)?;
    let cert = issue::self_signed_ca(id.common_name(), &pair, now, req.ca_validity, serials)?;
    out.insert(crt(id.base()), cert.into_bytes());
    out.insert(key(id.base()), keys::to_pem(&pair, &what)?.into_bytes());
    Ok(())
}

fn note_ca(ca: &LoadedCa, req: &PkiRequest, now: OffsetDateTime, report: &mut Report) {
    let path = ca.path();
    if ca.issuer.is_none() {
        report.notes.push(format!(
            "{path}: key not in the state dir; treated as externally managed (leaves are only checked)"
        ));
    }
    if ca.facts.not_after - now < time::Duration::days(90) {
        report.notes.push(format!(
            "{path} expires {}; plan a CA rotation (`kubeforge certs rotate-ca --dry-run`)",
            crate::expiry::fmt_time(ca.facts.not_after)
        ));
    }
    if ca.facts.key_algorithm != Some(req.key_algorithm) {
        report.notes.push(format!(
            "{path} has a {} key while pki.keyAlgorithm is {}; CAs are never replaced by generate",
            alg_name(ca.facts.key_algorithm),
            req.key_algorithm
        ));
    }
}

fn alg_name(alg: Option<KeyAlgorithm>) -> String {
    alg.map_or_else(|| "non-standard".to_string(), |a| a.to_string())
}

/// sa.key is created once and then only checked: replacing it would invalidate every
/// service-account token in the cluster.
fn service_account(req: &PkiRequest, out: &mut Store, report: &mut Report) -> Result<(), PkiError> {
    match (out.get(SA_KEY), out.get(SA_PUB)) {
        (None, None) => {
            let pair = keys::generate(req.key_algorithm, SA_KEY)?;
            out.insert(SA_KEY.into(), keys::to_pem(&pair, SA_KEY)?.into_bytes());
            out.insert(SA_PUB.into(), keys::public_pem(&pair).into_bytes());
            report.push(SA_KEY.into(), vec![SA_KEY.into(), SA_PUB.into()], None, Action::Created);
        }
        (None, Some(_)) => {
            return Err(PkiError::HalfPair { path: SA_PUB.into(), missing: SA_KEY.into() });
        }
        (Some(pem), public) => {
            let pair = keys::load(pem, SA_KEY)?;
            let want = keys::public_pem(&pair).into_bytes();
            match public {
                None => {
                    out.insert(SA_PUB.into(), want);
                    report.push(SA_PUB.into(), vec![SA_PUB.into()], None, Action::Created);
                }
                Some(have) if spki_of_pem(have) != Some(pair.subject_public_key_info()) => {
                    return Err(PkiError::BadCa {
                        path: SA_PUB.into(),
                        problem: "does not match sa.key".into(),
                    });
                }
                Some(_) => {}
            }
            report.push(SA_KEY.into(), vec![], None, Action::Reused);
        }
    }
    Ok(())
}

fn spki_of_pem(pem: &[u8]) -> Option<Vec<u8>> {
    crate::der::pem_blocks(pem).ok()?.into_iter().find(|(l, _)| l == "PUBLIC KEY").map(|(_, d)| d)
}

pub(crate) enum Verdict {
    Reuse,
    /// New kubeconfig bytes around the same certificate and key.
    Rewrite(Vec<u8>, Vec<Reason>),
    /// `None`: nothing there yet.
    Issue(Option<Vec<Reason>>),
}

fn evaluate(
    leaf: &LeafProfile,
    store: &Store,
    ca: &LoadedCa,
    req: &PkiRequest,
    now: OffsetDateTime,
) -> Verdict {
    match &leaf.kind {
        LeafKind::Pair => {
            let (crt_path, key_path) = (crt(&leaf.base), key(&leaf.base));
            let (cert, key_pem) = match (store.get(&crt_path), store.get(&key_path)) {
                (None, None) => return Verdict::Issue(None),
                (None, Some(_)) => return Verdict::Issue(Some(vec![Reason::Missing(crt_path)])),
                (Some(_), None) => return Verdict::Issue(Some(vec![Reason::Missing(key_path)])),
                (Some(c), Some(k)) => (c, k),
            };
            match check_cert(leaf, cert, key_pem, ca, req, now) {
                reasons if reasons.is_empty() => Verdict::Reuse,
                reasons => Verdict::Issue(Some(reasons)),
            }
        }
        LeafKind::Kubeconfig { server } => {
            let Some(bytes) = store.get(&leaf.base) else { return Verdict::Issue(None) };
            let have = match Kubeconfig::parse(bytes) {
                Ok(k) => k,
                Err(e) => return Verdict::Issue(Some(vec![Reason::Unreadable(e)])),
            };
            let reasons =
                check_cert(leaf, &have.client_cert_pem, &have.client_key_pem, ca, req, now);
            if !reasons.is_empty() {
                return Verdict::Issue(Some(reasons));
            }
            let want = Kubeconfig {
                cluster_name: req.cluster_name.clone(),
                server: server.clone(),
                ca_pem: ca.bundle.clone(),
                user: leaf.common_name.clone(),
                ..have.clone()
            };
            let bytes_want = want.render();
            if &bytes_want == bytes {
                return Verdict::Reuse;
            }
            let mut reasons = Vec::new();
            if have.server != want.server {
                reasons.push(Reason::ServerChanged {
                    have: have.server.clone(),
                    want: want.server.clone(),
                });
            }
            if have.ca_pem != want.ca_pem {
                reasons.push(Reason::CaBundleChanged);
            }
            if have.cluster_name != want.cluster_name
                || have.user != want.user
                || reasons.is_empty()
            {
                reasons.push(Reason::NamesChanged);
            }
            Verdict::Rewrite(bytes_want, reasons)
        }
    }
}

fn san_strings(
    facts_dns: impl IntoIterator<Item = String>,
    ips: impl IntoIterator<Item = std::net::IpAddr>,
) -> BTreeSet<String> {
    facts_dns
        .into_iter()
        .map(|d| format!("DNS:{d}"))
        .chain(ips.into_iter().map(|i| format!("IP:{i}")))
        .collect()
}

fn usages(set: &BTreeSet<ExtKeyUsage>) -> String {
    set.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(",")
}

/// Every way an existing certificate + key fails its profile; empty means reuse.
fn check_cert(
    leaf: &LeafProfile,
    cert_pem: &[u8],
    key_pem: &[u8],
    ca: &LoadedCa,
    req: &PkiRequest,
    now: OffsetDateTime,
) -> Vec<Reason> {
    let facts: CertFacts = match inspect_pem(cert_pem) {
        Ok(f) => f,
        Err(e) => return vec![Reason::Unreadable(e)],
    };
    let mut reasons = Vec::new();
    match keys::load(key_pem, &leaf.display_path()) {
        Ok(pair) if pair.subject_public_key_info() != facts.spki_der => {
            reasons.push(Reason::KeyMismatch)
        }
        Ok(_) => {}
        Err(e) => reasons.push(Reason::Unreadable(e.to_string())),
    }
    if !signed_by(&facts.der, &ca.facts.spki_der) {
        reasons
            .push(Reason::WrongIssuer { issuer: facts.issuer_common_name.clone(), ca: ca.path() });
    }
    let want_orgs: Vec<String> = leaf.organization.iter().cloned().collect();
    if facts.common_name != leaf.common_name || facts.organizations != want_orgs {
        let mut want = want_orgs.iter().map(|o| format!("O={o}")).collect::<Vec<_>>();
        want.push(format!("CN={}", leaf.common_name));
        reasons.push(Reason::SubjectChanged { have: facts.subject(), want: want.join(", ") });
    }
    let have = san_strings(facts.dns_names.iter().cloned(), facts.ip_addresses.iter().copied());
    let want = san_strings(leaf.dns_names.iter().cloned(), leaf.ip_addresses.iter().copied());
    if have != want {
        reasons.push(Reason::SansChanged {
            added: want.difference(&have).cloned().collect(),
            removed: have.difference(&want).cloned().collect(),
        });
    }
    let want_eku: BTreeSet<ExtKeyUsage> = leaf.ext_key_usages.iter().copied().collect();
    if facts.ext_key_usages != want_eku || !facts.other_ext_key_usages.is_empty() {
        reasons.push(Reason::UsagesChanged {
            have: usages(&facts.ext_key_usages),
            want: usages(&want_eku),
        });
    }
    // An externally managed CA's leaves are the operator's: kubeforge cannot reissue them, so
    // the key type is theirs to choose.
    if ca.issuer.is_some() && facts.key_algorithm != Some(req.key_algorithm) {
        reasons.push(Reason::KeyAlgorithm {
            have: alg_name(facts.key_algorithm),
            want: req.key_algorithm,
        });
    }
    if facts.not_after - now < renew_window(req.certificate_validity) {
        reasons.push(Reason::Expiring { not_after: facts.not_after });
    }
    reasons
}

fn note_orphans(req: &PkiRequest, store: &Store, report: &mut Report) {
    let known: BTreeSet<&str> = req
        .control_planes
        .iter()
        .map(|c| c.name.as_str())
        .chain(req.etcd_members.iter().map(|e| e.name.as_str()))
        .chain(req.nodes.iter().map(|n| n.name.as_str()))
        .collect();
    let orphans: BTreeSet<&str> = store
        .keys()
        .filter_map(|p| split_node_path(p))
        .map(|(h, _)| h)
        .filter(|h| !known.contains(h))
        .collect();
    for host in orphans {
        report.notes.push(format!(
            "nodes/{host}/ belongs to no host in the spec; kept (remove it once the host is gone)"
        ));
    }
}
